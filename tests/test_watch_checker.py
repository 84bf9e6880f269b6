"""The watch checker (tests/watch_checker.py) on hand-made streams: a correct stream passes, and
each planted fault (a gap, a duplicate, an event out of order, a Txn split over two responses,
a progress notification ahead of events, ...) is caught."""
from __future__ import annotations

from kvstore.api import kv_pb2, rpc_pb2 as pb
from watch_checker import PUT, Event, Reference, StreamChecker, WatchChecker, WriteLog

ALL = (b"a", b"\x00")  # key, range_end: every key from "a" on


def ev(rev: int, key: bytes, value: bytes = b"", delete: bool = False):
    kv = kv_pb2.KeyValue(key=key, mod_revision=rev)
    if not delete:
        kv.value, kv.create_revision, kv.version = value or b"v%d" % rev, rev, 1
    return kv_pb2.Event(type=kv_pb2.Event.DELETE if delete else kv_pb2.Event.PUT, kv=kv)


def resp(rev: int, *events, watch_id: int = 0, **kw) -> pb.WatchResponse:
    return pb.WatchResponse(header=pb.ResponseHeader(revision=rev), watch_id=watch_id,
                            events=list(events), **kw)


def created(rev: int, watch_id: int = 0) -> pb.WatchResponse:
    return resp(rev, watch_id=watch_id, created=True)


def progress(rev: int, watch_id: int = 0) -> pb.WatchResponse:
    return resp(rev, watch_id=watch_id)


def watch(*responses, key=ALL[0], range_end=ALL[1], start=0) -> WatchChecker:
    w = WatchChecker(key, range_end, start)
    for r in responses:
        w.feed(r)
    return w


def bad(checker, *needles) -> str:
    assert not checker.ok, "expected a violation"
    text = checker.report()
    for n in needles:
        assert n in text, f"{n!r} not in report:\n{text}"
    return text


def good(checker) -> None:
    assert checker.ok, checker.report()


# revisions 2..7: a put, a Txn of three ops at 3, puts and a delete
HISTORY = [ev(2, b"a1"), ev(3, b"a2"), ev(3, b"b1"), ev(3, b"a1", delete=True), ev(4, b"c1"),
           ev(5, b"a2"), ev(6, b"b1", delete=True), ev(7, b"a3")]
REF = Reference.from_events([Event.from_pb(e) for e in HISTORY], 2, 7)


def correct_stream() -> list[pb.WatchResponse]:
    return [created(1), resp(2, HISTORY[0]), resp(3, *HISTORY[1:4]), progress(3), resp(4, HISTORY[4]),
            resp(5, HISTORY[5]), resp(6, HISTORY[6]), progress(6), resp(7, HISTORY[7]), progress(7)]


# -- correct streams --------------------------------------------------------------------------
def test_a_correct_stream_passes_and_matches_the_reference():
    w = watch(*correct_stream())
    good(w)
    assert w.start == 2 and w.covered == 7 and w.progress == 7 and len(w.events) == 8
    assert w.expect(REF, 7) and w.require_every_revision(7)
    good(w)


def test_catch_up_batches_of_several_revisions_are_legal():
    # a watch from the past gets revisions 2..5 in one response (etcd's catch-up batch)
    w = watch(created(7), resp(7, *HISTORY[:6]), resp(7, *HISTORY[6:]), start=2)
    good(w)
    assert w.expect(REF, 7)


def test_a_sub_range_watch_resumed_from_any_revision_matches_the_reference():
    for x in range(2, 8):
        want = [e for e in HISTORY if e.kv.mod_revision >= x and e.kv.key.startswith(b"a")]
        by_rev: dict[int, list] = {}
        for e in want:
            by_rev.setdefault(e.kv.mod_revision, []).append(e)
        w = watch(created(7), *(resp(r, *es) for r, es in by_rev.items()), progress(7),
                  key=b"a", range_end=b"b", start=x)
        assert w.expect(REF, 7), w.report()


def test_fragments_of_one_revision_count_as_one_response():
    w = watch(created(2), resp(3, *HISTORY[1:3], fragment=True), resp(3, HISTORY[3]),
              resp(4, HISTORY[4]), start=3)
    good(w)
    assert [e.revision for e in w.events] == [3, 3, 3, 4]


def test_stream_routes_by_watch_id_and_progress_requests_reach_every_watch():
    s = StreamChecker()
    a = s.add(WatchChecker(b"a", b"b"))
    b = s.add(WatchChecker(b"c1"))
    for r in [created(1, 0), created(1, 1), resp(2, HISTORY[0], watch_id=0),
              resp(4, HISTORY[4], watch_id=1), progress(5, watch_id=-1), resp(7, HISTORY[7], watch_id=0)]:
        s.feed(r)
    assert s.ok, s.report()
    assert a.progress == b.progress == 5 and b.covered == 5 and a.covered == 7


