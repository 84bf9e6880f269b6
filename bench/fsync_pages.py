"""CPU of a durable write by the number of 4 KiB pages written before one fdatasync, scattered
or contiguous: what an LMDB commit (about six scattered pages) costs against one appended
write-ahead record. Run it pinned, on the medium to measure:

    taskset -c 0 python3 bench/fsync_pages.py --dir /tmp
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile

PAGE = 4096
FILE_PAGES = 16384  # 64 MiB, written before the rounds: no round grows the file


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the test file goes")
    ap.add_argument("--rounds", type=int, default=1500)
    ap.add_argument("--pages", default="1,2,3,6", help="comma list of pages a round")
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(dir=args.dir, prefix="fsync-pages-")
    try:
        os.write(fd, bytes(FILE_PAGES * PAGE))
        os.fsync(fd)
        page = b"x" * PAGE
        for n in (int(p) for p in args.pages.split(",")):
            for contiguous in (False, True):
                c0, s0 = cpu()
                for _ in range(args.rounds):
                    base = random.randrange(FILE_PAGES - n)
                    for j in range(n):
                        at = base + j if contiguous else random.randrange(FILE_PAGES)
                        os.pwrite(fd, page, at * PAGE)
                    os.fdatasync(fd)
                c1, s1 = cpu()
                per = 1e6 / args.rounds
                print(f"{n} page(s), {'contiguous' if contiguous else 'scattered'}: "
                      f"{(c1 - c0) * per:.0f} µs CPU a sync ({(s1 - s0) * per:.0f} µs system)")
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
