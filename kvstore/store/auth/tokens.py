"""Auth tokens, as etcd's ``--auth-token`` providers make them: ``simple`` (the default) or
``jwt``.

A simple token is 16 random letters, a dot and the log index of the Authenticate entry that
assigned it; every member learns it when it applies that entry, and forgets it after
``--auth-token-ttl`` seconds unused, when auth is disabled, or when its user is deleted or
changes password. It names its user at the current auth revision.

A JWT is signed (``sign-method=RS256|ES256|...`` with ``priv-key``/``pub-key``) and names its
user and the auth revision it was issued at: once permissions change, it is refused with
``revision of auth store is old`` and the client authenticates again. No member keeps it.
"""
from __future__ import annotations

import secrets
import string
import time
from pathlib import Path
from typing import Protocol

from ... import errors
from .caller import AuthInfo

SIMPLE_TOKEN_LETTERS = string.ascii_letters
SIMPLE_TOKEN_PREFIX_LENGTH = 16
DEFAULT_TTL = 300.0  # etcd's --auth-token-ttl
DEFAULT_JWT_TTL = 300.0  # etcd's jwt ttl option (5m)


class TokenProvider(Protocol):
    def prefix(self) -> str:
        """What Authenticate proposes with the user (simple: the token's random part)."""
        ...

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str: ...

    def info(self, token: str, revision: int) -> AuthInfo | None:
        """Who the token names (None: not a valid token); ``revision``: the state's."""
        ...

    def invalidate_user(self, username: str) -> None: ...

    def disable(self) -> None: ...


class SimpleTokens:
    def __init__(self, ttl: float = DEFAULT_TTL, clock=time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, deadline)
        self._next_sweep = 0.0

    def prefix(self) -> str:
        return "".join(secrets.choice(SIMPLE_TOKEN_LETTERS) for _ in range(SIMPLE_TOKEN_PREFIX_LENGTH))

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        now = self._clock()
        self._tokens[token] = (username, now + self.ttl)
        if now >= self._next_sweep:  # tokens nobody uses any more go, in one pass per TTL
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._next_sweep = now + self.ttl
        return token

    def info(self, token: str, revision: int) -> AuthInfo | None:
        held = self._tokens.get(token)
        if held is None:
            return None
        now = self._clock()
        if held[1] <= now:
            del self._tokens[token]
            return None
        self._tokens[token] = (held[0], now + self.ttl)  # its TTL starts again at each use
        return AuthInfo(held[0], revision)

    def invalidate_user(self, username: str) -> None:
        self._tokens = {t: v for t, v in self._tokens.items() if v[0] != username}

    def disable(self) -> None:
        self._tokens.clear()


class JwtTokens:
    def __init__(self, sign_method: str, priv_key: bytes | None, pub_key: bytes | None,
                 ttl: float = DEFAULT_JWT_TTL):
        import jwt  # PyJWT, with cryptography for RS*/ES*/PS*/EdDSA

        self._jwt = jwt
        self.sign_method = sign_method
        self.ttl = ttl
        self._priv = priv_key
        public = pub_key if pub_key is not None else priv_key
        if public is None:
            raise TokenOptionError("jwt: pub-key is required")
        self._pub: bytes = public

    def prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        if self._priv is None:
            # etcd's ErrVerifyOnly (its text, code UNKNOWN)
            raise errors.EtcdError("auth: token signing attempted with verify-only key")
        claims = {"username": username, "revision": revision, "exp": int(time.time() + self.ttl)}
        return self._jwt.encode(claims, self._priv, algorithm=self.sign_method)

    def info(self, token: str, revision: int) -> AuthInfo | None:
        try:
            claims = self._jwt.decode(token, self._pub, algorithms=[self.sign_method])
        except self._jwt.PyJWTError:
            return None
        username, rev = claims.get("username"), claims.get("revision")
        if not isinstance(username, str) or not isinstance(rev, int):
            return None
        return AuthInfo(username, rev)

    def invalidate_user(self, username: str) -> None:
        pass  # a JWT holds its revision: the change that bumped it refuses the token

    def disable(self) -> None:
        pass


class TokenOptionError(ValueError):
    pass


def parse_ttl(text: str) -> float:
    """A Go duration as etcd's jwt ttl option takes it: 5m, 30s, 1h, 1m30s."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    total, num, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if not num or unit not in units:
            raise TokenOptionError(f"time: invalid duration {text!r}")
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        raise TokenOptionError(f"time: missing unit in duration {text!r}")
    return total


def token_provider(spec: str, ttl: float = DEFAULT_TTL) -> TokenProvider:
    """The provider ``--auth-token`` names: ``simple``, or ``jwt,pub-key=P,priv-key=K,
    sign-method=M[,ttl=D]`` (etcd's syntax; ``ttl``: the simple tokens' --auth-token-ttl)."""
    kind, *options = spec.split(",")
    if kind == "simple":
        return SimpleTokens(ttl)
    if kind != "jwt":
        raise TokenOptionError(f"unknown token type: {kind}")
    opts: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep:
            raise TokenOptionError(f"invalid option: {option}")
        opts[name] = value
    unknown = set(opts) - {"pub-key", "priv-key", "sign-method", "ttl"}
    if unknown:
        raise TokenOptionError(f"unknown token option: {sorted(unknown)[0]}")
    method = opts.get("sign-method", "")
    if not method:
        raise TokenOptionError("jwt: sign-method is required")
    pub = Path(opts["pub-key"]).read_bytes() if opts.get("pub-key") else None
    priv = Path(opts["priv-key"]).read_bytes() if opts.get("priv-key") else None
    if method.startswith("HS"):
        if priv is None:
            raise TokenOptionError("jwt: priv-key is required for a HMAC sign-method")
        pub = priv
    elif pub is None:
        raise TokenOptionError("jwt: pub-key is required")
    jwt_ttl = parse_ttl(opts["ttl"]) if "ttl" in opts else DEFAULT_JWT_TTL
    return JwtTokens(method, priv, pub, jwt_ttl)
