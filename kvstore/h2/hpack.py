"""HPACK, header compression for HTTP/2 (RFC 7541): the pure-Python reference.

ext/hpack.pyx is the compiled twin. Both take their tables (static table, Huffman code, Huffman
decoding automaton) from this module and must agree byte for byte: the same encoder output and
the same decode results and errors for any input (tests/test_hpack.py checks it).

A Decoder turns header blocks into lists of (name, value) bytes pairs; anything malformed or
over a limit raises HPACKError, which the connection answers with COMPRESSION_ERROR. An Encoder
turns header lists into blocks, indexing into its dynamic table what is likely to repeat.
"""
from __future__ import annotations

__all__ = [
    "HPACKError", "Decoder", "Encoder", "STATIC_TABLE", "HUFFMAN_CODE_LENGTHS",
    "HUFFMAN_CODES", "huffman_encode", "huffman_decode", "encode_integer", "decode_integer",
]


class HPACKError(Exception):
    """A malformed or disallowed header block: the connection answers COMPRESSION_ERROR."""


# -- static table (RFC 7541 Appendix A); index i is STATIC_TABLE[i - 1] --------------------------

STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)
STATIC_COUNT = len(STATIC_TABLE)  # 61: dynamic table indices start at 62

# The encoder's lookups: the lowest static index holding a field, or a name.
STATIC_FIELD_INDEX: dict[tuple[bytes, bytes], int] = {}
STATIC_NAME_INDEX: dict[bytes, int] = {}
for _i, _field in enumerate(STATIC_TABLE, 1):
    STATIC_FIELD_INDEX.setdefault(_field, _i)
    STATIC_NAME_INDEX.setdefault(_field[0], _i)

# Every dynamic table entry costs its name, its value and this (RFC 7541 §4.1).
ENTRY_OVERHEAD = 32

# Integers above this are refused, and so is a sixth continuation byte (RFC 7541 §5.1 leaves
# the limit to the implementation; nothing in a header block needs more than 32 bits).
INTEGER_LIMIT = 2**32 - 1
MAX_CONTINUATION_BYTES = 5

# Names encoded as "never indexed" literals (RFC 7541 §7.1.3) unless the Encoder is told
# otherwise, and names whose values change every time, which would only churn the table.
DEFAULT_NEVER_INDEX = frozenset({b"authorization", b"proxy-authorization", b"token"})
DEFAULT_NO_INDEX = frozenset({b"content-length", b"date", b"grpc-timeout",
                              b"grpc-status-details-bin"})


# -- Huffman code (RFC 7541 Appendix B) ----------------------------------------------------------

# Code lengths in bits of symbols 0..255 and EOS (256). The code is canonical: codes of equal
# length are consecutive in symbol order and each length starts where the shorter ones end, so
# the lengths determine the codes (tests check published codes and the Kraft sum).
HUFFMAN_CODE_LENGTHS: tuple[int, ...] = (
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
)
EOS = 256


def _canonical_codes(lengths) -> tuple[int, ...]:
    codes = [0] * len(lengths)
    code, prev = 0, 0
    for sym in sorted(range(len(lengths)), key=lambda s: (lengths[s], s)):
        code <<= lengths[sym] - prev
        prev = lengths[sym]
        codes[sym] = code
        code += 1
    return tuple(codes)


HUFFMAN_CODES: tuple[int, ...] = _canonical_codes(HUFFMAN_CODE_LENGTHS)

# Encoding: each byte's code as a string of '0'/'1' (joined, then parsed as one integer), and
# the code lengths as a translation table (sum(s.translate(...)) is the length in bits).
_HUFFMAN_BITS = tuple(format(HUFFMAN_CODES[s], f"0{HUFFMAN_CODE_LENGTHS[s]}b")
                      for s in range(256))
_HUFFMAN_LENGTH_TABLE = bytes(HUFFMAN_CODE_LENGTHS[:256])

# Decoding is an automaton over 4-bit nibbles. Its states are the 256 inner nodes of the code
# tree (state 0 is the root: no pending bits). HUFFMAN_FSM[state << 4 | nibble] packs the next
# state (bits 0-7), FSM_EMIT (a symbol completed: bits 16-23 hold it) and FSM_FAIL (the EOS code
# was read). Codes are at least 5 bits long, so a nibble completes at most one symbol.
# HUFFMAN_ACCEPT[state] says whether a string may end there: at the root, or after 1-7 one
# bits, the shortest padding (a prefix of EOS) that RFC 7541 §5.2 allows.
FSM_EMIT = 0x100
FSM_FAIL = 0x200


