#!/usr/bin/env bash
# What the test suite needs beyond Python packages: Debian's etcd (the reference server for
# differential tests), etcdctl (the e2e client), curl, openssl, strace, and podman with runc and
# debootstrap (the container image's test). Installed only when missing.
set -euo pipefail
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v curl >/dev/null 2>&1 || need+=(curl)  # HTTP/2 over TLS to /health and the gateway
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the TLS tests' certificates
command -v strace >/dev/null 2>&1 || need+=(strace)  # the acknowledgement-after-sync proof
# docker/Dockerfile built and run (tests/test_image.py): podman on runc (crun refuses this VM's
# hybrid cgroups), and debootstrap for the base image no registry here can give
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package may start an etcd service on 2379; the tests use their own ports, but a
# stray service would take the port the README's serve command uses.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  ${sudo:-} systemctl stop etcd || true
fi
# sed reads to the end: head would close the pipe early, the tool die of SIGPIPE, and
# pipefail fail the install on a race
etcd --version | sed -n 1p
etcdctl version | sed -n 1p
