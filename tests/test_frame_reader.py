"""HTTP/2 frame reader: the pure reference and the compiled twin, alone and against each other.

Every behavioural test runs for both implementations; the differential tests feed both the same
random streams (valid frames, oversized frames, garbage) in the same random chunks, with the
same max_frame_size changes, and require the same frames, errors and buffered counts per feed.
"""
import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

# The compiled module must be built (make test installs it): a missing build fails here rather
# than skipping. KVSTORE_NO_EXT only changes what frame_reader_select picks, not what this imports.
import kvstore._ext.h2frames as compiled
from kvstore.h2 import frame_reader as pure, frames as f

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess

IMPLS = [pytest.param(pure, id="pure"), pytest.param(compiled, id="compiled")]
MAX = f.DEFAULT_MAX_FRAME


@pytest.fixture(params=IMPLS)
def fr(request):
    return request.param


def raw(ftype: int, flags: int, sid: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """A frame with any 32-bit stream id (reserved bit included) and optionally a lying length."""
    n = len(payload) if length is None else length
    return struct.pack(">L", n)[1:] + bytes([ftype, flags]) + struct.pack(">L", sid) + payload


def sample_frames(rng: random.Random, count: int, max_len: int = 300) -> list[tuple]:
    out = []
    for _ in range(count):
        n = rng.choice([0, 0, 1, 4, 8, 9, 40, 60, rng.randint(0, max_len)])
        out.append((rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 2**31 - 1),
                    rng.randbytes(n)))
    return out


def encode(frames) -> bytes:
    return b"".join(raw(t, fl, sid, p) for t, fl, sid, p in frames)


def feed_chunks(reader, data: bytes, sizes) -> tuple[list, object]:
    """Feeds data in chunks of the given sizes (the rest in one); all frames and the last error."""
    frames, error, pos = [], None, 0
    for size in list(sizes) + [len(data)]:
        got, error = reader.feed(data[pos:pos + size])
        frames += got
        pos += size
        if pos >= len(data):
            break
    return frames, error


def random_sizes(rng: random.Random, total: int, top: int) -> list[int]:
    sizes, left = [], total
    while left > 0:
        sizes.append(rng.randint(0, min(top, left) if rng.random() < 0.9 else 0))
        left -= sizes[-1]
    return sizes


# -- selection and the error class ----------------------------------------------------------------

def test_select_picks_compiled_unless_disabled():
    from kvstore.h2 import frame_reader_select as sel

    enabled = os.environ.get("KVSTORE_NO_EXT", "") in ("", "0")
    assert sel.COMPILED == enabled
    assert sel.FrameReader is (compiled if enabled else pure).FrameReader
    # one exception class whichever is selected, and it is a connection error
    assert sel.FrameError is pure.FrameError is compiled.FrameError
    assert issubclass(pure.FrameError, f.ConnectionError_)


def test_frame_error_carries_code():
    e = pure.FrameError(f.FRAME_SIZE_ERROR, "too big")
    assert e.code == 6 and str(e) == "too big" and isinstance(e, Exception)


# -- basic framing --------------------------------------------------------------------------------

def test_single_frame_and_fields(fr):
    r = fr.FrameReader(MAX)
    frames, error = r.feed(raw(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, b"abc"))
    assert error is None and r.buffered() == 0
    assert frames == [(f.HEADERS, 0x5, 1, b"abc")]
    t, fl, sid, p = frames[0]
    assert type(t) is int and type(fl) is int and type(sid) is int and type(p) is bytes


def test_matches_frames_builders(fr):
    data = (f.settings({f.MAX_FRAME_SIZE: 16384, f.INITIAL_WINDOW_SIZE: 1 << 20}) + f.SETTINGS_ACK
            + f.window_update(0, 1000) + f.frame(f.PING, 0, 0, b"12345678")
            + f.frame(f.DATA, f.END_STREAM, 3, b"x" * 100))
    frames, error = fr.FrameReader(MAX).feed(data)
    assert error is None
    assert [(t, fl, sid, len(p)) for t, fl, sid, p in frames] == [
        (f.SETTINGS, 0, 0, 12), (f.SETTINGS, f.ACK, 0, 0), (f.WINDOW_UPDATE, 0, 0, 4),
        (f.PING, 0, 0, 8), (f.DATA, f.END_STREAM, 3, 100)]
    assert frames[2][3] == struct.pack(">L", 1000)


