"""The ``yuntiao`` command line and a real ``serve`` start: migrate, seed once, print logins,
secrets generated into the data dir."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

COMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["demo"],
    ["audit"],
    ["audit", "verify"],
    ["user"],
    ["user", "create"],
]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "yuntiao")
def test_help_on_each_command(words: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: yuntiao")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")}
    env.update({"YUNTIAO_DATA_DIR": str(data_dir), "YUNTIAO_PORT": str(port)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "is running at" in line:
            break
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc, lines
        except OSError:
            time.sleep(0.1)
    _stop(proc)
    raise AssertionError("server did not answer /healthz:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_on_fresh_data_dir_seeds_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    proc, lines = _serve(data, port)
    try:
        text = "\n".join(lines)
        assert f"http://127.0.0.1:{port}/" in text
        assert "Demo accounts" in text
        for username in ("sysadmin", "admin", "mediator", "clerk"):
            assert any(line.split()[:1] == [username] for line in lines), text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/catalogue") as r:
            assert r.status == 200
    finally:
        _stop(proc)
    key = data / "secret.key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "field.key").stat().st_mode) == 0o600
    first_key = key.read_text()
    first_logins = (data / "demo-accounts.txt").read_text()

    proc, lines = _serve(data, port)
    _stop(proc)
    assert key.read_text() == first_key
    assert (data / "demo-accounts.txt").read_text() == first_logins
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")}
    env["YUNTIAO_DATA_DIR"] = str(data)
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.startswith("OK")
    import sqlite3

    with sqlite3.connect(data / "yuntiao.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM organisations").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 1


def test_user_create_from_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")}
    env.update({"YUNTIAO_DATA_DIR": str(tmp_path)})
    up = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0, up.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "user",
            "create",
            "root",
            "--role",
            "system_admin",
            "--password-stdin",
        ],
        env=env,
        input="a-long-password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Created system_admin root" in out.stdout
    weak = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "user",
            "create",
            "root2",
            "--role",
            "system_admin",
            "--password-stdin",
        ],
        env=env,
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert weak.returncode == 2 and "weak_password" in weak.stderr
