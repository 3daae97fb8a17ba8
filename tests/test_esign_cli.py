"""``yuntiao esign verify FILE`` offline: genuine → exit 0 listing each signature; a changed byte
or a foreign CA → exit 1 saying why."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from config import Settings
from esign import pki
from tests.test_esign_signing import sign_all


def run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YUNTIAO_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "esign", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_esign_verify_offline(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    authority = pki.load_authority(Settings(data_dir=data_dir))
    pdf = asyncio.run(sign_all(authority))
    good = tmp_path / "agreement.pdf"
    good.write_bytes(pdf)
    out = run(["verify", str(good)], data_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("GENUINE")
    assert "张三" in out.stdout and out.stdout.count(": valid, trusted, timestamped") == 5

    changed = bytearray(pdf)
    changed[pdf.index(b"ReportLab PDF Library")] = ord("Q")
    bad = tmp_path / "changed.pdf"
    bad.write_bytes(bytes(changed))
    out = run(["verify", str(bad)], data_dir)
    assert out.returncode == 1 and out.stdout.startswith("NOT GENUINE")
    assert "changed after it was signed" in out.stdout

    other = pki.load_authority(Settings(data_dir=tmp_path / "other"))
    ca_file = tmp_path / "other-ca.pem"
    ca_file.write_bytes(other.ca_pem)
    out = run(["verify", str(good), "--ca", str(ca_file)], data_dir)
    assert out.returncode == 1 and "UNTRUSTED" in out.stdout

    out = run(["verify", str(tmp_path / "missing.pdf")], data_dir)
    assert out.returncode == 2 and "Cannot read" in out.stderr


def test_esign_help() -> None:
    for words in (["--help"], ["verify", "--help"], ["remind", "--help"]):
        out = run(words, Path("/nonexistent"))
        assert out.returncode == 0 and out.stdout.startswith("usage: yuntiao esign")


def test_esign_remind_runs_on_a_fresh_database(tmp_path: Path) -> None:
    env = {**os.environ, "YUNTIAO_DATA_DIR": str(tmp_path)}
    up = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert up.returncode == 0, up.stderr
    out = run(["remind"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "reminders sent for 0 agreement(s)" in out.stdout
