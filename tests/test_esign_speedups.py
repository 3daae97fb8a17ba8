"""``esign.speedups`` changes no result: pyHanko's hex-string reader and asn1crypto's name
preparation, fast and original, give the same values, stream positions and errors; a real
agreement — untouched, with a changed byte, with an appended page, with odd or malformed hex in a
signature's /Contents, cut short — gets the same report either way."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic

from config import Settings
from esign import pki, speedups, verify
from tests.test_esign_signing import appended_page, changed_byte, sign_all


@pytest.fixture(autouse=True)
def restore_speedups() -> Iterator[None]:
    yield
    speedups.enable()
    speedups.install()


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> pki.Authority:
    return pki.load_authority(Settings(data_dir=tmp_path_factory.mktemp("esign-speedups")))


@pytest.fixture(scope="module")
def signed(authority: pki.Authority) -> bytes:
    return asyncio.run(sign_all(authority))


def outcome(read: Any, data: bytes) -> tuple[Any, ...]:
    """What a reader makes of ``data``: the value with its type and the stream position after
    it, or the error with its message."""
    stream = io.BytesIO(data)
    try:
        value = read(stream)
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("error", type(exc), str(exc))
    raw = bytes(value.original_bytes) if hasattr(value, "original_bytes") else b""
    return ("value", type(value), raw, str(value), stream.tell())


HEX_CASES = [
    b"<>",
    b"<41>",
    b"<4142434445464748> rest",
    b"<4>",  # odd: the last digit is followed by an implied 0
    b"<414>",
    b"<aBcD eF01\n\r\t\f\x002 3 >",  # every kind of PDF whitespace, mixed case
    b"<FEFF00410042>",  # UTF-16 with a BOM: a text string
    b"<EFBBBF41>",
    b"<  >/Next",
    b"<41 % a comment > \n 42>",  # pyHanko treats % as a comment even here
    b"<41G2>",  # not a hex digit
    b"<41(42)>",
    b"<41<42>>",
    b"<4142",  # no closing bracket
    b"<",
    b"<" + b"0123456789abcdef" * 2000 + b">",  # as long as a signature's /Contents
    b"<" + b"0a " * 3000 + b"1>trailing",
    b"<" + b"0" * 700 + b"X" + b"0" * 700 + b">",
]


@pytest.mark.parametrize("data", HEX_CASES, ids=lambda d: repr(d[:24]))
def test_hex_strings_read_the_same(data: bytes) -> None:
    fast = outcome(speedups.fast_read_hex_string, data)
    assert fast == outcome(speedups.ORIGINAL_READ_HEX, data)


def test_objects_read_the_same() -> None:
    data = (
        b"<< /Type /Sig /ID [<0A1B> <0a1b 2c>] /Contents <3082 01\n0f>/N 1 /Sub<</A#20B/C>>"
        b"/Arr[/X/Y (s) 1 0 R] /Last/Name>> trailing"
    )
    results = []
    for active in (False, True):
        (speedups.enable if active else speedups.disable)()
        speedups.install()
        stream = io.BytesIO(data)
        obj = generic.read_object(stream, generic.Reference(1, 0, None))
        results.append((repr(obj), stream.tell()))
    assert generic.NameObject.read_from_stream is speedups.fast_read_name
    assert results[0] == results[1]


NAME_CASES = [
    b"/Type /Page",
    b"/Type/Page",
    b"/Annots[",
    b"/A<<",
    b"/",  # the empty name, at the end of the file
    b"/ ",
    b"/Contents",  # a name that ends the file
    b"/Name#20with#23escapes ",
    b"/Bad#2",  # unterminated escape
    b"/Bad#zz ",
    b"/Caf\xc3\xa9 ",  # not ASCII: must be escaped, the original refuses it
    b"/Ctl\x01x ",
    b"/Del\x7f ",
    b"/Tab\tx",
    b"/Comment%x",
    b"/" + b"L" * 127 + b" ",  # longer than one read
    b"/" + b"L" * 126,
    b"/" + b"L" * 127,
    b"Type",  # no slash
    b"",
]


@pytest.mark.parametrize("data", NAME_CASES, ids=lambda d: repr(d[:24]))
def test_names_read_the_same(data: bytes) -> None:
    fast = outcome(speedups.fast_read_name, data)
    assert fast == outcome(speedups.ORIGINAL_READ_NAME, data)


NAME_VALUES = ["张三", "宜昌市伍家岗区联合人民调解委员会", "  Mixed\tCase  Name ", "ﬁ\u00adx", "CN"]


@pytest.mark.parametrize("value", NAME_VALUES)
def test_name_preparation_the_same_and_cached(value: str) -> None:
    ntv = asn1_x509.Name.build({"common_name": "x"}).chosen[0][0]
    want = speedups.ORIGINAL_PREP(ntv, value)
    assert speedups.cached_ldap_string_prep(ntv, value) == want
    assert speedups.cached_ldap_string_prep(ntv, value) == want  # from the cache


def test_name_preparation_errors_are_raised_every_time() -> None:
    ntv = asn1_x509.Name.build({"common_name": "x"}).chosen[0][0]
    bad = "私用\ue000区"  # a private-use character: RFC 4518 prohibits it
    with pytest.raises(ValueError) as original:
        speedups.ORIGINAL_PREP(ntv, bad)
    for _ in range(2):
        with pytest.raises(ValueError) as fast:
            speedups.cached_ldap_string_prep(ntv, bad)
        assert str(fast.value) == str(original.value)


def test_names_compare_the_same(authority: pki.Authority) -> None:
    a = authority.issue_signer("张三", "（2026）伍联调字第1号").signing_cert
    b = authority.issue_signer("张三", "（2026）伍联调字第1号").signing_cert
    c = authority.issue_signer("李四", "（2026）伍联调字第1号").signing_cert
    pairs = [(a.issuer, b.issuer), (a.subject, b.subject), (a.subject, c.subject)]
    speedups.disable()
    original = [fresh(x) == fresh(y) for x, y in pairs]
    speedups.enable()
    assert speedups.install()["x509_names"]
    assert [fresh(x) == fresh(y) for x, y in pairs] == original == [True, True, False]


def test_uncomparable_names_fail_every_time() -> None:
    bad = asn1_x509.Name.build({"common_name": "私用\ue000区"})
    speedups.disable()
    with pytest.raises(ValueError) as original:
        _ = fresh(bad) == fresh(bad)
    speedups.enable()
    assert speedups.install()["x509_names"]
    for _ in range(2):
        with pytest.raises(ValueError) as fast:
            _ = fresh(bad) == fresh(bad)
        assert str(fast.value) == str(original.value)


def fresh(name: asn1_x509.Name) -> asn1_x509.Name:
    return asn1_x509.Name.load(name.dump())  # parsed anew: nothing prepared yet


# ---- real agreements ----------------------------------------------------------------------------


def last_contents_padding(pdf: bytes) -> tuple[int, int]:
    """Where the last signature's /Contents hex string ends in its zero padding (outside the
    signed byte range: changing it keeps every offset and every signed byte)."""
    match = list(re.finditer(rb"/Contents <([0-9a-fA-F]+)>", pdf))[-1]
    end = match.end(1)
    assert pdf[end - 64 : end] == b"0" * 64
    return end - 64, end


def with_padding(pdf: bytes, replacement: bytes) -> bytes:
    start, end = last_contents_padding(pdf)
    assert len(replacement) == end - start
    return pdf[:start] + replacement + pdf[end:]


VARIANTS = {
    "untouched": lambda pdf: pdf,
    "changed byte": changed_byte,
    "appended page": appended_page,
    "whitespace in /Contents": lambda pdf: with_padding(pdf, b"00 \n\r\t\f\x00" * 8),
    "odd /Contents": lambda pdf: with_padding(pdf, b" " + b"0" * 63),
    "comment in /Contents": lambda pdf: with_padding(pdf, b"0" * 30 + b"%>\n" + b"0" * 31),
    "bad digit in /Contents": lambda pdf: with_padding(pdf, b"0" * 31 + b"G" + b"0" * 32),
    "cut in /Contents": lambda pdf: pdf[: last_contents_padding(pdf)[0]],
}


# Padding outside the signed bytes: an odd number of digits still decodes to the same container
# (pyHanko then judges the padding); whitespace there makes pyHanko doubt what the last signature
# covers. Either way: the same verdict with and without the speed-ups.
GENUINE = {"untouched", "odd /Contents"}


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_agreements_get_the_same_report(
    signed: bytes, authority: pki.Authority, variant: str
) -> None:
    pdf = VARIANTS[variant](signed)
    speedups.disable()
    original = await verify.verify_pdf(pdf, authority.ca_cert_asn1)
    assert generic.read_hex_string_from_stream is speedups.ORIGINAL_READ_HEX
    speedups.enable()
    fast = await verify.verify_pdf(pdf, authority.ca_cert_asn1)
    assert generic.read_hex_string_from_stream is speedups.fast_read_hex_string
    assert fast == original
    assert fast.ok == (variant in GENUINE), fast.problem
    if variant == "untouched":
        assert len(fast.signatures) == 5
        assert [s.signer for s in fast.signatures][1:4] == ["张三", "李四", "王五"]


def test_not_applied_to_another_library_version(monkeypatch: pytest.MonkeyPatch) -> None:
    speedups.disable()
    monkeypatch.setattr(speedups, "PYHANKO_VERSION", "0.0.1")
    speedups.enable()
    assert speedups.install() == {"pdf_reader": False, "x509_names": True}
    assert generic.read_hex_string_from_stream is speedups.ORIGINAL_READ_HEX
    assert generic.NameObject.read_from_stream is speedups.ORIGINAL_READ_NAME
    assert asn1_x509.NameTypeAndValue._ldap_string_prep is speedups.cached_ldap_string_prep
    assert asn1_x509.Name.__eq__ is speedups.cached_name_eq
    speedups.disable()
