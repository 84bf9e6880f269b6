"""Where the store asks who is calling and what they may do (etcd's authStore seen from its
server and its auth applier).

Reads are checked before they read (a Range, a read-only Txn, a watch at its creation, the
keys of a lease's time-to-live). Writes are checked when applied, against the auth state and
the leases as they stand at that point of the log: a write proposed just before its
permission was revoked is refused on every member alike. The checks run only while auth is
enabled; the rest of the time they cost the store one attribute read.
"""
from __future__ import annotations

from typing import Any

from ... import errors
from ...api import rpc_pb2 as pb
from .. import entry
from .caller import CALLER, AuthInfo
from .state import AuthState
from .tokens import SimpleTokens, TokenProvider

NO_ONE = AuthInfo("", 0)

# What etcd's auth store itself says, where a service of etcd's returns its errors as they are
# (code UNKNOWN): the maintenance service's root checks, Alarm's token.
_UNTRANSLATED = {
    errors.UserEmpty: "auth: user name is empty",
    errors.UserNotFound: "auth: user not found",
    errors.PermissionDenied: "auth: permission denied",
    errors.InvalidAuthToken: "auth: invalid auth token",
    errors.AuthOldRevision: "auth: revision in header is old",
}
_GO_CODES = {"UNAUTHENTICATED": "Unauthenticated", "INVALID_ARGUMENT": "InvalidArgument",
             "PERMISSION_DENIED": "PermissionDenied"}


def untranslated_error(e: errors.EtcdError) -> errors.EtcdError:
    text = _UNTRANSLATED.get(type(e))
    return errors.EtcdError(text) if text is not None else e

# Auth requests anyone with root may make; the others (UserGet, RoleGet) also a user about
# itself and its own roles (etcd's needAdminPermission and authApplierV3).
_ADMIN_ONLY = frozenset(name for name, _ in entry.AUTH_METHODS) - {"UserGet", "RoleGet"}


