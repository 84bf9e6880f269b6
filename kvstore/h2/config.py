"""Which side of a connection we are, as python-hyper h2's ``H2Configuration(client_side=...)``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class H2Configuration:
    # The client opens odd-numbered streams and sends the connection preface; the server
    # expects the preface and would open even-numbered streams (push, which we never do).
    client_side: bool = False
