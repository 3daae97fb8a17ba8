"""A Python client of the ``/notes`` namespace: pycrdt documents kept in sync with the server over
the Yjs sync protocol, exactly as the browser's ``record-sync.js`` does. Used by the tests and by
``bench.notes``. It records every event it receives, so a test can look at what reached it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import socketio
from pycrdt import Doc, Text

from notes.catalogue import TEXT_NAME
from signaling.notes import (
    NAMESPACE,
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    read_sync_message,
    sync_message,
)


class NotesClient:
    def __init__(self, name: str, reconnect: bool = False) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(
            reconnection=reconnect, reconnection_delay=0.2, reconnection_delay_max=1
        )
        self.docs: dict[str, Doc] = {}
        self.received: list[tuple[str, Any]] = []  # every event, as it arrived
        self.arrivals: dict[tuple[str, int], float] = {}  # (doc, seq) → perf_counter
        self.changed = asyncio.Event()

        @self.sio.on("*", namespace=NAMESPACE)
        async def catch_all(event: str, data: Any = None) -> None:
            self.received.append((event, data))
            if event == "y" and isinstance(data, dict):
                await self._on_y(data)
            self.changed.set()

        @self.sio.on("connect", namespace=NAMESPACE)
        async def reopen() -> None:
            # After a reconnect the socket is new: open the documents again and resync.
            for key in list(self.docs):
                asyncio.get_running_loop().create_task(self._open_again(key))

    async def connect(self, base: str, token: str | None = None, cookie: str | None = None) -> None:
        await self.sio.connect(
            base,
            namespaces=[NAMESPACE],
            transports=["websocket"],
            auth={"token": token} if token else None,
            headers={"Cookie": f"yuntiao_session={cookie}"} if cookie else {},
            wait_timeout=10,
        )

    async def _on_y(self, data: dict[str, Any]) -> None:
        key, message = data.get("doc"), data.get("m")
        doc = self.docs.get(str(key))
        if doc is None or not isinstance(message, bytes):
            return
        kind, payload = read_sync_message(message)
        if kind == SYNC_STEP1:
            reply = sync_message(SYNC_STEP2, doc.get_update(payload))
            await self.sio.emit("y", {"doc": key, "m": reply}, namespace=NAMESPACE)
        else:
            doc.apply_update(payload)
            if kind == SYNC_UPDATE and "seq" in data:
                arrived = time.perf_counter()
                # One message may carry the updates first…seq of one commit, merged.
                last = int(data["seq"])
                for seq in range(int(data.get("first", last)), last + 1):
                    self.arrivals.setdefault((str(key), seq), arrived)

    async def open(self, key: str) -> dict[str, Any]:
        ack = await self.sio.call("open", {"doc": key}, namespace=NAMESPACE, timeout=10)
        if ack.get("ok"):
            self.docs.setdefault(key, Doc())
            await self.sio.call(
                "y",
                {"doc": key, "m": sync_message(SYNC_STEP1, self.docs[key].get_state())},
                namespace=NAMESPACE,
                timeout=10,
            )
        return dict(ack)

    async def _open_again(self, key: str) -> None:
        try:
            await self.open(key)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
            pass

    def text(self, key: str) -> Text:
        return self.docs[key].get(TEXT_NAME, type=Text)

    async def edit(self, key: str, change: Callable[[Text], None]) -> dict[str, Any]:
        """Make a local change and send it; returns the server's acknowledgement."""
        doc = self.docs[key]
        before = doc.get_state()
        change(self.text(key))
        update = doc.get_update(before)
        return dict(
            await self.sio.call(
                "y",
                {"doc": key, "m": sync_message(SYNC_UPDATE, update)},
                namespace=NAMESPACE,
                timeout=10,
            )
        )

    async def until(self, check: Callable[[], bool], seconds: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not check():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: condition not met; got {self.received[-5:]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass

    def events(self, name: str) -> list[Any]:
        return [data for event, data in self.received if event == name]
