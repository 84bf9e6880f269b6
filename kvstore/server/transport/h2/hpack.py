"""Moved to kvstore/h2/hpack.py. This alias stays only for compiled modules built before the move:
ext/hpack.pyx imported its pure-Python twin by this path, and such a build finds it here."""
import sys

from ....h2 import hpack as _moved

sys.modules[__name__] = _moved
