"""kvstore/api/ is generated from proto/ and must match etcd's API.

- The committed generated code must be exactly what tools/gen_proto.py
  produces from proto/ now (a stale generation fails).
- The services, method names, streaming kinds and a sample of field numbers
  must be etcd's, since clients see them on the wire.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
API_DIR = REPO / "kvstore" / "api"
GEN = REPO / "tools" / "gen_proto.py"
REGEN_HINT = "run `python tools/gen_proto.py` and commit kvstore/api/"


def _generated_names(directory: Path) -> set[str]:
    return {
        p.name
        for p in directory.iterdir()
        if p.is_file() and (p.name == "__init__.py" or "_pb2" in p.name)
    }


@pytest.fixture(scope="module")
def fresh_generation(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen_proto")
    result = subprocess.run(
        [sys.executable, str(GEN), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"tools/gen_proto.py failed:\n{result.stdout}\n{result.stderr}"
    )
    return out


def test_generated_code_is_up_to_date(fresh_generation: Path) -> None:
    fresh = _generated_names(fresh_generation)
    committed = _generated_names(API_DIR)
    assert fresh, "tools/gen_proto.py produced no files"
    assert committed == fresh, (
        f"kvstore/api/ files differ from a fresh generation "
        f"(missing: {sorted(fresh - committed)}, "
        f"stale extra: {sorted(committed - fresh)}); {REGEN_HINT}"
    )
    stale = [
        name
        for name in sorted(fresh)
        if (API_DIR / name).read_bytes() != (fresh_generation / name).read_bytes()
    ]
    assert not stale, (
        f"kvstore/api/{{{', '.join(stale)}}} out of date with proto/ "
        f"(or generated with another grpcio-tools); {REGEN_HINT}"
    )


def test_generation_is_deterministic(fresh_generation: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(GEN), "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    for name in sorted(_generated_names(fresh_generation)):
        assert (tmp_path / name).read_bytes() == (
            fresh_generation / name
        ).read_bytes(), f"{name}: two runs of tools/gen_proto.py differ"


MODULES = ("kv", "auth", "rpc", "v3lock", "v3election")


def test_generated_imports_are_package_relative() -> None:
    for path in sorted(API_DIR.glob("*_pb2*.py*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not line.startswith(tuple(f"import {m}_pb2" for m in MODULES)), (
                f"{path.name}: absolute import {line!r}"
            )
            assert not line.startswith(tuple(f"from {m}_pb2" for m in MODULES)), (
                f"{path.name}: absolute import {line!r}"
            )


def test_protos_have_no_go_only_options() -> None:
    for proto in ("rpc.proto", "kv.proto", "auth.proto", "v3lock.proto", "v3election.proto"):
        text = (REPO / "proto" / proto).read_text(encoding="utf-8")
        code = "\n".join(
            line.split("//", 1)[0] for line in text.splitlines()
        )
        for banned in ("gogoproto", "google.api.http", "openapiv2", "versionpb"):
            assert banned not in code, f"proto/{proto} still uses {banned}"


# etcd's services, in etcd's order: method name -> (client_streaming, server_streaming)
ETCD_SERVICES: dict[str, dict[str, tuple[bool, bool]]] = {
    "KV": {
        "Range": (False, False),
        "Put": (False, False),
        "DeleteRange": (False, False),
        "Txn": (False, False),
        "Compact": (False, False),
        "RangeStream": (False, True),
    },
    "Watch": {
        "Watch": (True, True),
    },
    "Lease": {
        "LeaseGrant": (False, False),
        "LeaseRevoke": (False, False),
        "LeaseKeepAlive": (True, True),
        "LeaseTimeToLive": (False, False),
        "LeaseLeases": (False, False),
    },
    "Cluster": {
        "MemberAdd": (False, False),
        "MemberRemove": (False, False),
        "MemberUpdate": (False, False),
        "MemberList": (False, False),
        "MemberPromote": (False, False),
    },
    "Maintenance": {
        "Alarm": (False, False),
        "Status": (False, False),
        "Defragment": (False, False),
        "Hash": (False, False),
        "HashKV": (False, False),
        "Snapshot": (False, True),
        "MoveLeader": (False, False),
        "Downgrade": (False, False),
    },
    "Auth": {
        "AuthEnable": (False, False),
        "AuthDisable": (False, False),
        "AuthStatus": (False, False),
        "Authenticate": (False, False),
        "UserAdd": (False, False),
        "UserGet": (False, False),
        "UserList": (False, False),
        "UserDelete": (False, False),
        "UserChangePassword": (False, False),
        "UserGrantRole": (False, False),
        "UserRevokeRole": (False, False),
        "RoleAdd": (False, False),
        "RoleGet": (False, False),
        "RoleList": (False, False),
        "RoleDelete": (False, False),
        "RoleGrantPermission": (False, False),
        "RoleRevokePermission": (False, False),
    },
}


def test_services_are_etcds() -> None:
    from kvstore.api import rpc_pb2, rpc_pb2_grpc

    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"
    services = rpc_pb2.DESCRIPTOR.services_by_name
    assert sorted(services) == sorted(ETCD_SERVICES)
    for service_name, methods in ETCD_SERVICES.items():
        service = services[service_name]
        assert service.full_name == f"etcdserverpb.{service_name}"
        assert [m.name for m in service.methods] == list(methods), service_name
        for method_name, streaming in methods.items():
            method = service.methods_by_name[method_name]
            assert (method.client_streaming, method.server_streaming) == streaming, (
                f"/etcdserverpb.{service_name}/{method_name}"
            )
        # the generated stub/servicer/registration exist for every service
        assert hasattr(rpc_pb2_grpc, f"{service_name}Stub")
        assert hasattr(rpc_pb2_grpc, f"{service_name}Servicer")
        assert hasattr(rpc_pb2_grpc, f"add_{service_name}Servicer_to_server")

    range_stream = services["KV"].methods_by_name["RangeStream"]
    assert range_stream.input_type.full_name == "etcdserverpb.RangeRequest"
    assert range_stream.output_type.full_name == "etcdserverpb.RangeStreamResponse"


# etcd's v3lock and v3election services (etcdserver/api/v3lock, v3election): package, service,
# method name -> (client_streaming, server_streaming, request, response)
RECIPE_SERVICES = {
    ("v3lock", "v3lockpb", "Lock"): {
        "Lock": (False, False, "LockRequest", "LockResponse"),
        "Unlock": (False, False, "UnlockRequest", "UnlockResponse"),
    },
    ("v3election", "v3electionpb", "Election"): {
        "Campaign": (False, False, "CampaignRequest", "CampaignResponse"),
        "Proclaim": (False, False, "ProclaimRequest", "ProclaimResponse"),
        "Leader": (False, False, "LeaderRequest", "LeaderResponse"),
        "Observe": (False, True, "LeaderRequest", "LeaderResponse"),
        "Resign": (False, False, "ResignRequest", "ResignResponse"),
    },
}


def test_lock_and_election_services_are_etcds() -> None:
    import importlib

    for (module, package, service_name), methods in RECIPE_SERVICES.items():
        pb2 = importlib.import_module(f"kvstore.api.{module}_pb2")
        grpc_mod = importlib.import_module(f"kvstore.api.{module}_pb2_grpc")
        assert pb2.DESCRIPTOR.package == package
        assert list(pb2.DESCRIPTOR.services_by_name) == [service_name]
        service = pb2.DESCRIPTOR.services_by_name[service_name]
        assert [m.name for m in service.methods] == list(methods)
        for name, (cs, ss, req, resp) in methods.items():
            m = service.methods_by_name[name]
            assert (m.client_streaming, m.server_streaming) == (cs, ss), name
            assert (m.input_type.full_name, m.output_type.full_name) == (
                f"{package}.{req}", f"{package}.{resp}")
        assert hasattr(grpc_mod, f"{service_name}Stub")
    # the header and the kv are etcd's own messages
    from kvstore.api import v3election_pb2, v3lock_pb2

    lock_resp = v3lock_pb2.LockResponse.DESCRIPTOR
    assert lock_resp.fields_by_name["header"].message_type.full_name == "etcdserverpb.ResponseHeader"
    leader = v3election_pb2.LeaderResponse.DESCRIPTOR
    assert leader.fields_by_name["kv"].message_type.full_name == "mvccpb.KeyValue"


@pytest.mark.parametrize(
    ("module", "message", "field", "number"),
    [
        ("rpc_pb2", "ResponseHeader", "revision", 3),
        ("v3lock_pb2", "LockRequest", "lease", 2),
        ("v3lock_pb2", "LockResponse", "key", 2),
        ("v3election_pb2", "CampaignRequest", "value", 3),
        ("v3election_pb2", "LeaderKey", "lease", 4),
        ("v3election_pb2", "ProclaimRequest", "value", 2),
        ("rpc_pb2", "RangeRequest", "key", 1),
        ("rpc_pb2", "RangeRequest", "sort_target", 6),
        ("rpc_pb2", "RangeRequest", "min_create_revision", 12),
        ("rpc_pb2", "RangeRequest", "max_create_revision", 13),
        ("rpc_pb2", "RangeResponse", "count", 4),
        ("rpc_pb2", "RangeStreamResponse", "range_response", 1),
        ("rpc_pb2", "PutRequest", "ignore_lease", 6),
        ("rpc_pb2", "DeleteRangeResponse", "prev_kvs", 3),
        ("rpc_pb2", "RequestOp", "request_txn", 4),
        ("rpc_pb2", "Compare", "lease", 8),
        ("rpc_pb2", "Compare", "range_end", 64),
        ("rpc_pb2", "WatchRequest", "progress_request", 3),
        ("rpc_pb2", "WatchCreateRequest", "fragment", 8),
        ("rpc_pb2", "WatchResponse", "events", 11),
        ("rpc_pb2", "LeaseTimeToLiveResponse", "grantedTTL", 4),
        ("rpc_pb2", "HashKVResponse", "hash_revision", 4),
        ("rpc_pb2", "StatusResponse", "downgradeInfo", 13),
        ("rpc_pb2", "AuthUserAddRequest", "hashedPassword", 4),
        ("kv_pb2", "KeyValue", "lease", 6),
        ("kv_pb2", "Event", "prev_kv", 3),
        ("auth_pb2", "Permission", "range_end", 3),
        ("auth_pb2", "Role", "keyPermission", 2),
    ],
)
def test_field_numbers_are_etcds(module: str, message: str, field: str, number: int) -> None:
    import importlib

    mod = importlib.import_module(f"kvstore.api.{module}")
    descriptor = mod.DESCRIPTOR.message_types_by_name[message]
    assert descriptor.fields_by_name[field].number == number


def test_packages_and_range_stream_message() -> None:
    from kvstore.api import auth_pb2, kv_pb2, rpc_pb2

    assert kv_pb2.DESCRIPTOR.package == "mvccpb"
    assert auth_pb2.DESCRIPTOR.package == "authpb"
    assert rpc_pb2.RangeStreamResponse.DESCRIPTOR.fields_by_name[
        "range_response"
    ].message_type.full_name == "etcdserverpb.RangeResponse"
    assert rpc_pb2.RangeResponse.DESCRIPTOR.fields_by_name[
        "kvs"
    ].message_type.full_name == "mvccpb.KeyValue"
    assert rpc_pb2.Compare.CompareTarget.Value("LEASE") == 4
    assert rpc_pb2.AlarmType.Value("CORRUPT") == 2
    assert kv_pb2.Event.EventType.Value("DELETE") == 1
