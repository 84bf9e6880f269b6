"""Following a JetStream stream in order, from a sequence on, through restarts and elections.

An ephemeral push consumer (no acks, flow control, idle heartbeats) delivers the stream from
the next sequence this member needs to an inbox of its own. Every message is checked against
that sequence: an older one (a replay after a consumer was replaced) is dropped, a newer one (a
gap) replaces the consumer at the sequence needed, so apply sees every record once and in
order. A consumer that goes quiet while the stream has more (its server died, or the
connection came back without it) is replaced too: heartbeats are due every HEARTBEAT seconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ...tasks import Wakeup
from ..base import LogUnavailable, Trimmed

if TYPE_CHECKING:
    from .log import JetStreamLog

logger = logging.getLogger(__name__)

HEARTBEAT = 0.5
# Silence after which the consumer is replaced: its server died, or lost it. Writes through this
# member wait for it (they are answered when applied), so it is short; a needless replacement
# costs one consumer creation.
STALL = 4 * HEARTBEAT
# Sooner when the stream is known to hold what the consumer did not deliver (this member's own
# appends were acked at higher sequences): the consumer's server died with the stream's leader.
BEHIND = 0.5
# While replacing a consumer, each API request waits this long (the stream may be electing a
# leader: the next try comes sooner than a long timeout would end).
RETRY_TIMEOUT = 0.75


class Follower:
    def __init__(self, nc, wal: JetStreamLog):
        self._nc = nc
        self._log = wal  # for its JetStream API requests
        self._stream = wal.names.stream
        self._subject = wal.names.subject
        self._next = 1  # the sequence apply needs next
        self._buffer: list[tuple[int, bytes]] = []
        self._delivered = Wakeup()
        self._sub = None
        self._consumer = ""
        self._generation = 0  # of the consumer whose deliveries count
        self._heard = 0.0  # when the consumer last sent anything
        self._stream_last = 0  # the highest sequence the stream is known to hold (acks)
        self._created = 0.0  # when the consumer was created
        self._trimmed: Trimmed | None = None
        self._replacing = asyncio.Lock()
        self._deleting: set[asyncio.Task] = set()
        self.restarts = 0

    async def follow(self, after: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        self._next = after + 1
        self._buffer = []
        self._trimmed = None
        await self._replace()
        watchdog = asyncio.get_running_loop().create_task(self._watch(), name="jetstream-follow")
        try:
            while True:
                if self._trimmed is not None:
                    raise self._trimmed
                if not self._buffer:
                    await self._delivered.wait()
                    continue
                batch, self._buffer = self._buffer, []
                yield batch
        finally:
            watchdog.cancel()
            await self._drop()

    async def _on_message(self, msg, generation: int) -> None:
        if generation != self._generation:
            return  # a replaced consumer's late delivery
        self._heard = time.monotonic()
        reply = msg.reply
        if not reply.startswith("$JS.ACK."):
            await self._on_status(msg)
            return
        seq = _stream_seq(reply)
        if seq < self._next:
            return  # already had it
        if seq > self._next:
            logger.warning("gap in the stream: got %d, need %d; following again", seq, self._next)
            self._replace_soon()
            return
        self._next = seq + 1
        self._buffer.append((seq, msg.data))
        self._delivered.set()

    async def _on_status(self, msg) -> None:
        headers = msg.headers or {}
        if msg.reply:  # flow control (or a stalled consumer): it waits for an answer
            await self._nc.publish(msg.reply, b"")
        elif headers.get("Nats-Consumer-Stalled"):
            await self._nc.publish(headers["Nats-Consumer-Stalled"], b"")
        last = headers.get("Nats-Last-Stream")  # a heartbeat says what it delivered last
        if last is not None and int(last) >= self._next:
            logger.warning("the consumer delivered %s, but %d never arrived; following again",
                           last, self._next)
            self._replace_soon()

    def stream_holds(self, seq: int) -> None:
        """The stream acked an append at ``seq``: the consumer owes us everything up to it."""
        if seq > self._stream_last:
            self._stream_last = seq

    def _replace_soon(self) -> None:
        if not self._replacing.locked():
            asyncio.get_running_loop().create_task(self._replace())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(BEHIND / 2)
            now = time.monotonic()
            silent = now - self._heard
            # a new consumer gets time to start delivering
            behind = self._stream_last >= self._next and now - self._created > STALL / 2
            if (silent > STALL or (behind and silent > BEHIND)) and not self._replacing.locked():
                logger.info("the stream's consumer went quiet%s; following again from %d",
                            " while the stream went on" if behind else "", self._next)
                await self._replace()

    async def _replace(self) -> None:
        """A new consumer from the sequence needed (the old one is dropped)."""
        async with self._replacing:
            await self._replace_locked()

    async def _replace_locked(self) -> None:
        await self._drop()
        self._heard = time.monotonic()
        while True:
            try:
                first = await self._first_seq()
                if self._next < first:
                    self._trimmed = Trimmed(first)
                    self._delivered.set()
                    return
                inbox = self._nc.new_inbox()
                self._generation += 1
                generation = self._generation

                async def deliver(msg, generation=generation):
                    await self._on_message(msg, generation)

                self._sub = await self._nc.subscribe(inbox, cb=deliver)
                config = {
                    "deliver_subject": inbox, "deliver_policy": "by_start_sequence",
                    "opt_start_seq": self._next, "ack_policy": "none", "flow_control": True,
                    "idle_heartbeat": int(HEARTBEAT * 1e9), "mem_storage": True,
                    "num_replicas": 1, "inactive_threshold": int(10 * STALL * 1e9),
                    "filter_subject": self._subject}
                resp = await self._log.api(f"$JS.API.CONSUMER.CREATE.{self._stream}",
                                           {"stream_name": self._stream, "config": config},
                                           timeout=RETRY_TIMEOUT)
                self._consumer = resp["name"]
                self.restarts += 1
                self._heard = self._created = time.monotonic()
                return
            except (TimeoutError, LogUnavailable) as e:
                logger.info("cannot follow the stream yet (%s); retrying", e)
                await self._drop()
                await asyncio.sleep(0.1)

    async def _first_seq(self) -> int:
        return (await self._log.stream_info(timeout=RETRY_TIMEOUT))["state"]["first_seq"]

    async def _drop(self) -> None:
        sub, consumer = self._sub, self._consumer
        self._sub, self._consumer = None, ""
        self._generation += 1
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        if consumer:  # in the background: it would expire by itself after its threshold anyway
            task = asyncio.get_running_loop().create_task(self._delete_consumer(consumer))
            self._deleting.add(task)
            task.add_done_callback(self._deleting.discard)

    def close(self) -> None:
        for task in list(self._deleting):
            task.cancel()

    async def _delete_consumer(self, consumer: str) -> None:
        with contextlib.suppress(LogUnavailable):
            await self._log.api(f"$JS.API.CONSUMER.DELETE.{self._stream}.{consumer}")


def _stream_seq(reply: str) -> int:
    """The stream sequence in a delivered message's reply subject (both $JS.ACK layouts)."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5])
    return int(tokens[7])  # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>...
