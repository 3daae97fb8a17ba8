"""What the server (or a CLI command) needs for agreements, from ``Settings``: the CA and TSA
(loaded on first use: the first start generates them) and the document settings."""

from __future__ import annotations

import datetime as dt
import functools

from config import Settings
from esign.agreements import DocumentSettings
from esign.catalogue import Texts, untranslated
from esign.pki import Authority, load_authority
from evidence.runtime import EvidenceRuntime


class EsignRuntime:
    def __init__(self, settings: Settings, texts: Texts = untranslated) -> None:
        self.settings = settings
        self.docs = DocumentSettings(
            texts=texts,
            font_path=settings.document_font_path,
            base_url=settings.base_url,
            secret=settings.secret_key,
            code_ttl=dt.timedelta(seconds=settings.esign_code_ttl_s),
            code_max_attempts=settings.esign_code_max_attempts,
        )

    @functools.cached_property
    def authority(self) -> Authority:
        return load_authority(self.settings)

    @functools.cached_property
    def evidence(self) -> EvidenceRuntime:
        """For the postal route's returned scans (stored as evidence)."""
        return EvidenceRuntime.from_settings(self.settings)
