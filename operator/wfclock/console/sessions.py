"""Signed-in sessions, kept in this process's memory only: the user's token lives here until
sign-out or idle expiry and is never written anywhere. The cookie carries a random id."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "wfclock_console"
# Sessions not signed in are the first to go beyond this many (a flood of cookie-less requests
# must not grow the console's memory without bound).
MAX_SESSIONS = 10_000


@dataclass
class Session:
    csrf: str
    token: str | None = None  # the user's Kubernetes bearer token, once signed in
    username: str = ""
    uid: str = ""
    groups: list[str] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)
    seen: float = 0.0
    access: tuple[float, list[str]] | None = None  # (when, namespaces the user may see)
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) to show once

    @property
    def signed_in(self) -> bool:
        return self.token is not None


class Sessions:
    def __init__(self, idle_seconds: float, clock=time.monotonic, limit: int = MAX_SESSIONS):
        self.idle_seconds, self.clock, self.limit = idle_seconds, clock, limit
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str | None) -> tuple[str, Session]:
        """The live session of this id, or a new anonymous one (with its own id)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            found = self._by_id.get(session_id or "")
            if found is None:
                if len(self._by_id) >= self.limit:
                    self._evict()
                session_id, found = (
                    secrets.token_urlsafe(32),
                    Session(csrf=secrets.token_urlsafe(32)),
                )
                self._by_id[session_id] = found
            found.seen = now
            return session_id, found

    def rotate(self, session_id: str) -> str:
        """A new id for a session whose privilege changes (sign-in): an id planted before
        sign-in is worth nothing after it."""
        with self._lock:
            found = self._by_id.pop(session_id)
            found.csrf = secrets.token_urlsafe(32)
            new_id = secrets.token_urlsafe(32)
            self._by_id[new_id] = found
            return new_id

    def end(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)

    def _evict(self) -> None:
        """Drops the least recently seen half, anonymous sessions first."""
        ranked = sorted(self._by_id.items(), key=lambda kv: (kv[1].signed_in, kv[1].seen))
        for key, _ in ranked[: max(1, len(ranked) // 2)]:
            del self._by_id[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._by_id.items() if now - s.seen > self.idle_seconds]:
            del self._by_id[key]
