"""gRPC's status codes, and the error a call fails with when its status is not OK."""
from __future__ import annotations

from urllib.parse import unquote

# grpc's codes.Code, by number: the names are grpc.StatusCode's, so grpc.StatusCode[e.name]
# finds the same status without this package importing grpc.
CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
              "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
              "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
              "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
INTERNAL, UNAVAILABLE, UNIMPLEMENTED = 13, 14, 12
PERMISSION_DENIED, UNAUTHENTICATED = 7, 16

# An HTTP status other than 200 means no gRPC server answered: grpc maps it thus
# (grpc/doc/http-grpc-status-mapping.md).
_HTTP_CODES = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED,
               429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}


class GrpcError(Exception):
    """A call ended with a status other than OK: ``code`` is gRPC's number, ``name`` its
    grpc.StatusCode name, ``message`` the percent-decoded grpc-message."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(code, message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        return CODE_NAMES[self.code] if 0 <= self.code < len(CODE_NAMES) else "UNKNOWN"

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.message}"


def code_of_http_status(status: int) -> int:
    return _HTTP_CODES.get(status, UNKNOWN)


def decode_message(value: bytes) -> str:
    """grpc-message is percent-encoded UTF-8; a bad escape or byte is kept, not fatal."""
    return unquote(value.decode("ascii", "replace"), errors="replace")


def parse_code(value: bytes | None) -> int:
    # a status that is missing or not a number: grpc-go's UNKNOWN (malformed trailers)
    if value is None or not value.isdigit():
        return UNKNOWN
    return int(value)
