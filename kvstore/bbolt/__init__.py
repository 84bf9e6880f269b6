"""bbolt's file format (go.etcd.io/bbolt, the B+tree file etcd keeps its state and snapshots
in): a reader and a writer, small enough to own. page_codec.py lays out pages (its compiled
twin is ext/bbolt_pages.pyx), meta.py and freelist.py the two special pages, reader.py and
writer.py whole files."""
from .meta import Meta
from .reader import BoltCorrupt, BoltFile, Bucket
from .writer import BoltWriter, BucketWriter

__all__ = ["BoltFile", "Bucket", "BoltCorrupt", "BoltWriter", "BucketWriter", "Meta"]
