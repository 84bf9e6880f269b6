"""Fuzz target: the HPACK decoder, compiled (ext/hpack.pyx) against its pure twin
(kvstore/h2/hpack.py); and the encoders on what was decoded.

Input: [max_table_size][max_header_list_size][huffman] then commands, each a 2-byte big-endian
word: bit 15 set is "SETTINGS_HEADER_TABLE_SIZE changed" (the decoders' max_table_size becomes
TABLE_SIZES[word & 7], the encoders' too), else a header block of (word & 0x3FFF) bytes
follows. One Decoder of each kind decodes the blocks in order (the dynamic table carries from
block to block, as on a connection), until the first HPACKError, which is all a block may
raise (the connection answers COMPRESSION_ERROR). Required: the same header lists or errors,
and the same dynamic tables after each block. Every list decoded is then encoded by an Encoder
of each kind (the same bytes) and decoded back (the same list). Huffman and integer decoding
are compared on each block's bytes too.
"""
from __future__ import annotations

import struct

import kvstore._ext.hpack as compiled
from kvstore.h2 import hpack as pure

from .harness import Params, agree, expect, outcome

NAME = "hpack"
TABLE_SIZES = (4096, 0, 1, 32, 64, 256, 4096, 65536)
LIST_SIZES = (65536, 0, 40, 100, 4096, 65536, 2**20)
ERRORS = (pure.HPACKError,)


def _table(decoder) -> tuple:
    return (decoder.table, decoder.table_size, decoder.table_capacity, decoder.max_table_size)


def check(data: bytes) -> None:
    p = Params(data)
    table_size = p.pick(TABLE_SIZES)
    list_size = p.pick(LIST_SIZES)
    huffman = bool(p.byte() & 1)
    decoders = [impl.Decoder(max_table_size=table_size, max_header_list_size=list_size)
                for impl in (compiled, pure)]
    encoders = [impl.Encoder() for impl in (compiled, pure)]
    echo = pure.Decoder(max_table_size=65536, max_header_list_size=2**31)
    while p.left():
        word = p.u16()
        if word & 0x8000:
            size = TABLE_SIZES[word & 7]
            for decoder in decoders:
                decoder.max_table_size = size
            for encoder in encoders:
                encoder.set_max_table_size(size)
            agree(_table(decoders[0]), _table(decoders[1]), "the dynamic table after a size change")
            continue
        block = p.take(word & 0x3FFF)
        results = [outcome(f"{impl.__name__}.Decoder.decode", d.decode, block, allowed=ERRORS)
                   for impl, d in zip((compiled, pure), decoders)]
        agree(results[0], results[1], f"the header list of block {block!r}")
        agree(_table(decoders[0]), _table(decoders[1]), "the dynamic table after a block")
        _primitives(block)
        if results[0][0] == "error":
            return  # the connection is over
        headers = results[0][1]
        expect(all(type(n) is bytes and type(v) is bytes for n, v in headers), "not bytes")
        blocks = [outcome(f"{impl.__name__}.Encoder.encode", e.encode, headers, huffman)
                  for impl, e in zip((compiled, pure), encoders)]
        agree(blocks[0], blocks[1], f"the encoding of {headers!r}")
        back = outcome("pure.Decoder.decode (echo)", echo.decode, blocks[0][1], allowed=ERRORS)
        expect(back == ("ok", headers), f"{headers!r} encoded and decoded gave {back!r}")


def _primitives(block: bytes) -> None:
    agree(outcome("compiled.huffman_decode", compiled.huffman_decode, block, allowed=ERRORS),
          outcome("pure.huffman_decode", pure.huffman_decode, block, allowed=ERRORS),
          "huffman_decode")
    if block:
        prefix = block[-1] % 8 + 1
        agree(outcome("compiled.decode_integer", compiled.decode_integer, block, prefix, allowed=ERRORS),
              outcome("pure.decode_integer", pure.decode_integer, block, prefix, allowed=ERRORS),
              "decode_integer")


def _blocks(*blocks: bytes, params: bytes = b"\x00\x00\x01") -> bytes:
    return params + b"".join(struct.pack(">H", len(b)) + b for b in blocks)


def seeds() -> list[bytes]:
    """Real header blocks: the RFC 7541 examples (C.3 without Huffman, C.4 with, C.5/C.6 with
    evictions in a 256-byte table), and what kvstore's encoder makes of gRPC requests,
    responses and trailers, across blocks that refer to each other's table entries."""
    h = bytes.fromhex
    c3 = [h("828684410f7777772e6578616d706c652e636f6d"),
          h("828684be58086e6f2d6361636865"),
          h("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565")]
    c4 = [h("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
          h("828684be5886a8eb10649cbf"),
          h("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")]
    c6 = [h("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863"
            "c78f0b97c8e9ae82ae43d3"),
          h("4883640effc1c0bf"),
          h("88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b3"
            "35dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007")]
    requests = []
    encoder = pure.Encoder()
    for path in (b"/etcdserverpb.KV/Put", b"/etcdserverpb.KV/Range", b"/etcdserverpb.Watch/Watch",
                 b"/etcdserverpb.KV/Put"):
        requests.append(encoder.encode([
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
            (b":authority", b"127.0.0.1:2379"), (b"content-type", b"application/grpc"),
            (b"user-agent", b"grpc-go/1.58.3"), (b"te", b"trailers"), (b"grpc-timeout", b"4999m"),
            (b"grpc-encoding", b"gzip"), (b"authorization", b"token-123")]))
    plain = pure.Encoder()
    responses = [plain.encode([(b":status", b"200"), (b"content-type", b"application/grpc")], False),
                 plain.encode([(b"grpc-status", b"0")], False),
                 plain.encode([(b"grpc-status", b"3"),
                               (b"grpc-message", b"etcdserver: key is not provided")])]
    return [
        _blocks(*c3), _blocks(*c4), _blocks(*c6, params=b"\x05\x00\x00"),
        _blocks(*requests), _blocks(*responses, params=b"\x00\x00\x00"),
        _blocks(c3[0]) + b"\x80\x03" + _blocks(h("3f01") + c3[1], params=b""),  # size update
        _blocks(h("3fe11f") + c4[0], *c4[1:]), _blocks(b"\xff\xff\xff\xff\x0f"), _blocks(b"\x1f\xe1\x1f"),
        _blocks(requests[0], params=b"\x00\x02\x00"),
    ]
