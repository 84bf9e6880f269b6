"""The partition map: routing a key, the partitions of a range, and what validation refuses."""
import itertools
import random

import pytest

from kvstore.partition import Partition, PartitionMap, in_process_kube_map, kube_map
from kvstore.partition.map import prefix_end
from kvstore.server.config import ConfigError

pytestmark = pytest.mark.inprocess

KUBE = in_process_kube_map()


def names(parts):
    return [p.name for p in parts]


# -- partition_for -------------------------------------------------------------------------------

@pytest.mark.parametrize("key,owner", [
    (b"/registry/pods/default/web-0", "pods"),
    (b"/registry/pods/", "pods"),
    (b"/registry/pods", "default"),  # the prefix is "/registry/pods/": no slash, not a pod
    (b"/registry/podsecuritypolicy/x", "default"),
    (b"/registry/minions/node-1", "nodes"),
    (b"/registry/leases/kube-node-lease/node-1", "leases"),
    (b"/registry/events/default/e1", "events"),
    (b"/registry/configmaps/default/c", "default"),
    (b"/registry/", "default"),
    (b"a", "default"),
    (b"\xff", "default"),
])
def test_partition_for_kube(key, owner):
    assert KUBE.partition_for(key).name == owner


def test_kube_map_shape():
    assert names(KUBE) == ["default", "nodes", "pods", "leases", "events"]
    assert KUBE.default.name == "default" and KUBE.default.is_default
    assert all(not p.url for p in KUBE)
    m = kube_map("127.0.0.1", 2379)
    assert [p.url for p in m] == ["http://127.0.0.1:2379"] + [f"http://127.0.0.1:{p}"
                                                             for p in range(2382, 2386)]
    assert kube_map("::1", 2379).default.url == "http://[::1]:2379"
    flags = m.kube_apiserver_flags()
    assert flags["--etcd-servers"] == "http://127.0.0.1:2379"
    assert flags["--etcd-servers-overrides"].split(",") == [
        "/nodes#http://127.0.0.1:2382", "/pods#http://127.0.0.1:2383",
        "coordination.k8s.io/leases#http://127.0.0.1:2384", "/events#http://127.0.0.1:2385"]
    assert in_process_kube_map("/custom").partition_for(b"/custom/pods/x").name == "pods"


# -- partitions_for_range ------------------------------------------------------------------------

@pytest.mark.parametrize("key,end,expected", [
    # one key (range_end empty)
    (b"/registry/pods/a", b"", ["pods"]),
    (b"/registry/configmaps/a", b"", ["default"]),
    # a range covering the prefix exactly (etcd's --prefix)
    (b"/registry/pods/", b"/registry/pods0", ["pods"]),
    # starting inside a prefix, ending inside it
    (b"/registry/pods/ns/a", b"/registry/pods/ns/z", ["pods"]),
    # starting inside a prefix, ending past it: the default's keys after it too
    (b"/registry/pods/ns/a", b"/registry/pods1", ["pods", "default"]),
    # starting inside one prefix, ending inside the next one: the default's keys in between
    (b"/registry/leases/x", b"/registry/minions/z", ["leases", "nodes", "default"]),
    # starting just before a prefix: "/registry/pods" itself is a default key
    (b"/registry/pods", b"/registry/pods0", ["pods", "default"]),
    # ending exactly where a prefix starts: range_end is excluded
    (b"/registry/configmaps/", b"/registry/events/", ["default"]),
    # entirely in the default, between prefixes and past them all
    (b"/registry/configmaps/", b"/registry/configmaps0", ["default"]),
    (b"/registry/secrets/", b"/registry/secrets0", ["default"]),
    (b"a", b"b", ["default"]),
    # range_end \0: every key from key on
    (b"\x00", b"\x00", ["events", "leases", "nodes", "pods", "default"]),
    (b"/registry/pods/x", b"\x00", ["pods", "default"]),
    (b"/registry/z", b"\x00", ["default"]),
])
def test_partitions_for_range_kube(key, end, expected):
    assert sorted(names(KUBE.partitions_for_range(key, end))) == sorted(expected)


def test_partitions_for_range_prefix_of_ff_bytes():
    # prefix_end(b"\xff\xff") is empty: the prefix runs to the end of the keyspace
    m = PartitionMap.of([Partition("default"), Partition("top", (b"\xff\xff",))])
    assert names(m.partitions_for_range(b"\xff\xff\x01", b"\x00")) == ["top"]
    assert sorted(names(m.partitions_for_range(b"\xff", b"\x00"))) == ["default", "top"]
    assert names(m.partitions_for_range(b"a", b"\xff\xff")) == ["default"]


def test_prefix_end():
    assert prefix_end(b"/registry/pods/") == b"/registry/pods0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b""


