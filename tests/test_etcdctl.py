"""End to end: Debian's etcdctl 3.4 (a subprocess) against a real kvstore server.

Every command also runs against Debian's real etcd (when installed) and must give the same
exit code, stdout and error text there, apart from cluster/member ids and raft terms
(see tests/etcdctl.py). The explicit assertions on values, revisions and counts are thus
checked against etcd as well as against kvstore.

One kvstore and one etcd serve the whole module; each test uses its own key prefix, and
keys starting with "~" are reserved to the --from-key tests (nothing else sorts after them).

Known kvstore bugs have tests named ``test_kvstore_bug_*``: they fail until kvstore is fixed.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from etcdctl import Differential, Etcdctl, b64, kvs

pytestmark = pytest.mark.timeout(120)

COMPACTED = "Error: etcdserver: mvcc: required revision has been compacted"
FUTURE = "Error: etcdserver: mvcc: required revision is a future revision"
NO_KEY = "Error: etcdserver: key is not provided"
LEASE_NOT_FOUND = "Error: etcdserver: requested lease not found"
KEY_NOT_FOUND = "Error: etcdserver: key not found"
DUPLICATE = "Error: etcdserver: duplicate key given in txn request"
TOO_LARGE = "Error: etcdserver: request is too large"
TXN_PROMPTS = ["compares:", "success requests (get, put, del):",
               "failure requests (get, put, del):"]

# etcdctl's exit codes (etcdctl/ctlv3/command/error.go).
EXIT_ERROR, EXIT_INVALID_INPUT, EXIT_BAD_FEATURE, EXIT_BAD_ARGS = 1, 3, 4, 128


# -- fixtures -----------------------------------------------------------------------------------

from etcdctl import ctl, kv_server, ref_server  # noqa: F401,E402  (module-scoped pair of servers)


def rev_of_put(ctl: Differential, key: str, value: str) -> int:
    """Puts key=value; returns the revision the put created."""
    return ctl.json("put", key, value)["header"]["revision"]


def txn_input(compares=(), success=(), failure=()) -> str:
    """etcdctl txn's stdin: three blocks of lines, each ended by an empty line."""
    return "".join("\n".join(block) + ("\n" if block else "") + "\n"
                   for block in (compares, success, failure))


# -- put / get ----------------------------------------------------------------------------------

def test_put_get_roundtrip_revisions(ctl):
    base = ctl.kv.revision()
    assert ctl.ok("put", "pg/k", "v1").stdout == "OK\n"
    assert ctl.ok("get", "pg/k").lines == ["pg/k", "v1"]

    r1 = ctl.json("get", "pg/k")
    assert r1["header"]["revision"] == base + 1
    assert kvs(r1) == [{"key": "pg/k", "value": "v1", "create": base + 1, "mod": base + 1,
                        "version": 1, "lease": 0}]
    assert r1["count"] == 1

    put2 = ctl.json("put", "pg/k", "v2")
    assert put2["header"]["revision"] == base + 2
    assert "prev_kv" not in put2
    [kv] = kvs(ctl.json("get", "pg/k"))
    assert (kv["value"], kv["create"], kv["mod"], kv["version"]) == ("v2", base + 1, base + 2, 2)

    # --prev-kv: the previous pair is printed after OK (and returned in json).
    assert ctl.ok("put", "pg/k", "v3", "--prev-kv").lines == ["OK", "pg/k", "v2"]
    put4 = ctl.json("put", "pg/k", "v4", "--prev-kv")
    assert put4["header"]["revision"] == base + 4
    assert b64(put4["prev_kv"]["value"]) == "v3"
    assert put4["prev_kv"]["version"] == 3 and put4["prev_kv"]["mod_revision"] == base + 3
    # A new key has no prev kv: just OK.
    assert ctl.ok("put", "pg/new", "n", "--prev-kv").lines == ["OK"]

    # -w fields: etcd's field names, one per line.
    fields = ctl.ok("get", "pg/k", "-w", "fields").lines
    assert f'"Revision" : {base + 5}' in fields
    assert '"Key" : "pg/k"' in fields and '"Value" : "v4"' in fields
    assert f'"CreateRevision" : {base + 1}' in fields and '"Version" : 4' in fields
    assert '"Count" : 1' in fields and '"More" : false' in fields


