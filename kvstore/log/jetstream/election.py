"""Electing the member that owns lease expiry, through a JetStream key-value bucket.

The bucket's messages live TTL seconds. The leader holds one key, created only if absent, and
renews it by revision (compare-and-set) every RENEW seconds; if it stops, the key expires and
another member's create succeeds. The term is the key's revision when it was created: later
winners always get larger ones. A leader counts itself deposed once TTL - MARGIN has passed
since it sent its last successful renewal: that renewal was stored after it was sent, so the
key outlives the leader's own view, and two members never both count themselves leader.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors

from ...tasks import cancelled

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

logger = logging.getLogger(__name__)

TTL = 3.0
RENEW = 0.5
MARGIN = 1.0
KEY = "leader"
# A stopping member's last word (its leadership, its member record), bounded: NATS may be out
# of reach, and a TTL ends both anyway.
GOODBYE_TIMEOUT = 1.0


class Election:
    def __init__(self, kv: KeyValue, member_id: int,
                 elected: Callable[[int], Coroutine[Any, Any, None]], deposed: Callable[[], None]):
        """``kv``: the cluster's election bucket, its messages living TTL seconds."""
        self._kv = kv
        self._member = member_id.to_bytes(8, "big")
        self._elected = elected
        self._deposed = deposed
        self.term = 0  # the term this member leads, 0 when it does not
        self._last_term = 0  # the newest term it led: a key it held before is not a hand-over
        self._revision = 0
        self._held_until = 0.0  # our own view of how long we lead
        self._leader_seen = 0.0  # when a leader last showed it exists (us, or a held key)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._campaign(), name="election")

    def has_leader(self) -> bool:
        return time.monotonic() - self._leader_seen < TTL

    async def _campaign(self) -> None:
        while True:
            sent = time.monotonic()
            try:
                if not self.term:
                    await self._try_to_win(sent)
                else:
                    self._revision = await self._kv.update(KEY, self._member, last=self._revision)
                    self._held_until = sent + TTL - MARGIN
                    self._leader_seen = sent
            except nats.js.errors.KeyWrongLastSequenceError:
                if self.term:
                    self._step_down("another member holds the key")
                else:
                    self._leader_seen = sent
                    await self._take_if_handed(sent)
            except Exception as e:  # timeout, no responders, disconnected
                logger.debug("election: %r", e)
            if self.term and time.monotonic() >= self._held_until:
                self._step_down("could not renew in time")
            await asyncio.sleep(RENEW)

    async def _try_to_win(self, sent: float) -> None:
        self._lead(await self._kv.create(KEY, self._member), sent)
        logger.info("elected leader for term %d", self.term)

    def _lead(self, revision: int, sent: float) -> None:
        self.term = self._revision = self._last_term = revision
        self._held_until = sent + TTL - MARGIN
        self._leader_seen = sent
        # apart from the campaign: renewals must not wait for the LEADER entry
        asyncio.get_running_loop().create_task(self._elected(revision))

    async def _take_if_handed(self, sent: float) -> None:
        """The leader may have handed the key over to this member (MoveLeader): its id in the
        key, written after the last term this member led."""
        try:
            entry = await self._kv.get(KEY)
        except Exception as e:  # gone meanwhile (expired, deleted), or not reachable
            logger.debug("election: %r", e)
            return
        if entry.value == self._member and entry.revision is not None and entry.revision > self._last_term:
            self._lead(entry.revision, sent)
            logger.info("leader for term %d, handed over", self.term)

    async def hand_over(self, member_id: int) -> None:
        """MoveLeader: writes the other member's id into the key this member holds (its
        renewal, by revision), then steps down; that member takes the key on its next turn,
        as the leader of a new term (the key's new revision)."""
        for _ in range(3):  # a renewal of ours may land first: then again, on its revision
            if not self.term:
                raise RuntimeError("not the leader")
            try:
                await self._kv.update(KEY, member_id.to_bytes(8, "big"), last=self._revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                await asyncio.sleep(0)
                continue
            self._step_down(f"handed over to {member_id:x}")
            return
        raise RuntimeError("the key kept moving under the hand-over")

    def _step_down(self, why: str) -> None:
        logger.warning("no longer the leader of term %d: %s", self.term, why)
        self.term = self._revision = 0
        self._deposed()

    async def stop(self) -> None:
        await cancelled(self._task)
        if self.term:  # let another member take over now rather than after the TTL
            try:  # bounded: at shutdown NATS may be unreachable (the key's TTL ends it anyway)
                await asyncio.wait_for(self._kv.delete(KEY, last=self._revision), GOODBYE_TIMEOUT)
            except Exception:
                pass
            self.term = 0
