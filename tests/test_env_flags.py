"""etcd's ETCD_* environment variables for ``kvstore serve`` (kvstore/server/env_flags.py):
in process against the serve parser, then real ``kvstore serve`` processes configured by the
environment alone, and the refusals side by side with Debian's etcd 3.4."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etcdctl import Etcdctl
from kvstore.api import rpc_pb2, rpc_pb2_grpc
from kvstore.partition.launch import passthrough_flags
from kvstore.server.cli import build_parsers
from kvstore.server.env_flags import (
    EnvFlagError,
    apply,
    env_key,
    given_dests,
    settable_flags,
    without_etcd_env,
)
from procs import REPO, EtcdProcess, KvstoreProcess, channel, free_port
from test_kube_profile import Supervised, free_port_run, worker_pid

TRANSPORT = os.environ.get("KVSTORE_TEST_TRANSPORT", "h2")
CONFLICT = ('conflicting environment variable "{}" is shadowed by corresponding command-line '
            "flag (either unset environment variable or disable flag)")


def parse(argv: list[str], environ: dict[str, str]):
    """``kvstore serve ARGV`` with ``environ``: the args, the variables used."""
    parser, serve_parser = build_parsers()
    args = parser.parse_args(["serve", *argv])
    return args, apply(args, serve_parser, argv, environ)


# --- in process -----------------------------------------------------------------------------

@pytest.mark.inprocess
def test_every_serve_flag_has_its_etcd_variable():
    flags = settable_flags(build_parsers()[1])
    assert env_key("--data-dir") == "ETCD_DATA_DIR"
    for key in ("ETCD_NAME", "ETCD_DATA_DIR", "ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS",
                "ETCD_SNAPSHOT_COUNT", "ETCD_AUTO_TLS", "ETCD_CLIENT_CERT_AUTH", "ETCD_LOG_BACKEND",
                "ETCD_NATS_URL", "ETCD_PROFILE", "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL"):
        assert key in flags, key
    assert "ETCD_HELP" not in flags


@pytest.mark.inprocess
def test_variables_set_the_flags_not_given_through_their_converters():
    args, used = parse(["--name", "fromflag"], {
        "ETCD_DATA_DIR": "/d", "ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:1,http://127.0.0.1:2",
        "ETCD_SNAPSHOT_COUNT": "500", "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL": "2s",
        "ETCD_AUTO_TLS": "true", "ETCD_NATS_REPLICAS": "3", "ETCDCTL_API": "3"})
    assert args.name == "fromflag" and args.data_dir == "/d"
    assert args.listen_client_urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert args.snapshot_count == 500 and args.watch_progress_notify_interval == 2.0
    assert args.auto_tls is True and args.nats_replicas == 3
    # etcd visits its flags in name order
    assert used == ["ETCD_AUTO_TLS", "ETCD_DATA_DIR", "ETCD_LISTEN_CLIENT_URLS", "ETCD_NATS_REPLICAS",
                    "ETCD_SNAPSHOT_COUNT", "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL"]


@pytest.mark.inprocess
@pytest.mark.parametrize("value,expected", [
    *[(v, True) for v in ("1", "t", "T", "TRUE", "true", "True")],
    *[(v, False) for v in ("0", "f", "F", "FALSE", "false", "False")],
])
def test_switches_take_go_booleans(value, expected):
    args, _ = parse([], {"ETCD_CLIENT_CERT_AUTH": value})
    assert args.client_cert_auth is expected


@pytest.mark.inprocess
@pytest.mark.parametrize("key,value,says", [
    ("ETCD_SNAPSHOT_COUNT", "abc", "parse error"),
    ("ETCD_SNAPSHOT_COUNT", "-5", "parse error"),  # etcd's is a uint64
    ("ETCD_AUTO_TLS", "yes", "parse error"),
    ("ETCD_CLIENT_CERT_AUTH", "", None),  # empty: no value, the default stays
    ("ETCD_HANDSHAKE_TIMEOUT", "soon", "parse error"),
    ("ETCD_NATS_REPLICAS", "two", "parse error"),
    ("ETCD_NATS_REPLICAS", "2", 'invalid choice "2" (choose from "1", "3")'),
    ("ETCD_TRANSPORT", "h3", 'invalid choice "h3" (choose from "h2", "grpcio")'),
    ("ETCD_LISTEN_CLIENT_URLS", "notaurl", "unexpected URL scheme in 'notaurl' (use http://host:port)"),
    ("ETCD_LOG_BACKEND", "tape", "unknown log backend 'tape'"),
])
def test_a_bad_value_is_refused_with_etcds_words(key, value, says):
    if says is None:
        args, used = parse([], {key: value})
        assert used == [] and args.client_cert_auth is False
        return
    with pytest.raises(EnvFlagError) as e:
        parse([], {key: value})
    assert str(e.value).startswith(f'error verifying flags, invalid value "{value}" for {key}: {says}')
    assert str(e.value).endswith(". See 'kvstore serve --help'.")


@pytest.mark.inprocess
def test_of_several_bad_values_the_last_by_flag_name_is_reported():
    with pytest.raises(EnvFlagError, match="ETCD_SNAPSHOT_COUNT"):
        parse([], {"ETCD_SNAPSHOT_COUNT": "abc", "ETCD_AUTO_TLS": "yes"})


@pytest.mark.inprocess
@pytest.mark.parametrize("argv", [["--name", "y"], ["--name=y"], ["--nam", "y"], ["--name", "default"]])
def test_a_variable_shadowed_by_its_flag_is_fatal(argv):
    """Abbreviated, --flag=value, or given its default value: the flag was given."""
    assert "name" in given_dests(build_parsers()[1], argv)
    for value in ("x", ""):  # even empty, as etcd
        with pytest.raises(EnvFlagError) as e:
            parse(argv, {"ETCD_NAME": value})
        assert str(e.value) == CONFLICT.format("ETCD_NAME")
    with pytest.raises(EnvFlagError, match="ETCD_AUTO_TLS"):
        parse(["--auto-tls"], {"ETCD_AUTO_TLS": "false"})


@pytest.mark.inprocess
def test_unrecognized_variables_are_warned_about_and_etcdctls_are_not(caplog):
    caplog.set_level(logging.INFO, logger="kvstore")
    args, used = parse([], {"ETCD_FOO_BAR": "1", "ETCD_NAME": "", "ETCDCTL_API": "3",
                            "ETCD_DATA_DIR": "/d", "HOME": "/root"})
    assert used == ["ETCD_DATA_DIR"] and args.name == "default"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "recognized and used environment variable ETCD_DATA_DIR=/d"),
        ("WARNING", "unrecognized environment variable ETCD_FOO_BAR=1"),
        ("WARNING", "unrecognized environment variable ETCD_NAME="),  # empty: not used
    ]


@pytest.mark.inprocess
def test_a_supervisor_passes_what_the_environment_set_as_flags_and_not_the_variables():
    _, serve_parser = build_parsers()
    args, _ = parse(["--profile", "kube"], {"ETCD_SNAPSHOT_COUNT": "1000", "ETCD_AUTO_TLS": "1",
                                            "ETCD_DATA_DIR": "/d"})
    assert sorted(passthrough_flags(args, serve_parser)) == ["--auto-tls", "--snapshot-count=1000"]
    env = without_etcd_env({"ETCD_DATA_DIR": "/d", "ETCDCTL_API": "3", "PATH": "/bin"})
    assert env == {"ETCDCTL_API": "3", "PATH": "/bin"}


# --- real processes -------------------------------------------------------------------------

class EnvKvstore(KvstoreProcess):
    """``kvstore serve`` given nothing but ``extra_args`` on its command line, configured by
    the ETCD_* variables ``variables`` (any others of the test's environment dropped); ``{url}``
    in a value is the URL it is to serve on (a new port if the first was taken meanwhile)."""

    def __init__(self, data_dir: Path, variables: dict[str, str], extra_args: list[str] | None = None):
        super().__init__(data_dir, extra_args=extra_args)
        self.variables = variables

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kvstore", "serve", *self.extra_args]

    def env(self) -> dict:
        return {**without_etcd_env(super().env()),
                **{k: v.replace("{url}", self.url) for k, v in self.variables.items()}}


def kvstore_serve(argv: list[str], variables: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**without_etcd_env(os.environ), **variables,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "kvstore", "serve", *argv], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env=env)


def etcd_serve(tmp_path: Path, argv: list[str], variables: dict[str, str]) -> subprocess.CompletedProcess:
    """Debian's etcd on loopback ports of its own; what it says before it would serve."""
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = {**without_etcd_env(EtcdProcess(tmp_path / "unused").env()), **variables}
    env.pop("ETCD_UNSUPPORTED_ARCH", None)
    cmd = ["etcd", "--data-dir", str(tmp_path / "etcd"), "--listen-client-urls", client,
           "--advertise-client-urls", client, "--listen-peer-urls", peer,
           "--initial-advertise-peer-urls", peer, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def test_a_member_configured_by_the_environment_alone_serves_there(tmp_path):
    variables = {"ETCD_NAME": "envmember", "ETCD_DATA_DIR": str(tmp_path / "from-env"),
                 "ETCD_LISTEN_CLIENT_URLS": "{url}", "ETCD_ADVERTISE_CLIENT_URLS": "{url}",
                 "ETCD_TRANSPORT": TRANSPORT, "ETCD_SNAPSHOT_COUNT": "500",
                 "ETCD_FOO_BAR": "1", "ETCDCTL_API": "3"}
    with EnvKvstore(tmp_path / "kv", variables) as server:
        url = server.url
        with channel(server.endpoint) as ch:
            members = rpc_pb2_grpc.ClusterStub(ch).MemberList(rpc_pb2.MemberListRequest(), timeout=5)
            kv = rpc_pb2_grpc.KVStub(ch)
            kv.Put(rpc_pb2.PutRequest(key=b"foo", value=b"bar"), timeout=5)
            got = kv.Range(rpc_pb2.RangeRequest(key=b"foo"), timeout=5)
        assert [(m.name, list(m.clientURLs)) for m in members.members] == [("envmember", [url])]
        assert got.kvs[0].value == b"bar"
        assert (tmp_path / "from-env" / "meta").exists()
        ctl = Etcdctl(server.endpoint)
        status = json.loads(ctl.run("endpoint", "status", "-w", "json").stdout)
        assert status[0]["Endpoint"] == server.endpoint and status[0]["Status"]["header"]["revision"] == 2
        log = server.log()
    for key in ("ETCD_NAME", "ETCD_DATA_DIR", "ETCD_LISTEN_CLIENT_URLS", "ETCD_SNAPSHOT_COUNT"):
        value = variables[key].replace("{url}", url)
        assert f"recognized and used environment variable {key}={value}" in log, log
    assert "unrecognized environment variable ETCD_FOO_BAR=1" in log
    assert "ETCDCTL_API" not in log


@pytest.mark.parametrize("argv,variables,message", [
    (["--name", "y"], {"ETCD_NAME": "x"}, CONFLICT.format("ETCD_NAME")),
    (["--name=y"], {"ETCD_NAME": ""}, CONFLICT.format("ETCD_NAME")),
    ([], {"ETCD_SNAPSHOT_COUNT": "abc"},
     'error verifying flags, invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error.'),
    ([], {"ETCD_AUTO_TLS": "yes", "ETCD_FOO_BAR": "1"},
     'error verifying flags, invalid value "yes" for ETCD_AUTO_TLS: parse error.'),
], ids=["conflict", "conflict-empty", "bad-number", "bad-bool"])
def test_refusals_exit_1_with_etcds_message(tmp_path, argv, variables, message):
    ours = kvstore_serve([*argv, "--data-dir", str(tmp_path / "kv"),
                          "--listen-client-urls", f"http://127.0.0.1:{free_port()}"], variables)
    assert ours.returncode == 1, ours
    lines = ours.stderr.strip().splitlines()
    assert lines[-1].startswith(f"kvstore: {message}"), ours.stderr
    assert "Traceback" not in ours.stderr and not (tmp_path / "kv").exists()
    if "ETCD_FOO_BAR" in variables:  # the warnings come first, as etcd's
        assert "unrecognized environment variable ETCD_FOO_BAR=1" in lines[0]
    if not EtcdProcess.available():
        return
    theirs = etcd_serve(tmp_path, argv, variables)
    assert theirs.returncode == 1, theirs
    assert message in theirs.stderr, theirs.stderr


def test_the_kube_profile_from_the_environment(tmp_path):
    """The supervisor folds the variables into its workers' flags: a worker given the
    variables as well would refuse them as conflicts."""
    port = free_port_run(7)
    url = f"http://127.0.0.1:{port}"
    sup = Supervised(tmp_path, [])
    sup.data_dir = tmp_path / "kube-from-env"
    variables = {"ETCD_PROFILE": "kube", "ETCD_DATA_DIR": str(sup.data_dir),
                 "ETCD_LISTEN_CLIENT_URLS": url, "ETCD_TRANSPORT": TRANSPORT,
                 "ETCD_SNAPSHOT_COUNT": "1000"}
    env = {**without_etcd_env(os.environ), **variables,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(sup.log_path, "ab") as log:
        sup.proc = subprocess.Popen([sys.executable, "-m", "kvstore", "serve"], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        health = sup.wait_healthy(f"http://127.0.0.1:{port + 2}/health")
        assert sorted(health["partitions"]) == ["default", "events", "leases", "nodes", "pods"]
        cmdline = Path(f"/proc/{worker_pid(sup, 'pods')}/cmdline").read_bytes().split(b"\0")
        assert b"--snapshot-count=1000" in cmdline
        assert f"--data-dir={sup.data_dir / 'pods'}".encode() in cmdline
        assert (sup.data_dir / "pods" / "meta").exists()
        assert "conflicting" not in sup.log() and "unrecognized" not in sup.log()
        assert Etcdctl(f"127.0.0.1:{port + 4}").run("put", "/registry/pods/a", "1").stdout.strip() == "OK"
    finally:
        sup.kill_all()
