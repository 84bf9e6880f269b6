"""End to end: Debian's etcdctl 3.4 watch, lease, elect and lock against kvstore, and the same
against Debian's real etcd.

Long-running commands (watch, lease keep-alive, elect, lock) run as background processes whose
output is read as it comes (``etcdctl.Background``); they are always killed in a finally.
Each scenario is a function of one server's ``Etcdctl`` that returns a transcript; it runs
against kvstore and against etcd at the same time (threads), makes its own assertions on each,
and the two transcripts must be equal once what differs by nature is named: lease ids (the
servers choose them) become L1, L2..., revisions are relative to the scenario's start.

Scenarios that wait for a watch to be registered put a probe value until every watcher has
printed it (a watch without --rev sees only what happens after the server registered it).
"""
from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from etcdctl import Background, Differential, Etcdctl

pytestmark = pytest.mark.timeout(120)

LEASE_NOT_FOUND = "Error: etcdserver: requested lease not found"
COMPACTED_CANCEL = "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
CANCELED_BY_SERVER = "Error: watch is canceled by the server"
EXIT_WATCH_CANCELED = 5  # what etcdctl 3.4 exits with when the server cancels its watch


# -- fixtures -----------------------------------------------------------------------------------

from etcdctl import ctl, kv_server, ref_server  # noqa: F401,E402  (module-scoped pair of servers)


class Names:
    """Lease (and lock/election key) ids of one server, named in the order they were seen."""

    def __init__(self, prefix: str = "L"):
        self.prefix = prefix
        self.names: dict[str, str] = {}

    def add(self, hex_id: str) -> str:
        hex_id = hex_id.lower()
        if hex_id not in self.names:
            self.names[hex_id] = f"{self.prefix}{len(self.names) + 1}"
        return self.names[hex_id]

    def sub(self, text: str) -> str:
        # ids are printed as %016x (lease commands) or %x (lock/election keys)
        for hex_id, name in self.names.items():
            text = re.sub(rf"\b0*{hex_id.lstrip('0')}\b", name, text)
        return text


