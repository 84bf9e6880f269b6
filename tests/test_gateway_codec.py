"""The gateway's JSON codec in process: what Go writes and how its decoder reads a stream."""
from __future__ import annotations

import pytest

from kvstore.api import rpc_pb2 as pb
from kvstore.server.gateway.json_codec import (
    JsonError,
    TooLarge,
    ValueStream,
    encode_message,
    go_base64_error,
    go_string,
    to_message,
)

pytestmark = pytest.mark.inprocess


def test_strings_are_escaped_as_go_1_19_escapes_them():
    assert go_string('<a&b>"\\\n\r\t\b\f\x01\u2028\u2029é') == (
        '"\\u003ca\\u0026b\\u003e\\"\\\\\\n\\r\\t\\u0008\\u000c\\u0001\\u2028\\u2029é"')
    member = pb.MemberListResponse(members=[pb.Member(ID=1, name="<m>")])
    assert encode_message(member) == b'{"members":[{"ID":"1","name":"\\u003cm\\u003e"}]}'


def test_a_stream_of_values_split_anywhere_reads_the_same():
    body = b'{"create_request":{"key":"YQ=="}} \n{"cancel_request":{"watch_id":"0"}}{"a":[1,"\xc3\xa9"]}'
    for cut in range(len(body) + 1):
        values = ValueStream(1 << 20)
        got = []
        for piece in (body[:cut], body[cut:]):
            values.feed(piece)
            while (v := values.next()) is not ValueStream.NEED:
                got.append(v)
        values.end()
        while (v := values.next()) is not ValueStream.EOF:
            got.append(v)
        assert got == [{"create_request": {"key": "YQ=="}}, {"cancel_request": {"watch_id": "0"}},
                       {"a": [1, "é"]}], cut


def test_a_value_larger_than_a_request_is_refused_before_it_ends():
    values = ValueStream(1000)
    values.feed(b'{"key":"' + b"A" * 2000)
    with pytest.raises(TooLarge):
        values.next()


@pytest.mark.parametrize(("text", "at"), [(b"Zm9v", None), (b"Zm9", 0), (b"Zm9v-_", 4), (b"Zg==", None),
                                          (b"Zg=", 3), (b"Zg=x", 2), (b"Zm8=Zg==", 4), (b"Z===", 1),
                                          (b"Zg\n==", None), (b"", None)])
def test_base64_errors_are_where_go_finds_them(text, at):
    assert go_base64_error(text) == at


def test_fields_by_proto_or_json_name_and_integers_quoted_or_not():
    req = to_message({"key": "YQ==", "rangeEnd": "Yg==", "limit": "5", "revision": 3, "sort_order": 1,
                      "keys_only": None, "unknown": [1]}, pb.RangeRequest)
    assert (req.key, req.range_end, req.limit, req.revision, req.sort_order) == (b"a", b"b", 5, 3, 1)
    assert to_message({"key": [97, 98]}, pb.RangeRequest).key == b"ab"
    with pytest.raises(JsonError, match="cannot unmarshal number 256 into Go value of type uint8"):
        to_message({"key": [256]}, pb.RangeRequest)
    values = ValueStream(100)
    values.feed(b'{"limit":1e3}')
    values.end()
    with pytest.raises(JsonError, match="^json: cannot unmarshal number 1e3 into Go value of type int64$"):
        to_message(values.next(), pb.RangeRequest)
