"""bcrypt, off the event loop: one thread hashes and checks passwords, one at a time.

A bcrypt check costs tens of milliseconds of CPU (cost 10: ~60 ms here). Run on the event loop,
a storm of wrong passwords would stall every other client; run on unbounded threads, it would
take every core. One thread bounds it to one core; the attempts past ``max_waiting`` are refused
at once (etcd's "too many requests") instead of queueing without end.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from ... import errors

DEFAULT_COST = 10  # etcd's --bcrypt-cost default (bcrypt.DefaultCost)
MAX_WAITING = 64

class Passwords:
    def __init__(self, cost: int = DEFAULT_COST, max_waiting: int = MAX_WAITING):
        if not 4 <= cost <= 31:
            raise ValueError(f"invalid bcrypt-cost: {cost} (want 4..31)")
        self.cost = cost
        self._max_waiting = max_waiting
        self._waiting = 0
        self._executor: ThreadPoolExecutor | None = None

    async def _run(self, fn, *args):
        if self._waiting >= self._max_waiting:
            raise errors.TooManyRequests()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="bcrypt")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        return (await self._run(_hash, password.encode(), self.cost)).decode()

    async def check(self, password: str, hashed: bytes) -> bool:
        return await self._run(_check, password.encode(), hashed)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _hash(password: bytes, cost: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(cost))


def _check(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # not a bcrypt hash (a user without a password)
        return False
