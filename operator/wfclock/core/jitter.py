"""Jitter: a per-fire spread, the same for every delivery of one fire.

The offset comes from a hash of the fire key, so a retried pod, a second Job for the same fire
or a replayed fire waits the same time; the fire key and `scheduledFor` stay the nominal
instant. Milliseconds, so a thousand schedules at 09:00 with a jitter of 60s spread over the
minute rather than onto 61 whole seconds. Imported by the launcher: standard library only.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta


def jitter_offset(fire_key: str, jitter_seconds: int) -> timedelta:
    """The wait of the fire `fire_key` before it claims its key: in [0, jitter_seconds]."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(fire_key.encode()).digest()
    return timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (jitter_seconds * 1000 + 1))
