"""HPACK (RFC 7541): the pure reference and the compiled twin, against the RFC and each other.

Every behavioural test runs for both implementations; the differential tests feed both the
same random header lists, garbage and truncated blocks and require the same bytes, the same
header lists and the same errors.
"""
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

# The compiled module must be built (make test installs it): a missing build fails here rather
# than skipping. KVSTORE_NO_EXT only changes what hpack_select picks, not what this imports.
import kvstore._ext.hpack as compiled
from kvstore.h2 import hpack as pure

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess

IMPLS = [pytest.param(pure, id="pure"), pytest.param(compiled, id="compiled")]


@pytest.fixture(params=IMPLS)
def hp(request):
    return request.param


def h(s: str) -> bytes:
    """Bytes from an RFC-style hex dump ("8286 8441 ...")."""
    return bytes.fromhex(s.replace(" ", "").replace("\n", ""))


def test_select_picks_compiled_unless_disabled():
    from kvstore.h2 import hpack_select

    enabled = os.environ.get("KVSTORE_NO_EXT", "") in ("", "0")
    assert hpack_select.COMPILED == enabled
    impl = compiled if enabled else pure
    assert hpack_select.Decoder is impl.Decoder and hpack_select.Encoder is impl.Encoder
    # one exception class whichever is selected
    assert hpack_select.HPACKError is pure.HPACKError is compiled.HPACKError


# -- C.1 integers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, prefix, encoded", [
    (10, 5, "0a"),          # C.1.1
    (1337, 5, "1f9a0a"),    # C.1.2
    (42, 8, "2a"),          # C.1.3
    (30, 5, "1e"),
    (31, 5, "1f00"),
    (127, 7, "7f00"),
    (128, 7, "7f01"),
    (2**32 - 1, 1, "01feffffff0f"),
])
def test_integer_representation(hp, value, prefix, encoded):
    assert hp.encode_integer(value, prefix) == h(encoded)
    assert hp.decode_integer(h(encoded) + b"\xff", prefix) == (value, len(h(encoded)))


def test_integer_prefix_keeps_pattern_bits(hp):
    assert hp.encode_integer(10, 5, 0xE0) == b"\xea"  # C.1.1 with the X bits set
    assert hp.decode_integer(b"\xea", 5) == (10, 1)
    assert hp.decode_integer(h("ff9a0a"), 5) == (1337, 3)
    with pytest.raises(ValueError):
        hp.encode_integer(10, 5, 0x10)


def test_integer_round_trip(hp):
    rng = random.Random(7)
    for _ in range(2000):
        prefix = rng.randint(1, 8)
        value = rng.choice([rng.randint(0, 300), rng.randint(0, 2**32 - 1)])
        data = hp.encode_integer(value, prefix)
        assert hp.decode_integer(data, prefix) == (value, len(data))


@pytest.mark.parametrize("data, message", [
    ("", "truncated header block"),
    ("1f", "truncated header block"),
    ("1f9a", "truncated header block"),
    ("1fffffffff0f", "integer overflow"),        # 31 + 15 * 2**28 > 2**32 - 1
    ("1f8080808080", "integer overflow"),        # a sixth continuation byte
    ("1f808080808000", "integer overflow"),
])
def test_integer_errors(hp, data, message):
    with pytest.raises(hp.HPACKError, match=message):
        hp.decode_integer(h(data), 5)


def test_integer_largest_accepted(hp):
    # 2**32 - 1 with a 5-bit prefix takes all five continuation bytes
    data = hp.encode_integer(2**32 - 1, 5)
    assert len(data) == 6
    assert hp.decode_integer(data, 5) == (2**32 - 1, 6)
    with pytest.raises(ValueError):
        hp.encode_integer(2**32, 5)


# -- C.2 header field representations ----------------------------------------------------------

C2 = [
    # (section, hex, field, dynamic table after, encoder options)
    ("C.2.1", "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
     (b"custom-key", b"custom-header"), [(b"custom-key", b"custom-header")], {}),
    ("C.2.2", "040c 2f73 616d 706c 652f 7061 7468",
     (b":path", b"/sample/path"), [], {"no_index": {b":path"}}),
    ("C.2.3", "1008 7061 7373 776f 7264 0673 6563 7265 74",
     (b"password", b"secret"), [], {"never_index": {b"password"}}),
    ("C.2.4", "82", (b":method", b"GET"), [], {}),
]


