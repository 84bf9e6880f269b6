"""``kvstore migrate --from URL --data-dir D``: a running etcd copied into a new data dir, then
followed revision by revision (kvstore/migrate/). ``--catch-up`` stops once the copy has every
revision the source had when it looked (the cut-over, with writes to the source stopped);
without it the mirror runs until SIGINT or SIGTERM, and a later run on the same data dir
resumes where it stopped. ``kvstore migrate verify`` compares both sides key by key.

Exit codes: 0 done, 1 refused or diverged (one line says why), 2 usage.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from pathlib import Path

from ..client import Client, CredentialsError, connect, credentials
from ..client.status import GrpcError
from ..client.tls import tls_from_flags
from ..log import DataDirInUse
from ..migrate import (
    Compacted,
    Diverged,
    MigrationRefused,
    Mirror,
    compare,
    copy_from,
    read_marker,
    store_reads,
)
from ..migrate.verify import HashCall, RangeCall
from ..store.etcd_restore import RestoreRefused
from ..store.store import Store

# The mirror takes whatever the source admitted: a revision may hold more than this store's
# own limits would let one request hold (a lease revoked with thousands of keys).
MIRROR_REQUEST_BYTES = 1 << 30
PROGRESS_EVERY = 5.0  # seconds between progress lines


def add_migrate_parser(sub) -> None:
    p = sub.add_parser("migrate", help="copy a running etcd into a new data dir, then follow it "
                                       "until cut-over (or: migrate verify)")
    p.add_argument("action", nargs="?", choices=("run", "verify"), default="run",
                   help="run (the default): copy, then follow; verify: compare both sides")
    p.add_argument("--from", dest="source", required=True,
                   help="the source etcd's client URLs (comma-separated)")
    p.add_argument("--data-dir", default=None, help="the kvstore data dir (the copy)")
    p.add_argument("--to", default=None,
                   help="verify: a running kvstore's client URLs, in place of --data-dir")
    p.add_argument("--catch-up", action="store_true",
                   help="stop once every revision the source has is applied (the cut-over)")
    p.add_argument("--revision", type=int, default=0,
                   help="verify: the revision to compare at (default: the older side's newest)")
    g = p.add_argument_group("the source's credentials, where its auth is on (etcdctl's flags)")
    g.add_argument("--user", default=None,
                   help="USER[:PASSWORD]: log in as this user (root: the snapshot is root's); "
                        "without a password, --password gives it, or a prompt asks")
    g.add_argument("--password", default=None, help="the user's password")
    g = p.add_argument_group("the source's TLS (etcdctl's flags; https:// URLs use the "
                             "system's CAs without --cacert)")
    g.add_argument("--cacert", default=None, help="the CA that signs the source's certificate")
    g.add_argument("--cert", default=None,
                   help="a client certificate, for a source that verifies its clients "
                        "(--client-cert-auth); with auth enabled on it, root's")
    g.add_argument("--key", dest="tls_key", default=None, help="the client certificate's key")
    g = p.add_argument_group("verify --to: the served copy's TLS and credentials (etcdctl "
                             "make-mirror's --dest-* flags)")
    g.add_argument("--dest-cacert", default=None, help="the CA that signs the copy's certificate")
    g.add_argument("--dest-cert", default=None, help="a client certificate for the copy")
    g.add_argument("--dest-key", default=None, help="that certificate's key")
    g.add_argument("--dest-user", default=None, help="USER[:PASSWORD] on the copy, its auth on")
    g.add_argument("--dest-password", default=None, help="that user's password")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="kvstore migrate: %(message)s")
    try:
        args.credentials = credentials(args.user, args.password)
        args.dest_credentials = credentials(args.dest_user, args.dest_password)
    except CredentialsError as e:
        print(f"kvstore migrate: {e}", file=sys.stderr)
        return 2
    if args.action == "verify":
        if (args.data_dir is None) == (args.to is None):
            print("kvstore migrate verify: give --data-dir or --to (one of them)", file=sys.stderr)
            return 2
        return asyncio.run(_verify(args))
    if args.data_dir is None:
        print("kvstore migrate: --data-dir is required", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_with_signals(_migrate(args)))
    except (MigrationRefused, RestoreRefused, DataDirInUse, Diverged, GrpcError, OSError) as e:
        print(f"kvstore migrate: {e}", file=sys.stderr)
        return 1


async def _with_signals(coro) -> int:
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0  # stopped: _migrate said where


async def _migrate(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)

    async def source():
        return await _connect_source(args)

    marker = read_marker(data_dir)
    if marker is None:
        await _copy(source, data_dir, args.source)
    elif marker["source"] != args.source:
        raise MigrationRefused(f"data dir {data_dir} is a copy of {marker['source']}, "
                               f"not of {args.source}")
    while True:
        store = await Store.open("lmdb", data_dir, lease_expiry=False,
                                 max_request_bytes=MIRROR_REQUEST_BYTES)
        mirror = Mirror(store, source)
        print(f"following {args.source} from revision {mirror.next_revision}", flush=True)
        progress = asyncio.ensure_future(_progress(mirror))
        try:
            applied = await mirror.run(catch_up=args.catch_up)
            if args.catch_up:
                async with await source() as client:
                    compacted, revoked = await mirror.cut_over(client)
                print(f"caught up at revision {applied}, compacted at {max(compacted, 0)} as the "
                      f"source is, {revoked} leases the source no longer has revoked; "
                      f"serve it with: kvstore serve --data-dir {data_dir}", flush=True)
            return 0
        except Compacted as e:
            print(f"kvstore migrate: {e}: copying again, at a newer revision", file=sys.stderr,
                  flush=True)
        except asyncio.CancelledError:
            print(f"stopped at revision {mirror.applied}; run again to resume", flush=True)
            raise
        finally:
            progress.cancel()
            await store.close()
        shutil.rmtree(data_dir)
        await _copy(source, data_dir, args.source)


async def _connect_source(args: argparse.Namespace) -> Client:
    """A connection to the source, logged in when --user says so."""
    return await connect(args.source, tls_from_flags(args.cacert, args.cert, args.tls_key),
                         args.credentials)


async def _copy(source, data_dir: Path, url: str) -> None:
    async with await source() as client:
        r = await copy_from(client, data_dir, url)
    print(f"copied {url} at revision {r.revision}: {r.keys} keys ({r.revisions} revisions), "
          f"{r.leases} leases, compacted at {max(r.compact_revision, 0)}", flush=True)


async def _progress(mirror: Mirror) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        print(f"applied revision {mirror.applied}, the source's {mirror.source_revision}",
              flush=True)


async def _verify(args: argparse.Namespace) -> int:
    try:
        async with await _connect_source(args) as source, \
                contextlib.AsyncExitStack() as stack:
            copy_range, copy_hash, copy_rev = await _copy_side(args, stack)
            source_rev = (await source.status()).header.revision
            revision = args.revision or min(source_rev, copy_rev)
            c = await compare(source.range, copy_range, revision, source.hash_kv, copy_hash)
    except (GrpcError, OSError, DataDirInUse) as e:
        print(f"kvstore migrate verify: {e}", file=sys.stderr)
        return 1
    print(f"compared {c.keys} keys at revision {revision} (source at {source_rev}, copy at "
          f"{copy_rev}): {c.differences} differences")
    print(c.hashes)
    for line in c.shown:
        print(f"  {line}")
    return 0 if c.differences == 0 else 1


async def _copy_side(args: argparse.Namespace,
                     stack: contextlib.AsyncExitStack) -> tuple[RangeCall, HashCall, int]:
    """The copy's Range and HashKV, and its revision: a running kvstore's (--to), or the data
    dir's, opened here (--data-dir)."""
    if args.to is not None:
        dest_tls = tls_from_flags(args.dest_cacert, args.dest_cert, args.dest_key)
        other = await connect(args.to, dest_tls, args.dest_credentials)
        stack.push_async_callback(other.close)
        return ((lambda r: other.range(r)), (lambda r: other.hash_kv(r)),
                (await other.status()).header.revision)
    store = await Store.open("lmdb", args.data_dir, lease_expiry=False)
    stack.push_async_callback(store.close)
    return (*store_reads(store), store.mvcc.current_rev)
