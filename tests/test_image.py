"""docker/Dockerfile built and run with podman, where podman (and runc, and debootstrap) are
installed: skipped elsewhere.

No registry of container images is reachable here, so the Dockerfile's base image
(python:3.11-slim-bookworm) is stood in for by one made on the spot: Debian bookworm from
debootstrap with Debian's Python 3.11, its headers, venv and pip (what the official image
provides), and the host's CA certificates (the build fetches from PyPI as the host does). It is
passed as PYTHON_IMAGE and kept in podman's storage for the next run. Everything else is the
Dockerfile as shipped: the builder compiles the Cython wheel, the runtime installs it.

What this machine needs (a VM without CAP_SYS_RESOURCE and with cgroups v1 plus a v2 hierarchy
holding a controller): runc (crun refuses the hybrid cgroups), and explicit --ulimit values
within this process's hard limits (podman's defaults are above them, and raising one fails).
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from etcdctl import Etcdctl
from procs import REPO, free_port

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(not all(shutil.which(t) for t in ("podman", "runc", "debootstrap")),
                       reason="needs podman, runc and debootstrap"),
]

BASE = "localhost/kvstore-test-base:python3.11-bookworm"
IMAGE = "localhost/kvstore:test"
BASE_PACKAGES = "python3,python3-dev,python3-venv,python3-pip,ca-certificates"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True,
                         timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {run.returncode}\n{run.stdout}\n{run.stderr}")
    return run


def ulimits() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def make_base(tmp: Path) -> None:
    """The stand-in of python:3.11-slim-bookworm, from Debian's archive."""
    root = tmp / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm",
                    str(root), "http://deb.debian.org/debian"],
                   check=True, capture_output=True, timeout=1200)
    for name, target in (("python", "python3"), ("pip", "pip3")):  # as the official image's
        if not (root / "usr/bin" / name).exists():
            (root / "usr/bin" / name).symlink_to(target)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    with tarfile.open(tmp / "rootfs.tar", "w") as tar:
        tar.add(root, arcname=".")
    podman("import", "--change", 'CMD ["python3"]', str(tmp / "rootfs.tar"), BASE, timeout=600)
    subprocess.run(["rm", "-rf", str(root)], check=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if podman("image", "exists", BASE, check=False).returncode != 0:
        make_base(tmp_path_factory.mktemp("base"))
    podman("build", "--format", "docker", "-f", str(REPO / "docker/Dockerfile"),
           "--build-arg", f"PYTHON_IMAGE={BASE}", *ulimits(), "-t", IMAGE, str(REPO), timeout=1800)
    yield IMAGE
    # The builder stage stays behind untagged (about 680 MB a build): without this, every run
    # on a new commit would leave one more.
    podman("image", "prune", "-f", check=False)


def wait_healthy(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the image's HEALTHCHECK, run on demand (its timer needs systemd, absent here)
        if podman("healthcheck", "run", name, check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} not healthy:\n{podman('logs', name, check=False).stderr}")


def test_the_image_serves_as_configured_by_etcd_variables_and_keeps_its_data(image):
    name = f"kvstore-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman("run", "-d", "--name", name, *ulimits(), "-p", f"127.0.0.1:{port}:2379",
           "-e", "ETCD_NAME=smoke", "-e", f"ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:{port}", image)
    try:
        wait_healthy(name)
        ctl = Etcdctl(f"127.0.0.1:{port}")
        assert ctl.run("put", "foo", "bar").stdout.strip() == "OK"
        assert ctl.run("get", "foo", "--print-value-only").stdout.strip() == "bar"
        members = json.loads(ctl.run("member", "list", "-w", "json").stdout)["members"]
        assert [(m["name"], m["clientURLs"]) for m in members] == [("smoke", [f"http://127.0.0.1:{port}"])]
        # a non-root user; the compiled extensions, not their twins
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        ext = podman("exec", name, "python", "-c", "import kvstore._ext.mvcc_core as m; print(m.__file__)")
        assert ext.stdout.strip().endswith(".so")
        logs = podman("logs", name).stderr
        assert "recognized and used environment variable ETCD_NAME=smoke" in logs
        assert "ready to serve client requests on http://0.0.0.0:2379" in logs
        # SIGTERM: a clean stop; the volume keeps the data for the next start
        podman("stop", "-t", "30", name, timeout=60)
        assert podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
        podman("start", name)
        wait_healthy(name)
        assert ctl.run("get", "foo", "--print-value-only").stdout.strip() == "bar"
    finally:
        podman("rm", "-f", "-v", name, check=False)


def test_a_flag_the_image_sets_by_variable_is_refused_as_etcd_refuses_it(image):
    run = podman("run", "--rm", *ulimits(), image, "kvstore", "serve", "--data-dir", "/tmp/d",
                 check=False)
    assert run.returncode == 1
    assert ('kvstore: conflicting environment variable "ETCD_DATA_DIR" is shadowed by '
            "corresponding command-line flag") in run.stderr