def test_put_value_from_stdin_dash_value_and_ignore_flags(ctl):
    # One argument: the value is read from stdin, verbatim (newlines included).
    assert ctl.ok("put", "pv/multi", input="line1\nline2\n").stdout == "OK\n"
    [kv] = kvs(ctl.json("get", "pv/multi"))
    assert kv["value"] == "line1\nline2\n"
    # A value starting with '-' after "--".
    ctl.ok("put", "--", "pv/dash", "-v")
    assert ctl.ok("get", "pv/dash", "--print-value-only").stdout == "-v\n"
    # Non-ASCII values round-trip byte for byte.
    ctl.ok("put", "pv/u", "ünï")
    assert kvs(ctl.json("get", "pv/u"))[0]["value"] == "ünï"
    # --ignore-value keeps the value but makes a new revision.
    before = ctl.kv.revision()
    ctl.ok("put", "pv/u", "--ignore-value")
    [kv] = kvs(ctl.json("get", "pv/u"))
    assert (kv["value"], kv["version"], kv["mod"]) == ("ünï", 2, before + 1)
    # --ignore-lease on a key without a lease.
    ctl.ok("put", "pv/u", "new", "--ignore-lease")
    [kv] = kvs(ctl.json("get", "pv/u"))
    assert (kv["value"], kv["version"], kv["lease"]) == ("new", 3, 0)


def test_get_prefix_range_and_missing(ctl):
    for k in ("gp/a", "gp/b", "gp/c", "gp/d", "gpx", "gp0"):
        ctl.ok("put", k, "val-" + k)
    assert ctl.ok("get", "gp/", "--prefix").lines == [
        "gp/a", "val-gp/a", "gp/b", "val-gp/b", "gp/c", "val-gp/c", "gp/d", "val-gp/d"]
    # [key, range_end): the end is excluded.
    assert ctl.ok("get", "gp/a", "gp/c", "--keys-only").stdout == "gp/a\n\ngp/b\n\n"
    # A missing key: nothing printed, success; json has a header only.
    assert ctl.ok("get", "gp/zz").stdout == ""
    missing = ctl.json("get", "gp/zz")
    assert "kvs" not in missing and "count" not in missing
    assert missing["header"]["revision"] == ctl.kv.revision()


def test_get_limit_and_counts(ctl):
    for k in "abcd":
        ctl.ok("put", f"gl/{k}", k)
    assert ctl.ok("get", "gl/", "--prefix", "--limit", "2").lines == ["gl/a", "a", "gl/b", "b"]
    limited = ctl.json("get", "gl/", "--prefix", "--limit", "2")
    assert [kv["key"] for kv in kvs(limited)] == ["gl/a", "gl/b"]
    assert limited["more"] is True and limited["count"] == 4  # count ignores the limit
    whole = ctl.json("get", "gl/", "--prefix", "--limit", "4")
    assert "more" not in whole and whole["count"] == 4
    # A negative limit is no limit.
    assert len(ctl.ok("get", "gl/", "--prefix", "--limit=-1").lines) == 8
    # Count without values: --keys-only in json.
    keys = ctl.json("get", "gl/", "--prefix", "--keys-only")
    assert keys["count"] == 4 and all("value" not in kv for kv in keys["kvs"])
    # etcdctl 3.4 has no --count-only (it came in 3.5): etcdctl itself rejects it.
    r = ctl.fail("get", "gl/", "--prefix", "--count-only")
    assert r.returncode == EXIT_ERROR
    assert "Error: unknown flag: --count-only" in r.error


def test_get_sort_by_and_order(ctl):
    # Values and versions chosen so that every sort target gives a different order.
    ctl.ok("put", "gs/b", "3")   # create order: b, c, a
    ctl.ok("put", "gs/c", "1")
    ctl.ok("put", "gs/a", "2")
    ctl.ok("put", "gs/c", "1")   # c: version 2; mod order: b, a, c
    ctl.ok("put", "gs/c", "1")   # c: version 3
    ctl.ok("put", "gs/a", "2")   # a: version 2; mod order: b, c, a

    def keys(*flags):
        return ctl.ok("get", "gs/", "--prefix", "--keys-only", *flags).stdout.split()

    assert keys() == ["gs/a", "gs/b", "gs/c"]
    assert keys("--order=descend") == ["gs/c", "gs/b", "gs/a"]
    assert keys("--sort-by=key", "--order=ascend") == ["gs/a", "gs/b", "gs/c"]
    assert keys("--sort-by=value") == ["gs/c", "gs/a", "gs/b"]  # ascend by default
    assert keys("--sort-by=value", "--order=descend") == ["gs/b", "gs/a", "gs/c"]
    assert keys("--sort-by=create") == ["gs/b", "gs/c", "gs/a"]
    assert keys("--sort-by=create", "--order=descend") == ["gs/a", "gs/c", "gs/b"]
    assert keys("--sort-by=modify") == ["gs/b", "gs/c", "gs/a"]
    assert keys("--sort-by=version", "--order=descend") == ["gs/c", "gs/a", "gs/b"]
    assert keys("--sort-by=modify", "--order=descend", "--limit=1") == ["gs/a"]
    # etcd's quirk, kept: with a sort target but no order the server reads limit+1 keys in
    # key order first, then sorts and truncates (only an explicit order lifts the limit).
    assert keys("--sort-by=value", "--limit=1") == ["gs/a"]  # of a, b: a=2 < b=3
    assert keys("--sort-by=value", "--order=ascend", "--limit=1") == ["gs/c"]

    r = ctl.fail("get", "gs/", "--prefix", "--sort-by=bogus")
    assert (r.returncode, r.error) == (EXIT_BAD_FEATURE, "Error: bad sort target bogus")
    r = ctl.fail("get", "gs/", "--prefix", "--order=sideways")
    assert (r.returncode, r.error) == (EXIT_BAD_FEATURE, "Error: bad sort order sideways")


