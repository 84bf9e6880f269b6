"""Multi-version concurrency control: the in-memory state machine of one keyspace."""
from .kv import KeyValue
from .kvstore import MVCCStore, RangeResult, WriteTxn

__all__ = ["KeyValue", "MVCCStore", "RangeResult", "WriteTxn"]
