"""Child processes that never outlive the process that started them.

A worker left running after its parent was killed keeps holding CPU, memory and temp files,
and a re-run would start a second set beside it. The child asks the kernel to kill it when the
parent dies (Linux) and also watches its parent id (everywhere); the parent terminates and
reaps what it started on every way out.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 1.0


def die_with_parent(parent: int) -> None:
    """Call first thing in a child started by `parent` (its pid, passed by the parent)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent and not _alive(parent):
        os._exit(1)  # the parent died before prctl took effect
    # watch the parent we have now (not `parent` itself: a launcher may sit between the two)
    threading.Thread(target=_watch, args=(os.getppid(),), name="lifeline", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)  # orphaned: no cleanup, the parent owned the results and it is gone


def reap(procs: Iterable[subprocess.Popen], grace: float = 5.0) -> None:
    """Terminate what still runs, kill what ignores it after `grace` seconds, wait for all."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for pipe in (p.stdin, p.stdout, p.stderr):
            if pipe is not None:
                pipe.close()