class AuthGate:
    def __init__(self, tokens: TokenProvider | None = None, client_cert_auth: bool = False):
        self.state = AuthState()
        self.tokens: TokenProvider = tokens if tokens is not None else SimpleTokens()
        self.client_cert_auth = client_cert_auth

    @property
    def enabled(self) -> bool:
        return self.state.enabled

    # -- who is calling ------------------------------------------------------------------------

    def caller(self) -> AuthInfo | None:
        """The caller's AuthInfo (None: it brought no credentials), as etcd's
        AuthInfoFromCtx: a token that names no one is refused, even with auth disabled."""
        creds = CALLER.get()
        if creds is None:
            return None
        if creds.token is not None:
            info = self.tokens.info(creds.token, self.state.revision)
            if info is None:
                raise errors.InvalidAuthToken()
            return info
        if creds.common_name and self.client_cert_auth:
            return AuthInfo(creds.common_name, self.state.revision)
        return None

    def caller_or_no_one(self) -> AuthInfo:
        info = self.caller()
        return NO_ONE if info is None else info

    # -- reads, checked before they read -------------------------------------------------------

    def check_range(self, key: bytes, range_end: bytes) -> AuthInfo:
        info = self.caller_or_no_one()
        self.state.check_read(info.username, info.revision, key, range_end)
        return info

    def check_readonly_txn(self, r: pb.TxnRequest) -> AuthInfo:
        info = self.caller_or_no_one()
        self.check_txn(info, r)
        return info

    def still_current(self, info: AuthInfo) -> None:
        """After a read: the auth state changed meanwhile, so its decision may be stale
        (etcd's doSerialize)."""
        if info.revision and info.revision != self.state.revision:
            raise errors.AuthOldRevision()

    def watch_refused(self, key: bytes, range_end: bytes) -> str | None:
        """Why a watch may not be created (etcd's cancel reason: the gRPC error as text), or
        None."""
        try:
            self.check_range(key, range_end)
        except errors.EtcdError as e:
            if not isinstance(e, (errors.InvalidAuthToken, errors.AuthOldRevision, errors.UserEmpty)):
                e = errors.PermissionDenied()
            return f"rpc error: code = {_GO_CODES[e.code]} desc = {e.message}"
        return None

    def check_lease_keys(self, keys) -> None:
        """A lease's time-to-live with its keys: the caller may read every one (etcd 3.5)."""
        info = self.caller_or_no_one()
        if not info.revision:
            raise errors.UserEmpty()
        for key in keys:
            self.state.check_read(info.username, info.revision, key)

    def check_admin(self, untranslated: bool = False) -> None:
        """Maintenance and membership requests that need root. ``untranslated``: the error as
        etcd's maintenance service returns it (see ``untranslated``)."""
        try:
            if not self.state.enabled:
                self.caller()  # a bad token is refused all the same
                return
            self.state.is_admin(self.caller_or_no_one().username)
        except errors.EtcdError as e:
            raise untranslated_error(e) if untranslated else e from None

    def check_token(self) -> None:
        """Only that a token, if any, names someone; its error untranslated (etcd's Alarm)."""
        try:
            self.caller()
        except errors.EtcdError as e:
            raise untranslated_error(e) from None

    # -- writes, checked when applied ----------------------------------------------------------

    def as_user(self, kind: int, request: Any) -> entry.AsUser:
        """A write to propose while auth is enabled: with who asks."""
        info = self.caller_or_no_one()
        return entry.AsUser(info.username, info.revision, kind, request)

    def check_write(self, r: entry.AsUser, leases) -> None:
        """Raises unless ``r.username`` may make the write ``r.request`` now."""
        st = self.state
        if not st.enabled:
            return
        user, rev, kind, req = r.username, r.revision, r.kind, r.request
        if kind == entry.PUT:
            self._check_put(user, rev, req, leases)
        elif kind == entry.DELETE_RANGE:
            st.check_write(user, rev, req.key, req.range_end)
            if req.prev_kv:
                st.check_read(user, rev, req.key, req.range_end)
        elif kind == entry.TXN:
            self.check_txn(AuthInfo(user, rev), req, leases)
        elif kind == entry.LEASE_REVOKE:
            self._check_lease_puts(user, rev, req.ID, leases)
        elif kind == entry.AUTH:
            if req.method in _ADMIN_ONLY:
                st.is_admin(user)
            elif req.method == "UserGet":
                if req.request.name != user:
                    st.is_admin(user)
            elif not st.has_role(user, req.request.role):  # RoleGet
                st.is_admin(user)

    def _check_put(self, user: str, rev: int, r: pb.PutRequest, leases) -> None:
        st = self.state
        st.check_write(user, rev, r.key)
        if r.lease:
            self._check_lease_puts(user, rev, r.lease, leases)
        if r.prev_kv:
            st.check_read(user, rev, r.key)

    def _check_lease_puts(self, user: str, rev: int, lease_id: int, leases) -> None:
        """Every key attached to the lease is the caller's to write: else it could revoke (or
        keep alive with a new key) what it may not delete."""
        lease = leases.get(lease_id) if leases is not None else None
        if lease is not None:
            for key in lease.keys:
                self.state.check_write(user, rev, key)

    def check_txn(self, info: AuthInfo, r: pb.TxnRequest, leases=None) -> None:
        """Every compare read, every op of both branches, nested Txns too: the branch taken is
        not known before, and a denied branch must not show whether it would be taken."""
        st = self.state
        user, rev = info.username, info.revision
        for c in r.compare:
            st.check_read(user, rev, c.key, c.range_end)
        for ops in (r.success, r.failure):
            for op in ops:
                which = op.WhichOneof("request")
                if which == "request_range":
                    st.check_read(user, rev, op.request_range.key, op.request_range.range_end)
                elif which == "request_put":
                    self._check_put(user, rev, op.request_put, leases)
                elif which == "request_delete_range":
                    d = op.request_delete_range
                    if d.prev_kv:
                        st.check_read(user, rev, d.key, d.range_end)
                    st.check_write(user, rev, d.key, d.range_end)
                elif which == "request_txn":
                    self.check_txn(info, op.request_txn, leases)

    # -- applied auth entries ------------------------------------------------------------------

    def apply_change(self, change: entry.AuthChange) -> Any:
        """An Auth request's response (header to fill), or its error."""
        st, method, r = self.state, change.method, change.request
        changed = _CHANGES.get(method)
        if changed is not None:  # a change: its response is empty
            apply, response = changed
            apply(st, r)
            if method == "AuthDisable":
                self.tokens.disable()
            elif method in ("UserDelete", "UserChangePassword"):
                self.tokens.invalidate_user(r.name)
            return response()
        if method == "AuthStatus":
            return pb.AuthStatusResponse(enabled=st.enabled, authRevision=st.revision)
        if method == "UserGet":
            return st.user_get(r)
        if method == "RoleGet":
            return st.role_get(r)
        if method == "UserList":
            return st.user_list()
        if method == "RoleList":
            return st.role_list()
        raise errors.Corrupt(f"etcdserver: unknown auth request {method}")

    def apply_authenticate(self, r: entry.Authenticate, index: int) -> pb.AuthenticateResponse:
        st = self.state
        if not st.enabled:
            raise errors.AuthNotEnabled()
        user = st.users.get(r.name)
        if user is None:
            raise errors.AuthFailed()
        if user.options.no_password:
            raise errors.NoPasswordUser()
        return pb.AuthenticateResponse(token=self.tokens.assign(r.name, st.revision,
                                                                r.token_prefix, index))


# The Auth requests that change the state: how, and their (empty) response.
_CHANGES: dict[str, tuple[Any, Any]] = {
    "AuthEnable": (lambda st, r: st.enable(), pb.AuthEnableResponse),
    "AuthDisable": (lambda st, r: st.disable(), pb.AuthDisableResponse),
    "UserAdd": (AuthState.user_add, pb.AuthUserAddResponse),
    "UserDelete": (AuthState.user_delete, pb.AuthUserDeleteResponse),
    "UserChangePassword": (AuthState.user_change_password, pb.AuthUserChangePasswordResponse),
    "UserGrantRole": (AuthState.user_grant_role, pb.AuthUserGrantRoleResponse),
    "UserRevokeRole": (AuthState.user_revoke_role, pb.AuthUserRevokeRoleResponse),
    "RoleAdd": (AuthState.role_add, pb.AuthRoleAddResponse),
    "RoleDelete": (AuthState.role_delete, pb.AuthRoleDeleteResponse),
    "RoleGrantPermission": (AuthState.role_grant_permission, pb.AuthRoleGrantPermissionResponse),
    "RoleRevokePermission": (AuthState.role_revoke_permission, pb.AuthRoleRevokePermissionResponse),
}
