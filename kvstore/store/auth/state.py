"""Users, roles and their permissions: replicated state, as etcd's auth store keeps it.

Every change comes through the log (an AUTH entry) and is applied here in log order on every
member, so all agree, and snapshots carry it. The auth revision counts the changes that alter
what someone may do; a request carries the revision its caller's token was checked at, and one
older than the state's is refused (etcd's ErrAuthOldRevision), since its decision may be stale.

Passwords arrive hashed (bcrypt, before proposing): no log entry holds one in clear.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any

from ... import errors
from ...api import auth_pb2, rpc_pb2 as pb
from .permissions import READ, WRITE, UserPermissions

ROOT = "root"


class AuthState:
    def __init__(self) -> None:
        self.enabled = False
        self.revision = 1  # what a new etcd holds
        self.users: dict[str, auth_pb2.User] = {}
        self.roles: dict[str, auth_pb2.Role] = {}
        self._permissions: dict[str, UserPermissions] = {}  # merged, by user; dropped on change

    # -- what a caller may do ------------------------------------------------------------------

    def is_admin(self, username: str) -> None:
        """Raises unless ``username`` may administer (root role), or auth is off."""
        if not self.enabled:
            return
        if not username:
            raise errors.UserEmpty()
        user = self.users.get(username)
        if user is None:
            raise errors.UserNotFound()
        if ROOT not in user.roles:
            raise errors.PermissionDenied()

    def check(self, username: str, revision: int, key: bytes, range_end: bytes, perm: int) -> None:
        """Raises unless the caller may ``perm`` (READ or WRITE) [key, range_end), with a token
        checked at ``revision`` (etcd's isOpPermitted)."""
        if not self.enabled:
            return
        if revision == 0:
            raise errors.UserEmpty()
        if revision < self.revision:
            raise errors.AuthOldRevision()
        user = self.users.get(username)
        if user is None:
            raise errors.PermissionDenied()
        if ROOT in user.roles:
            return
        perms = self._permissions.get(username)
        if perms is None:
            perms = self._permissions[username] = UserPermissions(
                p for name in user.roles if name in self.roles
                for p in self.roles[name].keyPermission)
        if not perms.permits(key, range_end, perm):
            raise errors.PermissionDenied()

    def check_read(self, username: str, revision: int, key: bytes, range_end: bytes = b"") -> None:
        self.check(username, revision, key, range_end, READ)

    def check_write(self, username: str, revision: int, key: bytes, range_end: bytes = b"") -> None:
        self.check(username, revision, key, range_end, WRITE)

    def has_role(self, username: str, role: str) -> bool:
        user = self.users.get(username)
        return user is not None and role in user.roles

    def password_of(self, name: str) -> tuple[bytes, int]:
        """(bcrypt hash, auth revision) to check a password against (etcd's CheckPassword)."""
        if not self.enabled:
            raise errors.AuthNotEnabled()
        user = self.users.get(name)
        if user is None:
            raise errors.AuthFailed()
        if user.options.no_password:
            raise errors.NoPasswordUser()
        return user.password, self.revision

    # -- changes (applied from the log) --------------------------------------------------------

    def _changed(self) -> None:
        self.revision += 1
        self._permissions.clear()

    def enable(self) -> None:
        if self.enabled:
            return
        root = self.users.get(ROOT)
        if root is None:
            raise errors.RootUserNotExist()
        if ROOT not in root.roles:
            raise errors.RootRoleNotExist()
        self.enabled = True
        self._permissions.clear()

    def disable(self) -> None:
        if self.enabled:
            self.enabled = False
            self._changed()

    def user_add(self, r: pb.AuthUserAddRequest) -> None:
        if not r.name:
            raise errors.UserEmpty()
        if r.name in self.users:
            raise errors.UserAlreadyExist()
        user = auth_pb2.User(name=r.name.encode())
        user.options.SetInParent()  # etcd stores the options, even empty ones
        if r.options.no_password:
            user.options.no_password = True
        else:
            user.password = r.hashedPassword.encode()
        self.users[r.name] = user
        self._changed()

    def user_delete(self, r: pb.AuthUserDeleteRequest) -> None:
        if self.enabled and r.name == ROOT:
            raise errors.InvalidAuthMgmt()
        if r.name not in self.users:
            raise errors.UserNotFound()
        del self.users[r.name]
        self._changed()

    def user_change_password(self, r: pb.AuthUserChangePasswordRequest) -> None:
        user = self.users.get(r.name)
        if user is None:
            raise errors.UserNotFound()
        user.password = r.hashedPassword.encode()
        self._changed()

    def user_grant_role(self, r: pb.AuthUserGrantRoleRequest) -> None:
        user = self.users.get(r.user)
        if user is None:
            raise errors.UserNotFound()
        if r.role != ROOT and r.role not in self.roles:
            raise errors.RoleNotFound()
        if r.role in user.roles:
            return  # granted already: nothing changes
        roles = list(user.roles)
        insort(roles, r.role)
        del user.roles[:]
        user.roles.extend(roles)
        self._changed()

    def user_revoke_role(self, r: pb.AuthUserRevokeRoleRequest) -> None:
        if self.enabled and r.name == ROOT and r.role == ROOT:
            raise errors.InvalidAuthMgmt()
        user = self.users.get(r.name)
        if user is None:
            raise errors.UserNotFound()
        if r.role not in user.roles:
            raise errors.RoleNotGranted()
        user.roles.remove(r.role)
        self._changed()

    def user_get(self, r: pb.AuthUserGetRequest) -> pb.AuthUserGetResponse:
        user = self.users.get(r.name)
        if user is None:
            raise errors.UserNotFound()
        return pb.AuthUserGetResponse(roles=list(user.roles))

    def user_list(self) -> pb.AuthUserListResponse:
        return pb.AuthUserListResponse(users=sorted(self.users))

    def role_add(self, r: pb.AuthRoleAddRequest) -> None:
        if not r.name:
            raise errors.RoleEmpty()
        if r.name in self.roles:
            raise errors.RoleAlreadyExist()
        self.roles[r.name] = auth_pb2.Role(name=r.name.encode())
        self._changed()

    def role_get(self, r: pb.AuthRoleGetRequest) -> pb.AuthRoleGetResponse:
        role = self.roles.get(r.role)
        if role is None:
            raise errors.RoleNotFound()
        return pb.AuthRoleGetResponse(perm=list(role.keyPermission))

    def role_list(self) -> pb.AuthRoleListResponse:
        return pb.AuthRoleListResponse(roles=sorted(self.roles))

    def role_delete(self, r: pb.AuthRoleDeleteRequest) -> None:
        if self.enabled and r.role == ROOT:
            raise errors.InvalidAuthMgmt()
        if r.role not in self.roles:
            raise errors.RoleNotFound()
        del self.roles[r.role]
        for user in self.users.values():
            if r.role in user.roles:
                user.roles.remove(r.role)
        self._changed()

    def role_grant_permission(self, r: pb.AuthRoleGrantPermissionRequest) -> None:
        role = self.roles.get(r.name)
        if role is None:
            raise errors.RoleNotFound()
        if not r.HasField("perm"):
            raise errors.PermissionNotGiven()  # (etcd 3.5; 3.4.23 crashes on it)
        perms = list(role.keyPermission)
        # etcd's rule: the first permission whose key is not below the new one's; the same key
        # and range end there changes its type, anything else adds one (kept in key order)
        at = bisect_left([p.key for p in perms], r.perm.key)
        if at < len(perms) and perms[at].key == r.perm.key and perms[at].range_end == r.perm.range_end:
            perms[at].permType = r.perm.permType
        else:
            perms.append(auth_pb2.Permission(permType=r.perm.permType, key=r.perm.key,
                                             range_end=r.perm.range_end))
            perms.sort(key=lambda p: p.key)
        del role.keyPermission[:]
        role.keyPermission.extend(perms)
        self._changed()

    def role_revoke_permission(self, r: pb.AuthRoleRevokePermissionRequest) -> None:
        role = self.roles.get(r.role)
        if role is None:
            raise errors.RoleNotFound()
        kept = [p for p in role.keyPermission if not (p.key == r.key and p.range_end == r.range_end)]
        if len(kept) == len(role.keyPermission):
            raise errors.PermissionNotGranted()
        del role.keyPermission[:]
        role.keyPermission.extend(kept)
        self._changed()

    # -- snapshots -----------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "revision": self.revision,
                "users": [u.SerializeToString() for u in self.users.values()],
                "roles": [r.SerializeToString() for r in self.roles.values()]}

    def load(self, state: dict[str, Any] | None) -> None:
        self.__init__()  # type: ignore[misc]
        if not state:
            return
        self.enabled = bool(state["enabled"])
        self.revision = int(state["revision"])
        for raw in state["users"]:
            user = auth_pb2.User.FromString(raw)
            self.users[user.name.decode()] = user
        for raw in state["roles"]:
            role = auth_pb2.Role.FromString(raw)
            self.roles[role.name.decode()] = role

