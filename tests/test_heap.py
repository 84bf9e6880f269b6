"""heap.release_free_memory gives freed heap pages back to the system (glibc's malloc_trim)."""
from kvstore.store import heap


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_freed_heap_goes_back_to_the_system():
    assert heap._malloc_trim is not None  # Debian: glibc
    # 200 MB in heap-sized blocks (below the mmap threshold), then one block allocated after
    # them so the heap's top cannot shrink on its own when they are freed
    blocks = [bytearray(4000) for _ in range(50_000)]
    pin = bytearray(4000)
    held = rss()
    del blocks
    freed = rss()
    assert heap.release_free_memory()
    released = rss()
    assert freed - released > 100 * 2**20, (held, freed, released)
    del pin
