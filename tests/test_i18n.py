"""Every text a person can see has a Simplified Chinese translation.

The message ids are extracted from our own packages with Babel, exactly as ``babel.cfg`` says
(``pybabel extract -F babel.cfg -k N_ …``), and checked against the zh_CN catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from cases import catalogue, lifecycle
from cases.audit import AuditAction
from web import i18n, pages

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "cases",
    "config",
    "esign",
    "evidence",
    "notes",
    "recordings",
    "rooms",
    "server",
    "signaling",
    "web",
}
PO_PATH = ROOT / "web" / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER_RE = re.compile(r"%\((\w+)\)[sdfr]")


def our_directories(dirpath: str) -> bool:
    """Descend only into our packages (not .venv, node_modules, tests or caches)."""
    parts = Path(dirpath).resolve().relative_to(ROOT).parts
    if not parts:
        return True
    return parts[0] in PACKAGES and not any(p.startswith((".", "_")) for p in parts)


def extract() -> dict[str, list[str]]:
    """msgid → the files it comes from."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, str(ROOT / "babel.cfg"))
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found: dict[str, list[str]] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords, directory_filter=our_directories
    ):
        ids = message if isinstance(message, tuple) else (message,)
        for msgid in ids:
            if msgid:
                found.setdefault(msgid, []).append(filename)
    return found


@pytest.fixture(scope="module")
def extracted() -> dict[str, list[str]]:
    found = extract()
    assert len(found) > 200, "extraction found suspiciously few messages"
    return found


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    with PO_PATH.open("rb") as fh:
        return read_po(fh, locale="zh_CN")


def test_every_message_has_a_chinese_translation(
    extracted: dict[str, list[str]], catalog: Catalog
) -> None:
    missing = []
    for msgid, files in sorted(extracted.items()):
        message = catalog.get(msgid)
        if message is None or not message.string or message.fuzzy:
            missing.append(f"{msgid!r} (from {', '.join(sorted(set(files)))})")
    assert not missing, "untranslated in messages.po:\n" + "\n".join(missing)


def test_translations_keep_the_placeholders(catalog: Catalog) -> None:
    wrong = []
    for message in catalog:
        if not message.id or not message.string:
            continue
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        string = message.string if isinstance(message.string, str) else message.string[0]
        if sorted(PLACEHOLDER_RE.findall(msgid)) != sorted(PLACEHOLDER_RE.findall(string)):
            wrong.append(f"{msgid!r} → {string!r}")
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)


def test_the_catalogue_has_no_stale_entries(
    extracted: dict[str, list[str]], catalog: Catalog
) -> None:
    stale = sorted(m.id for m in catalog if m.id and m.id not in extracted)
    assert not stale, f"messages.po translates ids the code no longer uses: {stale}"


def test_vocabularies_and_audit_actions_all_have_labels() -> None:
    assert set(pages.AUDIT_LABELS) == {str(action) for action in AuditAction}
    assert set(lifecycle.STATUS_LABELS) == set(lifecycle.TRANSITIONS)
    for vocabulary in (
        catalogue.DISPUTE_CATEGORIES,
        catalogue.INTAKE_CHANNELS,
        catalogue.PARTY_ROLES,
        catalogue.STAFF_ROLES,
    ):
        assert all(vocabulary.values())


def test_the_compiled_catalogue_is_used() -> None:
    i18n.load()
    i18n.activate("zh_CN")
    try:
        assert i18n.gettext("Accepted") == "受理"
        assert i18n.gettext("Court referral") == "法院委派"
        assert i18n.gettext("Unknown role: %(role)s", role="x") == "未知的角色：x"
        i18n.activate("en")
        assert i18n.gettext("Accepted") == "Accepted"
    finally:
        i18n.activate("zh_CN")
