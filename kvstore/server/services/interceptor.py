"""What etcd's gRPC interceptors do with a call's metadata before the service method runs.

etcd (api/v3rpc/interceptor.go) reads two metadata keys on every call: ``client-api-version``,
counted per call type in ``etcd_server_client_requests_total`` (and refused when it is not
UTF-8), and ``hasleader``: a client that sets it to "true" (clientv3.WithRequireLeader) wants
``etcdserver: no leader`` rather than a call that hangs on a member without a leader. A
kvstore member is its own leader, so that check passes while the store serves.

Both transports call the interceptor with the call's headers as (name, value) byte pairs,
inside the call's own task, before the service method.
"""
from __future__ import annotations

from collections import Counter

from ... import errors

CLIENT_API_VERSION = b"client-api-version"
REQUIRE_LEADER = b"hasleader"


class CallInterceptor:
    def __init__(self, store):
        self.store = store
        # (call type "unary" | "stream", client api version) -> calls
        self.client_requests: Counter = Counter()

    def __call__(self, call_type: str, metadata) -> None:
        version = b"unknown"
        require_leader = False
        for name, value in metadata:
            if name == CLIENT_API_VERSION:
                version = value
            elif name == REQUIRE_LEADER:
                require_leader = value == b"true"
        try:
            text = version.decode()
        except UnicodeDecodeError:
            raise errors.InvalidClientAPIVersion() from None
        self.client_requests[call_type, text] += 1
        if require_leader and not self.store.healthy():
            raise errors.NoLeader()
