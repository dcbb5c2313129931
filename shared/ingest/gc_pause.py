"""The cyclic garbage collector paused while a fetch runs.

Why: a fetch allocates hundreds of thousands of short-lived containers (parsed alerts,
their rows and events), all acyclic and freed by reference counting. The collector's
passes over them, and over every live object, cost ~6% of a run's CPU in the ingest
benchmark and free nothing. Runs can overlap in one process (the host's threads): the
collector resumes when the last of them ends, as it was before the first began. A long
run calls `tidy()` after each page, so cycles that some libraries do make (an exception's
traceback, a response) are freed page by page, not held until the run ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_active = 0
_was_enabled = True


@contextlib.contextmanager
def paused() -> Iterator[None]:
    global _active, _was_enabled
    with _lock:
        if _active == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _was_enabled:
                gc.enable()


def tidy() -> None:
    """Collect the young generations now (what a page left behind; ~10 ms a page)."""
    gc.collect(1)
