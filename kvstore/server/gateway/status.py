"""gRPC status codes, and the HTTP status grpc-gateway v1 (etcd 3.4's) answers each with."""
from __future__ import annotations

CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
         "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
         "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
         "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}
UNKNOWN, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED = 2, 3, 8, 12

# runtime.HTTPStatusFromCode (grpc-gateway v1.9, as etcd 3.4 vendors it)
_HTTP = {0: 200, 1: 408, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 412,
         10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}

# Go's http.StatusText
REASONS = {100: "Continue", 200: "OK", 301: "Moved Permanently", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 409: "Conflict", 412: "Precondition Failed",
           413: "Request Entity Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Timeout"}


def http_status(code: int) -> int:
    return _HTTP.get(code, 500)