# -- planted faults ---------------------------------------------------------------------------
def test_gap_is_caught_against_the_reference():
    stream = correct_stream()
    del stream[5]   # revision 5 never delivered
    w = watch(*stream)
    good(w)   # the stream alone cannot tell
    assert not w.expect(REF, 7)
    bad(w, "gap: 1 event(s) never delivered, at revisions 5")
    w = watch(*stream)
    assert not w.require_every_revision(7)
    bad(w, "gap: no event at revision(s) 5")


def test_gap_at_the_end_is_caught():
    w = watch(*correct_stream()[:-3])  # nothing after revision 6, no progress to 7
    assert not w.expect(REF, 7)
    bad(w, "covered revisions only through 6, not 7", "gap: 1 event(s) never delivered, at revisions 7")


def test_duplicate_is_caught():
    stream = correct_stream()
    stream.insert(5, resp(4, HISTORY[4]))  # revision 4 delivered again
    bad(watch(*stream), "PUT b'c1'", "duplicate")


def test_duplicate_within_one_response_is_caught():
    bad(watch(created(1), resp(2, HISTORY[0], HISTORY[0])), "duplicate")


def test_out_of_order_event_is_caught():
    stream = correct_stream()
    stream[4], stream[5] = stream[5], stream[4]  # revision 5 before 4
    bad(watch(*stream), "@4: out of order, after an event of revision 5")


def test_out_of_order_within_one_response_is_caught():
    bad(watch(created(1), resp(5, HISTORY[5], HISTORY[4])), "out of order")


def test_txn_split_over_two_responses_is_caught():
    stream = correct_stream()
    stream[2:3] = [resp(3, *HISTORY[1:3]), resp(3, HISTORY[3])]
    bad(watch(*stream), "revision 3 split over two responses")


def test_progress_notification_ahead_of_events_is_caught():
    stream = correct_stream()
    stream.insert(4, progress(5))  # vouches for 4 and 5 before they are delivered
    text = bad(watch(*stream), "after a progress notification at revision 5")
    assert "@4" in text and "@5" in text


def test_progress_request_answer_ahead_of_events_is_caught_on_every_watch_of_the_stream():
    s = StreamChecker()
    s.add(WatchChecker(b"a", b"b"))
    s.add(WatchChecker(b"b", b"c"))
    for r in [created(1, 0), created(1, 1), resp(2, HISTORY[0], watch_id=0), progress(3, watch_id=-1),
              resp(3, HISTORY[2], watch_id=1)]:
        s.feed(r)
    assert not s.ok
    assert "after a progress notification at revision 3" in s.report()


def test_event_before_the_start_revision_is_caught():
    bad(watch(created(7), resp(7, *HISTORY[:2]), start=3), "before the watch's start revision 3")
    # from now: the start is the created response's revision + 1
    bad(watch(created(3), resp(3, HISTORY[1])), "before the watch's start revision 4")


def test_resumed_watch_that_starts_late_or_early_is_caught():
    late = watch(created(7), resp(7, *HISTORY[4:]), progress(7), start=3)  # skips revision 3
    assert not late.expect(REF, 7)
    bad(late, "gap", "at revisions 3")
    early = watch(created(7), resp(7, *HISTORY[:]), start=3)
    bad(early, "before the watch's start revision 3")


def test_wrong_event_content_is_caught():
    wrong = ev(5, b"a2", b"not-this")
    w = watch(created(1), resp(4, *HISTORY[:5]), resp(5, wrong), resp(7, *HISTORY[6:]), start=2)
    good(w)
    assert not w.expect(REF, 7)
    bad(w, "the reference does not have", "not-this", "the reference has PUT b'a2'")


def test_event_outside_the_range_is_caught():
    bad(watch(created(1), resp(4, HISTORY[4]), key=b"a", range_end=b"b"), "outside the watched range")


def test_header_below_events_is_caught():
    bad(watch(created(1), resp(1, HISTORY[0])), "header revision 1 is below its events' 2")


def test_events_after_a_cancel_are_caught():
    w = watch(created(1), resp(2, HISTORY[0]), resp(2, canceled=True), resp(3, HISTORY[1]))
    bad(w, "after the watch was canceled")


