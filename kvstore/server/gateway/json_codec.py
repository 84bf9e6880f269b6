"""JSON as etcd's grpc-gateway (v1, golang/protobuf's jsonpb with ``OrigName: true``) reads
and writes it, with protobuf's ``json_format`` doing the mapping.

- Out: proto field names, fields at their default left out, int64/uint64 as strings, bytes as
  standard base64, enums by name; compact, strings escaped as Go's encoding/json escapes them.
- In: a request body is a stream of JSON values (Go's json.Decoder: a streaming method takes
  one request per value, a unary one reads the first). Before json_format maps a value onto
  a message, ``check`` walks it in Go's order and says what jsonpb would refuse, in Go's
  words (``json: cannot unmarshal ...``, ``illegal base64 data at input byte N``); what it
  passes is handed to json_format with only the fields jsonpb would read.
"""
from __future__ import annotations

import base64
import json
import re

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

_WHITESPACE = b" \t\r\n"


class _FloatLiteral(str):
    """A JSON number with a fraction or an exponent, kept as written: it is never an
    integer to jsonpb, and Go's error quotes it as written (``number 1e3``)."""


_DECODER = json.JSONDecoder(parse_constant=lambda name: _refuse_constant(name), parse_float=_FloatLiteral)


class JsonError(Exception):
    """What Go would say of a malformed body or a value of the wrong type."""


class _Constant(ValueError):
    pass


def _refuse_constant(name: str):
    raise _Constant(name)


# -- out -------------------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
            "\u2028": "\\u2028", "\u2029": "\\u2029"}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029]')


def _escape(m: re.Match) -> str:
    c = m.group()
    return _ESCAPES.get(c) or f"\\u{ord(c):04x}"


def go_string(s: str) -> str:
    """A JSON string as Go 1.19's encoding/json writes it (HTML-safe; \\b and \\f as \\u00XX)."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, s) + '"'


def dumps(value) -> str:
    """Compact JSON of dicts, lists, strings, ints and bools, in insertion order, as Go."""
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(go_string(k) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, float):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def message_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def encode_message(message) -> bytes:
    return dumps(message_dict(message)).encode()


def encode_result(message) -> bytes:
    """One response of a streaming method, as grpc-gateway streams it (before its "\\n")."""
    return ('{"result":' + dumps(message_dict(message)) + "}").encode()


def encode_error(code: int, message: str) -> bytes:
    """grpc-gateway v1's errorBody: error, message, code (empty ones left out, as jsonpb)."""
    body: dict = {}
    if message:
        body["error"] = message
        body["message"] = message
    if code:
        body["code"] = code
    return dumps(body).encode()


def encode_stream_error(code: int, http_code: int, message: str, http_status: str) -> bytes:
    """grpc-gateway v1's StreamError chunk, for a stream that fails."""
    body: dict = {}
    if code:
        body["grpc_code"] = code
    if http_code:
        body["http_code"] = http_code
    if message:
        body["message"] = message
    if http_status:
        body["http_status"] = http_status
    return dumps({"error": body}).encode()


# -- in: the stream of values ----------------------------------------------------------------

class ValueStream:
    """The JSON values of a request body as they arrive (Go's json.Decoder): ``feed`` bytes,
    ``end`` them, and ``next`` gives a value, NEED (more bytes), EOF, or raises JsonError."""

    NEED = object()
    EOF = object()

    def __init__(self, max_value: int):
        self.max_value = max_value  # bytes one value may take (a request's bound)
        self._buf = bytearray()
        self._ended = False
        self._tried_at = 0  # the buffer's size when it last held no whole value

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def end(self) -> None:
        self._ended = True

    def next(self):
        buf = self._buf
        start = 0
        while start < len(buf) and buf[start] in _WHITESPACE:
            start += 1
        if start:
            del buf[:start]
            self._tried_at = max(0, self._tried_at - start)
        if not buf:
            return self.EOF if self._ended else self.NEED
        if not self._ended:
            # a value that came in pieces is parsed again once it has doubled (or is small):
            # a large value costs linear time, not one parse per piece
            n = len(buf)
            if n < 65536 and n == self._tried_at or n >= 65536 and n < 2 * self._tried_at:
                return self.NEED
        text = buf.decode("utf-8", errors="surrogateescape")
        try:
            value, end = _DECODER.raw_decode(text)
        except _Constant as e:
            raise JsonError(_no_value(str(e)[0])) from None
        except json.JSONDecodeError as e:
            if self._incomplete(e, text):
                return self._need_more()
            raise JsonError(_go_syntax_error(e, text)) from None
        except RecursionError:
            raise JsonError("exceeded max depth") from None
        if end == len(text) and not self._ended and not isinstance(value, (dict, list, str)):
            return self._need_more()  # a number (or literal) may go on in the next piece
        used = len(text[:end].encode("utf-8", errors="surrogateescape"))
        if used > self.max_value:
            raise TooLarge(used)
        del buf[:used]
        self._tried_at = 0
        return value

    def _incomplete(self, e: json.JSONDecodeError, text: str) -> bool:
        at_end = (e.pos >= len(text.rstrip(" \t\r\n")) or e.msg.startswith("Unterminated string")
                  or _cut_short(e, text))
        if not at_end:
            return False
        if self._ended:
            raise JsonError("unexpected EOF")
        return True

    def _need_more(self):
        if len(self._buf) > self.max_value:
            raise TooLarge(len(self._buf))
        self._tried_at = len(self._buf)
        return self.NEED


