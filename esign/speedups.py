"""Narrow speed-ups for pyHanko's validation (and signing) of our agreements.

Why: validating a fully signed agreement (issue, two parties, mediator, seal) spent most of its
time in a few library hot spots, not in cryptography (profile: ``bench.agreement``'s validation
under ``cProfile``):

1. **Hex strings read a byte at a time.** pyHanko's PDF reader reads a hex string ``<…>`` one
   token at a time in Python (``read_non_whitespace`` per digit). Each signature's ``/Contents``
   is such a string of ~9,000 hex digits (the CMS container), read again for every revision the
   validation looks at. The fast path finds the closing ``>``, drops PDF whitespace from the slice
   and calls ``binascii.unhexlify`` once. Anything else inside the brackets (a ``%`` comment, a
   stray byte) or no closing ``>`` before the end: the stream is put back where it was and the
   original function does the work, so malformed input fails exactly as it did.
2. **X.509 names prepared again and again.** asn1crypto compares names (the issuer of the ESS
   signing-certificate attribute against the certificate, per signature and per timestamp) by
   preparing each value with RFC 4518 string preparation, and does that anew for every freshly
   parsed certificate. The preparation is a pure function of the value's text: its results are
   cached by that text (bounded); an error is not cached and is raised again, as before.

3. **Names read a byte at a time.** The same reader reads every name (``/Type``, ``/Annots``,
   each dictionary key) byte by byte and decodes it byte by byte; the modification analysis
   of the certification signature reads every object of every revision. The fast path takes a
   name of plain ASCII characters (no ``#`` escape) from one read with a regular expression;
   any other name goes to the original.

Each is a patch of one function, applied by ``install()`` (idempotent, called
where verification and signing start) only when the installed library is the version whose code
was read for this; any other version keeps the original functions. Results do not change:
``tests/test_esign_speedups.py`` compares the fast path with the original on real agreements.
"""

from __future__ import annotations

import binascii
import importlib.metadata
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_WHITESPACE

log = logging.getLogger("yuntiao.esign")

# The versions whose functions were read and found to behave as described above.
PYHANKO_VERSION = "0.38.0"
ASN1CRYPTO_VERSION = "1.5.1"

HEX_DIGITS = b"0123456789abcdefABCDEF"
FIRST_READ = 256  # most hex strings are short (document IDs); /Contents grows the reads
MAX_READ = 1 << 20
NAME_READ = 128  # longer names (rare) go to the original
# A name's bytes that need no decoding: printable ASCII, no delimiter, no "#" escape.
PLAIN_NAME = re.compile(rb"[^\x00-\x20\x7f-\xff()<>\[\]{}/%#]*")
NAME_END = PDF_WHITESPACE + b"()<>[]{}/%"  # pyHanko's PDF_WHITESPACE + PDF_DELIMITERS
PREP_CACHE_SIZE = 4096
NAME_CACHE_SIZE = 4096

ORIGINAL_READ_HEX: Callable[[Any], Any] = generic.read_hex_string_from_stream
ORIGINAL_READ_NAME: Callable[[Any], Any] = generic.NameObject.read_from_stream
ORIGINAL_PREP: Callable[[Any, Any], Any] = asn1_x509.NameTypeAndValue._ldap_string_prep
ORIGINAL_NAME_EQ: Callable[[Any, Any], bool] = asn1_x509.Name.__eq__

_lock = threading.Lock()
_active: dict[str, bool] = {}
_enabled = True
_prep_cache: dict[str, str] = {}
_name_eq_cache: dict[tuple[bytes, bytes], bool] = {}


def fast_read_hex_string(stream: Any) -> Any:
    """Same result and stream position as pyHanko's ``read_hex_string_from_stream``; the
    original handles every string that is not plain hex digits and PDF whitespace."""
    start = stream.tell()
    stream.read(1)  # the "<"
    body_start = stream.tell()
    chunks: list[bytes] = []
    size = FIRST_READ
    while True:
        chunk = stream.read(size)
        if not chunk:  # no ">": the original raises its own error
            stream.seek(start)
            return ORIGINAL_READ_HEX(stream)
        end = chunk.find(b">")
        if end >= 0:
            chunks.append(chunk[:end])
            break
        chunks.append(chunk)
        size = min(size * 2, MAX_READ)
    body = b"".join(chunks)
    digits = body.translate(None, PDF_WHITESPACE)
    if digits.translate(None, HEX_DIGITS):  # a comment, or a byte the original refuses
        stream.seek(start)
        return ORIGINAL_READ_HEX(stream)
    stream.seek(body_start + len(body) + 1)
    if len(digits) % 2:
        digits += b"0"  # as the original: a missing last digit is 0
    return generic.pdf_string(binascii.unhexlify(digits))


