"""The requests' protobuf, encoded by hand: kvstore load's kube Txns (kvstore.load.kube.wire),
which this bench shares, and the method paths it calls."""
from __future__ import annotations

from kvstore.load.kube.wire import (
    LEASE_GRANT,
    PUT,
    RANGE,
    TXN,
    WATCH,
    check_encoders,
    create_compare,
    delete_op,
    ld,
    mod_compare,
    mod_compare_head,
    put_op,
    range_failure,
)

__all__ = ["LEASE_GRANT", "PUT", "RANGE", "TXN", "WATCH", "check_encoders", "create_compare",
           "delete_op", "ld", "mod_compare", "mod_compare_head", "put_op", "range_failure"]
