"""kvstore's own HTTP/2 engine (RFC 9113, RFC 7541), role-neutral: framing, HPACK, SETTINGS,
flow control, stream bookkeeping. The server role lives in kvstore/server/transport/h2; a client
role is client.py."""
