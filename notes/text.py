"""The document's text on the server side. pycrdt indexes ``Text`` by UTF-8 bytes while Yjs in the
browser counts UTF-16 units; the browser does its own positions, so the server only needs
positions when it edits (a restore). Everything here computes in Python characters and converts
to UTF-8 byte offsets at the last moment."""

from __future__ import annotations

import difflib

from pycrdt import Doc, Text

from notes.catalogue import TEXT_NAME


def text_of(doc: Doc) -> str:
    return str(doc.get(TEXT_NAME, type=Text))


def text_of_update(update: bytes) -> str:
    doc: Doc = Doc()
    if update:
        doc.apply_update(update)
    return text_of(doc)


def byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of character ``index`` of ``text``."""
    return len(text[:index].encode("utf-8"))


def transform_to(doc: Doc, target: str) -> bytes:
    """Edit ``doc`` so its text becomes ``target`` with a small diff (what is unchanged keeps its
    identity, so concurrent edits elsewhere survive) and return the Yjs update of that edit."""
    ytext = doc.get(TEXT_NAME, type=Text)
    current = str(ytext)
    before = doc.get_state()
    matcher = difflib.SequenceMatcher(a=current, b=target, autojunk=False)
    # Back to front: earlier offsets stay valid while later parts change.
    with doc.transaction(origin="restore"):
        for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
            if tag == "equal":
                continue
            start, end = byte_offset(current, i1), byte_offset(current, i2)
            if end > start:
                del ytext[start:end]
            if j2 > j1:
                ytext.insert(start, target[j1:j2])
    return doc.get_update(before)