def test_zero_length_payloads(fr):
    r = fr.FrameReader(MAX)
    data = raw(f.SETTINGS, f.ACK, 0) + raw(f.DATA, f.END_STREAM, 5) + raw(0xFF, 0, 7)
    frames, error = r.feed(data)
    assert error is None and r.buffered() == 0
    assert frames == [(f.SETTINGS, f.ACK, 0, b""), (f.DATA, f.END_STREAM, 5, b""), (0xFF, 0, 7, b"")]
    # a lone header of a zero-length frame is a complete frame; eight bytes of one are not
    assert r.feed(raw(f.DATA, 0, 9)[:8]) == ([], None) and r.buffered() == 8
    assert r.feed(b"\x09") == ([(f.DATA, 0, 9, b"")], None) and r.buffered() == 0


def test_zero_max_frame_size_allows_only_empty_frames(fr):
    r = fr.FrameReader(0)
    assert r.feed(raw(f.SETTINGS, f.ACK, 0)) == ([(f.SETTINGS, f.ACK, 0, b"")], None)
    frames, error = r.feed(raw(f.PING, 0, 0, b"\0"))
    assert frames == [] and error.code == f.FRAME_SIZE_ERROR


@pytest.mark.parametrize("sid, expected", [
    (0x8000_0000, 0), (0x8000_0001, 1), (0xFFFF_FFFF, 0x7FFF_FFFF), (0x7FFF_FFFF, 0x7FFF_FFFF),
    (0x0102_0304, 0x0102_0304), (0x8102_0304, 0x0102_0304),
])
def test_reserved_bit_is_cleared(fr, sid, expected):
    frames, error = fr.FrameReader(MAX).feed(raw(f.DATA, 0, sid, b"p"))
    assert error is None and frames == [(f.DATA, 0, expected, b"p")]


def test_flags_and_unknown_types_pass_through(fr):
    data = b"".join(raw(t, 255 - t, t, bytes([t])) for t in range(256))
    frames, error = fr.FrameReader(MAX).feed(data)
    assert error is None
    assert frames == [(t, 255 - t, t, bytes([t])) for t in range(256)]


