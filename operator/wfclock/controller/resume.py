"""What a restart needs to know to write nothing when nothing changed: the children that exist
and the registration digest each carries, from one paged list of CronJobs and one of Jobs for
all schedules (read on the first resume), instead of a create or patch per schedule.

Each entry is used once, by its schedule's resume: a later reconcile (an edit, a retry) writes
as usual. A child changed or deleted after the list is put back by its watch event or the
resync, as at any other time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ResumeIndex:
    def __init__(self, load: Callable[[], dict[tuple[str, str, str], str]]):
        self._load = load
        self._children: dict[tuple[str, str, str], str] | None = None
        self._lock = threading.Lock()

    def take(self, kind: str, namespace: str, name: str) -> str | None:
        """The digest the child carries ("" without one), or None when it does not exist or
        was asked for already."""
        with self._lock:
            if self._children is None:
                self._children = self._load()
            found = self._children.pop((kind, namespace, name), None)
            if not self._children:  # a dictionary keeps its size when emptied: let it go
                self._children = {}
            return found
