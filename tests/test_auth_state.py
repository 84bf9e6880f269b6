"""The auth state in process: merged permission ranges against etcd's interval-tree rule written
out as a model, random permissions and requests; entries through the log format; the state
through a snapshot's dump and load; tokens."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from kvstore import errors
from kvstore.api import auth_pb2, rpc_pb2 as pb
from kvstore.store import entry
from kvstore.store.auth.permissions import READ, READWRITE, WRITE, UserPermissions
from kvstore.store.auth.state import AuthState
from kvstore.store.auth.tokens import SimpleTokens, parse_ttl, token_provider

pytestmark = pytest.mark.inprocess

INF = None


def _lt(a, b) -> bool:
    """etcd's affine order: None (and an empty key) past every key."""
    if a is None:
        return False
    if b is None:
        return True
    return a < b


def _interval(key: bytes, range_end: bytes):
    if not range_end:
        return key, key + b"\x00"
    return key, (INF if range_end == b"\x00" else range_end)


def model_permits(perms, key: bytes, range_end: bytes, want: int) -> bool:
    """etcd's range permission check as its adt.IntervalTree does it: Intersects for one key,
    Contains (the overlapping intervals, visited by begin, contiguous and covering) for a range."""
    ivls = []
    for p in perms:
        if not p.key:
            continue  # an empty begin is past every key: nothing
        if p.permType == READWRITE or p.permType == want:
            b, e = _interval(p.key, p.range_end)
            if e is None or b < e:
                ivls.append((b, e))
    if not range_end:
        return any(b <= key and _lt(key, e) for b, e in ivls)
    qb, qe = key, (INF if range_end == b"\x00" else range_end)
    visit = sorted((i for i in ivls if _lt(qb, i[1]) and _lt(i[0], qe)), key=lambda i: i[0])
    if not visit:
        return False
    min_begin, max_end = visit[0]
    for b, e in visit[1:]:
        if _lt(max_end, b):
            return False
        if _lt(max_end, e):
            max_end = e
    return min_begin <= qb and not _lt(max_end, qe)


keys = st.sampled_from([b"a", b"a\x00", b"ab", b"b", b"c", b"c\x00", b"d", b"m", b"z", b"\x00"])
ends = st.sampled_from([b"", b"\x00", b"b", b"c", b"d", b"e", b"z", b"zz"])
permissions = st.builds(lambda t, k, e: auth_pb2.Permission(permType=t, key=k, range_end=e),
                        st.sampled_from([READ, WRITE, READWRITE]), keys | st.just(b""), ends)


@settings(max_examples=400, deadline=None)
@given(st.lists(permissions, max_size=6), keys, ends, st.sampled_from([READ, WRITE]))
def test_merged_ranges_decide_as_etcds_interval_tree(perms, key, range_end, want):
    if range_end and range_end != b"\x00" and range_end <= key:
        return  # an empty or inverted request range: Range refuses it before any check
    assert UserPermissions(perms).permits(key, range_end, want) == model_permits(perms, key, range_end, want)


def test_touching_ranges_cover_together_and_a_gap_does_not():
    perms = UserPermissions([auth_pb2.Permission(permType=READ, key=b"a", range_end=b"c"),
                             auth_pb2.Permission(permType=READ, key=b"c", range_end=b"e")])
    assert perms.permits(b"a", b"e", READ) and not perms.permits(b"a", b"f", READ)
    assert not perms.permits(b"a", b"c", WRITE)


