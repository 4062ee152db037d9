"""Postgres URLs in the two forms wfclock uses: SQLAlchemy's (psycopg 3 driver) and libpq's.
Standard library only: the launcher imports it on every fire's path."""

from __future__ import annotations

_PREFIXES = ("postgresql+psycopg://", "postgresql://", "postgres://")


def _rest(url: str) -> str:
    for prefix in _PREFIXES:
        if url.startswith(prefix):
            return url[len(prefix) :]
    scheme = url.split(":", 1)[0]
    raise ValueError(
        "WFCLOCK_DATABASE_URL must start with postgresql:// (a postgresql:// URL such as "
        f"postgresql://user:password@host/db; got {scheme!r}:...)"
    )


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form of a Postgres URL, always with the psycopg 3 driver."""
    return "postgresql+psycopg://" + _rest(url)


def libpq_url(url: str) -> str:
    """The libpq form (`postgresql://...`) that psycopg connects with."""
    return "postgresql://" + _rest(url)