@pytest.mark.parametrize("length", [0x0100, 0x01_0000, 0x01_2345, 0xAB_CDEF, 0xFF_FFFF])
def test_24_bit_lengths(fr, length):
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    data = raw(f.DATA, 0, 1, payload) + raw(f.PING, 0, 0, b"8 bytes!")
    assert data[:3] == length.to_bytes(3, "big")
    r = fr.FrameReader(f.MAX_FRAME_LIMIT)
    assert r.feed(data) == ([(f.DATA, 0, 1, payload), (f.PING, 0, 0, b"8 bytes!")], None)
    # the same in pieces: the header split, then the payload in a few large chunks
    r = fr.FrameReader(f.MAX_FRAME_LIMIT)
    frames, error = feed_chunks(r, data, [2, 5, 100, length // 3, length // 2])
    assert error is None and frames == [(f.DATA, 0, 1, payload), (f.PING, 0, 0, b"8 bytes!")]
    assert r.buffered() == 0


def test_large_frame_fed_in_small_pieces(fr):
    payload = random.Random(1).randbytes(1_000_000)
    data = raw(f.DATA, 0, 3, payload)
    r = fr.FrameReader(f.MAX_FRAME_LIMIT)
    got = []
    for i in range(0, len(data), 4096):
        frames, error = r.feed(data[i:i + 4096])
        assert error is None
        got += frames
        assert r.buffered() == (0 if got else min(i + 4096, len(data)))
    assert got == [(f.DATA, 0, 3, payload)]


def test_many_small_frames_in_one_feed(fr):
    frames = sample_frames(random.Random(7), 20_000, max_len=20)
    got, error = fr.FrameReader(MAX).feed(encode(frames) + b"\0\0")
    assert error is None and got == frames


def test_accepts_bytes_like_input(fr):
    data = raw(f.DATA, 0, 1, b"hello") + raw(f.DATA, 0, 3, b"world")
    for make in (bytes, bytearray, memoryview, lambda b: memoryview(b"xx" + b + b"yy")[2:-2]):
        r = fr.FrameReader(MAX)
        assert r.feed(make(data[:7])) == ([], None)
        assert r.feed(make(data[7:])) == ([(f.DATA, 0, 1, b"hello"), (f.DATA, 0, 3, b"world")], None)


def test_non_bytes_input_raises_and_keeps_state(fr):
    r = fr.FrameReader(MAX)
    assert r.feed(raw(f.DATA, 0, 1, b"abc")[:5]) == ([], None)
    for bad in ("text", 5, None, [1, 2]):
        with pytest.raises(TypeError):
            r.feed(bad)
    assert r.buffered() == 5
    assert r.feed(raw(f.DATA, 0, 1, b"abc")[5:]) == ([(f.DATA, 0, 1, b"abc")], None)


def test_payloads_are_independent_copies(fr):
    data = bytearray(raw(f.DATA, 0, 1, b"first") + raw(f.DATA, 0, 3, b"second")
                     + raw(f.DATA, 0, 5, b"th", length=5))
    r = fr.FrameReader(MAX)
    frames, _ = r.feed(data)
    data[:] = b"\xee" * len(data)             # the caller reuses its buffer
    frames2, _ = r.feed(data[:0] + b"ird")    # completes the held frame
    held = bytearray(raw(f.DATA, 0, 7, b"abcdef"))
    frames3, _ = r.feed(memoryview(held)[:12])
    held[9:] = b"XXXXXX"
    frames4, _ = r.feed(memoryview(held)[12:])
    assert frames + frames2 + frames4 == [(f.DATA, 0, 1, b"first"), (f.DATA, 0, 3, b"second"),
                                          (f.DATA, 0, 5, b"third"), (f.DATA, 0, 7, b"abcXXX")]
    assert frames3 == []
    for *_, p in frames + frames2 + frames4:
        assert type(p) is bytes


# -- splitting ------------------------------------------------------------------------------------

STREAM = [
    (f.SETTINGS, 0, 0, struct.pack(">HL", f.MAX_FRAME_SIZE, 16384)),
    (f.SETTINGS, f.ACK, 0, b""),
    (f.HEADERS, f.END_HEADERS, 1, bytes(range(60))),
    (f.DATA, 0, 1, b"d" * 40),
    (f.DATA, f.END_STREAM, 0x7FFF_FFFF, b""),
    (f.WINDOW_UPDATE, 0, 0, struct.pack(">L", 65535)),
    (f.PING, 0, 0, b"\x01" * 8),
    (f.RST_STREAM, 0, 3, struct.pack(">L", f.CANCEL)),
    (0x42, 0xFF, 9, b"unknown type"),
]


def test_split_at_every_byte_boundary(fr):
    data = encode(STREAM)
    for i in range(len(data) + 1):
        r = fr.FrameReader(MAX)
        first, e1 = r.feed(data[:i])
        assert e1 is None
        assert r.buffered() == i - len(encode(first))
        second, e2 = r.feed(data[i:])
        assert e2 is None and r.buffered() == 0
        assert first + second == STREAM, i


def test_split_at_every_pair_of_boundaries(fr):
    data = encode(STREAM[:5])
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            frames, error = feed_chunks(fr.FrameReader(MAX), data, [i, j - i])
            assert error is None and frames == STREAM[:5], (i, j)


def test_one_byte_at_a_time(fr):
    data = encode(STREAM)
    r = fr.FrameReader(MAX)
    got = []
    for i in range(len(data)):
        frames, error = r.feed(data[i:i + 1])
        assert error is None
        got += frames
        assert r.buffered() == i + 1 - len(encode(got))
    assert got == STREAM


def test_empty_feeds_change_nothing(fr):
    r = fr.FrameReader(MAX)
    assert r.feed(b"") == ([], None)
    assert r.feed(raw(f.DATA, 0, 1, b"abc")[:4]) == ([], None)
    assert r.feed(b"") == ([], None) and r.buffered() == 4
    assert r.feed(raw(f.DATA, 0, 1, b"abc")[4:]) == ([(f.DATA, 0, 1, b"abc")], None)


@pytest.mark.parametrize("seed", range(40))
def test_random_chunks_give_the_same_frames_as_whole(fr, seed):
    rng = random.Random(seed)
    frames = sample_frames(rng, rng.randint(1, 200))
    data = encode(frames)
    assert fr.FrameReader(MAX).feed(data) == (frames, None)
    r = fr.FrameReader(MAX)
    got, error = feed_chunks(r, data, random_sizes(rng, len(data), rng.choice([3, 20, 500, 5000])))
    assert error is None and got == frames and r.buffered() == 0


# -- max frame size -------------------------------------------------------------------------------

@pytest.mark.parametrize("limit", [0, 1, 100, 16_384, 16_777_215])
def test_max_frame_size_exactly_is_accepted(fr, limit):
    payload = b"\xab" * limit
    r = fr.FrameReader(limit)
    assert r.feed(raw(f.DATA, 0, 1, payload)) == ([(f.DATA, 0, 1, payload)], None)


@pytest.mark.parametrize("limit", [0, 1, 100, 16_384, 16_777_214])
def test_max_frame_size_plus_one_is_a_frame_size_error(fr, limit):
    before = [(f.SETTINGS, f.ACK, 0, b""), (f.DATA, 0, 1, b"\x01" * min(limit, 50))]
    bad = raw(f.DATA, 0x1, 0x8000_0003, b"\xcd" * (limit + 1))
    after = raw(f.PING, 0, 0, b"\0" * 8) if limit >= 8 else raw(f.SETTINGS, 1, 0)
    r = fr.FrameReader(limit)
    frames, error = r.feed(encode(before) + bad + after)
    assert frames == before  # the frames before the bad one are still handed out
    assert type(error) is pure.FrameError and isinstance(error, f.ConnectionError_)
    assert error.code == f.FRAME_SIZE_ERROR == 6
    assert str(error) == (f"frame of type 0 on stream 3 has {limit + 1} bytes,"
                          f" more than SETTINGS_MAX_FRAME_SIZE {limit}")
    # the reader is dead: nothing more comes out, the same error is returned
    assert r.buffered() == 0
    assert r.feed(after)[0] == [] and r.feed(b"")[1] is error
    again, error2 = r.feed(encode(before))
    assert again == [] and error2 is error and r.buffered() == 0


def test_oversized_frame_fails_as_soon_as_its_header_arrives(fr):
    r = fr.FrameReader(100)
    bad = raw(f.DATA, 0, 1, length=101)  # only the header: the payload never needs to come
    assert r.feed(raw(f.PING, 0, 0, b"8 bytes!") + bad[:8]) == ([(f.PING, 0, 0, b"8 bytes!")], None)
    assert r.buffered() == 8
    frames, error = r.feed(bad[8:])
    assert frames == [] and error.code == f.FRAME_SIZE_ERROR and r.buffered() == 0


def test_oversized_length_in_a_held_header_split_everywhere(fr):
    data = raw(f.PING, 0, 0, b"8 bytes!") + raw(f.HEADERS, 4, 1, b"h" * 20) + raw(f.DATA, 0, 1, b"x" * 21)
    for i in range(len(data) + 1):
        r = fr.FrameReader(20)
        first, e1 = r.feed(data[:i])
        second, e2 = r.feed(data[i:]) if e1 is None else ([], e1)
        assert first + second == [(f.PING, 0, 0, b"8 bytes!"), (f.HEADERS, 4, 1, b"h" * 20)]
        error = e1 or e2
        assert error is not None and error.code == 6 and "has 21 bytes" in str(error)


def test_max_frame_size_is_settable(fr):
    r = fr.FrameReader(16_384)
    assert r.max_frame_size == 16_384
    big = raw(f.DATA, 0, 1, b"z" * 20_000)
    r.max_frame_size = 20_000
    assert r.max_frame_size == 20_000
    assert r.feed(big) == ([(f.DATA, 0, 1, b"z" * 20_000)], None)
    # lowering it applies to a frame whose header is already held
    assert r.feed(big[:100]) == ([], None)
    r.max_frame_size = 19_999
    frames, error = r.feed(b"")
    assert frames == [] and error.code == 6 and "19999" in str(error)
    # a limit above the 24-bit field is simply never reached
    r = fr.FrameReader(2**40)
    assert r.max_frame_size == 2**40
    assert r.feed(raw(f.DATA, 0, 1, length=0xFF_FFFF)) == ([], None)


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), ("16384", TypeError), (1.5, TypeError),
                                      (None, TypeError)])