@pytest.mark.parametrize("section, data, field, table, options", C2, ids=[c[0] for c in C2])
def test_c2_field_representations(hp, section, data, field, table, options):
    d = hp.Decoder()
    assert d.decode(h(data)) == [field]
    assert d.table == table
    assert d.table_size == sum(len(n) + len(v) + 32 for n, v in table)
    e = hp.Encoder(**options)
    assert e.encode([field], huffman=False) == h(data)
    assert e.table == table


# -- C.3 - C.6 header lists on one connection ----------------------------------------------------

REQUESTS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
     (b":authority", b"www.example.com")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
     (b":authority", b"www.example.com"), (b"cache-control", b"no-cache")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
     (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")],
]
REQUEST_TABLES = [
    ([(b":authority", b"www.example.com")], 57),
    ([(b"cache-control", b"no-cache"), (b":authority", b"www.example.com")], 110),
    ([(b"custom-key", b"custom-value"), (b"cache-control", b"no-cache"),
      (b":authority", b"www.example.com")], 164),
]
C3 = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
]
C4 = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
]

DATE1 = b"Mon, 21 Oct 2013 20:13:21 GMT"
DATE2 = b"Mon, 21 Oct 2013 20:13:22 GMT"
LOCATION = b"https://www.example.com"
COOKIE = b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
RESPONSES = [
    [(b":status", b"302"), (b"cache-control", b"private"), (b"date", DATE1),
     (b"location", LOCATION)],
    [(b":status", b"307"), (b"cache-control", b"private"), (b"date", DATE1),
     (b"location", LOCATION)],
    [(b":status", b"200"), (b"cache-control", b"private"), (b"date", DATE2),
     (b"location", LOCATION), (b"content-encoding", b"gzip"), (b"set-cookie", COOKIE)],
]
RESPONSE_TABLES = [
    ([(b"location", LOCATION), (b"date", DATE1), (b"cache-control", b"private"),
      (b":status", b"302")], 222),
    ([(b":status", b"307"), (b"location", LOCATION), (b"date", DATE1),
      (b"cache-control", b"private")], 222),
    ([(b"set-cookie", COOKIE), (b"content-encoding", b"gzip"), (b"date", DATE2)], 215),
]
C5 = [
    """4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
       6c65 2e63 6f6d""",
    "4803 3330 37c1 c0bf",
    """88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
       3d31""",
]
C6 = [
    """4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3""",
    "4883 640e ffc1 c0bf",
    """88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07""",
]

SEQUENCES = [
    ("C.3", C3, REQUESTS, REQUEST_TABLES, 4096, False),
    ("C.4", C4, REQUESTS, REQUEST_TABLES, 4096, True),
    ("C.5", C5, RESPONSES, RESPONSE_TABLES, 256, False),
    ("C.6", C6, RESPONSES, RESPONSE_TABLES, 256, True),
]


@pytest.mark.parametrize("section, blocks, lists, tables, table_size, huffman", SEQUENCES,
                         ids=[s[0] for s in SEQUENCES])
def test_rfc_sequence_decodes(hp, section, blocks, lists, tables, table_size, huffman):
    d = hp.Decoder(max_table_size=table_size)
    for block, expected, (table, size) in zip(blocks, lists, tables):
        assert d.decode(h(block)) == expected
        assert d.table == table
        assert d.table_size == size
        assert d.table_capacity == table_size


@pytest.mark.parametrize("section, blocks, lists, tables, table_size, huffman", SEQUENCES,
                         ids=[s[0] for s in SEQUENCES])
def test_rfc_sequence_encodes_exact_bytes(hp, section, blocks, lists, tables, table_size,
                                          huffman):
    # The RFC's encoder indexes every literal (date included), so nothing is left unindexed.
    e = hp.Encoder(max_table_size=table_size, no_index=())
    for block, headers, (table, size) in zip(blocks, lists, tables):
        assert e.encode(headers, huffman=huffman).hex() == h(block).hex()
        assert e.table == table
        assert e.table_size == size


