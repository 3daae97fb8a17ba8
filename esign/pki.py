"""The platform's certificate authority and timestamp authority, and one-time signer keys.

Electronic Signature Law Art. 13 (1)(2): the signing data must belong to the signer alone and be
under their sole control when signing. So every signature gets a **fresh key pair**, certified by
the platform CA for that signer (subject: their name, the case number), used for that one
signature and then dropped — it is never written anywhere. The CA and the RFC 3161 timestamp
authority (TSA) keys are generated on first start into ``DATA_DIR/esign/`` (mode 0600), or loaded
from the PEM files named in the settings (a real CA, a real TSA).

The TSA signs with RSA (pyHanko's in-process timestamper is RSA-only); signer keys are ECDSA
P-256, cheap enough to make one per signature.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.signers import SimpleSigner
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from config import Settings

# A UUID-based OID (X.667, arc 2.25): ours without registration. The TSA's policy.
TSA_POLICY_OID = "2.25.163540270719052347411519395372806442513"
CA_VALIDITY = dt.timedelta(days=20 * 365)
TSA_VALIDITY = dt.timedelta(days=10 * 365)
# Long enough that a signature still validates years later without LTV data; the private key
# is gone the moment the signature is made, so a long validity grants nothing.
SIGNER_VALIDITY = dt.timedelta(days=10 * 365)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# X.520 "name" (2.5.4.41): the signer's full name when it does not fit the common name.
FULL_NAME_OID = x509.ObjectIdentifier("2.5.4.41")
CN_MAX_BYTES = 64  # the limit cryptography enforces, counted in UTF-8 bytes


def _fit(text: str, max_bytes: int) -> str:
    while len(text.encode()) > max_bytes:
        text = text[:-1]
    return text


def _name(common_name: str, organisation: str = "", unit: str = "") -> x509.Name:
    """Subject of a certificate. Long names (a company's full name) are cut in the common name,
    which must fit 64 bytes (21 Chinese characters), and kept whole in the "name" attribute."""
    common_name = common_name.strip() or "?"
    cut = _fit(common_name, CN_MAX_BYTES)
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cut)]
    if cut != common_name:
        parts.append(x509.NameAttribute(FULL_NAME_OID, common_name[:200]))
    if organisation:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:200]))
    if unit:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit[:200]))
    parts.append(x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"))
    return x509.Name(parts)


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _load_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError("only RSA and EC keys are supported")
    return key


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _asn1_key(key: PrivateKey) -> asn1_keys.PrivateKeyInfo:
    return asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


class PlatformTimeStamper(DummyTimeStamper):
    """pyHanko's in-process RFC 3161 timestamper, with our policy OID. Also answers raw
    ``TimeStampReq`` bytes for the HTTP endpoint (``respond``)."""

    def _build_tst_info(
        self, message_imprint: tsp.MessageImprint, dt: dt.datetime, req: tsp.TimeStampReq
    ) -> tsp.TSTInfo:
        info = super()._build_tst_info(message_imprint, dt, req)
        info["policy"] = tsp.ObjectIdentifier(TSA_POLICY_OID)
        return info

    def respond(self, request_der: bytes) -> bytes:
        """DER ``TimeStampResp`` for a DER ``TimeStampReq`` (``ValueError`` if it is not one)."""
        req = tsp.TimeStampReq.load(request_der)
        _ = req.native  # parse fully now: bad input fails here, not half-way through signing
        return bytes(self.request_tsa_response(req).dump())


@dataclass(frozen=True)
class Authority:
    """The loaded CA and TSA. ``issue_signer`` makes the one-time key for one signature."""

    ca_cert: x509.Certificate
    ca_key: PrivateKey
    tsa_cert: x509.Certificate
    tsa_key: PrivateKey

    @functools.cached_property
    def ca_cert_asn1(self) -> asn1_x509.Certificate:
        return _asn1_cert(self.ca_cert)

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    @functools.cached_property
    def timestamper(self) -> PlatformTimeStamper:
        return PlatformTimeStamper(
            tsa_cert=_asn1_cert(self.tsa_cert),
            tsa_key=_asn1_key(self.tsa_key),
            # The root is not embedded (verifiers bring it as their trust anchor): every byte of
            # a signature is parsed again at each validation.
        )

    def issue_signer(
        self, name: str, case_number: str, organisation: str = "", role: str = ""
    ) -> SimpleSigner:
        """A fresh P-256 key and its certificate (CN = ``name``, OU = case number and role),
        wrapped as a pyHanko signer. The key exists only inside the returned object: sign with
        it once and let it go."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        unit = f"{case_number} {role}".strip()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name, organisation, unit))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + SIGNER_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(_ski(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        return SimpleSigner(
            signing_cert=_asn1_cert(cert),
            signing_key=_asn1_key(key),
            cert_registry=SimpleCertificateStore(),  # no root: see ``timestamper``
        )


