"""Evidence upload benchmark: one large file (1 GiB by default) sent with tus over loopback to a
server running as its own process on a fresh temporary data directory, as a party through their
hearing link.

Figures: upload throughput (first PATCH byte to the 204 that registers the item, so the final
fsync and the registration are included) as a fraction of the raw disk write speed measured in
the same run on the same file system (``dd if=/dev/zero bs=1M count=N conv=fdatasync``, once
before and once after the upload; their mean is the reference), and the server's peak RSS growth
(``VmHWM`` of /proc/<pid>/status before and after). Targets: ≥ 0.8 of disk speed, ≤ 64 MB.

    .venv/bin/python -m bench.evidence [--size-mib 1024] [--keep]

Progress lines first, then exactly one JSON line of figures, last.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    OUT,
    ServerEnv,
    free_port,
    prepare,
    python_info,
    result,
    rounded,
    say,
    start_server,
    stop,
)

MIB = 1024 * 1024
PIECE = MIB


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def dd_mb_s(directory: Path, mib: int) -> float:
    """Raw sequential write speed of ``directory``'s file system, in MB/s (10^6 bytes)."""
    target = directory / "dd.bin"
    try:
        out = subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fdatasync"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
    finally:
        target.unlink(missing_ok=True)
    match = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out)
    if not match:
        raise RuntimeError(f"cannot read dd's output: {out!r}")
    return int(match.group(1)) / float(match.group(2)) / 1e6


def content(size: int) -> tuple[bytes, str]:
    """A 1 MiB random block (the file repeats it, headed as a PDF) and the file's SHA-256."""
    block = bytearray(os.urandom(PIECE))
    sha = hashlib.sha256()
    first = b"%PDF-1.7\n" + bytes(block[9:])
    for offset in range(0, size, PIECE):
        piece = first if offset == 0 else bytes(block)
        sha.update(piece[: min(PIECE, size - offset)])
    return bytes(block), sha.hexdigest()


async def body(block: bytes, size: int) -> AsyncIterator[bytes]:
    first = b"%PDF-1.7\n" + block[9:]
    for offset in range(0, size, PIECE):
        piece = first if offset == 0 else block
        yield piece[: min(PIECE, size - offset)]


def metadata() -> str:
    values = {
        "filename": "监控录像导出.pdf",
        "title": "压测证据",
        "category": "electronic",
        "purpose": "测试上传吞吐量",
    }
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def upload(base: str, token: str, size: int, block: bytes) -> tuple[float, dict[str, Any]]:
    headers = {"X-Hearing-Token": token, "Tus-Resumable": "1.0.0"}
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(
            f"{base}/api/v1/cases/1/evidence/uploads",
            headers={**headers, "Upload-Length": str(size), "Upload-Metadata": metadata()},
        ) as created:
            if created.status != 201:
                raise RuntimeError(f"creation failed: {created.status} {await created.text()}")
            location = created.headers["Location"]
        started = time.perf_counter()
        async with http.patch(
            base + location,
            data=body(block, size),
            headers={
                **headers,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(size),
            },
        ) as sent:
            elapsed = time.perf_counter() - started
            if sent.status != 204:
                raise RuntimeError(f"upload failed: {sent.status} {await sent.text()}")
            number = sent.headers["Evidence-Item-Number"]
        async with http.get(
            f"{base}/api/v1/cases/1/evidence/{number}", headers={"X-Hearing-Token": token}
        ) as item:
            return elapsed, await item.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()
    size = args.size_mib * MIB

    root = Path(tempfile.mkdtemp(prefix="yuntiao-bench-evidence-"))
    OUT.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        env = ServerEnv(root / "data")
        say(f"preparing a case and a hearing link in {env.data_dir}")
        links = prepare(env, 1, parties=2)
        token = links[0].parties[0].token
        say(f"measuring raw disk write speed with dd ({args.size_mib} MiB, conv=fdatasync)")
        dd_before = dd_mb_s(root, args.size_mib)
        say(f"  dd: {dd_before:.1f} MB/s")
        say("generating the file's content and its SHA-256 (not timed)")
        block, expected = content(size)
        port = free_port()
        proc = start_server(env, port, OUT / "evidence-server.log")
        hwm_before = vm_kb(proc.pid, "VmHWM")
        rss_before = vm_kb(proc.pid, "VmRSS")
        say(f"server pid {proc.pid} on port {port}; VmHWM {hwm_before / 1024:.1f} MB")
        say(f"uploading {args.size_mib} MiB with tus (one PATCH)")
        elapsed, item = asyncio.run(upload(f"http://127.0.0.1:{port}", token, size, block))
        hwm_after = vm_kb(proc.pid, "VmHWM")
        rss_after = vm_kb(proc.pid, "VmRSS")
        upload_mb_s = size / elapsed / 1e6
        say(f"  upload: {elapsed:.2f} s, {upload_mb_s:.1f} MB/s; VmHWM {hwm_after / 1024:.1f} MB")
        stop(proc)
        proc = None
        say("measuring raw disk write speed again")
        dd_after = dd_mb_s(root, args.size_mib)
        say(f"  dd: {dd_after:.1f} MB/s")
        disk = (dd_before + dd_after) / 2
        growth_mb = (hwm_after - hwm_before) / 1024
        result(
            {
                "benchmark": "evidence_upload",
                "file_mib": args.size_mib,
                "upload_s": rounded(elapsed),
                "upload_mb_s": rounded(upload_mb_s, 1),
                "disk_mb_s": rounded(disk, 1),
                "dd_mb_s": [rounded(dd_before, 1), rounded(dd_after, 1)],
                "fraction_of_disk": rounded(upload_mb_s / disk),
                "target_fraction": 0.8,
                "rss_peak_growth_mb": rounded(growth_mb, 1),
                "target_rss_growth_mb": 64,
                "server_vmhwm_mb": [rounded(hwm_before / 1024, 1), rounded(hwm_after / 1024, 1)],
                "server_vmrss_mb": [rounded(rss_before / 1024, 1), rounded(rss_after / 1024, 1)],
                "sha256_ok": item.get("sha256") == expected,
                "size_ok": item.get("size") == size,
                "meets_targets": upload_mb_s / disk >= 0.8 and growth_mb <= 64,
                "python": python_info(),
                "cpus": os.cpu_count(),
            }
        )
    finally:
        if proc is not None:
            stop(proc)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
