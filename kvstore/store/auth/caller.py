"""Who is calling: the credentials a call came with, and who they name.

The services layer sets ``CALLER`` for the duration of a call (from its ``token`` or
``authorization`` metadata, and the client certificate's common name when client certificates
are verified); the store resolves it into an AuthInfo only where etcd does (a request that
needs no permission never has its token looked at).
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple


class Credentials(NamedTuple):
    token: str | None  # the token metadata
    common_name: str | None  # of the verified client certificate


class AuthInfo(NamedTuple):
    username: str
    revision: int  # the auth revision the credentials were checked at


CALLER: ContextVar[Credentials | None] = ContextVar("kvstore_caller", default=None)
