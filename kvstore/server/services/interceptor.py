"""What etcd's gRPC interceptors do with a call's metadata before the service method runs.

etcd (api/v3rpc/interceptor.go) reads two metadata keys on every call: ``client-api-version``,
counted per call type in ``etcd_server_client_requests_total`` (and refused when it is not
UTF-8), and ``hasleader``: a client that sets it to "true" (clientv3.WithRequireLeader) wants
``etcdserver: no leader`` rather than a call that hangs on a member without a leader. A
kvstore member is its own leader, so that check passes while the store serves.

It also finds who is calling (etcd's AuthInfoFromCtx reads the same keys): the ``token``
metadata (``authorization``, as etcd's JSON gateway forwards it, otherwise), and the verified
client certificate's common name. It sets them as the store's CALLER for the call, and returns
the contextvars Token that resets it (None: nothing was set); the store looks at them only
where etcd would.

Both transports (and the JSON gateway) call the interceptor with the call's headers as (name,
value) byte pairs, in the call's context, right before the service method. Where a call runs in
a task of its own (grpcio, streams, the gateway's requests one at a time) the setting ends with
it; the h2 transport calls unary methods in its connection's context, and resets CALLER as soon
as the method has been called (a coroutine's task is made meanwhile, and keeps it).
"""
from __future__ import annotations

from collections import Counter

from ... import errors
from ...store.auth.caller import CALLER, Credentials

CLIENT_API_VERSION = b"client-api-version"
REQUIRE_LEADER = b"hasleader"
TOKEN = b"token"
AUTHORIZATION = b"authorization"
_READ = frozenset((CLIENT_API_VERSION, REQUIRE_LEADER, TOKEN, AUTHORIZATION))
MAX_VERSIONS_KEPT = 64  # decoded versions kept (a client may send any)


class CallInterceptor:
    def __init__(self, store):
        self.store = store
        # (call type "unary" | "stream", client api version) -> calls
        self.client_requests: Counter = Counter()
        self._versions: dict[bytes, str] = {}  # the versions seen, decoded (checked once)

    def __call__(self, call_type: str, metadata, peer_cn: str | None = None):
        version = b"unknown"
        require_leader = False
        token = authorization = None
        for name, value in metadata:
            if name in _READ:  # (one set lookup for each of the headers nobody reads here)
                if name == CLIENT_API_VERSION:
                    version = value
                elif name == REQUIRE_LEADER:
                    require_leader = value == b"true"
                elif name == TOKEN:
                    token = value
                else:
                    authorization = value
        text = self._versions.get(version)
        if text is None:
            try:
                text = version.decode()
            except UnicodeDecodeError:
                raise errors.InvalidClientAPIVersion() from None
            if len(self._versions) < MAX_VERSIONS_KEPT:
                self._versions[version] = text
        self.client_requests[call_type, text] += 1
        if require_leader and not self.store.healthy():
            raise errors.NoLeader()
        if token is None:
            token = authorization
        if token is None and peer_cn is None:
            if CALLER.get() is None:
                return None
            return CALLER.set(None)
        return CALLER.set(Credentials(token.decode(errors="replace") if token is not None else None,
                                      peer_cn))

    def common_names_refused(self) -> bool:
        """Whether the JSON gateway refuses a request that brings a client certificate's name
        (etcd's does under --client-cert-auth with auth enabled: it would not use the name)."""
        auth = self.store.auth
        return auth.client_cert_auth and auth.enabled
