"""etcdctl's --user and --password: the user a client logs in as where the server's auth is on.

``--user USER:PASSWORD``, or ``--user USER`` with ``--password``, or ``--user USER`` alone on a
terminal, which asks. With no terminal to ask on, a user without a password is a usage error
rather than a wait on standard input.
"""
from __future__ import annotations

import getpass
import sys
from collections.abc import Callable


class CredentialsError(ValueError):
    """The flags cannot say who to log in as."""


Credentials = tuple[str, str]  # (user, password)


def credentials(user: str | None, password: str | None, *,
                interactive: Callable[[], bool] = lambda: sys.stdin.isatty(),
                ask: Callable[[str], str] = getpass.getpass) -> Credentials | None:
    if user is None:
        if password is not None:
            raise CredentialsError("--password needs --user")
        return None
    name, colon, given = user.partition(":")
    if colon and password is not None:
        raise CredentialsError("--user has a password and --password gives another: give one")
    if colon:
        return name, given
    if password is not None:
        return name, password
    if interactive():
        return name, ask("Password: ")
    raise CredentialsError(f"--user {name} has no password: give --user {name}:PASSWORD "
                           f"or --password")


def user_name(user: str | None) -> str | None:
    """--user without its password, for what is written down (logs, results)."""
    return None if user is None else user.partition(":")[0]