def test_decoded_fields_accept_any_buffer(hp):
    for kind in (bytes, bytearray, memoryview):
        d = hp.Decoder(max_table_size=256)
        assert d.decode(kind(h(C6[0]))) == RESPONSES[0]


# -- Huffman code ---------------------------------------------------------------------------------

# (symbol, code, bits) from RFC 7541 Appendix B.
PUBLISHED_CODES = [
    (0, 0x1FF8, 13), (1, 0x7FFFD8, 23), (10, 0x3FFFFFFC, 30), (13, 0x3FFFFFFD, 30),
    (22, 0x3FFFFFFE, 30), (ord(" "), 0x14, 6), (ord("!"), 0x3F8, 10), (ord("0"), 0x0, 5),
    (ord("1"), 0x1, 5), (ord("2"), 0x2, 5), (ord(":"), 0x5C, 7), (ord("<"), 0x7FFC, 15),
    (ord("A"), 0x21, 6), (ord("Z"), 0xFD, 8), (ord("a"), 0x3, 5), (ord("e"), 0x5, 5),
    (ord("z"), 0x7B, 7), (ord("~"), 0x1FFD, 13), (127, 0xFFFFFFC, 28), (128, 0xFFFE6, 20),
    (200, 0x3FFFFE2, 26), (254, 0x7FFFFF0, 27), (255, 0x3FFFFEE, 26), (256, 0x3FFFFFFF, 30),
]


@pytest.mark.parametrize("sym, code, bits", PUBLISHED_CODES)
def test_published_huffman_codes(sym, code, bits):
    assert pure.HUFFMAN_CODES[sym] == code
    assert pure.HUFFMAN_CODE_LENGTHS[sym] == bits


def test_huffman_code_table_is_complete_and_prefix_free():
    codes, lengths = pure.HUFFMAN_CODES, pure.HUFFMAN_CODE_LENGTHS
    assert len(codes) == len(lengths) == 257
    assert compiled.HUFFMAN_CODES == codes and compiled.HUFFMAN_CODE_LENGTHS == lengths
    assert sum(2 ** (30 - n) for n in lengths) == 2**30  # Kraft equality: a complete code
    words = sorted(format(c, f"0{n}b") for c, n in zip(codes, lengths))
    assert all(not b.startswith(a) for a, b in zip(words, words[1:]))
    assert min(lengths) == 5 and max(lengths) == 30


