"""The append path to a JetStream stream: pipelined publishes with asynchronous acks.

Each record is published with a reply subject of our own inbox and a ``Nats-Msg-Id``; the
stream's ack (its sequence) arrives there, and many records are in flight at once, not one
request-reply round trip each. A record without an ack in ACK_TIMEOUT (a leader change, a lost
connection) is published again under the same id: the stream keeps it once and acks the
duplicate with the first copy's sequence. A record not acked by its deadline fails with
LogUnavailable; its outcome is unknown to the proposer (as an etcd request that timed out), and
the deadline stays well inside the stream's duplicate window, so a retry never makes a second
copy.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable

from ...tasks import Wakeup
from ..base import LogUnavailable

logger = logging.getLogger(__name__)

ACK_TIMEOUT = 0.5  # then the record is sent again (NATS de-duplicates it)
RETRY_PAUSE = 0.25  # after the stream said it cannot take it now (no leader yet)
APPEND_DEADLINE = 7.0  # etcd's request timeout with default settings (5 s + 2 election timeouts)
CHECK_INTERVAL = 0.1


class _Append:
    __slots__ = ("record", "msg_id", "future", "deadline", "resend_at")

    def __init__(self, record: bytes, msg_id: str | None, future: asyncio.Future,
                 deadline: float):
        self.record = record
        self.msg_id = msg_id
        self.future = future
        self.deadline = deadline
        self.resend_at = 0.0


class Publisher:
    def __init__(self, nc, subject: str, acked: Callable[[int], None]):
        self._nc = nc
        self._subject = subject
        self._acked = acked  # told every sequence the stream acked
        self._inbox = ""
        self._tokens = itertools.count(1)
        self._pending: dict[str, _Append] = {}  # reply token -> append waiting for its ack
        self._to_send: list[str] = []
        self._queued = Wakeup()
        self._tasks: list[asyncio.Task] = []
        self.resent = 0

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send_loop(), name="jetstream-publish"),
                       loop.create_task(self._timer_loop(), name="jetstream-acks")]

    def append(self, record: bytes, msg_id: str | None) -> asyncio.Future[int]:
        """The record's sequence once the stream acks it. Without ``msg_id`` a resend may
        store a second copy (for a barrier, a harmless one: the stream keeps no id for it)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        token = str(next(self._tokens))
        self._pending[token] = _Append(record, msg_id, fut, time.monotonic() + APPEND_DEADLINE)
        self._queue(token)
        return fut

    def _queue(self, token: str) -> None:
        self._to_send.append(token)
        self._queued.set()

    async def _send_loop(self) -> None:
        nc = self._nc
        while True:
            if not self._to_send:
                await self._queued.wait()
                continue
            tokens, self._to_send = self._to_send, []
            for token in tokens:
                a = self._pending.get(token)
                if a is None or a.future.done():
                    continue
                a.resend_at = time.monotonic() + ACK_TIMEOUT
                try:
                    await nc.publish(self._subject, a.record, reply=f"{self._inbox}.{token}",
                                     headers=None if a.msg_id is None else {"Nats-Msg-Id": a.msg_id})
                except Exception as e:  # disconnected with a full buffer: the timer resends
                    logger.debug("publish of %s failed: %r", a.msg_id, e)

    async def _on_ack(self, msg) -> None:
        token = msg.subject[len(self._inbox) + 1:]
        a = self._pending.get(token)
        if a is None or a.future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":  # no responders: no stream leader
            a.resend_at = time.monotonic() + RETRY_PAUSE
            return
        try:
            ack = json.loads(msg.data)
        except ValueError:
            return
        error = ack.get("error")
        if error is not None:
            if error.get("code") == 503 or error.get("err_code") in _TEMPORARY:
                a.resend_at = time.monotonic() + RETRY_PAUSE
                return
            del self._pending[token]
            a.future.set_exception(LogUnavailable(f"the stream refused a record: "
                                                  f"{error.get('description', error)}"))
            return
        del self._pending[token]
        a.future.set_result(ack["seq"])
        self._acked(ack["seq"])

    async def _timer_loop(self) -> None:
        """Resends what was not acked in time; fails what is past its deadline."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            now = time.monotonic()
            for token, a in list(self._pending.items()):
                if a.future.done():
                    del self._pending[token]
                elif now >= a.deadline:
                    del self._pending[token]
                    a.future.set_exception(LogUnavailable("no ack from the stream in time"))
                elif now >= a.resend_at and token not in self._to_send:
                    self.resent += 1
                    self._queue(token)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for a in self._pending.values():
            if not a.future.done():
                a.future.set_exception(LogUnavailable("the log was closed"))
        self._pending.clear()


# JetStream error codes that mean "not now" rather than "never".
_TEMPORARY = {
    10008,  # JetStream system temporarily unavailable
    10023,  # insufficient resources
}