def test_bad_max_frame_size(fr, bad, exc):
    with pytest.raises(exc):
        fr.FrameReader(bad)
    r = fr.FrameReader(10)
    with pytest.raises(exc):
        r.max_frame_size = bad
    assert r.max_frame_size == 10


# -- the twins against each other -----------------------------------------------------------------

def run_script(impl, limit: int, data: bytes, steps) -> list:
    """Per-step observations of one reader: steps are chunk sizes or ("max", n) changes."""
    r = impl.FrameReader(limit)
    seen, pos, first_error = [], 0, None
    for step in steps:
        if isinstance(step, tuple):
            r.max_frame_size = step[1]
            seen.append(("max", r.max_frame_size))
            continue
        frames, error = r.feed(data[pos:pos + step])
        pos += step
        if error is not None:
            if first_error is None:
                first_error = error
            assert error is first_error  # a dead reader keeps returning the same error
        seen.append((frames, None if error is None else (type(error), error.code, str(error)),
                     r.buffered()))
    return seen


def random_stream(rng: random.Random) -> tuple[int, bytes]:
    """A max frame size and a byte stream: valid frames only, or with the odd oversized frame,
    or with garbage and headers whose length may be anything mixed in."""
    mode = rng.choice(["valid", "valid", "oversize", "garbage"])
    limit = rng.choice([16_384, 2**24 - 1, 2**30]) if mode == "valid" else \
        rng.choice([0, 8, 50, 300, 16_384])
    parts = []
    for _ in range(rng.randint(0, 80)):
        kind = rng.random()
        if mode == "garbage" and kind < 0.04:
            parts.append(rng.randbytes(rng.randint(1, 30)))
        elif mode == "garbage" and kind < 0.08:
            parts.append(raw(rng.randint(0, 255), 0, rng.getrandbits(32),
                             rng.randbytes(rng.randint(0, 40)), length=rng.getrandbits(24)))
        else:
            n = rng.choice([0, rng.randint(0, 64), rng.randint(0, 400)])
            if mode == "oversize" and n > limit and rng.random() < 0.9:
                n = limit
            parts.append(raw(rng.randint(0, 255), rng.randint(0, 255), rng.getrandbits(32),
                             rng.randbytes(n)))
    return limit, b"".join(parts)