def test_get_keys_only_print_value_only_and_hex(ctl):
    ctl.ok("put", "gk/one", "1")
    ctl.ok("put", "gk/two", "2")
    assert ctl.ok("get", "gk/", "--prefix", "--keys-only").stdout == "gk/one\n\ngk/two\n\n"
    assert ctl.ok("get", "gk/", "--prefix", "--print-value-only").stdout == "1\n2\n"
    keys_only = ctl.json("get", "gk/", "--prefix", "--keys-only")
    assert [(kv["key"], kv["value"]) for kv in kvs(keys_only)] == [("gk/one", ""), ("gk/two", "")]
    assert ctl.ok("get", "gk/one", "--hex").lines == [r"\x67\x6b\x2f\x6f\x6e\x65", r"\x31"]


def test_get_and_del_non_utf8_keys(ctl):
    # "\udcff" is byte 0xff on the command line (surrogateescape). etcdctl's prefix end for
    # an all-0xff prefix is "\0" (every key from it on), computed client side.
    try:
        ctl.ok("put", "\udcff\udcfe", "hi")
        ctl.ok("put", "\udcff\udcff", "hi2")
        assert ctl.ok("get", "\udcff", "--prefix", "--hex").lines == [
            r"\xff\xfe", r"\x68\x69", r"\xff\xff", r"\x68\x69\x32"]
        assert ctl.ok("get", "\udcff\udcff", "--prefix", "--print-value-only").stdout == "hi2\n"
    finally:
        assert ctl.ok("del", "\udcff", "--prefix").stdout == "2\n"


def test_get_at_revisions(ctl):
    r1 = rev_of_put(ctl, "gr/k", "v1")
    r2 = rev_of_put(ctl, "gr/k", "v2")
    r3 = ctl.json("del", "gr/k")["header"]["revision"]
    r4 = rev_of_put(ctl, "gr/k", "v3")
    assert r1 < r2 < r3 < r4 == r1 + 3

    def at(rev):
        return ctl.ok("get", "gr/k", "--rev", str(rev)).lines

    assert at(r1) == ["gr/k", "v1"]
    assert at(r2) == ["gr/k", "v2"]
    assert at(r3) == []  # deleted at r3
    assert at(r4) == ["gr/k", "v3"]
    assert at(0) == ["gr/k", "v3"]  # 0: the current revision
    assert at(-1) == ["gr/k", "v3"]  # so is any negative one
    [old] = kvs(ctl.json("get", "gr/k", "--rev", str(r2)))
    assert (old["create"], old["mod"], old["version"]) == (r1, r2, 2)
    [new] = kvs(ctl.json("get", "gr/k"))
    assert (new["create"], new["mod"], new["version"]) == (r4, r4, 1)  # a new generation
    # The header reports the current revision, not the one read at.
    assert ctl.json("get", "gr/k", "--rev", str(r1))["header"]["revision"] == r4

    r = ctl.fail("get", "gr/k", "--rev", str(r4 + 1000))
    assert (r.returncode, r.error) == (EXIT_ERROR, FUTURE)


def test_get_from_key(ctl):
    try:
        _get_from_key(ctl)
    finally:
        ctl.kv.run("del", "~fromkey/", "--prefix")
        if ctl.ref is not None:
            ctl.ref.run("del", "~fromkey/", "--prefix")


