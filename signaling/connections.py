"""Who is connected right now: a registry of live sockets per participant.

With one server process this is memory (``LocalConnections``). With several processes behind one
address (``YUNTIAO_REDIS_URL``), every process must know who is connected anywhere — a change made
on process A syncs participants connected to process B — so the registry lives in Redis
(``RedisConnections``). Each process refreshes a heartbeat key; sockets of a process whose
heartbeat expired (it crashed) no longer count as connected.

The registry also carries "this hearing changed" between processes (``announce`` / ``listen``),
so each process can keep the hearing's routing snapshot in memory and drop it only when it is
stale, instead of reading the database for every relayed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis

Media = dict[str, bool]
ChangeListener = Callable[[int], None]
log = logging.getLogger("yuntiao.signaling")


class Connections(Protocol):
    async def add(self, sid: str, hearing_id: int, participant_id: int) -> list[str]:
        """Register ``sid``; returns the participant's other sids (in any process)."""

    async def drop(self, sid: str) -> tuple[int, int] | None:
        """Forget ``sid``; returns its (hearing, participant) if it was ours."""

    async def connected(self, participant_ids: list[int]) -> set[int]: ...

    async def sids_of(self, participant_id: int) -> list[str]: ...

    async def set_media(self, participant_id: int, media: Media) -> None: ...

    async def media(self, participant_ids: list[int]) -> dict[int, Media]: ...

    def local_count(self) -> int:
        """Sockets held by this process (tests wait for it to drain)."""

    async def announce(self, hearing_id: int) -> None:
        """Tell the other processes that this hearing's participants or presence changed."""

    def listen(self, listener: ChangeListener) -> None:
        """Call ``listener(hearing_id)`` for every change another process announces."""

    async def close(self) -> None: ...


class LocalConnections:
    """One process: plain dictionaries."""

    def __init__(self) -> None:
        self._sids: dict[int, set[str]] = defaultdict(set)
        self._owner: dict[str, tuple[int, int]] = {}
        self._media: dict[int, Media] = {}

    async def add(self, sid: str, hearing_id: int, participant_id: int) -> list[str]:
        others = sorted(self._sids[participant_id])
        self._sids[participant_id].add(sid)
        self._owner[sid] = (hearing_id, participant_id)
        return others

    async def drop(self, sid: str) -> tuple[int, int] | None:
        found = self._owner.pop(sid, None)
        if found is not None:
            self._sids[found[1]].discard(sid)
            if not self._sids[found[1]]:
                del self._sids[found[1]]
                self._media.pop(found[1], None)
        return found

    async def connected(self, participant_ids: list[int]) -> set[int]:
        return {pid for pid in participant_ids if self._sids.get(pid)}

    async def sids_of(self, participant_id: int) -> list[str]:
        return sorted(self._sids.get(participant_id, ()))

    async def set_media(self, participant_id: int, media: Media) -> None:
        self._media[participant_id] = media

    async def media(self, participant_ids: list[int]) -> dict[int, Media]:
        return {pid: self._media[pid] for pid in participant_ids if pid in self._media}

    def local_count(self) -> int:
        return len(self._owner)

    async def announce(self, hearing_id: int) -> None:
        """Nobody else to tell."""

    def listen(self, listener: ChangeListener) -> None:
        """No other process can change a hearing."""

    async def close(self) -> None:
        return None


class RedisConnections:
    """Several processes: sets in Redis, members ``<host>|<sid>``, hosts alive by heartbeat."""

    HEARTBEAT_S = 10
    HOST_TTL_S = 30

    def __init__(self, url: str, prefix: str) -> None:
        self.redis: Any = aioredis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.host = uuid.uuid4().hex[:12]
        self._owner: dict[str, tuple[int, int]] = {}
        self._beat: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    def _key(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    async def start(self) -> None:
        await self.redis.set(self._key("host", self.host), "1", ex=self.HOST_TTL_S)
        self._beat = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.HEARTBEAT_S)
            await self.redis.set(self._key("host", self.host), "1", ex=self.HOST_TTL_S)

    async def _live_members(self, participant_id: int) -> list[str]:
        members = sorted(await self.redis.smembers(self._key("sids", participant_id)))
        hosts = {m.split("|", 1)[0] for m in members}
        alive = {h for h in hosts if await self.redis.exists(self._key("host", h))}
        stale = [m for m in members if m.split("|", 1)[0] not in alive]
        if stale:
            await self.redis.srem(self._key("sids", participant_id), *stale)
        return [m for m in members if m not in stale]

    async def add(self, sid: str, hearing_id: int, participant_id: int) -> list[str]:
        others = [m.split("|", 1)[1] for m in await self._live_members(participant_id)]
        await self.redis.sadd(self._key("sids", participant_id), f"{self.host}|{sid}")
        self._owner[sid] = (hearing_id, participant_id)
        return others

    async def drop(self, sid: str) -> tuple[int, int] | None:
        found = self._owner.pop(sid, None)
        if found is not None:
            await self.redis.srem(self._key("sids", found[1]), f"{self.host}|{sid}")
            if not await self.redis.scard(self._key("sids", found[1])):
                await self.redis.delete(self._key("media", found[1]))
        return found

    async def connected(self, participant_ids: list[int]) -> set[int]:
        return {pid for pid in participant_ids if await self._live_members(pid)}

    async def sids_of(self, participant_id: int) -> list[str]:
        return [m.split("|", 1)[1] for m in await self._live_members(participant_id)]

    async def set_media(self, participant_id: int, media: Media) -> None:
        await self.redis.set(self._key("media", participant_id), json.dumps(media), ex=86400)

    async def media(self, participant_ids: list[int]) -> dict[int, Media]:
        found = {}
        for pid in participant_ids:
            raw = await self.redis.get(self._key("media", pid))
            if raw:
                found[pid] = json.loads(raw)
        return found

    def local_count(self) -> int:
        return len(self._owner)

    async def announce(self, hearing_id: int) -> None:
        await self.redis.publish(self._key("changed"), f"{self.host}|{hearing_id}")

    def listen(self, listener: ChangeListener) -> None:
        self._listener = asyncio.create_task(self._listen(listener))

    async def _listen(self, listener: ChangeListener) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._key("changed"))
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        host, _, hearing = str(message["data"]).partition("|")
                        if host != self.host and hearing.isdigit():
                            listener(int(hearing))
            except aioredis.ConnectionError as exc:
                # A missed announcement only delays freshness (snapshots also expire); retry.
                log.warning("hearing change channel lost (%s); resubscribing", exc)
                await asyncio.sleep(1)

    async def close(self) -> None:
        for task in (self._beat, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for sid, (_hearing, pid) in list(self._owner.items()):
            await self.redis.srem(self._key("sids", pid), f"{self.host}|{sid}")
        await self.redis.delete(self._key("host", self.host))
        await self.redis.aclose()
