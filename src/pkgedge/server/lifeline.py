"""Children that die with their parent: ``PR_SET_PDEATHSIG`` on Linux.

A process started by ``pkgedge up`` (the origin, the edge workers) asks the kernel to send it
a signal when its parent dies, so a parent killed with SIGKILL (or by the OOM killer) leaves
nothing running. The kernel sends it when the *thread* that forked the child exits, so call
:func:`die_with_parent` only in children forked by a process's main thread. Elsewhere than
Linux it does nothing (the parent's own cleanup still runs on SIGTERM/SIGINT).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """In a child of ``parent``: ask for ``sig`` when the parent dies. If the parent is
    already gone (it died between the fork and this call), send ``sig`` to ourselves now.
    Returns whether the kernel took the request."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
    if ok and os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return ok