def _get_from_key(ctl):
    for k in "abc":
        ctl.ok("put", f"~fromkey/{k}", k)
    assert ctl.ok("get", "~fromkey/b", "--from-key").lines == [
        "~fromkey/b", "b", "~fromkey/c", "c"]
    assert ctl.ok("get", "~fromkey/a", "--from-key", "--keys-only", "--limit", "2"
                  ).stdout == "~fromkey/a\n\n~fromkey/b\n\n"
    resp = ctl.json("get", "~fromkey/", "--from-key", "--limit", "1")
    assert resp["count"] == 3 and resp["more"] is True
    # An empty key with --from-key is every key ("\0" onwards).
    everything = ctl.json("get", "", "--from-key", "--keys-only")
    assert {"~fromkey/a", "~fromkey/b", "~fromkey/c"} <= {kv["key"] for kv in kvs(everything)}
    assert everything["count"] == len(everything["kvs"])
    ctl.ok("del", "~fromkey/", "--prefix")


def test_get_bad_input(ctl):
    r = ctl.fail("get", "")
    assert (r.returncode, r.error) == (EXIT_ERROR, NO_KEY)  # sent; the server refuses it
    r = ctl.fail("get")
    assert r.returncode == EXIT_BAD_ARGS
    assert r.error == "Error: get command needs one argument as key and an optional argument as range_end"
    r = ctl.fail("get", "gb/", "--prefix", "--from-key")
    assert r.returncode == EXIT_BAD_ARGS
    assert "`--prefix` and `--from-key` cannot be set at the same time" in r.error
    r = ctl.fail("get", "gb/a", "gb/z", "--prefix")
    assert r.returncode == EXIT_BAD_ARGS and "too many arguments" in r.error
    r = ctl.fail("get", "gb/a", "-w", "table")
    assert (r.returncode, r.error) == (EXIT_BAD_FEATURE, "Error: table not supported as output format")


# -- del ----------------------------------------------------------------------------------------

def test_del_single_and_revisions(ctl):
    put = rev_of_put(ctl, "ds/k", "v")
    deleted = ctl.json("del", "ds/k")
    assert deleted["deleted"] == 1 and deleted["header"]["revision"] == put + 1
    assert ctl.ok("get", "ds/k").stdout == ""
    # Deleting nothing prints 0 and does not make a revision.
    assert ctl.ok("del", "ds/k").stdout == "0\n"
    nothing = ctl.json("del", "ds/k")
    assert "deleted" not in nothing and nothing["header"]["revision"] == put + 1
    assert rev_of_put(ctl, "ds/k", "again") == put + 2
    assert ctl.ok("del", "ds/k").stdout == "1\n"


def test_del_prev_kv(ctl):
    ctl.ok("put", "dp/a", "1")
    ctl.ok("put", "dp/b", "2")
    ctl.ok("put", "dp/b", "22")
    assert ctl.ok("del", "dp/a", "--prev-kv").lines == ["1", "dp/a", "1"]
    resp = ctl.json("del", "dp/b", "--prev-kv")
    assert resp["deleted"] == 1
    [prev] = kvs({"kvs": resp["prev_kvs"]})
    assert (prev["key"], prev["value"], prev["version"]) == ("dp/b", "22", 2)
    assert ctl.ok("del", "dp/", "--prefix", "--prev-kv").stdout == "0\n"


def test_del_prefix_and_range(ctl):
    for k in ("dr/a/1", "dr/a/2", "dr/a/3", "dr/ab", "dr/b"):
        ctl.ok("put", k, k[-1])
    before = ctl.kv.revision()
    assert ctl.ok("del", "dr/a/", "--prefix", "--prev-kv").lines == [
        "3", "dr/a/1", "1", "dr/a/2", "2", "dr/a/3", "3"]
    assert ctl.kv.revision() == before + 1  # one revision for the whole range
    assert ctl.ok("get", "dr/", "--prefix", "--keys-only").stdout == "dr/ab\n\ndr/b\n\n"
    # [key, range_end)
    assert ctl.ok("del", "dr/ab", "dr/b").stdout == "1\n"
    assert ctl.ok("get", "dr/", "--prefix", "--keys-only").stdout == "dr/b\n\n"
    assert ctl.ok("del", "dr/", "--prefix").stdout == "1\n"


def test_del_from_key(ctl):
    for k in "abc":
        ctl.ok("put", f"~delfrom/{k}", k)
    assert ctl.ok("del", "~delfrom/b", "--from-key", "--prev-kv").lines == [
        "2", "~delfrom/b", "b", "~delfrom/c", "c"]
    assert ctl.ok("get", "~delfrom/", "--prefix").lines == ["~delfrom/a", "a"]
    assert ctl.ok("del", "~delfrom/", "--from-key").stdout == "1\n"


def test_del_bad_input(ctl):
    r = ctl.fail("del", "")
    assert (r.returncode, r.error) == (EXIT_ERROR, NO_KEY)
    r = ctl.fail("del")
    assert r.returncode == EXIT_BAD_ARGS
    assert r.error == "Error: del command needs one argument as key and an optional argument as range_end"


