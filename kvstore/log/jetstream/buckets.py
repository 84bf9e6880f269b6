"""The cluster's JetStream buckets: opened, or created by the first member, and retried while
JetStream settles (right after the NATS cluster started, or while it elects a leader)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import nats.js.errors

from ..base import LogUnavailable

logger = logging.getLogger(__name__)


async def key_value(js, name: str, replicas: int, ttl: float | None):
    """A key-value bucket keeping one value a key, each living ``ttl`` seconds."""
    return await retrying(f"bucket {name}", lambda: _open_or_create(
        js.key_value(name), lambda: js.create_key_value(bucket=name, history=1, ttl=ttl,
                                                        replicas=replicas, storage="file")))


async def object_store(js, name: str, replicas: int):
    return await retrying(f"object store {name}", lambda: _open_or_create(
        js.object_store(name), lambda: js.create_object_store(bucket=name, replicas=replicas,
                                                              storage="file")))


async def _open_or_create(opening: Awaitable[Any], create: Callable[[], Awaitable[Any]]):
    try:
        return await opening
    except nats.js.errors.BucketNotFoundError:
        return await create()


async def retrying(what: str, attempt: Callable[[], Awaitable[Any]], pause: float = 0.5):
    """``await attempt()`` until it succeeds: JetStream may be electing, or starting."""
    tries = 0
    while True:
        try:
            return await attempt()
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error, LogUnavailable) as e:
            tries += 1
            if tries in (1, 10) or tries % 60 == 0:
                logger.warning("%s: %r; retrying", what, e)
            await asyncio.sleep(pause)