def _brute_force(m, key, end, candidates):
    """The owners of the candidate keys within [key, end), by etcd's rules."""
    if not end:
        inside = [key]
    else:
        inside = [k for k in candidates if k >= key and (end == b"\x00" or k < end)]
    return {m.partition_for(k).name for k in inside}


def test_partitions_for_range_matches_brute_force():
    # Keys from a small alphabet, plus every prefix, prefix end and range bound: for a range,
    # these hold a witness of each partition it meets (a prefix's keys start at the prefix, the
    # default's after a range start or a prefix's end). An empty range (key >= range_end) names
    # one partition: routed somewhere, it finds nothing there.
    alphabet = b"ab\xff"
    rng = random.Random(11)
    words = [bytes(w) for n in range(1, 4) for w in itertools.product(alphabet, repeat=n)]
    for _ in range(300):
        prefixes: list[bytes] = []
        for w in rng.sample(words, rng.randint(1, 4)):
            if not any(w.startswith(p) or p.startswith(w) for p in prefixes):
                prefixes.append(w)
        m = PartitionMap.of([Partition("default")]
                            + [Partition(f"p{i}", (p,)) for i, p in enumerate(prefixes)])
        edges = prefixes + [prefix_end(p) for p in prefixes if prefix_end(p)]
        for _ in range(40):
            key = rng.choice(words + edges)
            end = rng.choice(words + edges + [b"", b"\x00"])
            candidates = set(words) | set(edges) | {key} | {w + b"\x00" for w in words}
            got = set(names(m.partitions_for_range(key, end)))
            want = _brute_force(m, key, end, candidates)
            if not want:
                assert len(got) == 1, (prefixes, key, end, got)
            else:
                assert got == want, (prefixes, key, end, got, want)


# -- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("parts,message", [
    ([], "empty"),
    ([Partition("default"), Partition("a", (b"/r/pods/",)), Partition("b", (b"/r/pods/x",))],
     "overlaps"),
    ([Partition("default"), Partition("a", (b"/r/pods/x",)), Partition("b", (b"/r/pods/",))],
     "overlaps"),
    ([Partition("default"), Partition("a", (b"/r/",)), Partition("b", (b"/r/",))], "overlaps"),
    ([Partition("default"), Partition("a", (b"/r/x", b"/r/"))], "overlaps"),
    ([Partition("default"), Partition("other")], "exactly one partition"),
    ([Partition("a", (b"/a/",))], "exactly one partition"),
    ([Partition("default"), Partition("default", (b"/a/",))], "defined twice"),
    ([Partition("default"), Partition("a", (b"",))], "empty prefix"),
    ([Partition("Default")], "a name is"),
    ([Partition("-x")], "a name is"),
    ([Partition("x" * 33)], "a name is"),
    ([Partition("pods\n")], "a name is"),
    ([Partition("default"), Partition("a", (b"/a/",), resources=("pods",))], "not group/resource"),
    ([Partition("default"), Partition("a", (b"/a/",), resources=("/pods#x",))],
     "not group/resource"),
    ([Partition("default"), Partition("a", (b"/a/",), resources=("/Pods",))], "not group/resource"),
    ([Partition("default"), Partition("a", (b"/a/",), resources=("/pods\n",))],
     "not group/resource"),
    ([Partition("default"), Partition("a", (b"/a/",), resources=("/pods",)),
      Partition("b", (b"/b/",), resources=("/pods",))], "also in partition"),
    ([Partition("default", resources=("/pods",))], "lists none"),
    ([Partition("default", url="http://127.0.0.1:2379"),
      Partition("a", (b"/a/",), url="http://127.0.0.1:2379/")], "as partition 'default' does"),
    ([Partition("default", url="http://127.0.0.1:2379"),
      Partition("a", (b"/a/",), url="https://127.0.0.1:2379")], "as partition 'default' does"),
    ([Partition("default", url="http://127.0.0.1:2379"), Partition("a", (b"/a/",))],
     "every partition has a url or none"),
    ([Partition("default", url="unix:///tmp/s")], "scheme"),
    ([Partition("default", url="http://127.0.0.1")], "host:port"),
])
def test_validation_refuses(parts, message):
    with pytest.raises(ConfigError, match=message):
        PartitionMap.of(parts)


def test_validation_accepts():
    m = PartitionMap.of([
        Partition("default", url="http://127.0.0.1:2379"),
        Partition("a", (b"/r/a/", b"/r/ab"), url="http://127.0.0.1:2380", resources=("/pods",)),
        Partition("b", (b"/r/b",), url="http://127.0.0.1:2381",
                  resources=("apps/deployments", "coordination.k8s.io/leases")),
    ])
    assert m.partition_for(b"/r/abc").name == "a"
    assert m.partition_for(b"/r/a/c").name == "a"
    assert m.partition_for(b"/r/ac").name == "default"
    assert m["b"].resources == ("apps/deployments", "coordination.k8s.io/leases")
    with pytest.raises(KeyError):
        m["c"]
    assert len(m) == 3
