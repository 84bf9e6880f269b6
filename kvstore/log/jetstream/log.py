"""The shared log on NATS JetStream: one stream per kvstore cluster, every member appends to it
and follows it.

The stream's sequence is the log index, so its order is the revision order on every member.
Appends are pipelined (publisher.py); following is an ordered consumer of our own
(follower.py). The read index is the sequence of a barrier appended to the stream: the stream
orders it after every record acknowledged before it was sent.

Stream info's last sequence would be cheaper, and is not a read index. The stream leader is not
the only server that answers it: for ten seconds after a stream is created its preferred
server answers too, a member of a group it thinks leaderless answers, and a leader that was
paused answers until it learns it was replaced. Each answers with its own state, which may be
behind a record the leader acknowledged, and the first answer wins.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from ..base import BARRIER, LogUnavailable
from .connection import connect
from .follower import Follower
from .names import Names
from .publisher import Publisher

if TYPE_CHECKING:
    from nats.aio.client import Client

logger = logging.getLogger(__name__)

API_TIMEOUT = 2.0
# Kept below the stream's duplicate window by a wide margin: a record is retried only until its
# deadline (publisher.APPEND_DEADLINE), so a retry always meets its first copy's id.
DUPLICATE_WINDOW = 120.0
HEADERS_ROOM = 256  # bytes of a message taken by its headers (msg id, expected stream)


class JetStreamLog:
    local = False
    max_in_flight = 64

    def __init__(self, servers: list[str], cluster: str = "kvstore", replicas: int | None = None,
                 client_name: str = "kvstore"):
        self.servers = servers
        self.names = Names(cluster)
        self.replicas = replicas
        self.client_name = client_name
        self.nc: Client | None = None  # connected by open()
        self.max_record_bytes = 1 << 20
        self._publisher: Publisher | None = None
        self._follower: Follower | None = None
        self._stream_bytes = 0
        self.name = f"the stream {self.names.stream} on {','.join(servers)}"

    def held(self) -> None:
        """The stream is the members' own: none of it is this member's to account for."""
        return None

    async def open(self) -> None:
        nc = self.nc = await connect(self.servers, self.client_name)
        await self._ensure_stream()
        self.max_record_bytes = nc.max_payload - HEADERS_ROOM
        self._follower = Follower(nc, self)
        self._publisher = Publisher(nc, self.names.subject, self._follower.stream_holds)
        await self._publisher.start()

    async def _ensure_stream(self) -> None:
        names = self.names
        replicas = self.replicas
        if replicas is None:  # three copies on a NATS cluster, one on a single server
            assert self.nc is not None  # open() connected
            replicas = 3 if self.nc._server_info.get("cluster") else 1
        config = {"name": names.stream, "subjects": [names.subject], "storage": "file",
                  "num_replicas": replicas, "retention": "limits", "discard": "old",
                  "duplicate_window": int(DUPLICATE_WINDOW * 1e9), "deny_delete": True,
                  "allow_direct": False}
        while True:
            try:
                info = await self.stream_info()
            except LogUnavailable as e:
                if "not found" not in str(e):
                    logger.info("stream %s: %s; retrying", names.stream, e)
                    await asyncio.sleep(0.5)
                    continue
                try:
                    info = await self.api(f"$JS.API.STREAM.CREATE.{names.stream}", config)
                except LogUnavailable as e:
                    if "insufficient resources" in str(e) and replicas > 1:
                        raise LogUnavailable(
                            f"cannot create stream {names.stream} with {replicas} replicas ({e}): "
                            "does the NATS cluster have that many JetStream servers? "
                            "(--nats-replicas 1 for a single server)") from None
                    logger.info("creating stream %s: %s; retrying", names.stream, e)
                    await asyncio.sleep(0.5)
                    continue
                logger.info("created stream %s (replicas %d)", names.stream, replicas)
            have = info["config"].get("num_replicas", 1)
            if self.replicas is not None and have != self.replicas:
                logger.warning("stream %s has %d replicas, not the %d asked for", names.stream,
                               have, self.replicas)
            return

    async def api(self, subject: str, body: dict | None = None, timeout: float = API_TIMEOUT) -> dict:
        """A JetStream API request; LogUnavailable with the server's description on an error."""
        assert self.nc is not None  # open() connected
        try:
            msg = await self.nc.request(subject, json.dumps(body).encode() if body else b"",
                                        timeout=timeout)
        except Exception as e:  # timeout, no responders, disconnected
            raise LogUnavailable(f"{subject}: {type(e).__name__}") from None
        resp = json.loads(msg.data)
        if "error" in resp:
            raise LogUnavailable(f"{subject}: {resp['error'].get('description')}")
        return resp

    def append(self, record: bytes, record_id: str) -> asyncio.Future[int]:
        assert self._publisher is not None  # open() comes first
        return self._publisher.append(record, record_id)

    def follow(self, after: int):
        assert self._follower is not None  # open() comes first
        return self._follower.follow(after)

    async def stream_info(self, timeout: float = API_TIMEOUT) -> dict:
        """The stream's config and state, from its leader (which alone answers)."""
        info = await self.api(f"$JS.API.STREAM.INFO.{self.names.stream}", timeout=timeout)
        self._stream_bytes = info["state"]["bytes"]
        return info

    async def read_index(self) -> int:
        """A barrier's sequence (LogUnavailable past the publisher's deadline)."""
        assert self._publisher is not None  # open() comes first
        return await self._publisher.append(BARRIER, None)

    async def trim(self, through: int) -> None:
        """Purges the records below ``through + 1`` (JetStream keeps ``seq`` and after)."""
        await self.api(f"$JS.API.STREAM.PURGE.{self.names.stream}", {"seq": through + 1})

    def size_bytes(self) -> int:
        """The stream's bytes (on each NATS server that keeps a replica), as last seen."""
        return self._stream_bytes

    def size_in_use(self) -> int:
        return self._stream_bytes  # JetStream's own files: it reclaims purged space itself

    async def defragment(self) -> None:
        """Nothing to do here: NATS manages its stream files (a purge frees their space)."""

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.close()
        if self._follower is not None:
            self._follower.close()
        if self.nc is not None:
            try:
                await self.nc.close()
            except Exception:
                pass
