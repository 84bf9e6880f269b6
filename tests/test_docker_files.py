"""docker/: what the image and the compose file promise, checked without a container engine
(hadolint lints the Dockerfile in make lint; tests/test_image.py builds and runs the image
where podman can). Every ETCD_* variable they set is one ``kvstore serve`` takes, with a
value it accepts; the image's health check is run against a real server."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request

import pytest
import yaml

from kvstore.server.cli import build_parsers
from kvstore.server.env_flags import apply, settable_flags
from procs import REPO, KvstoreProcess

DOCKER = REPO / "docker"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            env.update(kv.split("=", 1) for kv in shlex.split(rest))
    return env


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def serve_args(environ: dict[str, str], argv: list[str] | None = None):
    """``kvstore serve ARGV`` as it would start with ``environ`` (EnvFlagError if refused)."""
    parser, serve_parser = build_parsers()
    argv = argv or []
    args = parser.parse_args(["serve", *argv])
    apply(args, serve_parser, argv, environ)
    return args


def service_env(service: dict) -> dict[str, str]:
    """A service's environment over the image's, as the container gets it (``env -u`` in its
    command applied)."""
    env = {**image_env(), **{k: str(v) for k, v in (service.get("environment") or {}).items()}}
    command = service.get("command") or []
    if command[:1] == ["env"]:
        for i, word in enumerate(command):
            if word == "-u":
                env.pop(command[i + 1], None)
    return env


# --- the Dockerfile -------------------------------------------------------------------------

@pytest.mark.inprocess
def test_the_image_is_multi_stage_slim_non_root_with_a_volume_and_a_health_check():
    steps = instructions()
    words = [w for w, _ in steps]
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in steps
    froms = [rest for w, rest in steps if w == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    runtime = steps[steps.index(("FROM", froms[1])):]
    # the runtime stage installs the builder's wheels, with no compiler of its own
    assert not any("gcc" in rest for w, rest in runtime if w == "RUN")
    assert any("from=builder" in rest and "--no-index" in rest for w, rest in runtime if w == "RUN")
    user = [rest for w, rest in runtime if w == "USER"]
    assert len(user) == 1 and user[0].split(":")[0] not in ("0", "root")
    assert ("VOLUME", "/var/lib/kvstore") in runtime and ("EXPOSE", "2379") in runtime
    assert ("CMD", '["kvstore", "serve"]') in runtime
    assert words.count("HEALTHCHECK") == 1


@pytest.mark.inprocess
def test_the_images_variables_are_serve_flags_it_accepts():
    env = image_env()
    etcd = {k: v for k, v in env.items() if k.startswith("ETCD_")}
    assert set(etcd) == {"ETCD_DATA_DIR", "ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS"}
    assert set(etcd) <= set(settable_flags(build_parsers()[1]))
    args = serve_args(env)
    assert args.data_dir == "/var/lib/kvstore" and args.listen_client_urls == ["http://0.0.0.0:2379"]
    assert env["KVSTORE_HEALTH_URL"] == "http://127.0.0.1:2379/health"
    assert "/opt/kvstore/bin" in env["PATH"].split(":")


@pytest.mark.inprocess
def test_the_build_context_holds_what_the_builder_copies():
    copied = set()
    for word, rest in instructions():
        if word == "COPY" and "--from" not in rest:
            copied.update(rest.split()[:-1])
    assert copied == {"pyproject.toml", "setup.py", "README.md", "ext", "kvstore"}
    for path in copied:
        assert (REPO / path).exists(), path
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):].count("*") == 1  # everything out, then what is let in
    for path in copied:
        assert f"!{path}" in ignore or f"!{path}/" in ignore, path
    assert "**/*.so" in ignore  # the builder compiles its own


@pytest.mark.h2_transport
def test_the_images_health_check_passes_on_a_serving_member_and_fails_on_none(tmp_path):
    health = next(rest for w, rest in instructions() if w == "HEALTHCHECK")
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2"]) as server:
        env = dict(os.environ, KVSTORE_HEALTH_URL=f"{server.url}/health")
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as r:
            assert json.load(r) == {"health": "true", "reason": ""}
        run = subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, timeout=30)
        assert run.returncode == 0, run
    run = subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, timeout=30)
    assert run.returncode != 0  # nothing serves there any more


# --- compose.yaml ---------------------------------------------------------------------------

MEMBERS = ("kvstore1", "kvstore2", "kvstore3")
NATS = ("nats1", "nats2", "nats3")


@pytest.mark.inprocess
def test_compose_runs_three_nats_three_members_the_checks_and_a_kube_profile():
    c = compose()
    services = c["services"]
    assert set(services) == {*NATS, *MEMBERS, "etcdctl-put", "etcdctl-check", "kvstore-kube"}
    profiled = {name: s.get("profiles") for name, s in services.items() if s.get("profiles")}
    assert profiled == {"kvstore-kube": ["kube"]}
    for name in NATS:
        s = services[name]
        assert s["image"].startswith("nats:") and s["healthcheck"]["test"][0] == "CMD"
        assert s["environment"] == {"NATS_NAME": name}
    for name in (*MEMBERS, "kvstore-kube"):
        s = services[name]
        assert s["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert s["volumes"][0].endswith(":/var/lib/kvstore")
    volumes = [services[n]["volumes"][0].split(":")[0] for n in (*NATS, *MEMBERS, "kvstore-kube")]
    assert len(set(volumes)) == len(volumes) and set(volumes) == set(c["volumes"])
    for name in MEMBERS:
        assert services[name]["depends_on"] == {n: {"condition": "service_healthy"} for n in NATS}
    check = services["etcdctl-check"]
    assert check["depends_on"]["etcdctl-put"] == {"condition": "service_completed_successfully"}
    assert all(check["depends_on"][m] == {"condition": "service_healthy"} for m in MEMBERS)
    put = services["etcdctl-put"]
    assert put["image"] == check["image"] and put["image"].startswith("gcr.io/etcd-development/etcd:v3.5.")
    assert put["command"][-3:] == ["put", "/compose/check", "written-through-m1"]
    assert check["command"][-3:] == ["put", "--ignore-value", "/compose/check"]
    assert put["command"][0] != check["command"][0]  # written on one member, checked on another
    published = [p.split(":")[1] for n in MEMBERS for p in services[n]["ports"]]
    assert "2380" not in published and len(set(published)) == 3


@pytest.mark.inprocess
@pytest.mark.parametrize("name", MEMBERS)
def test_each_member_is_a_jetstream_member_kvstore_would_start(name):
    services = compose()["services"]
    args = serve_args(service_env(services[name]))
    i = MEMBERS.index(name)
    assert args.name == f"m{i + 1}" and args.log_backend == "jetstream"
    assert args.cluster_name == "compose" and args.nats_replicas == 3
    assert args.advertise_client_urls == [f"http://{name}:2379"]
    assert args.listen_client_urls == ["http://0.0.0.0:2379"]
    nats = args.nats_url.split(",")
    assert nats[0] == f"nats://{NATS[i]}:4222" and sorted(nats) == [f"nats://{n}:4222" for n in NATS]


@pytest.mark.inprocess
def test_the_kube_service_is_a_supervisor_kvstore_would_start():
    from kvstore.partition.launch import _partition_map, passthrough_flags

    s = compose()["services"]["kvstore-kube"]
    env = service_env(s)
    assert "ETCD_ADVERTISE_CLIENT_URLS" not in env  # a worker's own, refused with partitions
    assert s["command"][-2:] == ["kvstore", "serve"]
    args = serve_args(env)
    assert args.profile == "kube" and args.advertise_client_urls is None
    ports = sorted(int(p.rsplit(":", 1)[1]) for p in (part.url for part in _partition_map(args)))
    assert ports == [42379, 42382, 42383, 42384, 42385]
    published = set()
    for spec in s["ports"]:
        container = spec.rsplit(":", 1)[1]
        lo, _, hi = container.partition("-")
        published.update(range(int(lo), int(hi or lo) + 1))
    assert published >= {*ports, 42381}
    assert env["KVSTORE_HEALTH_URL"] == "http://127.0.0.1:42381/health"
    assert passthrough_flags(args, build_parsers()[1]) == []  # the workers: LMDB, defaults


@pytest.mark.inprocess
def test_nats_servers_cluster_with_jetstream_as_scripts_nats_cluster_sh_configures_them():
    conf = compose()["configs"]["nats.conf"]["content"]
    assert re.search(r"^server_name: \$\$NATS_NAME$", conf, re.M)  # compose turns $$ into $
    assert re.search(r"sync_interval: always", conf) and re.search(r"max_payload: 8MB", conf)
    assert "store_dir: /data" in conf and "http: 0.0.0.0:8222" in conf
    routes = re.search(r"routes: \[(.*)\]", conf).group(1).split(", ")
    assert routes == [f"nats-route://{n}:6222" for n in NATS]
    for name in NATS:
        s = compose()["services"][name]
        assert s["volumes"] == [f"{name}-data:/data"]
        assert s["configs"] == [{"source": "nats.conf", "target": "/etc/nats/nats.conf"}]
