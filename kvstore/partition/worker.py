"""What makes a ``kvstore serve`` process a supervisor's worker."""
from __future__ import annotations

import ctypes
import logging
import os
import signal

from .supervisor import SUPERVISOR_PID_ENV

logger = logging.getLogger("kvstore")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def tie_to_supervisor() -> None:
    """A worker gets SIGTERM when its supervisor dies, even by SIGKILL: no partition is left
    serving (and holding its port and data dir) with no one to stop or restart it."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if not supervisor:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError) as e:  # not Linux: the supervisor's SIGTERM still works
        logger.warning("cannot tie this worker to its supervisor's life: %s", e)
        return
    if os.getppid() != int(supervisor):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