def state_with_users() -> AuthState:
    s = AuthState()
    s.user_add(pb.AuthUserAddRequest(name="root", hashedPassword="h"))
    s.user_grant_role(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    s.role_add(pb.AuthRoleAddRequest(name="r"))
    s.role_grant_permission(pb.AuthRoleGrantPermissionRequest(
        name="r", perm=auth_pb2.Permission(permType=READ, key=b"k", range_end=b"l")))
    s.user_add(pb.AuthUserAddRequest(name="u", hashedPassword="h2"))
    s.user_grant_role(pb.AuthUserGrantRoleRequest(user="u", role="r"))
    s.enable()
    return s


def test_checks_and_the_revision():
    s = state_with_users()
    rev = s.revision
    assert rev == 7  # six changes; enabling is none
    s.check_read("u", rev, b"k1")
    s.check_read("root", rev, b"anything")
    with pytest.raises(errors.PermissionDenied):
        s.check_write("u", rev, b"k1")
    with pytest.raises(errors.UserEmpty):
        s.check_read("", 0, b"k1")
    with pytest.raises(errors.PermissionDenied):
        s.check_read("ghost", rev, b"k1")
    s.role_add(pb.AuthRoleAddRequest(name="other"))
    with pytest.raises(errors.AuthOldRevision):
        s.check_read("u", rev, b"k1")  # a decision taken at the older revision
    with pytest.raises(errors.InvalidAuthMgmt):
        s.user_delete(pb.AuthUserDeleteRequest(name="root"))
    s.role_delete(pb.AuthRoleDeleteRequest(role="r"))
    assert list(s.users["u"].roles) == []
    with pytest.raises(errors.PermissionDenied):
        s.check_read("u", s.revision, b"k1")


def test_the_state_through_a_snapshot_dump():
    s = state_with_users()
    again = AuthState()
    again.load(s.dump())
    assert again.dump() == s.dump()
    again.check_read("u", again.revision, b"k1")
    assert again.users["u"].options.SerializeToString() == b""  # present, empty, as etcd stores it
    assert again.users["u"].SerializeToString().endswith(b"\x22\x00")


def test_auth_entries_through_the_log_format():
    change = entry.AuthChange("RoleGrantPermission", pb.AuthRoleGrantPermissionRequest(
        name="r", perm=auth_pb2.Permission(permType=WRITE, key=b"x")))
    as_user = entry.AsUser("alice", 9, entry.AUTH, change)
    record = entry.encode_record(1, 5, [entry.encode_entry(entry.AS_USER, as_user.SerializeToString())])
    [(kind, body)] = list(entry.record_entries(record))
    decoded = entry.MESSAGES[kind].FromString(body)
    assert decoded.username == "alice" and decoded.revision == 9 and decoded.kind == entry.AUTH
    assert decoded.request == change
    with pytest.raises(entry.CorruptRecord):
        entry.AuthChange.FromString(b"\xff")


def test_simple_tokens_expire_unused_and_end_with_their_user():
    now = [0.0]
    tokens = SimpleTokens(ttl=10, clock=lambda: now[0])
    t = tokens.assign("u", 3, "abcdefghijklmnop", 42)
    assert t == "abcdefghijklmnop.42"
    now[0] = 9
    assert tokens.info(t, 5) == ("u", 5)  # the current revision; used: 10 s more
    now[0] = 18
    assert tokens.info(t, 5) is not None
    now[0] = 29
    assert tokens.info(t, 5) is None
    t2 = tokens.assign("v", 3, "x" * 16, 43)
    tokens.invalidate_user("v")
    assert tokens.info(t2, 5) is None


def test_token_options_as_etcds_flag():
    assert isinstance(token_provider("simple"), SimpleTokens)
    assert parse_ttl("5m") == 300 and parse_ttl("1m30s") == 90
    for bad in ("plain", "jwt,sign-method", "jwt,pub-key=/nonexistent", "jwt,bogus=1,sign-method=RS256"):
        with pytest.raises((ValueError, OSError)):
            token_provider(bad)


@pytest.mark.parametrize("method", ["RS256", "ES256", "PS256", "EdDSA", "HS256"])
def test_jwt_tokens_by_sign_method(tmp_path, method):
    """Each sign method etcd offers: a token names its user and revision, a tampered or
    foreign one names no one, a verify-only provider (public key alone) cannot issue."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if method == "HS256":
        priv_pem, pub_pem = b"a shared secret of some length, 32 bytes or more", None
    else:
        key = {"RS256": lambda: rsa.generate_private_key(65537, 2048),
               "PS256": lambda: rsa.generate_private_key(65537, 2048),
               "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
               "EdDSA": ed25519.Ed25519PrivateKey.generate}[method]()
        priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "priv").write_bytes(priv_pem)
    spec = f"jwt,priv-key={tmp_path / 'priv'},sign-method={method},ttl=1m"
    if pub_pem is not None:
        (tmp_path / "pub").write_bytes(pub_pem)
        spec += f",pub-key={tmp_path / 'pub'}"
    tokens = token_provider(spec)
    token = tokens.assign("alice", 12, "", 0)
    assert tokens.info(token, 99) == ("alice", 12)  # its own revision, not the state's
    head, body, sig = token.split(".")
    forged = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert tokens.info(f"{head}.{body}.{forged}", 99) is None
    assert tokens.info("not.a.jwt", 99) is None
    if pub_pem is not None:
        verify_only = token_provider(f"jwt,pub-key={tmp_path / 'pub'},sign-method={method}")
        assert verify_only.info(token, 99) == ("alice", 12)
        with pytest.raises(errors.EtcdError):
            verify_only.assign("alice", 12, "", 0)
