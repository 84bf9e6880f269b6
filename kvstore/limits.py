"""Request size limits shared by the store and the transports (etcd's embed config)."""

DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
# etcd lets a gRPC message exceed --max-request-bytes by this much (MaxRequestBytesWithOverhead);
# it is also the size at which watch responses are fragmented.
GRPC_OVERHEAD_BYTES = 512 * 1024


def with_overhead(max_request_bytes: int) -> int:
    return max_request_bytes + GRPC_OVERHEAD_BYTES
