"""etcdctl's --user and --password, read as etcdctl reads them (kvstore.client.credentials),
for the commands that log in: kvstore migrate and kvstore load."""
from __future__ import annotations

import pytest

from kvstore.client.credentials import CredentialsError, credentials, user_name

pytestmark = pytest.mark.inprocess


def never_asked(prompt: str) -> str:
    raise AssertionError("asked for a password that was given")


def test_the_ways_of_giving_a_password():
    assert credentials(None, None) is None
    assert credentials("root:pw", None, ask=never_asked) == ("root", "pw")
    assert credentials("root:a:b", None, ask=never_asked) == ("root", "a:b")  # the first colon
    assert credentials("root:", None, ask=never_asked) == ("root", "")  # an empty password
    assert credentials("root", "pw", ask=never_asked) == ("root", "pw")
    assert credentials("root", None, interactive=lambda: True, ask=lambda p: "typed") == (
        "root", "typed")


def test_what_cannot_work():
    with pytest.raises(CredentialsError, match="^--password needs --user$"):
        credentials(None, "pw")
    with pytest.raises(CredentialsError, match="^--user has a password and --password gives"):
        credentials("root:pw", "other")
    with pytest.raises(CredentialsError, match="^--user root has no password: give --user "
                                               "root:PASSWORD or --password$"):
        credentials("root", None, interactive=lambda: False, ask=never_asked)


def test_the_name_alone_is_what_is_written_down():
    assert user_name("root:secret") == "root"
    assert user_name("root") == "root"
    assert user_name(None) is None