def _huffman_automaton() -> tuple[tuple[int, ...], tuple[bool, ...]]:
    # children[node] = [child for bit 0, child for bit 1]; a child is ("node", n) or ("sym", s).
    children: list[list] = [[None, None]]
    for sym in range(257):
        code, length = HUFFMAN_CODES[sym], HUFFMAN_CODE_LENGTHS[sym]
        node = 0
        for i in range(length - 1, 0, -1):
            bit = (code >> i) & 1
            if children[node][bit] is None:
                children.append([None, None])
                children[node][bit] = ("node", len(children) - 1)
            node = children[node][bit][1]
        children[node][code & 1] = ("sym", sym)
    assert len(children) == 256
    fsm = []
    for state in range(256):
        for nibble in range(16):
            node, entry = state, 0
            for i in (3, 2, 1, 0):
                kind, n = children[node][(nibble >> i) & 1]
                if kind == "node":
                    node = n
                elif n == EOS:
                    entry |= FSM_FAIL
                    break
                else:
                    entry |= FSM_EMIT | (n << 16)
                    node = 0
            fsm.append(entry | (0 if entry & FSM_FAIL else node))
    accept = [False] * 256
    accept[0] = True
    node = 0
    for _ in range(7):
        node = children[node][1][1]
        accept[node] = True
    return tuple(fsm), tuple(accept)


HUFFMAN_FSM, HUFFMAN_ACCEPT = _huffman_automaton()


def huffman_encoded_length(data: bytes) -> int:
    """Bytes that huffman_encode(data) produces."""
    return (sum(data.translate(_HUFFMAN_LENGTH_TABLE)) + 7) >> 3


def huffman_encode(data: bytes) -> bytes:
    """The Huffman code of data, padded to a byte with the high bits of EOS (ones)."""
    if not data:
        return b""
    bits = "".join([_HUFFMAN_BITS[b] for b in data])
    pad = -len(bits) & 7
    return int(bits + "1" * pad, 2).to_bytes((len(bits) + pad) >> 3, "big")


def huffman_decode(data) -> bytes:
    """Decodes a Huffman-coded string; HPACKError on EOS or padding that is not 1-7 one bits."""
    fsm = HUFFMAN_FSM
    out = bytearray()
    state = 0
    for b in data:
        e = fsm[(state << 4) | (b >> 4)]
        if e & FSM_FAIL:
            raise HPACKError("EOS in Huffman string")
        if e & FSM_EMIT:
            out.append(e >> 16)
        e = fsm[((e & 0xFF) << 4) | (b & 0xF)]
        if e & FSM_FAIL:
            raise HPACKError("EOS in Huffman string")
        if e & FSM_EMIT:
            out.append(e >> 16)
        state = e & 0xFF
    if not HUFFMAN_ACCEPT[state]:
        raise HPACKError("invalid Huffman padding")
    return bytes(out)


# -- integers (RFC 7541 §5.1) --------------------------------------------------------------------