def _cut_short(e: json.JSONDecodeError, text: str) -> bool:
    """The error is only that the text ends inside a literal or a \\u escape."""
    if e.msg == "Expecting value":
        literal = _LITERALS.get(text[e.pos:e.pos + 1])
        rest = text[e.pos:]
        return literal is not None and len(rest) < len(literal) and literal.startswith(rest)
    if e.msg.startswith("Invalid \\uXXXX"):
        start = text.find("u", e.pos) + 1
        digits = text[start:start + 4]
        return len(digits) < 4 and all(ch in "0123456789abcdefABCDEF" for ch in digits)
    return False


class TooLarge(Exception):
    """One value of the body is larger than a request may be (args: at least how large)."""


def _quote_char(c: str) -> str:
    """Go's quoteChar, as its JSON syntax errors name a character."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    quoted = json.dumps(c)[1:-1] if c.isprintable() or c in "\n\r\t" else f"\\x{ord(c):02x}"
    return f"'{quoted}'"


def _no_value(c: str) -> str:
    return f"invalid character {_quote_char(c)} looking for beginning of value"


def _go_syntax_error(e: json.JSONDecodeError, text: str) -> str:
    c = _quote_char(text[e.pos]) if e.pos < len(text) else "EOF"
    msg = e.msg
    if msg == "Expecting value":
        literal = _LITERALS.get(text[e.pos:e.pos + 1])
        if literal is not None:  # t, f, n: a literal gone wrong where it goes wrong
            for i, want in enumerate(literal):
                got = text[e.pos + i:e.pos + i + 1]
                if got != want:
                    return (f"invalid character {_quote_char(got)} in literal {literal} "
                            f"(expecting {_quote_char(want)})")
        return f"invalid character {c} looking for beginning of value"
    if msg.startswith("Expecting property name"):
        return f"invalid character {c} looking for beginning of object key string"
    if msg == "Expecting ':' delimiter":
        return f"invalid character {c} after object key"
    if msg == "Expecting ',' delimiter":
        where = "after object key:value pair" if _innermost(text, e.pos) == "{" else "after array element"
        return f"invalid character {c} {where}"
    if msg.startswith("Invalid control character"):
        return f"invalid character {c} in string literal"
    if msg.startswith("Invalid \\uXXXX"):
        start = text.find("u", e.pos) + 1
        bad = next(ch for ch in text[start:start + 4] if ch not in "0123456789abcdefABCDEF")
        return f"invalid character {_quote_char(bad)} in \\u hexadecimal character escape"
    if msg.startswith("Invalid \\escape"):
        c = _quote_char(text[e.pos + 1]) if e.pos + 1 < len(text) else "EOF"
        return f"invalid character {c} in string escape code"
    return msg


_LITERALS = {"t": "true", "f": "false", "n": "null"}


def _innermost(text: str, pos: int) -> str:
    """The bracket open at ``pos`` ('{' or '['), strings skipped."""
    stack = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


# -- in: a value onto a message --------------------------------------------------------------

def to_message(value, message_class):
    """The request message a decoded JSON value stands for (JsonError if jsonpb refuses it)."""
    message = message_class()
    if value is None:
        return message
    cleaned = _check_message(value, message.DESCRIPTOR)
    try:
        json_format.ParseDict(cleaned, message, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise JsonError(str(e)) from None
    return message


def _json_type(value) -> str:
    """encoding/json's name for a JSON value's kind, in its UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, _FloatLiteral)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _cannot(value, go_type: str, literal: str | None = None) -> JsonError:
    what = _json_type(value)
    if literal is not None:
        what = f"number {literal}"
    return JsonError(f"json: cannot unmarshal {what} into Go value of type {go_type}")


def _check_message(value, desc) -> dict:
    if not isinstance(value, dict):
        raise _cannot(value, "map[string]json.RawMessage")
    out = {}
    # jsonpb reads a message's fields in declaration order, its oneofs' after the others
    plain = [f for f in desc.fields if f.containing_oneof is None]
    in_oneofs = [f for f in desc.fields if f.containing_oneof is not None]
    for field in plain + in_oneofs:
        for name in (field.name, field.json_name):
            if name in value:
                raw = value[name]
                break
        else:
            continue
        if raw is None:
            continue
        out[field.name] = _check_field(raw, field)
    return out


