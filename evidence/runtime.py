"""What a running server (or a CLI command) needs for evidence, built from ``Settings``: the
store, the platform signing key, the limits and the in-memory upload states."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from config import Settings
from evidence.ledger import PlatformKey
from evidence.storage import LocalEvidenceStore
from evidence.uploads import Limits, UploadStates

SIGNING_KEY_FILE = "evidence-signing.key"


@dataclass
class EvidenceRuntime:
    store: LocalEvidenceStore
    key: PlatformKey
    limits: Limits
    states: UploadStates
    preview_locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    # Previews run external tools: at most two at a time per process (the machine's cores).
    preview_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    @classmethod
    def from_settings(cls, settings: Settings) -> EvidenceRuntime:
        """Files under DATA_DIR/evidence; keys from settings or generated into the data dir."""
        key = settings.evidence_encryption_key
        if not key:
            # Settings built without ``with_generated_secrets`` (tests): read or create the file.
            key = settings.with_generated_secrets().evidence_encryption_key
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            store=LocalEvidenceStore(settings.data_dir / "evidence", key),
            key=PlatformKey.load_or_create(settings.data_dir / SIGNING_KEY_FILE),
            limits=Limits(settings.evidence_max_file_bytes, settings.evidence_max_case_bytes),
            states=UploadStates(),
        )