def test_huffman_encodes_every_symbol(hp):
    for sym in range(256):
        code, n = pure.HUFFMAN_CODES[sym], pure.HUFFMAN_CODE_LENGTHS[sym]
        pad = -n & 7
        expected = ((code << pad) | ((1 << pad) - 1)).to_bytes((n + pad) // 8, "big")
        assert hp.huffman_encode(bytes([sym])) == expected
        assert hp.huffman_decode(expected) == bytes([sym])


def test_huffman_rfc_strings(hp):
    assert hp.huffman_encode(b"www.example.com") == h("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
    assert hp.huffman_encode(b"no-cache") == h("a8eb 1064 9cbf")
    assert hp.huffman_encode(b"custom-key") == h("25a8 49e9 5ba9 7d7f")
    assert hp.huffman_encode(b"custom-value") == h("25a8 49e9 5bb8 e8b4 bf")
    assert hp.huffman_decode(h("9bd9 ab")) == b"gzip"
    assert hp.huffman_encode(b"") == b"" and hp.huffman_decode(b"") == b""


def test_huffman_round_trip_random(hp):
    rng = random.Random(1)
    for _ in range(500):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        enc = hp.huffman_encode(data)
        assert len(enc) == hp.huffman_encoded_length(data)
        assert hp.huffman_decode(enc) == data
        assert enc == pure.huffman_encode(data)


def bits_to_bytes(bits: str) -> bytes:
    assert len(bits) % 8 == 0
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def code_bits(sym: int) -> str:
    return format(pure.HUFFMAN_CODES[sym], f"0{pure.HUFFMAN_CODE_LENGTHS[sym]}b")


def test_huffman_padding_up_to_seven_ones_is_accepted(hp):
    a, hash_ = code_bits(ord("a")), code_bits(ord("#"))  # 5 and 12 bits
    assert hp.huffman_decode(bits_to_bytes(a + "111")) == b"a"
    assert hp.huffman_decode(bits_to_bytes(a + hash_ + "1111111")) == b"a#"  # 7 bits of padding


@pytest.mark.parametrize("bits", [
    "00011" + "110",                       # 'a' + padding that is not all ones
    "00011" + "011",
    "00011" + "111" + "11111111",          # 'a' + 11 bits of padding
    "11111111",                            # 8 bits of padding, no symbol
    "00011" + "111" + "11111111" * 3,      # 27 one bits: still inside the EOS prefix
])
def test_huffman_bad_padding(hp, bits):
    with pytest.raises(hp.HPACKError, match="invalid Huffman padding"):
        hp.huffman_decode(bits_to_bytes(bits))


@pytest.mark.parametrize("bits", [
    "1" * 30 + "11",                       # EOS, then padding
    "00011" + "1" * 30 + "1" * 5,          # 'a', EOS
    "1" * 30 + "00011" + "1" * 5,          # EOS, 'a'
])
def test_huffman_eos_in_string(hp, bits):
    with pytest.raises(hp.HPACKError, match="EOS in Huffman string"):
        hp.huffman_decode(bits_to_bytes(bits))


def test_huffman_errors_inside_header_block(hp):
    d = hp.Decoder()
    with pytest.raises(hp.HPACKError, match="invalid Huffman padding"):
        d.decode(b"\x41\x81\x18")  # :authority, Huffman value 'a' + padding 000
    with pytest.raises(hp.HPACKError, match="EOS in Huffman string"):
        hp.Decoder().decode(b"\x41\x84\xff\xff\xff\xff")


# -- decoder errors and limits --------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ("80", "header index 0"),
    ("be", "header index 62 out of range"),
    ("ff80ffffff1f", "integer overflow"),
    ("40", "truncated header block"),                 # literal, no name
    ("4005", "truncated header block"),
    ("40056e616d65", "truncated header block"),       # name, no value
    ("41", "truncated header block"),
    ("410a7777", "truncated header block"),           # value shorter than its length
    ("7f", "truncated header block"),                 # index needing continuation bytes
    ("7f00", "header index 63 out of range"),
    ("0f2f", "header index 62 out of range"),         # literal without indexing, dynamic name
    ("82 20", "dynamic table size update after a header field"),
    ("3fe21f", "dynamic table size update above the limit"),  # 4097
    ("41 7f", "truncated header block"),              # value length needs more bytes
])
def test_decoder_rejects(hp, data, message):
    with pytest.raises(hp.HPACKError, match=message):
        hp.Decoder().decode(h(data))


def test_table_size_update_within_limit(hp):
    d = hp.Decoder(max_table_size=4096)
    d.decode(h(C3[0]))
    assert d.table_size == 57
    assert d.decode(h("3fe11f 82")) == [(b":method", b"GET")]  # update to 4096: allowed
    assert d.decode(h("20 3f11")) == []  # to 0 (empties the table), then to 48
    assert d.table == [] and d.table_capacity == 48
    assert d.decode(h(C3[0])) == REQUESTS[0]  # 57 > 48: not stored
    assert d.table == []
    with pytest.raises(hp.HPACKError, match="above the limit"):
        hp.Decoder(max_table_size=100).decode(hp.encode_integer(101, 5, 0x20))


