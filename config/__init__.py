"""Typed, frozen settings for Yuntiao.

Every setting is one dataclass field with a default and a help text; the environment variable is
``YUNTIAO_`` + the upper-cased field name. Tests build ``Settings(...)`` directly. This package
imports nothing else of ours.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "YUNTIAO_"


def _setting(default: Any, help: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """All run-time settings. Field order is the order the README documents them in."""

    host: str = _setting("127.0.0.1", "Address the HTTP server listens on.")
    port: int = _setting(8080, "Port the HTTP server listens on.")
    data_dir: Path = _setting(
        Path("data"),
        "Directory for the SQLite database, keys, uploaded files and recordings.",
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@127.0.0.1/yuntiao. "
        "Empty means SQLite at DATA_DIR/yuntiao.sqlite3.",
        secret=True,
    )
    secret_key: str = _setting(
        "",
        "Key for sessions and signed links. Empty: generated on first start into DATA_DIR/secret.key.",
        secret=True,
    )
    field_encryption_key: str = _setting(
        "",
        "Base64 AES-256 key for encrypted columns (ID numbers). "
        "Empty: generated on first start into DATA_DIR/field.key.",
        secret=True,
    )
    public_url: str = _setting(
        "",
        "Externally visible base URL used in links sent to parties; empty means http://HOST:PORT.",
    )
    default_locale: str = _setting("zh_CN", "Language of pages when the user has not chosen one.")
    timezone: str = _setting("Asia/Shanghai", "Time zone in which times are shown to people.")
    session_max_age_s: int = _setting(8 * 3600, "Lifetime of a staff login session, in seconds.")
    cookie_secure: str = _setting(
        "auto",
        "Secure flag on cookies: auto (when the request came over HTTPS), always, or never.",
    )
    login_max_failures: int = _setting(5, "Failed logins in a row before an account is locked.")
    login_lockout_s: int = _setting(15 * 60, "How long a locked account stays locked, in seconds.")
    api_token_max_age_s: int = _setting(
        30 * 24 * 3600, "Lifetime of an API bearer token, in seconds."
    )
    max_request_bytes: int = _setting(
        2 * 1024 * 1024, "Largest ordinary (non-upload) request body accepted, in bytes."
    )
    seed_demo: bool = _setting(
        True, "Seed a demo organisation, accounts and a sample case on first start."
    )
    trust_proxy_headers: bool = _setting(
        False, "Trust X-Forwarded-For / X-Forwarded-Proto (set only behind your own reverse proxy)."
    )
    redis_url: str = _setting(
        "",
        "Redis URL (redis://127.0.0.1:6379/0) for running several server processes behind one "
        "address; empty for a single process.",
    )
    redis_channel: str = _setting(
        "yuntiao", "Redis channel and key prefix, so several deployments can share one Redis."
    )
    stun_urls: str = _setting(
        "", "Comma-separated STUN URLs handed to browsers (stun:host:3478); empty for none."
    )
    turn_urls: str = _setting(
        "", "Comma-separated TURN URLs (turn:host:3478?transport=udp) handed to browsers."
    )
    turn_secret: str = _setting(
        "", "coturn static-auth-secret: browsers get time-limited TURN credentials.", secret=True
    )
    turn_credential_ttl_s: int = _setting(
        6 * 3600, "Lifetime of the TURN credentials given to a participant, in seconds."
    )
    evidence_max_file_bytes: int = _setting(
        2 * 1024 * 1024 * 1024, "Largest single evidence file accepted, in bytes."
    )
    evidence_max_case_bytes: int = _setting(
        10 * 1024 * 1024 * 1024,
        "Total evidence one case may store (withdrawn items and unfinished uploads count), "
        "in bytes.",
    )
    evidence_encryption_key: str = _setting(
        "",
        "Base64 AES-256 master key for evidence files at rest. "
        "Empty: generated on first start into DATA_DIR/evidence.key.",
        secret=True,
    )
    recording_retention_days: int = _setting(
        3650,
        "Days a hearing recording is kept; older files are deleted by the retention job "
        "unless under legal hold.",
    )
    recording_encryption_key: str = _setting(
        "",
        "Base64 AES-256 master key for recordings at rest (same format as the evidence key): "
        "each archived file is stored encrypted. Empty: recordings are stored unencrypted.",
        secret=True,
    )
    recorder_host_addresses: str = _setting(
        "",
        "Comma-separated addresses the recorder offers as ICE host candidates. Empty: the "
        "machine's own addresses (set 127.0.0.1 when everything runs on one machine).",
    )

    evidence_upload_expiry_s: int = _setting(
        72 * 3600,
        "An evidence upload left unfinished this long (seconds since its last byte) is deleted.",
    )
    evidence_tree_head_interval_s: int = _setting(
        3600,
        "Sign a new tree head of the evidence ledger at least this often (seconds) while it grows.",
    )
    evidence_housekeeping_interval_s: int = _setting(
        600,
        "How often the server's evidence housekeeping runs (expire uploads, sign tree heads), "
        "in seconds; 0 turns it off.",
    )
    notes_snapshot_every: int = _setting(
        200,
        "Hearing records and case notes: compact a document into a snapshot after this many "
        "edits (every edit is kept as history).",
    )

    document_font_path: Path = _setting(
        Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
        "TrueType CJK font embedded (subset) in generated PDFs; a .ttc uses its first face.",
    )
    esign_ca_cert_file: str = _setting(
        "",
        "PEM certificate of the CA that certifies signers' keys. Empty: a platform CA is "
        "generated on first start into DATA_DIR/esign/.",
    )
    esign_ca_key_file: str = _setting(
        "", "PEM private key of that CA (with YUNTIAO_ESIGN_CA_CERT_FILE).", secret=True
    )
    esign_tsa_cert_file: str = _setting(
        "",
        "PEM certificate of the RFC 3161 timestamp authority. Empty: generated on first start "
        "into DATA_DIR/esign/, certified by the platform CA.",
    )
    esign_tsa_key_file: str = _setting(
        "", "PEM private key of that timestamp authority.", secret=True
    )
    esign_code_ttl_s: int = _setting(
        600, "Lifetime of a one-time signing code sent to a signer, in seconds."
    )
    esign_code_max_attempts: int = _setting(
        5, "Wrong one-time codes accepted before the code is void and a new one must be sent."
    )
    esign_link_max_age_s: int = _setting(
        14 * 24 * 3600, "Lifetime of a signer's personal signing link, in seconds."
    )
    judicial_reminder_days: int = _setting(
        7,
        "Days before the 30-day judicial confirmation deadline (People's Mediation Law Art. 33) "
        "that the parties are reminded by text message (once per agreement; agents and the "
        "mediator are not texted).",
    )
    judicial_reminder_interval_s: int = _setting(
        3600,
        "How often each server process sends the judicial confirmation reminders that are due, "
        "in seconds (the first time 30 s after start); 0 turns it off (then run `yuntiao esign remind` "
        "from cron). Several processes remind each agreement once.",
    )

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def database_url_resolved(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'yuntiao.sqlite3').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``YUNTIAO_*`` variables; ``overrides`` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update(overrides)
        return cls(**values)

    def with_generated_secrets(self) -> Settings:
        """Return settings whose empty secrets are read from (or first written to) DATA_DIR."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = self.secret_key or _keyfile(
            self.data_dir / "secret.key", secrets.token_urlsafe(48)
        )
        field_key = self.field_encryption_key or _keyfile(
            self.data_dir / "field.key", base64.b64encode(secrets.token_bytes(32)).decode()
        )
        evidence_key = self.evidence_encryption_key or _keyfile(
            self.data_dir / "evidence.key", base64.b64encode(secrets.token_bytes(32)).decode()
        )
        return dataclasses.replace(
            self,
            secret_key=secret,
            field_encryption_key=field_key,
            evidence_encryption_key=evidence_key,
        )


def _keyfile(path: Path, fresh: str) -> str:
    """Read a key file, creating it (mode 0600, exclusively) with ``fresh`` if it does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(fresh + "\n")
    return fresh


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if not isinstance(f.type, str) else f.type
    if kind in (int, "int"):
        return int(raw)
    if kind in (bool, "bool"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{ENV_PREFIX}{f.name.upper()}: expected true/false, got {raw!r}")
    if kind in (Path, "Path"):
        return Path(raw)
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for each setting, for the README and ``--help``."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = "" if f.metadata.get("secret") else str(f.default)
        rows.append((ENV_PREFIX + f.name.upper(), default, f.metadata["help"]))
    return rows