def random_steps(rng: random.Random, total: int) -> list:
    steps, changes = [], rng.random() < 0.3
    for size in random_sizes(rng, total, rng.choice([1, 9, 64, 1000, 20_000])):
        if changes and rng.random() < 0.05:
            steps.append(("max", rng.choice([0, 9, 100, 400, 16_384, 2**24 - 1])))
        steps.append(size)
    return steps + [0, 5]


@pytest.mark.parametrize("seed", range(300))
def test_twins_agree_on_seeded_streams(seed):
    rng = random.Random(seed)
    limit, data = random_stream(rng)
    steps = random_steps(rng, len(data))
    assert run_script(pure, limit, data, steps) == run_script(compiled, limit, data, steps)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.sampled_from([0, 1, 9, 40, 16_384, 2**24 - 1, 2**24]),
       data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=12))
def test_twins_agree_on_garbage(limit, data, cuts):
    steps = [b - a for a, b in zip([0] + sorted(cuts), sorted(cuts) + [len(data)]) if b >= a]
    assert run_script(pure, limit, data, steps) == run_script(compiled, limit, data, steps)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255),
                                 st.integers(0, 2**32 - 1), st.binary(max_size=120)), max_size=30),
       limit=st.sampled_from([0, 16, 120, 16_384]), rnd=st.randoms(use_true_random=False))
