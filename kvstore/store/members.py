"""Member URLs as etcd checks them (its types.NewURLs)."""
from __future__ import annotations

from urllib.parse import urlsplit


def valid_url(url: str) -> bool:
    """http, https, unix or unixs; a host:port; no path."""
    try:
        u = urlsplit(url.strip())
        port = u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https", "unix", "unixs"):
        return False
    if port is None and not u.netloc.endswith(":"):  # Go's SplitHostPort wants a port (may be empty)
        return False
    return not u.path