_GO_INTS = {FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_SINT64: "int64",
            FieldDescriptor.TYPE_SFIXED64: "int64", FieldDescriptor.TYPE_UINT64: "uint64",
            FieldDescriptor.TYPE_FIXED64: "uint64", FieldDescriptor.TYPE_INT32: "int32",
            FieldDescriptor.TYPE_SINT32: "int32", FieldDescriptor.TYPE_SFIXED32: "int32",
            FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_FIXED32: "uint32"}
_INT_RANGES = {"int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
               "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1)}


def _is_repeated(field) -> bool:
    return field.is_repeated


def _check_field(raw, field):
    if _is_repeated(field):
        if not isinstance(raw, list):
            raise _cannot(raw, "[]json.RawMessage")
        return [_check_single(v, field) for v in raw]
    return _check_single(raw, field)


def _check_single(raw, field):
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return _check_message(raw, field.message_type)
    if t == FieldDescriptor.TYPE_BYTES:
        if isinstance(raw, list):  # encoding/json fills a []byte from an array of numbers too
            return base64.b64encode(bytes(_check_byte(v) for v in raw)).decode()
        if not isinstance(raw, str) or isinstance(raw, _FloatLiteral):
            raise _cannot(raw, "[]uint8")
        _check_base64(raw)
        return raw.replace("\r", "").replace("\n", "")  # (Go skips them; json_format would not)
    if t == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        if isinstance(raw, str) and not isinstance(raw, _FloatLiteral):
            if enum.values_by_name.get(raw) is None:
                raise JsonError(f"unknown value {json.dumps(raw)} for enum {_go_enum_name(enum)}")
            return raw
        return _check_int(raw, _go_enum_name(enum))
    if t in _GO_INTS:
        return _check_int(raw, _GO_INTS[t])
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(raw, bool):
            raise _cannot(raw, "bool")
        return raw
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(raw, str) or isinstance(raw, _FloatLiteral):
            raise _cannot(raw, "string")
        return raw
    return raw  # floats: none in etcd's API; json_format judges


def _check_int(raw, go_type: str) -> int:
    """jsonpb takes an integer as a number or a quoted one (the quotes dropped, the rest read
    as JSON)."""
    if isinstance(raw, _FloatLiteral):
        raise _cannot(raw, go_type, str(raw))
    if isinstance(raw, str):
        try:
            raw = _DECODER.decode(raw)
        except _Constant as e:
            raise JsonError(_no_value(str(e)[0])) from None
        except json.JSONDecodeError as e:
            if e.pos >= len(e.doc.rstrip(" \t\r\n")):
                raise JsonError("unexpected end of JSON input") from None
            if e.msg == "Extra data":
                what = f"invalid character {_quote_char(e.doc[e.pos])} after top-level value"
                raise JsonError(what) from None
            raise JsonError(_go_syntax_error(e, e.doc)) from None
        if isinstance(raw, _FloatLiteral):
            raise _cannot(raw, go_type, str(raw))
        if isinstance(raw, str):
            raise _cannot(raw, go_type)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _cannot(raw, go_type)
    lo, hi = _INT_RANGES.get(go_type, _INT_RANGES["int32"])  # (an enum's is int32's)
    if not lo <= raw <= hi:
        raise _cannot(raw, go_type, str(raw))
    return raw


def _check_byte(raw) -> int:
    if raw is None:
        return 0
    out_of_range = isinstance(raw, int) and not isinstance(raw, bool) and not 0 <= raw <= 255
    if isinstance(raw, _FloatLiteral) or out_of_range:
        raise _cannot(raw, "uint8", str(raw))
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _cannot(raw, "uint8")
    return raw


def _go_enum_name(enum) -> str:
    """Go's name of a proto enum: package.Outer_Inner (etcdserverpb.RangeRequest_SortOrder)."""
    full = enum.full_name
    package = enum.file.package
    local = full[len(package) + 1:] if package and full.startswith(package + ".") else full
    return f"{package}.{local.replace('.', '_')}" if package else local.replace(".", "_")


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _check_base64(s: str) -> None:
    """Go's base64.StdEncoding.DecodeString verdict ("illegal base64 data at input byte N")."""
    at = go_base64_error(s.encode("utf-8", errors="surrogateescape"))
    if at is not None:
        raise JsonError(f"illegal base64 data at input byte {at}")


def go_base64_error(src: bytes) -> int | None:
    """Where Go's StdEncoding.Decode finds ``src`` corrupt, or None: its decodeQuantum, step by
    step (CR and LF skipped, padding required)."""
    n = len(src)
    si = 0
    while si < n:
        j = 0
        while j < 4:
            if si == n:
                return None if j == 0 else si - j
            c = src[si]
            si += 1
            if c in _B64_ALPHABET:
                j += 1
                continue
            if c in (10, 13):
                continue
            if c != 61 or j < 2:  # not "=", or padding too early
                return si - 1
            if j == 2:  # "==" expected: the second "="
                while si < n and src[si] in (10, 13):
                    si += 1
                if si == n:
                    return n
                if src[si] != 61:
                    return si - 1
                si += 1
            while si < n and src[si] in (10, 13):
                si += 1
            return si if si < n else None  # trailing garbage after the padding
    return None