def test_put_bad_input(ctl):
    before = ctl.kv.revision()
    r = ctl.fail("put", "", "v")
    assert (r.returncode, r.error) == (EXIT_ERROR, NO_KEY)
    r = ctl.fail("put", "pb/k")  # no value, empty stdin
    assert r.returncode == EXIT_BAD_ARGS
    assert r.error == "Error: put command needs 1 argument and input from stdin or 2 arguments"
    # A lease that does not exist (Lease is not implemented: none can exist).
    r = ctl.fail("put", "pb/k", "v", "--lease=1234")
    assert (r.returncode, r.error) == (EXIT_ERROR, LEASE_NOT_FOUND)
    r = ctl.fail("put", "pb/k", "v", "--lease=zz")
    assert r.returncode == EXIT_BAD_ARGS and r.error.startswith("Error: bad lease ID")
    r = ctl.fail("put", "pb/k", "--ignore-value")  # nothing to keep the value of
    assert (r.returncode, r.error) == (EXIT_ERROR, KEY_NOT_FOUND)
    r = ctl.fail("put", "pb/k", "v", "--ignore-lease")
    assert (r.returncode, r.error) == (EXIT_ERROR, KEY_NOT_FOUND)
    r = ctl.fail("put", "pb/k", "v", "--ignore-value")
    assert r.returncode == EXIT_BAD_ARGS
    # Nothing was written and no revision was used.
    assert ctl.ok("get", "pb/k").stdout == ""
    assert ctl.kv.revision() == before


# -- txn ----------------------------------------------------------------------------------------

def test_txn_stdin_success_and_failure(ctl):
    r1 = rev_of_put(ctl, "tx/k", "v1")
    # Compares hold: the success ops run, their results printed in order.
    out = ctl.ok("txn", input=txn_input([f'mod("tx/k") = "{r1}"'],
                                        ["put tx/k v2", "get tx/k"], ["put tx/else x"]))
    assert out.lines == ["SUCCESS", "", "OK", "", "tx/k", "v2"]
    # A compare fails: the failure ops run instead.
    out = ctl.ok("txn", input=txn_input(['value("tx/k") = "nope"'],
                                        ["put tx/k v3"], ["put tx/else x", "get tx/else"]))
    assert out.lines == ["FAILURE", "", "OK", "", "tx/else", "x"]
    assert ctl.ok("get", "tx/k", "--print-value-only").stdout == "v2\n"
    # No compares: success.
    assert ctl.ok("txn", input=txn_input([], ["del tx/else"], [])).lines == ["SUCCESS", "", "1"]
    # An empty txn succeeds and writes nothing.
    before = ctl.kv.revision()
    assert ctl.ok("txn", input=txn_input()).lines == ["SUCCESS"]
    assert ctl.kv.revision() == before


def test_txn_interactive(ctl):
    ctl.ok("put", "ti/k", "v1")
    out = ctl.ok("txn", "-i", input=txn_input(['value("ti/k") = "v1"', 'version("ti/k") = "1"'],
                                              ["put ti/k v2 --prev-kv", "del ti/gone"],
                                              ["put ti/failed yes"]))
    assert out.lines == TXN_PROMPTS + ["SUCCESS", "", "OK", "ti/k", "v1", "", "0"]
    out = ctl.ok("txn", "-i", input=txn_input(['value("ti/k") = "v1"'],
                                              ["put ti/k never"], ["put ti/failed yes", "get ti/k"]))
    assert out.lines == TXN_PROMPTS + ["FAILURE", "", "OK", "", "ti/k", "v2"]
    assert ctl.ok("get", "ti/", "--prefix").lines == ["ti/failed", "yes", "ti/k", "v2"]


def test_txn_compares(ctl):
    c = rev_of_put(ctl, "tc/k", "m")
    m = rev_of_put(ctl, "tc/k", "m")  # version 2

    def branch(*compares):
        return ctl.ok("txn", input=txn_input(list(compares), [], [])).lines[0]

    assert branch('value("tc/k") > "l"', 'value("tc/k") < "n"', 'value("tc/k") != "x"') == "SUCCESS"
    assert branch('version("tc/k") = "2"', f'create("tc/k") = "{c}"', f'mod("tc/k") = "{m}"') == "SUCCESS"
    assert branch(f'create("tc/k") < "{m}"', f'mod("tc/k") > "{c}"') == "SUCCESS"
    # (no lease() compare: etcdctl 3.4 itself panics parsing one, "panic: bad value")
    # Every compare must hold.
    assert branch('version("tc/k") = "2"', 'value("tc/k") = "other"') == "FAILURE"
    assert branch('version("tc/k") > "2"') == "FAILURE"
    # A missing key compares as zero revisions and versions...
    assert branch('create("tc/missing") = "0"', 'version("tc/missing") = "0"') == "SUCCESS"
    # ...but a value compare on a missing key always fails, even against "".
    assert branch('value("tc/missing") = ""') == "FAILURE"
    assert branch('value("tc/missing") != "x"') == "FAILURE"