def _put_integer(out: bytearray, value: int, prefix_bits: int, pattern: int) -> None:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        out.append(pattern | value)
        return
    out.append(pattern | limit)
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_integer(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """(value, position after it) of the integer whose prefix is in data[pos]."""
    end = len(data)
    if pos >= end:
        raise HPACKError("truncated header block")
    limit = (1 << prefix_bits) - 1
    value = data[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        if pos >= end:
            raise HPACKError("truncated header block")
        b = data[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= 7 * MAX_CONTINUATION_BYTES:
            raise HPACKError("integer overflow")
    if value > INTEGER_LIMIT:
        raise HPACKError("integer overflow")
    return value, pos


def encode_integer(value: int, prefix_bits: int, pattern: int = 0) -> bytes:
    """value in an N-bit prefix (1 <= N <= 8); pattern holds the first byte's other bits."""
    if not 1 <= prefix_bits <= 8:
        raise ValueError("prefix_bits must be 1..8")
    if not 0 <= pattern <= 0xFF or pattern & ((1 << prefix_bits) - 1):
        raise ValueError("pattern overlaps the prefix")
    if not 0 <= value <= INTEGER_LIMIT:
        raise ValueError("integer out of range")
    out = bytearray()
    _put_integer(out, value, prefix_bits, pattern)
    return bytes(out)


def decode_integer(data: bytes, prefix_bits: int) -> tuple[int, int]:
    """(value, bytes consumed) of the N-bit-prefix integer at the start of data."""
    if not 1 <= prefix_bits <= 8:
        raise ValueError("prefix_bits must be 1..8")
    return _read_integer(bytes(data), 0, prefix_bits)


# -- decoder -------------------------------------------------------------------------------------

class _DynamicTable:
    """What the decoder and the encoder share: the dynamic table and its size accounting."""

    _entries: list[tuple[bytes, bytes]]  # oldest first
    _size: int
    _capacity: int

    @property
    def table(self) -> list[tuple[bytes, bytes]]:
        """The dynamic table, newest entry (index 62) first."""
        return self._entries[::-1]

    @property
    def table_size(self) -> int:
        return self._size

    @property
    def table_capacity(self) -> int:
        return self._capacity


class Decoder(_DynamicTable):
    """One connection's HPACK decoding context: the dynamic table the peer's encoder fills.

    ``max_table_size`` is our SETTINGS_HEADER_TABLE_SIZE: the table starts at that capacity and
    the peer may resize it up to it. Lower it when the peer acknowledges a smaller setting: the
    next header block must then begin with a size update no larger than the smallest value set.
    ``max_header_list_size`` bounds a block's header list, counted as RFC 9113 §6.5.2 does.
    """

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 65536):
        if max_table_size < 0:
            raise ValueError("max_table_size must not be negative")
        self._entries: list[tuple[bytes, bytes]] = []  # oldest first
        self._size = 0
        self._capacity = max_table_size
        self._max_table_size = max_table_size
        self._required_update = -1  # the largest size update the next block must begin with
        self.max_header_list_size = max_header_list_size

    @property
    def max_table_size(self) -> int:
        return self._max_table_size

    @max_table_size.setter
    def max_table_size(self, value: int) -> None:
        if value < 0:
            raise ValueError("max_table_size must not be negative")
        self._max_table_size = value
        if value < self._capacity and (self._required_update < 0
                                       or value < self._required_update):
            self._required_update = value

    def _field(self, index: int) -> tuple[bytes, bytes]:
        if index <= STATIC_COUNT:
            if index == 0:
                raise HPACKError("header index 0")
            return STATIC_TABLE[index - 1]
        k = index - STATIC_COUNT
        n = len(self._entries)
        if k > n:
            raise HPACKError(f"header index {index} out of range")
        return self._entries[n - k]

    def _string(self, data: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HPACKError("truncated header block")
        huffman = data[pos] & 0x80
        n, pos = _read_integer(data, pos, 7)
        end = pos + n
        if end > len(data):
            raise HPACKError("truncated header block")
        if huffman:
            return huffman_decode(data[pos:end]), end
        return data[pos:end], end

    def _resize(self, capacity: int) -> None:
        self._capacity = capacity
        self._evict(0)

    def _evict(self, room: int) -> None:
        entries = self._entries
        k = 0
        while self._size + room > self._capacity and k < len(entries):
            name, value = entries[k]
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD
            k += 1
        del entries[:k]

    def _add(self, field: tuple[bytes, bytes], size: int) -> None:
        if size > self._capacity:
            self._entries.clear()
            self._size = 0
            return
        self._evict(size)
        self._entries.append(field)
        self._size += size

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The header list of one complete header block."""
        if type(data) is not bytes:
            data = bytes(data)
        out: list[tuple[bytes, bytes]] = []
        list_size = 0
        limit = self.max_header_list_size
        pos, end = 0, len(data)
        while pos < end:
            b = data[pos]
            if b & 0x80:  # indexed field (§6.1)
                if self._required_update >= 0:
                    raise HPACKError("dynamic table size update required")
                index, pos = _read_integer(data, pos, 7)
                field = self._field(index)
                list_size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
                if list_size > limit:
                    raise HPACKError(f"header list larger than {limit}")
                out.append(field)
            elif (b & 0xE0) == 0x20:  # dynamic table size update (§6.3)
                if out:
                    raise HPACKError("dynamic table size update after a header field")
                size, pos = _read_integer(data, pos, 5)
                if size > self._max_table_size or (0 <= self._required_update < size):
                    raise HPACKError("dynamic table size update above the limit")
                self._required_update = -1
                self._resize(size)
            else:  # literal (§6.2): with incremental indexing, without, never indexed
                if self._required_update >= 0:
                    raise HPACKError("dynamic table size update required")
                indexing = b & 0x40
                index, pos = _read_integer(data, pos, 6 if indexing else 4)
                if index:
                    name = self._field(index)[0]
                else:
                    name, pos = self._string(data, pos)
                value, pos = self._string(data, pos)
                size = len(name) + len(value) + ENTRY_OVERHEAD
                list_size += size
                if list_size > limit:
                    raise HPACKError(f"header list larger than {limit}")
                field = (name, value)
                out.append(field)
                if indexing:
                    self._add(field, size)
        if self._required_update >= 0:
            raise HPACKError("dynamic table size update required")
        return out


# -- encoder -------------------------------------------------------------------------------------

class Encoder(_DynamicTable):
    """One connection's HPACK encoding context, mirroring the peer decoder's dynamic table.

    Fields found whole in the static or dynamic table are sent as an index; others as literals
    (name by index where possible), added to the dynamic table unless their name is in
    ``never_index`` (sent "never indexed", §7.1.3) or ``no_index`` (values that change every
    time), or the entry would not fit. A string is Huffman-coded when that is not longer
    (ties go to Huffman, as in RFC 7541 C.4 and C.6) and ``huffman`` is true.

    ``max_table_size`` is the table's initial capacity (HTTP/2's initial setting is 4096).
    Whatever larger size the peer allows later, the table grows to ``table_size_limit`` at
    most, so a peer cannot make us keep every header we ever sent.
    """

    def __init__(self, max_table_size: int = 4096, *, table_size_limit: int = 4096,
                 never_index=DEFAULT_NEVER_INDEX, no_index=DEFAULT_NO_INDEX):
        if max_table_size < 0 or table_size_limit < 0:
            raise ValueError("max_table_size must not be negative")
        self._limit = table_size_limit
        self._entries: list[tuple[bytes, bytes]] = []  # oldest first
        self._size = 0
        self._capacity = max_table_size
        self._inserted = 0  # entries ever added; entry number s has index 62 + inserted - 1 - s
        self._by_field: dict[tuple[bytes, bytes], int] = {}  # -> the newest entry's number
        self._by_name: dict[bytes, int] = {}
        self._pending_min = -1  # a size update to send first (-1: none)
        self._never_index = frozenset(never_index)
        self._no_index = frozenset(no_index)

    def set_max_table_size(self, n: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: the table takes this capacity (at most
        table_size_limit) and the next block begins with a size update (preceded by the
        smallest size set meanwhile, §4.2)."""
        if n < 0:
            raise ValueError("max_table_size must not be negative")
        n = min(n, self._limit)
        if self._pending_min < 0 or n < self._pending_min:
            self._pending_min = n
        self._capacity = n
        self._evict(0)

    def _evict(self, room: int) -> None:
        entries = self._entries
        k = 0
        first = self._inserted - len(entries)
        while self._size + room > self._capacity and k < len(entries):
            field = entries[k]
            self._size -= len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if self._by_field.get(field) == first + k:
                del self._by_field[field]
            if self._by_name.get(field[0]) == first + k:
                del self._by_name[field[0]]
            k += 1
        del entries[:k]

    def _put_string(self, out: bytearray, s: bytes, huffman: bool) -> None:
        if huffman and s:
            n = huffman_encoded_length(s)
            if n <= len(s):
                _put_integer(out, n, 7, 0x80)
                out += huffman_encode(s)
                return
        _put_integer(out, len(s), 7, 0)
        out += s

    def encode(self, headers, huffman: bool = True) -> bytes:
        """One header block for headers, an iterable of (name, value) bytes pairs."""
        out = bytearray()
        if self._pending_min >= 0:
            if self._pending_min < self._capacity:
                _put_integer(out, self._pending_min, 5, 0x20)
            _put_integer(out, self._capacity, 5, 0x20)
            self._pending_min = -1
        for field in headers:
            name, value = field
            if type(name) is not bytes or type(value) is not bytes:
                raise TypeError("header names and values must be bytes")
            if type(field) is not tuple:
                field = (name, value)
            index = STATIC_FIELD_INDEX.get(field)
            if index is None:
                number = self._by_field.get(field)
                if number is not None:
                    index = STATIC_COUNT + self._inserted - number
            if index is not None:
                _put_integer(out, index, 7, 0x80)
                continue
            index = STATIC_NAME_INDEX.get(name)
            if index is None:
                number = self._by_name.get(name)
                index = 0 if number is None else STATIC_COUNT + self._inserted - number
            size = len(name) + len(value) + ENTRY_OVERHEAD
            if name in self._never_index:
                _put_integer(out, index, 4, 0x10)
                indexing = False
            elif name in self._no_index or size > self._capacity:
                _put_integer(out, index, 4, 0)
                indexing = False
            else:
                _put_integer(out, index, 6, 0x40)
                indexing = True
            if not index:
                self._put_string(out, name, huffman)
            self._put_string(out, value, huffman)
            if indexing:
                self._evict(size)
                self._entries.append(field)
                self._size += size
                self._by_field[field] = self._inserted
                self._by_name[name] = self._inserted
                self._inserted += 1
        return bytes(out)
