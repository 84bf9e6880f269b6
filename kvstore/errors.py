"""etcd's errors, as its clients see them: a status code name and etcd's exact message.

The store raises these; the transport maps ``code`` (a gRPC status code name such as
``INVALID_ARGUMENT``) onto its own status type. Nothing here knows about gRPC itself.
"""
from __future__ import annotations


class EtcdError(Exception):
    code = "UNKNOWN"
    message = "etcdserver: unknown error"

    def __init__(self, message: str | None = None):
        if message is not None:
            self.message = message
        super().__init__(self.message)


def _error(name: str, code: str, message: str) -> type[EtcdError]:
    return type(name, (EtcdError,), {"code": code, "message": message})


# Request validation (etcd's api/v3rpc/rpctypes).
EmptyKey = _error("EmptyKey", "INVALID_ARGUMENT", "etcdserver: key is not provided")
KeyNotFound = _error("KeyNotFound", "INVALID_ARGUMENT", "etcdserver: key not found")
ValueProvided = _error("ValueProvided", "INVALID_ARGUMENT", "etcdserver: value is provided")
LeaseProvided = _error("LeaseProvided", "INVALID_ARGUMENT", "etcdserver: lease is provided")
TooManyOps = _error("TooManyOps", "INVALID_ARGUMENT",
                    "etcdserver: too many operations in txn request")
DuplicateKey = _error("DuplicateKey", "INVALID_ARGUMENT",
                      "etcdserver: duplicate key given in txn request")
RequestTooLarge = _error("RequestTooLarge", "INVALID_ARGUMENT", "etcdserver: request is too large")
InvalidSortOption = _error("InvalidSortOption", "INVALID_ARGUMENT", "etcdserver: invalid sort option")
# RangeStream (etcd 3.7): what it leaves to Range; etcd's messages have no "etcdserver: " prefix.
StreamSortUnsupported = _error("StreamSortUnsupported", "UNIMPLEMENTED",
                               "RangeStream does not support custom sort orders")
StreamFilterUnsupported = _error("StreamFilterUnsupported", "UNIMPLEMENTED",
                                 "RangeStream does not support revision filters")

# MVCC.
Compacted = _error("Compacted", "OUT_OF_RANGE",
                   "etcdserver: mvcc: required revision has been compacted")
FutureRev = _error("FutureRev", "OUT_OF_RANGE",
                   "etcdserver: mvcc: required revision is a future revision")
NoSpace = _error("NoSpace", "RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded")

# Leases.
LeaseNotFound = _error("LeaseNotFound", "NOT_FOUND", "etcdserver: requested lease not found")
LeaseExist = _error("LeaseExist", "FAILED_PRECONDITION", "etcdserver: lease already exists")
LeaseTTLTooLarge = _error("LeaseTTLTooLarge", "OUT_OF_RANGE", "etcdserver: too large lease TTL")

# Transport: a message over the receive limit (grpc-go's wording, as etcd's clients see it).
class MessageTooLarge(EtcdError):
    code = "RESOURCE_EXHAUSTED"

    def __init__(self, size: int, limit: int):
        super().__init__(f"grpc: received message larger than max ({size} vs. {limit})")


# Server state.
Stopped = _error("Stopped", "UNAVAILABLE", "etcdserver: server stopped")
NoLeader = _error("NoLeader", "UNAVAILABLE", "etcdserver: no leader")
NotLeader = _error("NotLeader", "UNAVAILABLE", "etcdserver: not leader")
InvalidClientAPIVersion = _error("InvalidClientAPIVersion", "INVALID_ARGUMENT",
                                 "etcdserver: invalid client api version")
Timeout = _error("Timeout", "UNAVAILABLE", "etcdserver: request timed out")
Corrupt = _error("Corrupt", "DATA_LOSS", "etcdserver: corrupt cluster")

# Cluster membership and leadership (etcd's rpctypes).
MemberNotFound = _error("MemberNotFound", "NOT_FOUND", "etcdserver: member not found")
MemberBadURLs = _error("MemberBadURLs", "INVALID_ARGUMENT", "etcdserver: given member URLs are invalid")
PeerURLExist = _error("PeerURLExist", "FAILED_PRECONDITION", "etcdserver: Peer URLs already exists")
MemberNotEnoughStarted = _error("MemberNotEnoughStarted", "FAILED_PRECONDITION",
                                "etcdserver: re-configuration failed due to not enough started members")
MemberNotLearner = _error("MemberNotLearner", "FAILED_PRECONDITION",
                          "etcdserver: can only promote a learner member")
BadLeaderTransferee = _error("BadLeaderTransferee", "FAILED_PRECONDITION",
                             "etcdserver: bad leader transferee")
TimeoutLeaderTransfer = _error("TimeoutLeaderTransfer", "UNAVAILABLE",
                               "etcdserver: request timed out, leader transfer took too long")

# Auth (etcd's auth/store.go errors, as api/v3rpc/rpctypes gives them to clients).
RootUserNotExist = _error("RootUserNotExist", "FAILED_PRECONDITION",
                          "etcdserver: root user does not exist")
RootRoleNotExist = _error("RootRoleNotExist", "FAILED_PRECONDITION",
                          "etcdserver: root user does not have root role")
UserAlreadyExist = _error("UserAlreadyExist", "FAILED_PRECONDITION",
                          "etcdserver: user name already exists")
UserEmpty = _error("UserEmpty", "INVALID_ARGUMENT", "etcdserver: user name is empty")
UserNotFound = _error("UserNotFound", "FAILED_PRECONDITION", "etcdserver: user name not found")
RoleAlreadyExist = _error("RoleAlreadyExist", "FAILED_PRECONDITION",
                          "etcdserver: role name already exists")
RoleNotFound = _error("RoleNotFound", "FAILED_PRECONDITION", "etcdserver: role name not found")
RoleEmpty = _error("RoleEmpty", "INVALID_ARGUMENT", "etcdserver: role name is empty")
AuthFailed = _error("AuthFailed", "INVALID_ARGUMENT",
                    "etcdserver: authentication failed, invalid user ID or password")
PermissionDenied = _error("PermissionDenied", "PERMISSION_DENIED", "etcdserver: permission denied")
RoleNotGranted = _error("RoleNotGranted", "FAILED_PRECONDITION",
                        "etcdserver: role is not granted to the user")
PermissionNotGranted = _error("PermissionNotGranted", "FAILED_PRECONDITION",
                              "etcdserver: permission is not granted to the role")
AuthNotEnabled = _error("AuthNotEnabled", "FAILED_PRECONDITION",
                        "etcdserver: authentication is not enabled")
InvalidAuthToken = _error("InvalidAuthToken", "UNAUTHENTICATED", "etcdserver: invalid auth token")
InvalidAuthMgmt = _error("InvalidAuthMgmt", "INVALID_ARGUMENT", "etcdserver: invalid auth management")
AuthOldRevision = _error("AuthOldRevision", "INVALID_ARGUMENT",
                         "etcdserver: revision of auth store is old")
PermissionNotGiven = _error("PermissionNotGiven", "INVALID_ARGUMENT",
                            "etcdserver: permission not given")
# etcd has no gRPC error for this one: its clients get the auth store's own text, code UNKNOWN.
NoPasswordUser = _error("NoPasswordUser", "UNKNOWN",
                        "auth: authentication failed, password was given for no password user")
TooManyRequests = _error("TooManyRequests", "RESOURCE_EXHAUSTED", "etcdserver: too many requests")