def both(ctl: Differential, scenario, *args) -> list:
    """Runs scenario(etcdctl, *args) against kvstore and etcd concurrently; asserts that the
    transcripts are equal; returns kvstore's."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(scenario, c, *args) for c in (ctl.kv, ctl.ref)]
        kv, ref = [f.result() for f in futures]
    if kv != ref:
        lines = [f"kvstore and etcd differ in {scenario.__name__}:"]
        for i in range(max(len(kv), len(ref))):
            a = kv[i] if i < len(kv) else "(none)"
            b = ref[i] if i < len(ref) else "(none)"
            lines.append(f"{'  ' if a == b else '!!'} kvstore: {a!r}")
            if a != b:
                lines.append(f"!! etcd:    {b!r}")
        raise AssertionError("\n".join(lines))
    return kv


def kill_all(*procs: Background | None) -> None:
    for p in procs:
        if p is not None:
            p.kill()


def grant(c: Etcdctl, ttl: int, names: Names) -> tuple[str, str]:
    """(hex id, its name)."""
    out = c.ok("lease", "grant", str(ttl)).stdout
    m = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n", out)
    assert m, out
    return m.group(1), names.add(m.group(1))


def revoke_leftovers(c: Etcdctl, keep: set[str] = frozenset()) -> None:
    """Revokes every lease on the server (elect and lock sessions outlive their process)."""
    out = c.ok("lease", "list").stdout.splitlines()
    for hex_id in out[1:]:
        if hex_id and hex_id not in keep:
            c.run("lease", "revoke", hex_id)


def await_watching(c: Etcdctl, watchers: list[Background], key: str, timeout: float = 10.0
                   ) -> str:
    """Puts key=probeN (N = 1, 2...) until every watcher printed the last one: all are
    registered then. Returns that last value."""
    deadline = time.monotonic() + timeout
    time.sleep(0.2)
    n = 0
    while True:
        n += 1
        probe = f"probe{n}"
        c.ok("put", key, probe)
        step = time.monotonic() + 1.0
        while time.monotonic() < step:
            if all(probe in w.lines for w in watchers):
                return probe
            time.sleep(0.02)
        if time.monotonic() > deadline:
            raise AssertionError("watchers not registered:\n" + "\n".join(map(str, watchers)))


def after_probe(lines: list[str], probe: str) -> list[str]:
    """The lines after the last probe's event. Its value first shows as that event's value
    (with --prev-kv a later event may show it again, as the previous value)."""
    return lines[lines.index(probe) + 1:]


def quiet_lines(w: Background, n: int, timeout: float = 10.0, settle: float = 0.3) -> list[str]:
    """Waits for n lines, then a moment more for any line too many."""
    w.wait_lines(n, timeout)
    time.sleep(settle)
    return w.lines


# -- watch --------------------------------------------------------------------------------------

def _watch_key_prefix_range(c: Etcdctl) -> list[str]:
    w1 = w2 = w3 = None
    try:
        w1 = c.start("watch", "ew/a")
        w2 = c.start("watch", "ew/", "--prefix", "--prev-kv")
        w3 = c.start("watch", "ew/a", "ew/c")                  # [ew/a, ew/c)
        probe = await_watching(c, [w1, w2, w3], "ew/a")
        c.ok("put", "ew/a", "1")
        c.ok("put", "ew/b", "2")
        c.ok("put", "ew/c", "3")
        c.ok("put", "ewx", "not in the prefix")
        c.ok("del", "ew/a")
        c.ok("txn", input="\nput ew/a x\nput ew/b y\ndel ew/c\n\n\n")
        c.ok("del", "ew/", "--prefix")
        w1.wait_for(lambda lines: len(after_probe(lines, probe)) >= 3 * 4)
        w2.wait_for(lambda lines: len(after_probe(lines, probe)) >= 39)
        w3.wait_for(lambda lines: len(after_probe(lines, probe)) >= 3 * 7)
        time.sleep(0.3)                                        # for any line too many
        o1, o2, o3 = (after_probe(w.lines, probe) for w in (w1, w2, w3))
        o2 = ["probe" if line == probe else line for line in o2]
        assert o1 == ["PUT", "ew/a", "1", "DELETE", "ew/a", "", "PUT", "ew/a", "x",
                      "DELETE", "ew/a", ""], o1
        assert o2 == ["PUT", "ew/a", "probe", "ew/a", "1",      # --prev-kv: previous first
                      "PUT", "ew/b", "2",                        # created: no previous
                      "PUT", "ew/c", "3",
                      "DELETE", "ew/a", "1", "ew/a", "",
                      "PUT", "ew/a", "x",                        # the txn: one response
                      "PUT", "ew/b", "2", "ew/b", "y",
                      "DELETE", "ew/c", "3", "ew/c", "",
                      "DELETE", "ew/a", "x", "ew/a", "",
                      "DELETE", "ew/b", "y", "ew/b", ""], o2
        return ["w1", *o1, "w2", *o2, "w3", *o3]
    finally:
        kill_all(w1, w2, w3)


def test_watch_key_prefix_range_prev_kv(ctl):
    both(ctl, _watch_key_prefix_range)


def _watch_rev_and_json(c: Etcdctl) -> list[str]:
    w = wj = None
    try:
        base = c.revision()
        for v in ("v1", "v2", "v3"):
            c.ok("put", "er/k", v)                             # base+1..base+3
        w = c.start("watch", "er/k", "--rev", str(base + 2))   # history first, then live
        wj = c.start("watch", "er/", "--prefix", "--rev", str(base + 3), "-w", "json")
        assert quiet_lines(w, 6) == ["PUT", "er/k", "v2", "PUT", "er/k", "v3"]
        wj.wait_lines(1)
        c.ok("put", "er/k", "v4")
        c.ok("del", "er/k")
        out = quiet_lines(w, 12)
        assert out[6:] == ["PUT", "er/k", "v4", "DELETE", "er/k", ""], out
        lines = quiet_lines(wj, 3)
        transcript = ["w", *out]
        for line in lines:
            resp = __import__("json").loads(line)
            header = resp["Header"]
            assert set(header) == {"cluster_id", "member_id", "revision", "raft_term"}
            transcript.append(f"header.revision=base+{header['revision'] - base}")
            for ev in resp["Events"]:
                kv = ev["kv"]
                transcript.append(
                    f"{ev.get('type', 0)} {kv['key']} {kv.get('value', '')} "
                    f"create=base+{kv.get('create_revision', base) - base} "
                    f"mod=base+{kv['mod_revision'] - base} version={kv.get('version', 0)}")
            transcript.append(f"{resp['CompactRevision']} {resp['Canceled']} {resp['Created']}")
        assert len(lines) == 3, lines                          # v3 (history), v4, the delete
        return transcript
    finally:
        kill_all(w, wj)


def test_watch_rev_history_then_live_and_json(ctl):
    both(ctl, _watch_rev_and_json)


def test_watch_compacted_and_invalid_range_are_canceled(ctl):
    base = ctl.kv.revision()
    ctl.ok("put", "ec/k", "1")
    ctl.ok("put", "ec/k", "2")
    ctl.ok("compaction", str(base + 2))
    for args in (["ec/k", f"--rev={base + 1}"], ["ec/", "--prefix", "--rev=1"],
                 ["ec/k", "--rev=-1"]):
        r = ctl.run("watch", *args)
        assert (r.returncode, r.stdout, r.error) == (
            EXIT_WATCH_CANCELED, "", f"{COMPACTED_CANCEL}\n{CANCELED_BY_SERVER}"), str(r)
    for args in (["ec/b", "ec/a"], ["ec/a", "ec/a"]):
        r = ctl.run("watch", *args)
        assert (r.returncode, r.error) == (
            EXIT_WATCH_CANCELED,
            f"watch was canceled (mvcc: watcher range is empty)\n{CANCELED_BY_SERVER}"), str(r)


def _watch_exec(c: Etcdctl) -> list[str]:
    w = None
    try:
        base = c.revision()
        w = c.start("watch", "ex/k", "--rev", str(base + 1), "--", "sh", "-c",
                    'echo "cmd $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE '
                    '$(($ETCD_WATCH_REVISION - ' + str(base) + '))"')
        c.ok("put", "ex/k", "hello")
        # ETCD_WATCH_REVISION is the response's header revision: the delete after the put has
        # arrived, so that neither shares a (catch-up) response with the other
        w.wait_for(lambda lines: "hello" in lines)
        c.ok("del", "ex/k")
        out = quiet_lines(w, 8)
        # etcdctl passes the event in ETCD_WATCH_* variables, Go-quoted, and runs the command
        # in a goroutine: its output may come after the next event's
        events = [line for line in out if not line.startswith("cmd ")]
        runs = sorted(line for line in out if line.startswith("cmd "))
        assert events == ["PUT", "ex/k", "hello", "DELETE", "ex/k", ""], out
        assert runs == ['cmd "DELETE" "ex/k" "" 2', 'cmd "PUT" "ex/k" "hello" 1'], out
        return events + runs
    finally:
        kill_all(w)


def test_watch_runs_a_command_per_event(ctl):
    both(ctl, _watch_exec)


# -- leases -------------------------------------------------------------------------------------

def _lease_commands(c: Etcdctl) -> list[str]:
    names = Names()
    t: list[str] = []

    def record(r):
        t.append(f"rc={r.returncode} out={names.sub(r.stdout)!r} err={names.sub(r.error)!r}")
        return r

    h1, _ = grant(c, 100, names)
    h2, _ = grant(c, 1, names)                                # below the minimum: 2 s
    try:
        r = c.ok("lease", "timetolive", h2)
        assert re.fullmatch(rf"lease {h2} granted with TTL\(2s\), remaining\([0-2]s\)\n",
                            r.stdout), r.stdout
        t.append("L2 granted with the minimum TTL, 2 s")
        r = record(c.run("lease", "grant", "9000000001"))
        assert (r.returncode, r.error) == (1, "Error: failed to grant lease "
                                              "(etcdserver: too large lease TTL)"), str(r)
        assert record(c.run("lease", "grant", "abc")).returncode == 128
        record(c.ok("put", "el/k1", "v1", f"--lease={h1}"))
        record(c.ok("put", "el/k2", "v2", f"--lease={h1}"))
        record(c.ok("put", "el/k3", "v3", f"--lease={h1}"))
        record(c.ok("put", "el/k3", "v3b"))                   # no lease any more
        r = record(c.run("put", "el/k4", "v", "--lease=1234"))
        assert (r.returncode, r.error) == (1, LEASE_NOT_FOUND), str(r)
        got = c.json("get", "el/k1")
        assert format(got["kvs"][0]["lease"], "x") == h1.lstrip("0")
        r = c.ok("lease", "timetolive", h1)
        m = re.fullmatch(rf"lease {h1} granted with TTL\(100s\), remaining\((\d+)s\)\n", r.stdout)
        assert m and 98 <= int(m.group(1)) <= 100, r.stdout
        t.append("timetolive L1: granted 100, remaining ok")
        r = c.ok("lease", "timetolive", h1, "--keys")
        m = re.fullmatch(r"lease \w+ granted with TTL\(100s\), remaining\(\d+s\), "
                         r"attached keys\(\[(.*)\]\)\n", r.stdout)
        assert m and sorted(m.group(1).split()) == ["el/k1", "el/k2"], r.stdout  # etcd: any order
        j = c.json("lease", "timetolive", h1, "--keys")
        assert sorted(__import__("base64").b64decode(k).decode() for k in j["keys"]) == [
            "el/k1", "el/k2"]
        assert (j["granted-ttl"], j["id"]) == (100, int(h1, 16)), j
        t.append(f"timetolive json: {sorted(k for k in j if k not in ('cluster_id', 'member_id'))}")
        record(c.ok("lease", "timetolive", "1234"))           # already expired
        record(c.ok("lease", "timetolive", "1234", "--keys"))
        listed = c.ok("lease", "list").stdout.splitlines()
        assert re.fullmatch(r"found \d+ leases", listed[0]) and {h1, h2} <= set(listed[1:]), listed
        record(c.ok("lease", "keep-alive", "--once", h1))
        r = record(c.run("lease", "keep-alive", "--once", "1234"))
        assert (r.returncode, r.error) == (2, LEASE_NOT_FOUND), str(r)
        record(c.ok("lease", "revoke", h1))
        record(c.ok("get", "el/", "--prefix"))               # k1, k2 gone; k3 stays
        r = record(c.run("lease", "revoke", h1))
        assert (r.returncode, r.error) == (
            1, "Error: failed to revoke lease (etcdserver: requested lease not found)"), str(r)
        record(c.ok("lease", "timetolive", h1, "--keys"))
        record(c.run("put", "el/k1", "again", f"--lease={h1}"))
        record(c.run("lease", "revoke", "zz"))
        record(c.run("lease", "timetolive"))
        return t
    finally:
        c.run("lease", "revoke", h1)
        c.run("lease", "revoke", h2)


def test_lease_grant_put_timetolive_list_revoke(ctl):
    t = both(ctl, _lease_commands)
    assert "rc=0 out='lease L1 revoked\\n' err=''" in t
    assert "rc=0 out='el/k3\\nv3b\\n' err=''" in t
    assert "rc=0 out='lease 0000000000001234 already expired\\n' err=''" in t


def _keep_alive_then_expiry(c: Etcdctl) -> list[str]:
    names = Names()
    ka = None
    try:
        h, name = grant(c, 2, names)
        c.ok("put", "ek/k", "v", f"--lease={h}")
        ka = c.start("lease", "keep-alive", h)
        time.sleep(4.0)                                       # twice the TTL
        assert ka.proc.poll() is None, str(ka)
        lines = ka.lines
        assert len(lines) >= 4 and set(lines) == {f"lease {h} keepalived with TTL(2)"}, str(ka)
        assert c.ok("get", "ek/k", "--print-value-only").stdout == "v\n"   # still there
        ka.kill()
        killed = time.monotonic()
        while c.ok("get", "ek/k", "--keys-only").stdout:
            assert time.monotonic() - killed < 8, "the key outlived its lease"
            time.sleep(0.1)
        gone_after = time.monotonic() - killed
        assert 0.5 < gone_after < 5, gone_after
        t = [names.sub(lines[0]), "keepalived >= 4 times in 4 s, key kept; killed: key gone"]
        t.append(names.sub(c.ok("lease", "timetolive", h, "--keys").stdout))
        r = c.run("put", "ek/k", "v", f"--lease={h}")
        t.append(f"{r.returncode} {r.error}")
        ka = c.start("lease", "keep-alive", h)                # expired: says so and exits
        rc = ka.wait(10)
        t.append(f"{rc} {names.sub(' '.join(ka.lines))} {ka.error}")
        return t
    finally:
        kill_all(ka)


def test_lease_keep_alive_streaming_then_expiry(ctl):
    t = both(ctl, _keep_alive_then_expiry)
    assert t[0] == "lease L1 keepalived with TTL(2)"
    assert t[2:] == ["lease L1 already expired\n", f"1 {LEASE_NOT_FOUND}",
                     "0 lease L1 expired or revoked. "]


# -- elect and lock -----------------------------------------------------------------------------

def _session_id(line: str, prefix: str, names: Names) -> str:
    m = re.fullmatch(rf"{re.escape(prefix)}/([0-9a-f]+)", line)
    assert m, line
    return names.add(m.group(1).rjust(16, "0"))


def _elect(c: Etcdctl) -> list[str]:
    names = Names("S")
    obs = c1 = c2 = None
    t: list[str] = []
    try:
        obs = c.start("elect", "-l", "elx")
        time.sleep(0.3)
        c1 = c.start("elect", "elx", "p1")
        first = c1.wait_lines(2)
        t.append(f"c1: {_session_id(first[0], 'elx', names)} {first[1]}")
        c2 = c.start("elect", "elx", "p2")
        time.sleep(1.0)
        assert c2.lines == [], f"two leaders: {c1}\n{c2}"
        obs.wait_lines(2)
        c1.signal(signal.SIGINT)                              # resigns
        assert c1.wait(10) == 0, str(c1)
        second = c2.wait_lines(2)
        t.append(f"c2: {_session_id(second[0], 'elx', names)} {second[1]}")
        assert second[1] == "p2" and second[0] != first[0]
        seen = obs.wait_lines(4)
        t.append("observer: " + " ".join(names.sub(line) for line in seen))
        t.append("keys: " + names.sub(c.ok("get", "elx", "--prefix").stdout))
        c2.signal(signal.SIGINT)
        assert c2.wait(10) == 0, str(c2)
        t.append("after: " + repr(c.ok("get", "elx", "--prefix").stdout))
        time.sleep(0.3)
        assert len(obs.lines) == 4, str(obs)                  # no leader: nothing printed
        return t
    finally:
        kill_all(obs, c1, c2)
        revoke_leftovers(c)


def test_elect_second_candidate_leads_only_after_the_first_resigns(ctl):
    t = both(ctl, _elect)
    assert t == ["c1: S1 p1", "c2: S2 p2", "observer: elx/S1 p1 elx/S2 p2",
                 "keys: elx/S2\np2\n", "after: ''"]


def _lock_two_contenders(c: Etcdctl) -> list[str]:
    names = Names("S")
    h1 = h2 = None
    t: list[str] = []
    try:
        h1 = c.start("lock", "lkx")
        first = h1.wait_lines(1)
        t.append(f"h1 holds {_session_id(first[0], 'lkx', names)}")
        h2 = c.start("lock", "lkx")
        time.sleep(1.0)
        assert h2.lines == [], f"both hold the lock:\n{h1}\n{h2}"
        waiting = [line for line in c.ok("get", "lkx", "--prefix", "--keys-only",
                                         "--sort-by=create").lines if line]
        t.append("keys while h1 holds: " +
                 " ".join(f"lkx/{_session_id(line, 'lkx', names)}" for line in waiting))
        h1.signal(signal.SIGINT)                              # unlocks
        assert h1.wait(10) == 0, str(h1)
        second = h2.wait_lines(1)
        t.append(f"h2 holds {_session_id(second[0], 'lkx', names)}")
        h2.signal(signal.SIGINT)
        assert h2.wait(10) == 0, str(h2)
        t.append("after: " + repr(c.ok("get", "lkx", "--prefix").stdout))
        return t
    finally:
        kill_all(h1, h2)
        revoke_leftovers(c)


def test_lock_second_contender_acquires_after_release(ctl):
    t = both(ctl, _lock_two_contenders)
    assert t == ["h1 holds S1", "keys while h1 holds: lkx/S1 lkx/S2", "h2 holds S2", "after: ''"]


def _lock_runs_command(c: Etcdctl, log_dir) -> list[str]:
    log = log_dir / f"lock-{c.endpoint.replace(':', '_')}.log"
    log.write_text("")
    script = (f'echo "enter $1" >> {log}; sleep 0.6; echo "exit $1" >> {log}; '
              f'echo "ran $1 holding ${{ETCD_LOCK_KEY%%/*}}"; exit $2')
    runs = []
    try:
        for i, code in ((1, 0), (2, 0), (3, 7)):
            runs.append(c.start("lock", "lkc", "--", "sh", "-c", script, "sh", f"r{i}", str(code)))
            time.sleep(0.05)
        rcs = [r.wait(20) for r in runs]
        events = log.read_text().split("\n")[:-1]
        # one at a time: every enter is followed by its own exit
        for i in range(0, len(events), 2):
            assert events[i].split()[0] == "enter" and events[i + 1] == "exit " + events[i].split()[1], events
        assert sorted(events) == sorted(f"{w} r{i}" for w in ("enter", "exit") for i in (1, 2, 3))
        t = [f"r{i}: rc={rc} out={r.lines} err={r.error!r}"
             for i, (r, rc) in enumerate(zip(runs, rcs), 1)]
        t.append("after: " + repr(c.ok("get", "lkc", "--prefix").stdout))
        return t
    finally:
        kill_all(*runs)
        revoke_leftovers(c)


def test_lock_runs_a_command_while_holding_it(ctl, tmp_path):
    t = both(ctl, _lock_runs_command, tmp_path)
    assert t == ["r1: rc=0 out=['ran r1 holding lkc'] err=''",
                 "r2: rc=0 out=['ran r2 holding lkc'] err=''",
                 "r3: rc=1 out=['ran r3 holding lkc'] err='Error: exit status 7'",
                 "after: ''"]


def _lock_holder_dies(c: Etcdctl) -> list[str]:
    h1 = h2 = None
    try:
        h1 = c.start("lock", "--ttl=2", "lkd")
        h1.wait_lines(1)
        h2 = c.start("lock", "--ttl=2", "lkd")
        time.sleep(0.5)
        assert h2.lines == []
        h1.kill()                                             # no unlock: the lease must expire
        killed = time.monotonic()
        h2.wait_lines(1, timeout=10)
        waited = time.monotonic() - killed
        assert 1.0 < waited < 6.0, waited                     # TTL 2 s, checked every 0.5 s
        keys = [line for line in c.ok("get", "lkd", "--prefix", "--keys-only").lines if line]
        assert keys == h2.lines[:1], (keys, h2.lines)
        return ["h2 acquired after h1's session expired", f"{len(keys)} key"]
    finally:
        kill_all(h1, h2)
        revoke_leftovers(c)


def test_lock_passes_on_when_the_holder_dies_and_its_lease_expires(ctl):
    both(ctl, _lock_holder_dies)