def fast_read_name(stream: Any) -> Any:
    """Same result and stream position as pyHanko's ``NameObject.read_from_stream`` for a
    plain name; the original handles the rest (escapes, bad bytes, errors)."""
    start = stream.tell()
    chunk = stream.read(NAME_READ)
    if chunk[:1] == b"/":
        match = PLAIN_NAME.match(chunk, 1)
        assert match is not None  # "*": matches the empty string at least
        end = match.end()
        at_eof = end == len(chunk) < NAME_READ
        at_delimiter = end < len(chunk) and chunk[end] in NAME_END
        if at_eof or at_delimiter:
            stream.seek(start + end)  # the original leaves the delimiter unread
            return generic.NameObject(chunk[:end].decode("ascii"))
    stream.seek(start)
    return ORIGINAL_READ_NAME(stream)


def cached_ldap_string_prep(self: Any, string: Any) -> Any:
    """asn1crypto's RFC 4518 preparation of a name's value, cached by the value's text."""
    if type(string) is not str:
        return ORIGINAL_PREP(self, string)
    prepped = _prep_cache.get(string)
    if prepped is None:
        prepped = ORIGINAL_PREP(self, string)  # raises for forbidden characters, uncached
        if len(_prep_cache) >= PREP_CACHE_SIZE:
            _prep_cache.clear()
        _prep_cache[string] = prepped
    return prepped


def cached_name_eq(self: Any, other: Any) -> bool:
    """asn1crypto's RFC 5280 name comparison, cached by the two names' encodings (the
    comparison is a function of them: it parses and prepares what they encode)."""
    if not isinstance(other, asn1_x509.Name):
        return False
    key = (self.chosen.contents, other.chosen.contents)
    equal = _name_eq_cache.get(key)
    if equal is None:
        equal = ORIGINAL_NAME_EQ(self, other)  # an error (unpreparable value) is not cached
        if len(_name_eq_cache) >= NAME_CACHE_SIZE:
            _name_eq_cache.clear()
        _name_eq_cache[key] = equal
    return equal


def _set(owner: object, attribute: str, value: object) -> None:
    setattr(owner, attribute, value)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def install() -> dict[str, bool]:
    """Apply the speed-ups whose library version matches (once; cheap when done). Returns
    which are active."""
    if _active or not _enabled:
        return dict(_active)
    with _lock:
        if _active or not _enabled:
            return dict(_active)
        reader_ok = (
            _version("pyhanko") == PYHANKO_VERSION
            and generic.read_hex_string_from_stream is ORIGINAL_READ_HEX
            and generic.NameObject.read_from_stream is ORIGINAL_READ_NAME
        )
        names_ok = (
            _version("asn1crypto") == ASN1CRYPTO_VERSION
            and asn1_x509.NameTypeAndValue._ldap_string_prep is ORIGINAL_PREP
            and asn1_x509.Name.__eq__ is ORIGINAL_NAME_EQ
        )
        if reader_ok:
            _set(generic, "read_hex_string_from_stream", fast_read_hex_string)
            _set(generic.NameObject, "read_from_stream", staticmethod(fast_read_name))
        if names_ok:
            _set(asn1_x509.NameTypeAndValue, "_ldap_string_prep", cached_ldap_string_prep)
            _set(asn1_x509.Name, "__eq__", cached_name_eq)
        if not (reader_ok and names_ok):
            log.warning(
                "esign speed-ups not applied to a library version they were not checked "
                "against (pyhanko %s, asn1crypto %s): validation is slower, results the same",
                _version("pyhanko"),
                _version("asn1crypto"),
            )
        _active.update(pdf_reader=reader_ok, x509_names=names_ok)
        return dict(_active)


def disable() -> None:
    """Put the original functions back and keep them until ``enable()`` (tests compare both;
    ``bench.agreement --without-speedups`` measures the library's own code)."""
    global _enabled
    with _lock:
        _enabled = False
        if _active.get("pdf_reader"):
            _set(generic, "read_hex_string_from_stream", ORIGINAL_READ_HEX)
            _set(generic.NameObject, "read_from_stream", staticmethod(ORIGINAL_READ_NAME))
        if _active.get("x509_names"):
            _set(asn1_x509.NameTypeAndValue, "_ldap_string_prep", ORIGINAL_PREP)
            _set(asn1_x509.Name, "__eq__", ORIGINAL_NAME_EQ)
        _prep_cache.clear()
        _name_eq_cache.clear()
        _active.clear()


def enable() -> None:
    """Undo ``disable()``: the next ``install()`` applies the speed-ups again."""
    global _enabled
    with _lock:
        _enabled = True
