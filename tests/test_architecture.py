"""The layering of STYLE.md, checked on the import statements: domain packages never import
``server``, aiohttp or socketio; ``config`` imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "server",
    "signaling",
    "rooms",
    "recordings",
    "evidence",
    "esign",
    "notes",
    "web",
    "config",
    "cases",
    "documents",
}
FORBIDDEN = {
    "cases": OURS - {"cases", "documents", "config"} | {"aiohttp", "socketio"},
    "rooms": {
        "server",
        "web",
        "signaling",
        "esign",
        "notes",
        "evidence",
        "recordings",
        "aiohttp",
        "socketio",
    },
    # recordings seals its files with the evidence store's format (evidence.storage).
    "recordings": {"server", "web", "signaling", "esign", "notes", "aiohttp", "socketio"},
    "evidence": {
        "server",
        "web",
        "signaling",
        "esign",
        "notes",
        "recordings",
        "aiohttp",
        "socketio",
    },
    "esign": {"server", "web", "signaling", "aiohttp", "socketio"},
    "notes": {"server", "web", "signaling", "esign", "aiohttp", "socketio"},
    "signaling": {"server", "web"},
    "web": {"server"},
    "config": OURS - {"config"},
    # documents: typesetting only, reused by every package that makes a PDF.
    "documents": OURS - {"documents", "config"} | {"aiohttp", "socketio", "sqlalchemy"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        crossing = imported_roots(path) & FORBIDDEN[package]
        if crossing:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(crossing)}")
    assert not bad