def test_compaction_cancel():
    # needed revision 2 < compaction 5: correct; its events stop there
    w = watch(created(7), resp(0, compact_revision=5, canceled=True), start=2)
    good(w)
    assert w.canceled and w.compact_revision == 5
    # needed revision 6 >= 5: the history it needs is there, the cancel is wrong
    bad(watch(created(7), resp(0, compact_revision=5, canceled=True), start=6), "still available")
    bad(watch(created(7), resp(0, compact_revision=5, canceled=True), resp(7, *HISTORY), start=2),
        "after the watch was canceled")


# -- the reference from the writers' acknowledgements ------------------------------------------
def writes_for_history() -> WriteLog:
    log = WriteLog()
    log.ok(log.call([("put", b"a1", b"v2")]), 2, [])
    log.ok(log.call([("put", b"a2", b"v3"), ("put", b"b1", b"v3"), ("delete", b"a1", b"")]), 3, [[b"a1"]])
    log.ok(log.call([("put", b"c1", b"v4")]), 4, [])
    log.unknown(log.call([("put", b"a2", b"v5")]))          # in flight at a crash; it did apply
    log.ok(log.call([("delete", b"b", b"c")]), 6, [[b"b1"]])
    log.ok(log.call([("delete", b"zz", b"")]), 6, [[]])     # deleted nothing: no revision
    log.ok(log.call([("put", b"a3", b"v7")]), 7, [])
    log.unknown(log.call([("put", b"a4", b"never")]))       # in flight at a crash; did not apply
    return log


def test_write_log_validates_a_correct_watch():
    w = watch(*correct_stream(), start=2)
    assert writes_for_history().validate(w, upto=7) == []


def test_write_log_catches_a_lost_acknowledged_write_and_a_wrong_one():
    stream = correct_stream()
    del stream[4]  # revision 4, acknowledged, missing
    out = writes_for_history().validate(watch(*stream, start=2), upto=7)
    assert any("gap: no event at revision(s) 4" in v for v in out), out
    assert any("acknowledged write(s) missing" in v for v in out), out
    stream = correct_stream()
    stream[5] = resp(5, ev(5, b"a2", b"something else"))
    out = writes_for_history().validate(watch(*stream, start=2), upto=7)
    assert any("revision 5" in v and "match no write" in v for v in out), out
    stream = correct_stream()
    stream[2] = resp(3, *HISTORY[1:3])  # the Txn's delete is missing
    out = writes_for_history().validate(watch(*stream, start=2), upto=7)
    assert any("revision 3: events" in v and "acknowledged with it" in v for v in out), out


def test_write_log_across_a_resumed_watch():
    first = watch(*correct_stream()[:4], start=2)       # revisions 2..3, then the stream broke
    second = watch(created(7), resp(7, *HISTORY[4:]), start=first.covered + 1)
    assert writes_for_history().validate(first, second, upto=7) == []
    ref = Reference.from_watch(first, second, upto=7)
    assert ref.by_rev == REF.by_rev
    skipped = watch(created(7), resp(7, *HISTORY[5:]), start=first.covered + 2)
    out = writes_for_history().validate(first, skipped, upto=7)
    assert any("gap: no event at revision(s) 4" in v for v in out), out


def test_unknown_write_explains_one_revision_only():
    log = writes_for_history()
    twice = correct_stream()
    twice.insert(9, resp(8, ev(8, b"a2", b"v5")))  # the unknown write's events again, at 8
    out = log.validate(watch(*twice, start=2), upto=8)
    assert any("revision 8" in v for v in out), out
    assert Event.from_pb(HISTORY[0]).type == PUT


def test_a_rejected_write_explains_nothing_and_revisions_are_acknowledged_once():
    log = writes_for_history()
    log.rejected(log.writes[3])  # the write that made revision 5 was, it says, rejected
    out = log.validate(watch(*correct_stream(), start=2), upto=7)
    assert any("revision 5" in v and "match no write" in v for v in out), out
    log = writes_for_history()
    log.ok(log.call([("put", b"zz", b"dup")]), 4, [])
    out = log.validate(watch(*correct_stream(), start=2), upto=7)
    assert any("two writes acknowledged with revision 4" in v for v in out), out


def test_write_log_without_every_revision_ignores_other_writers_revisions():
    log = writes_for_history()
    stream = correct_stream()
    del stream[4]  # revision 4: as if written by someone the log does not know, outside the watch
    log.writes.pop(2)
    out = log.validate(watch(*stream, start=2), upto=7)
    assert any("gap: no event at revision(s) 4" in v for v in out), out
    assert log.validate(watch(*stream, start=2), upto=7, every_revision=False) == []