def test_txn_json_responses(ctl):
    ctl.ok("put", "tj/a", "1")
    ctl.ok("put", "tj/b", "2")
    before = ctl.kv.revision()
    resp = ctl.json("txn", input=txn_input(
        ['version("tj/a") = "1"'],
        ["get tj/ --prefix --limit 1 --order=descend", "del tj/b --prev-kv", "put tj/c 3 --prev-kv"],
        []))
    assert resp["succeeded"] is True
    assert resp["header"]["revision"] == before + 1  # one revision for all the writes
    get, dele, put = [r["Response"] for r in resp["responses"]]
    rng = get["ResponseRange"]
    assert [kv["key"] for kv in kvs(rng)] == ["tj/b"] and rng["more"] is True and rng["count"] == 2
    assert rng["header"]["revision"] == before  # the read ran before the writes
    assert dele["ResponseDeleteRange"]["deleted"] == 1
    assert b64(dele["ResponseDeleteRange"]["prev_kvs"][0]["value"]) == "2"
    assert put["ResponsePut"]["header"]["revision"] == before + 1
    assert ctl.ok("get", "tj/", "--prefix", "--print-value-only").stdout == "1\n3\n"
    # A read-only txn makes no revision.
    ro = ctl.json("txn", input=txn_input([], ["get tj/a"], []))
    assert ro["header"]["revision"] == before + 1