def test_table_size_update_required_after_lowering_max(hp):
    d = hp.Decoder(max_table_size=4096)
    d.decode(h(C3[0]))
    d.max_table_size = 8192  # raising it asks nothing of the peer
    assert d.decode(h("82")) == [(b":method", b"GET")]
    d.max_table_size = 1024
    d.max_table_size = 2048  # the smallest value set since the last block must be signalled
    with pytest.raises(hp.HPACKError, match="dynamic table size update required"):
        d.decode(h("82"))
    with pytest.raises(hp.HPACKError, match="above the limit"):
        d.decode(hp.encode_integer(2048, 5, 0x20))
    assert d.decode(hp.encode_integer(1024, 5, 0x20) + hp.encode_integer(2048, 5, 0x20)
                    + h("82")) == [(b":method", b"GET")]
    assert d.table_capacity == 2048
    assert d.decode(h("82")) == [(b":method", b"GET")]
    d.max_table_size = 4000  # not below the current capacity: no update needed
    assert d.decode(h("82")) == [(b":method", b"GET")]
    d.max_table_size = 0
    with pytest.raises(hp.HPACKError, match="dynamic table size update required"):
        d.decode(b"")


def test_header_list_size_limit(hp):
    # :method GET counts 7 + 3 + 32 = 42
    assert hp.Decoder(max_header_list_size=84).decode(h("8282")) == [(b":method", b"GET")] * 2
    with pytest.raises(hp.HPACKError, match="header list larger than 83"):
        hp.Decoder(max_header_list_size=83).decode(h("8282"))
    with pytest.raises(hp.HPACKError, match="header list larger than 60"):
        hp.Decoder(max_header_list_size=60).decode(h(C3[0]))
    d = hp.Decoder()
    d.max_header_list_size = 10
    with pytest.raises(hp.HPACKError):
        d.decode(h(C2[0][1]))


def test_decoder_evicts_and_drops_oversized_entries(hp):
    d = hp.Decoder(max_table_size=100)
    d.decode(h(C3[0]))  # 57
    d.decode(h("5808 6e6f 2d63 6163 6865"))  # cache-control: no-cache (53): evicts :authority
    assert d.table == [(b"cache-control", b"no-cache")] and d.table_size == 53
    big = pure.Encoder(max_table_size=4096, no_index=()).encode([(b"x", b"y" * 80)])
    d.decode(big)  # 113 > 100: the table is emptied and nothing is added
    assert d.table == [] and d.table_size == 0


def test_literal_name_from_dynamic_table(hp):
    d = hp.Decoder()
    for block in C3:
        d.decode(h(block))
    # literal with incremental indexing, name = index 62 (custom-key), value "v"
    assert d.decode(h("7e0176")) == [(b"custom-key", b"v")]
    assert d.table[0] == (b"custom-key", b"v")
    # never indexed, name index 63 via 4-bit prefix + continuation (15 + 48)
    assert d.decode(h("1f300178")) == [(b"custom-key", b"x")]
    assert len(d.table) == 4


# -- encoder --------------------------------------------------------------------------------------

def test_encoder_set_max_table_size_emits_update_first(hp):
    e = hp.Encoder()
    e.encode(REQUESTS[2])
    assert len(e.table) == 2
    e.set_max_table_size(57)
    assert e.table == [(b"custom-key", b"custom-value")] and e.table_capacity == 57
    block = e.encode([(b":method", b"GET")])
    assert block == hp.encode_integer(57, 5, 0x20) + b"\x82"
    assert e.encode([(b":method", b"GET")]) == b"\x82"  # only once
    d = hp.Decoder()
    assert d.decode(block) == [(b":method", b"GET")] and d.table_capacity == 57


def test_encoder_signals_smallest_size_set_meanwhile(hp):
    e = hp.Encoder()
    e.encode(REQUESTS[0])
    e.set_max_table_size(0)
    e.set_max_table_size(4096)
    assert e.table == []
    block = e.encode(REQUESTS[0])
    assert block.startswith(b"\x20" + hp.encode_integer(4096, 5, 0x20))
    d = hp.Decoder()
    d.decode(pure.Encoder().encode(REQUESTS[0]))
    assert d.decode(block) == REQUESTS[0]
    assert d.table == e.table == [(b":authority", b"www.example.com")]