def _build_ca(key: PrivateKey, now: dt.datetime) -> x509.Certificate:
    name = _name("Yuntiao Platform CA 云调平台电子签名根证书", "Yuntiao 云调")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _build_tsa(
    key: PrivateKey, ca_cert: x509.Certificate, ca_key: PrivateKey, now: dt.datetime
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name("Yuntiao Timestamp Authority 云调时间戳服务", "Yuntiao 云调"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + TSA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
            critical=True,  # RFC 3161 §2.3: the only purpose, and critical
        )
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _generate(directory: Path) -> None:
    """First start: a CA (RSA 3072) and a TSA (RSA 2048) certified by it, keys mode 0600.
    Written to a temporary directory and renamed, so a crash leaves no half set."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(directory.name + ".new-" + secrets.token_hex(4))
    staging.mkdir(mode=0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    ca_cert = _build_ca(ca_key, now)
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa_cert = _build_tsa(tsa_key, ca_cert, ca_key, now)
    _write_private(staging / "ca.key", _pem_key(ca_key))
    _write_private(staging / "tsa.key", _pem_key(tsa_key))
    (staging / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (staging / "tsa.pem").write_bytes(tsa_cert.public_bytes(serialization.Encoding.PEM))
    try:
        staging.rename(directory)
    except OSError:
        # Another process won the race: keep theirs.
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()


def key_dir(settings: Settings) -> Path:
    return settings.data_dir / "esign"


def load_authority(settings: Settings) -> Authority:
    """The CA and TSA from the settings' files, else from (or first generated into) the data
    dir. A configured CA without a configured TSA gets a TSA generated and certified by it."""
    directory = key_dir(settings)
    if not settings.esign_ca_cert_file and not (directory / "ca.pem").exists():
        _generate(directory)
    if settings.esign_ca_cert_file:
        ca_cert = x509.load_pem_x509_certificate(Path(settings.esign_ca_cert_file).read_bytes())
        ca_key = _load_key(Path(settings.esign_ca_key_file).read_bytes())
    else:
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        ca_key = _load_key((directory / "ca.key").read_bytes())
    if settings.esign_tsa_cert_file:
        tsa_cert = x509.load_pem_x509_certificate(Path(settings.esign_tsa_cert_file).read_bytes())
        tsa_key = _load_key(Path(settings.esign_tsa_key_file).read_bytes())
    else:
        tsa_pem = directory / "tsa.pem"
        if not tsa_pem.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cert = _build_tsa(key, ca_cert, ca_key, dt.datetime.now(dt.UTC))
            _write_private(directory / "tsa.key", _pem_key(key))
            tsa_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        tsa_cert = x509.load_pem_x509_certificate(tsa_pem.read_bytes())
        tsa_key = _load_key((directory / "tsa.key").read_bytes())
    if not isinstance(tsa_key, rsa.RSAPrivateKey):
        raise ValueError("the timestamp authority key must be RSA")
    return Authority(ca_cert, ca_key, tsa_cert, tsa_key)
