from __future__ import annotations

from ...api import v3lock_pb2 as lpb
from ...store import concurrency
from .recipe_errors import as_client_errors


class LockService:
    """etcd's v3lock server: clientv3/concurrency's Mutex over the store (store/concurrency.py)."""

    service_name = "v3lockpb.Lock"
    descriptor = lpb.DESCRIPTOR

    def __init__(self, store):
        self.store = store

    @as_client_errors
    async def Lock(self, request: lpb.LockRequest) -> lpb.LockResponse:
        header, key = await concurrency.lock(self.store, request.name, request.lease)
        return lpb.LockResponse(header=header, key=key)

    @as_client_errors
    async def Unlock(self, request: lpb.UnlockRequest) -> lpb.UnlockResponse:
        return lpb.UnlockResponse(header=await concurrency.unlock(self.store, request.key))
