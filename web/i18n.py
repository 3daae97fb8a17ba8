"""Translations (Babel/gettext). Message ids are English; Simplified Chinese is the default
language. The current request's translations live in a context variable set by a middleware, so
templates, API errors and domain messages all use the same ``gettext``."""

from __future__ import annotations

import datetime as dt
import gettext as gettext_module
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from cases.catalogue import Msg, Phrase

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LOCALES = {"zh_CN": "简体中文", "en": "English"}

_catalogues: dict[str, gettext_module.NullTranslations] = {}
_current: ContextVar[gettext_module.NullTranslations | None] = ContextVar(
    "yuntiao_translations", default=None
)
_UNTRANSLATED = gettext_module.NullTranslations()
_current_locale: ContextVar[str] = ContextVar("yuntiao_locale", default="zh_CN")


def compile_catalogues() -> None:
    """Compile each ``.po`` to ``.mo`` when the ``.mo`` is missing or older (cheap; at start-up)."""
    for po_path in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as fh:
            catalog = read_po(fh)
        tmp = mo_path.with_suffix(".mo.tmp")
        with tmp.open("wb") as fh:
            write_mo(fh, catalog)
        tmp.replace(mo_path)


def load() -> None:
    compile_catalogues()
    _catalogues.clear()
    for locale in LOCALES:
        if locale == "en":
            _catalogues[locale] = gettext_module.NullTranslations()
        else:
            _catalogues[locale] = Translations.load(str(LOCALE_DIR), [locale], DOMAIN)


def normalise_locale(value: str | None, default: str) -> str:
    if not value:
        return default
    value = value.replace("-", "_")
    if value in LOCALES:
        return value
    if value.lower().startswith("zh"):
        return "zh_CN"
    if value.lower().startswith("en"):
        return "en"
    return default


def activate(locale: str) -> None:
    if not _catalogues:
        load()
    _current.set(_catalogues.get(locale) or _catalogues["zh_CN"])
    _current_locale.set(locale)


def current_locale() -> str:
    return _current_locale.get()


def gettext(message: str, **params: Any) -> str:
    text = (_current.get() or _UNTRANSLATED).gettext(message)
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    """Like ``gettext``: formats only when given parameters (Jinja formats its own calls)."""
    text = (_current.get() or _UNTRANSLATED).ngettext(singular, plural, n)
    return text % params if params else text


def format_local(value: dt.datetime | None, zone: ZoneInfo) -> str:
    """``2026-11-23 14:05`` in the people's time zone; refuses naive datetimes."""
    if value is None:
        return ""
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: times shown to people must carry a zone")
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def zone_label(zone: str) -> str:
    """ "Beijing time" for the zones China uses, else the zone's name."""
    return gettext("Beijing time") if zone in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else zone


def translate(message: str, params: Mapping[str, Any], tz: str = "Asia/Shanghai") -> str:
    """Translate a domain message, translating its parameters too: ``Msg`` labels, ``Phrase``
    sub-messages, and datetimes shown in the people's time zone."""
    return gettext(message, **{key: _param(value, tz) for key, value in params.items()})


def _param(value: Any, tz: str) -> Any:
    if isinstance(value, Phrase):
        return translate(value.message, value.params, tz)
    if isinstance(value, Msg):
        return gettext(value)
    if isinstance(value, dt.datetime):
        return format_local(value, ZoneInfo(tz))
    return value


_ = gettext