def test_txn_errors(ctl):
    ctl.ok("put", "te/k", "v")
    before = ctl.kv.revision()
    # Server-side refusals: nothing applied, no revision used.
    r = ctl.fail("txn", input=txn_input([], ["put te/a 1", "put te/a 2"], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, DUPLICATE)
    r = ctl.fail("txn", input=txn_input([], ["put te/b 1", "del te/ --prefix"], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, DUPLICATE)
    r = ctl.fail("txn", input=txn_input([], ['put "" x'], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, NO_KEY)
    r = ctl.fail("txn", input=txn_input([], ["put te/l x --lease=77"], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, LEASE_NOT_FOUND)
    r = ctl.fail("txn", input=txn_input([], ["put te/missing --ignore-value"], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, KEY_NOT_FOUND)
    r = ctl.fail("txn", input=txn_input([], [f"get te/k --rev {before + 1000}"], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, FUTURE)
    assert ctl.ok("get", "te/", "--prefix", "--keys-only").stdout == "te/k\n\n"
    assert ctl.kv.revision() == before
    # Input etcdctl itself rejects (exit 3, invalid input).
    r = ctl.fail("txn", input=txn_input(['value("te/k" = "v"'], [], []))
    assert r.returncode == EXIT_INVALID_INPUT and r.error.startswith("Error: malformed comparison")
    r = ctl.fail("txn", input=txn_input(['mod("te/k") = "junk"'], [], []))
    assert r.returncode == EXIT_INVALID_INPUT and "invalid txn compare request" in r.error
    # The failure block must be ended too.
    r = ctl.fail("txn", input="\nput te/x 1\n\n")
    assert (r.returncode, r.error) == (EXIT_INVALID_INPUT, "Error: EOF")


# -- compaction ---------------------------------------------------------------------------------

def test_compaction(ctl):
    r1 = rev_of_put(ctl, "cp/k", "a")
    r2 = rev_of_put(ctl, "cp/k", "b")
    rg = rev_of_put(ctl, "cp/gone", "x")
    rd = ctl.json("del", "cp/gone")["header"]["revision"]
    r3 = rev_of_put(ctl, "cp/k", "c")

    assert ctl.ok("compaction", str(r2)).stdout == f"compacted revision {r2}\n"
    for rev in (r1 - 1, r1):
        r = ctl.fail("get", "cp/k", "--rev", str(rev))
        assert (r.returncode, r.error) == (EXIT_ERROR, COMPACTED)
    # The compaction revision itself stays readable, and so does everything after it.
    assert ctl.ok("get", "cp/", "--prefix", "--rev", str(r2)).lines == ["cp/k", "b"]
    assert ctl.ok("get", "cp/", "--prefix", "--rev", str(rg)).lines == ["cp/gone", "x", "cp/k", "b"]
    assert ctl.ok("get", "cp/", "--prefix", "--rev", str(rd)).lines == ["cp/k", "b"]
    [kv] = kvs(ctl.json("get", "cp/k"))
    assert (kv["value"], kv["create"], kv["mod"], kv["version"]) == ("c", r1, r3, 3)
    # Inside a txn too.
    r = ctl.fail("txn", input=txn_input([], [f"get cp/k --rev {r1}"], []))
    assert (r.returncode, r.error) == (EXIT_ERROR, COMPACTED)

    # Compacting again at or below the compacted revision, or in the future, fails.
    for rev in (r2, r1, 0):
        r = ctl.fail("compaction", str(rev))
        assert (r.returncode, r.error) == (EXIT_ERROR, COMPACTED)
    r = ctl.fail("compaction", str(r3 + 1000))
    assert (r.returncode, r.error) == (EXIT_ERROR, FUTURE)

    # --physical: past the delete; the deleted key is gone from every readable revision.
    assert ctl.ok("compaction", str(rd), "--physical").stdout == f"compacted revision {rd}\n"
    r = ctl.fail("get", "cp/gone", "--rev", str(rg))
    assert (r.returncode, r.error) == (EXIT_ERROR, COMPACTED)
    assert ctl.ok("get", "cp/", "--prefix", "--rev", str(rd)).lines == ["cp/k", "b"]
    assert ctl.ok("get", "cp/", "--prefix").lines == ["cp/k", "c"]
    # Compaction is not a write: the revision did not move.
    assert ctl.kv.revision() == r3


def test_compaction_bad_input(ctl):
    r = ctl.fail("compaction", "abc")
    assert (r.returncode, r.error) == (EXIT_ERROR, 'Error: strconv.ParseInt: parsing "abc": invalid syntax')
    r = ctl.fail("compaction")
    assert (r.returncode, r.error) == (EXIT_BAD_ARGS, "Error: compaction command needs 1 argument")


# -- cluster and maintenance ----------------------------------------------------------------------

def _member(c: Etcdctl) -> dict:
    resp = c.json("member", "list")
    [m] = resp["members"]
    assert m["ID"] == resp["header"]["member_id"]
    return m


def test_member_list(ctl, kv_server):
    m = _member(ctl.kv)
    assert m["name"] == "test"
    assert m["clientURLs"] == [kv_server.url]
    assert not m.get("isLearner", False)
    hex_id = f"{m['ID']:x}"
    # simple: ID, status, name, peer addrs, client addrs, is learner
    fields = ctl.kv.ok("member", "list").stdout.strip().split(", ")
    assert fields[0] == hex_id and fields[1:3] == ["started", "test"]
    assert fields[4:] == [kv_server.url, "false"]
    table = ctl.kv.ok("member", "list", "-w", "table").stdout
    assert re.search(rf"\| {hex_id} \| started \| test \|.*\| {re.escape(kv_server.url)} \| +false \|", table)
    # The same member answers every request.
    assert ctl.kv.json("get", "ml/x")["header"]["member_id"] == m["ID"]
    assert ctl.kv.json("put", "ml/x", "1")["header"]["member_id"] == m["ID"]
    # Each server in its own right (etcd's member also lists its peer URLs, kvstore has none).
    for c in ctl.each():
        m = _member(c)
        assert m["ID"] != 0 and m["clientURLs"] == [f"http://{c.endpoint}"]


def test_endpoint_status(ctl):
    from kvstore.store.config import StoreConfig

    for c in ctl.each():
        member = _member(c)
        [st] = c.json("endpoint", "status")
        assert st["Endpoint"] == c.endpoint
        s = st["Status"]
        assert re.fullmatch(r"3\.\d+\.\d+", s["version"])
        assert s["dbSize"] > 0
        assert s["leader"] == member["ID"] == s["header"]["member_id"]
        assert s["raftTerm"] == s["header"]["raft_term"] > 0
        assert s["raftAppliedIndex"] <= s["raftIndex"]
        assert s["header"]["revision"] == c.revision()
        # A write moves the raft index and the revision on.
        c.ok("put", "es/k", "v")
        [st2] = c.json("endpoint", "status")
        assert st2["Status"]["raftIndex"] > s["raftIndex"]
        assert st2["Status"]["header"]["revision"] == s["header"]["revision"] + 1
        # simple: endpoint, ID, version, db size, is leader, is learner, term, index, applied
        line = c.ok("endpoint", "status").stdout.strip().rstrip(",").split(", ")
        assert line[:3] == [c.endpoint, f"{member['ID']:x}", s["version"]]
        assert line[4:6] == ["true", "false"]
        table = c.ok("endpoint", "status", "-w", "table").stdout
        assert "IS LEADER" in table and f"{member['ID']:x}" in table
        # --cluster: the endpoints come from the member list's client URLs.
        [cl] = c.json("endpoint", "status", "--cluster")
        assert cl["Endpoint"] == f"http://{c.endpoint}"
        assert cl["Status"]["leader"] == member["ID"]
    [st] = ctl.kv.json("endpoint", "status")
    assert st["Status"]["version"] == StoreConfig.etcd_version


def test_endpoint_health(ctl):
    # etcdctl 3.4 prints the simple health lines on stderr.
    for c in ctl.each():
        r = c.ok("endpoint", "health")
        assert r.stdout == ""
        assert re.fullmatch(rf"{re.escape(c.endpoint)} is healthy: successfully committed "
                            r"proposal: took = \S+", r.error), str(r)
        [h] = c.json("endpoint", "health")
        assert h["endpoint"] == c.endpoint and h["health"] is True and "error" not in h
        # --cluster: found through the member list's client URLs.
        r = c.ok("endpoint", "health", "--cluster")
        assert r.error.startswith(f"http://{c.endpoint} is healthy: "), str(r)


# -- concurrency, restart, limits ---------------------------------------------------------------

def test_concurrent_puts_get_distinct_consecutive_revisions(ctl):
    n = 24
    for c in ctl.each():
        base = c.revision()
        with ThreadPoolExecutor(12) as pool:
            # the lambda runs within this iteration (list() waits for every call)
            resps = list(pool.map(lambda i: c.json("put", f"cc/{i:02}", str(i)), range(n)))  # noqa: B023
        revs = [r["header"]["revision"] for r in resps]
        assert sorted(revs) == list(range(base + 1, base + n + 1))
        got = c.json("get", "cc/", "--prefix")
        assert got["count"] == n
        assert {kv["key"]: kv["mod"] for kv in kvs(got)} == {f"cc/{i:02}": revs[i] for i in range(n)}
        assert [kv["value"] for kv in kvs(got)] == [str(i) for i in range(n)]


def test_restart_keeps_data_revisions_and_identity(kvstore_server):
    c = Etcdctl(kvstore_server.endpoint)
    c.ok("put", "rs/a", "1")
    c.ok("put", "rs/a", "2")
    c.ok("put", "rs/b", "x")
    c.ok("del", "rs/b")
    rev = c.revision()
    c.ok("compaction", str(rev - 1))
    before = c.json("get", "rs/", "--prefix")
    member = _member(c)
    [status] = c.json("endpoint", "status")

    kvstore_server.stop()
    kvstore_server.start()

    after = c.json("get", "rs/", "--prefix")
    assert after["header"]["revision"] == rev
    assert kvs(after) == kvs(before)
    assert _member(c) == member
    [status2] = c.json("endpoint", "status")
    assert status2["Status"]["raftTerm"] > status["Status"]["raftTerm"]  # a new term per start
    r = c.fail("get", "rs/a", "--rev", str(rev - 2))
    assert r.error == COMPACTED
    assert c.ok("put", "rs/c", "y").stdout == "OK\n"
    assert c.revision() == rev + 1
    assert c.ok("endpoint", "health").error.startswith(f"{kvstore_server.endpoint} is healthy: ")


LIMIT = 1536 * 1024  # --max-request-bytes, the same default for etcd and kvstore


def test_put_size_limit_well_inside_and_outside(ctl):
    # Comfortably below (by far more than etcd's raft-request framing) is accepted...
    assert ctl.ok("put", "sz/k", input="x" * (LIMIT - 200)).stdout == "OK\n"
    # ...a value over the limit is refused by the server, with nothing written.
    before = ctl.kv.revision()
    r = ctl.fail("put", "sz/k", input="x" * (LIMIT + 10))
    assert (r.returncode, r.error) == (EXIT_ERROR, TOO_LARGE)
    assert ctl.kv.revision() == before
    ctl.ok("del", "sz/k")


def test_put_size_limit_counts_etcd_raft_request(ctl):
    """The request-size limit counts what etcd counts: the marshalled InternalRaftRequest
    (the PutRequest wrapped with a RequestHeader carrying a 64-bit request id), not just the
    PutRequest. A value 20 bytes short of the limit is refused by both.
    """
    value = "x" * (LIMIT - 20)
    r = ctl.ref.run("put", "sz2/k", input=value)
    assert (r.returncode, r.error) == (EXIT_ERROR, TOO_LARGE), f"etcd itself: {r}"
    r = ctl.kv.run("put", "sz2/k", input=value)
    if r.returncode == 0:
        ctl.kv.ok("del", "sz2/k")
    assert (r.returncode, r.error) == (EXIT_ERROR, TOO_LARGE), (
        f"etcd refuses this put as too large, kvstore accepts it:\n{r}")