def test_twins_agree_on_frame_sequences(frames, limit, rnd):
    data = b"".join(raw(*fr_) for fr_ in frames)
    steps = random_steps(rnd, len(data))
    got = run_script(pure, limit, data, steps)
    assert got == run_script(compiled, limit, data, steps)
    # and without limit changes, what comes out is what went in, up to the first oversize frame
    plain = [s for s in steps if not isinstance(s, tuple)]
    out = [fr_ for frames_, _, _ in run_script(pure, limit, data, plain) for fr_ in frames_]
    expect = []
    for t, fl, sid, p in frames:
        if len(p) > limit:
            break
        expect.append((t, fl, sid & 0x7FFF_FFFF, p))
    assert out == expect


class _Batch(list):
    """A list subclass, as a ResponseBatch is."""


@pytest.mark.parametrize("seed", range(40))
def test_grpc_data_frames_twins_agree_and_frame_each_message(seed):
    rng = random.Random(seed)
    messages = [rng.randbytes(rng.choice([0, 1, 7, 300, 20_000])) for _ in range(rng.randint(0, 8))]
    sid = rng.randint(1, 2**31 - 1)
    size = sum(5 + len(m) for m in messages)
    max_frame = rng.choice([1, 5, 6, 100, 16_384, 1 << 20])
    made = [impl(sid, _Batch(messages), size, max_frame)
            for impl in (f.grpc_data_frames, compiled.grpc_data_frames)]
    assert made[0] == made[1]
    frames, err = pure.FrameReader(1 << 24).feed(made[0])
    assert err is None
    assert {(t, fl, s) for t, fl, s, _ in frames} <= {(f.DATA, 0, sid)}
    assert len(frames) == -(-size // max_frame)  # as few as the frame size allows
    assert all(len(p) == max_frame for _, _, _, p in frames[:-1])
    payload = b"".join(p for _, _, _, p in frames)
    assert payload == f.grpc_payload(messages)
    out = []
    while payload:  # each message behind its prefix: uncompressed, its length
        flag, n = struct.unpack(">BL", payload[:5])
        assert flag == 0
        out.append(payload[5:5 + n])
        payload = payload[5 + n:]
    assert out == messages


@pytest.mark.parametrize("impl", [f.grpc_data_frames, compiled.grpc_data_frames])
def test_grpc_data_frames_refuses_a_wrong_size(impl):
    with pytest.raises(ValueError, match="the messages take 8 bytes, not 9"):
        impl(1, [b"abc"], 9, 16_384)
    with pytest.raises(ValueError):
        impl(1, [b"abc"], 8, 0)  # no frame holds anything
    with pytest.raises(ValueError):
        impl(1, [b"abc"], 8, 1 << 24)  # past a frame's 24-bit length


@pytest.mark.parametrize("seed", range(20))
def test_response_frames_twins_agree_and_make_three_frames(seed):
    rng = random.Random(seed)
    head, prefix, trailers = rng.randbytes(rng.randint(0, 40)), rng.randbytes(5), rng.randbytes(9)
    body = rng.randbytes(rng.choice([0, 1, 300, 16_000]))
    sid = rng.randint(1, 2**31 - 1)
    made = [impl(sid, head, prefix, body, trailers)
            for impl in (f.response_frames, compiled.response_frames)]
    assert made[0] == made[1]
    frames, err = pure.FrameReader(1 << 24).feed(made[0])
    assert err is None
    assert frames == [(f.HEADERS, f.END_HEADERS, sid, head), (f.DATA, 0, sid, prefix + body),
                      (f.HEADERS, f.END_HEADERS | f.END_STREAM, sid, trailers)]
