"""Multi-version concurrency control: the in-memory state machine of one keyspace."""
from .core import COMPILED, KeyValue
from .kvstore import MVCCStore, RangeResult, WriteTxn

__all__ = ["COMPILED", "KeyValue", "MVCCStore", "RangeResult", "WriteTxn"]