def test_encoder_caps_its_table_whatever_the_peer_allows(hp):
    e = hp.Encoder()
    e.set_max_table_size(1 << 20)
    assert e.table_capacity == 4096
    assert e.encode([]) == hp.encode_integer(4096, 5, 0x20)
    e = hp.Encoder(table_size_limit=1 << 16)
    e.set_max_table_size(1 << 20)
    assert e.encode([]) == hp.encode_integer(1 << 16, 5, 0x20)
    d = hp.Decoder(max_table_size=1 << 20)
    d.decode(hp.encode_integer(1 << 16, 5, 0x20))
    assert d.table_capacity == 1 << 16


def test_encoder_same_size_still_emits_update(hp):
    e = hp.Encoder()
    e.set_max_table_size(4096)
    assert e.encode([]) == hp.encode_integer(4096, 5, 0x20)
    assert e.encode([]) == b""


def test_encoder_never_index_and_no_index(hp):
    e = hp.Encoder()
    fields = [(b"authorization", b"Bearer x"), (b"token", b"t"), (b"grpc-timeout", b"5S"),
              (b"content-length", b"10"), (b"grpc-status", b"0")]
    block = e.encode(fields, huffman=False)
    assert block[0] == 0x10 | 15 and block[1] == 23 - 15  # never indexed, name index 23
    assert e.table == [(b"grpc-status", b"0")]
    d = hp.Decoder()
    assert d.decode(block) == fields
    assert d.table == e.table
    again = e.encode(fields, huffman=False)
    assert again.endswith(b"\xbe")  # grpc-status: 0 from the dynamic table
    assert d.decode(again) == fields
    # everything indexed when asked
    e2 = hp.Encoder(never_index=(), no_index=())
    e2.encode(fields)
    assert len(e2.table) == 5


def test_encoder_skips_entries_larger_than_the_table(hp):
    e = hp.Encoder(max_table_size=64, no_index=())
    block = e.encode([(b"k", b"v" * 40)], huffman=False)  # 73 > 64
    assert block[0] == 0x00 and e.table == []
    assert hp.Decoder(max_table_size=64).decode(block) == [(b"k", b"v" * 40)]


def test_encoder_huffman_only_when_not_longer(hp):
    e = hp.Encoder(no_index=())
    # bytes 0-8 have 13-28 bit codes: Huffman would be longer, so the value goes raw
    block = e.encode([(b"x-bin", b"\x00\x01\x02")])
    assert block.endswith(b"\x03\x00\x01\x02")
    assert hp.Decoder().decode(block) == [(b"x-bin", b"\x00\x01\x02")]
    assert e.encode([(b"x-e", b"")]).endswith(b"\x00")  # empty strings stay raw
    assert e.encode([(b"x-s", b"307")], huffman=True).endswith(h("83 640e ff"))  # a tie


def test_encoder_rejects_non_bytes(hp):
    with pytest.raises(TypeError):
        hp.Encoder().encode([("name", b"value")])
    with pytest.raises(TypeError):
        hp.Encoder().encode([(b"name", bytearray(b"value"))])


def test_encoder_accepts_lists_and_generators(hp):
    e, d = hp.Encoder(), hp.Decoder()
    block = e.encode(([n, v] for n, v in REQUESTS[2]))
    assert d.decode(block) == REQUESTS[2]
    assert d.decode(e.encode(REQUESTS[2])) == REQUESTS[2]


def test_encoder_reuses_dynamic_names(hp):
    e, d = hp.Encoder(max_table_size=4096, no_index=()), hp.Decoder()
    for i in range(300):  # churns a 4096-byte table many times over
        headers = [(b"x-request-id", b"%d" % i), (b"x-shared", b"same"),
                   (b"x-%d" % (i % 7), b"v%d" % (i % 5))]
        block = e.encode(headers)
        assert d.decode(block) == headers
        assert d.table == e.table and d.table_size == e.table_size <= 4096


# -- differential: pure and compiled, same inputs, same outputs ---------------------------------

COMMON_NAMES = [n for n, _ in pure.STATIC_TABLE[:20]] + [
    b"content-type", b"te", b"user-agent", b"grpc-timeout", b"grpc-status", b"grpc-message",
    b"authorization", b"x-a", b"x-b"]
COMMON_VALUES = [b"", b"GET", b"POST", b"/", b"200", b"http", b"application/grpc", b"trailers",
                 b"0", b"same", b"\xff\x00\x80"]

