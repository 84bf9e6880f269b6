from __future__ import annotations

from ...api import rpc_pb2 as pb


class AuthService:
    """etcd's Auth service: users, roles, their permissions, and tokens (store/auth/)."""

    service_name = "etcdserverpb.Auth"

    def __init__(self, store):
        self.store = store

    def AuthEnable(self, request: pb.AuthEnableRequest):
        return self.store.auth_request("AuthEnable", request)

    def AuthDisable(self, request: pb.AuthDisableRequest):
        return self.store.auth_request("AuthDisable", request)

    def AuthStatus(self, request: pb.AuthStatusRequest):
        return self.store.auth_request("AuthStatus", request)

    def Authenticate(self, request: pb.AuthenticateRequest):
        return self.store.authenticate(request)

    def UserAdd(self, request: pb.AuthUserAddRequest):
        return self.store.auth_request("UserAdd", request)

    def UserGet(self, request: pb.AuthUserGetRequest):
        return self.store.auth_request("UserGet", request)

    def UserList(self, request: pb.AuthUserListRequest):
        return self.store.auth_request("UserList", request)

    def UserDelete(self, request: pb.AuthUserDeleteRequest):
        return self.store.auth_request("UserDelete", request)

    def UserChangePassword(self, request: pb.AuthUserChangePasswordRequest):
        return self.store.auth_request("UserChangePassword", request)

    def UserGrantRole(self, request: pb.AuthUserGrantRoleRequest):
        return self.store.auth_request("UserGrantRole", request)

    def UserRevokeRole(self, request: pb.AuthUserRevokeRoleRequest):
        return self.store.auth_request("UserRevokeRole", request)

    def RoleAdd(self, request: pb.AuthRoleAddRequest):
        return self.store.auth_request("RoleAdd", request)

    def RoleGet(self, request: pb.AuthRoleGetRequest):
        return self.store.auth_request("RoleGet", request)

    def RoleList(self, request: pb.AuthRoleListRequest):
        return self.store.auth_request("RoleList", request)

    def RoleDelete(self, request: pb.AuthRoleDeleteRequest):
        return self.store.auth_request("RoleDelete", request)

    def RoleGrantPermission(self, request: pb.AuthRoleGrantPermissionRequest):
        return self.store.auth_request("RoleGrantPermission", request)

    def RoleRevokePermission(self, request: pb.AuthRoleRevokePermissionRequest):
        return self.store.auth_request("RoleRevokePermission", request)
