"""Protection of personal data at rest: ID-card numbers encrypted with AES-256-GCM, a keyed
HMAC "blind index" so equal numbers can be matched (conflict checks) without decrypting, and the
masked form shown on pages (``3301**********1234``)."""

from __future__ import annotations

import base64
import os
import re

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cases.catalogue import N_
from cases.errors import Invalid

_ID_RE = re.compile(r"^[0-9]{17}[0-9X]$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def normalise_id_number(raw: str) -> str:
    """Validate a PRC resident ID number (GB 11643 check digit) and return it upper-cased."""
    value = raw.strip().upper().replace(" ", "")
    if not _ID_RE.match(value):
        raise Invalid(
            N_("An ID card number has 18 characters: 17 digits and a digit or X."),
            code="invalid_id_number",
        )
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != value[17]:
        raise Invalid(
            N_("This ID card number's check digit is wrong; please check it."),
            code="invalid_id_number",
        )
    return value


def mask_id_number(value: str) -> str:
    return value[:4] + "*" * (len(value) - 8) + value[-4:] if len(value) > 8 else "*" * len(value)


class FieldCipher:
    """Encrypts short text fields. Key material: 32 bytes (base64) from settings or the data dir;
    the encryption and index keys are derived separately so the index reveals nothing usable."""

    def __init__(self, key_b64: str) -> None:
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError("field encryption key must be 32 bytes (base64)")
        self._aead = AESGCM(self._derive(key, b"yuntiao/field-encryption"))
        self._index_key = self._derive(key, b"yuntiao/blind-index")

    @staticmethod
    def _derive(key: bytes, label: bytes) -> bytes:
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(label)
        return mac.finalize()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(
            nonce + self._aead.encrypt(nonce, plaintext.encode(), None)
        ).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.b64decode(token)
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()

    def index(self, plaintext: str) -> str:
        mac = hmac.HMAC(self._index_key, hashes.SHA256())
        mac.update(plaintext.encode())
        return mac.finalize().hex()