names = st.one_of(st.sampled_from(COMMON_NAMES), st.binary(max_size=20))
values = st.one_of(st.sampled_from(COMMON_VALUES), st.binary(max_size=60),
                   st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-/.:; ", max_size=60)
                   .map(str.encode))
header_lists = st.lists(st.tuples(names, values), max_size=12)
# A step: a header list to encode, or a new SETTINGS_HEADER_TABLE_SIZE from the peer.
steps = st.lists(st.one_of(
    st.tuples(st.just("encode"), header_lists, st.booleans()),
    st.tuples(st.just("resize"), st.sampled_from([0, 32, 64, 100, 256, 4096, 8192]), st.just(None)),
), min_size=1, max_size=12)


def outcome(decoder, data):
    try:
        return ("ok", decoder.decode(data), decoder.table, decoder.table_size)
    except pure.HPACKError as e:
        return ("error", str(e), decoder.table, decoder.table_size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, table_size=st.sampled_from([0, 64, 256, 4096]),
       no_index=st.sampled_from([(), pure.DEFAULT_NO_INDEX]))
def test_twins_encode_and_decode_alike(steps, table_size, no_index):
    encoders = [m.Encoder(max_table_size=table_size, no_index=no_index) for m in (pure, compiled)]
    decoders = [m.Decoder(max_table_size=table_size) for m in (pure, compiled)]
    for d in decoders:
        d.max_table_size = 8192  # room for the resizes below; the capacity stays table_size
    for kind, arg, huffman in steps:
        if kind == "resize":
            for e in encoders:
                e.set_max_table_size(arg)
            continue
        blocks = [e.encode(arg, huffman=huffman) for e in encoders]
        assert blocks[0] == blocks[1]
        assert encoders[0].table == encoders[1].table
        assert encoders[0].table_size == encoders[1].table_size
        for d in decoders:
            assert d.decode(blocks[0]) == arg
            assert d.table == encoders[0].table


@settings(max_examples=500, deadline=None)
@given(prefix=header_lists, garbage=st.binary(max_size=64),
       max_list=st.sampled_from([100, 65536]), max_table=st.sampled_from([0, 256, 4096]))
def test_twins_agree_on_garbage(prefix, garbage, max_list, max_table):
    setup = pure.Encoder(no_index=()).encode(prefix)  # something in the dynamic table first
    decoders = [m.Decoder(max_table_size=4096) for m in (pure, compiled)]
    results = [outcome(d, setup) for d in decoders]
    assert results[0] == results[1]
    for d in decoders:
        d.max_header_list_size = max_list
        d.max_table_size = max_table
    results = [outcome(d, garbage) for d in decoders]
    assert results[0] == results[1]
    results = [outcome(d, setup + garbage) for d in decoders]
    assert results[0] == results[1]


def test_twins_agree_on_truncated_and_mutated_blocks():
    rng = random.Random(42)
    blocks = [h(b) for b in C3 + C4 + C5 + C6]
    e = pure.Encoder(no_index=())
    for _i in range(40):
        blocks.append(e.encode([(b"x-%d" % rng.randrange(5), bytes(rng.randrange(256)
                                for _ in range(rng.randrange(40)))) for _ in range(4)]))
    for block in blocks:
        for cut in range(len(block) + 1):
            for data in (block[:cut], block[cut:]):
                a, b = (outcome(m.Decoder(256), data) for m in (pure, compiled))
                assert a == b
        for _ in range(20):
            data = bytearray(block)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            a, b = (outcome(m.Decoder(256), bytes(data)) for m in (pure, compiled))
            assert a == b


def test_twins_agree_on_random_huffman_strings():
    rng = random.Random(3)
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        if rng.random() < 0.5:  # mostly-ones strings reach the padding and EOS paths
            data = bytes(b | rng.choice([0xFF, 0xFE, 0xF0, 0x00]) for b in data)
        results = []
        for m in (pure, compiled):
            try:
                results.append(("ok", m.huffman_decode(data)))
            except m.HPACKError as e:
                results.append(("error", str(e)))
        assert results[0] == results[1]
