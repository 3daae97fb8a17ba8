"""Errors of agreements and signing (codes the API and pages show)."""

from __future__ import annotations

from cases.errors import Invalid


class CodeRefused(Invalid):
    """A wrong or expired one-time code. The failed attempt is counted and audited, so the
    transaction is committed although the request fails."""

    code = "signing_code_refused"
    keep_changes = True
