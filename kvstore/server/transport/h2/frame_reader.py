"""Moved to kvstore/h2/frame_reader.py. This alias stays only for compiled modules built before the move:
ext/h2frames.pyx imported its pure-Python twin by this path, and such a build finds it here."""
import sys

from ....h2 import frame_reader as _moved

sys.modules[__name__] = _moved
