"""One settings object for the operator and the CLI, fed from WFCLOCK_* environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The longest a fire can still be delivered after its instant in the normal course: a catch-up
# window (up to 7 days) plus a starting deadline (up to 1 day), with margin. Pruning the ledger
# sooner would refuse such late deliveries (see docs/reliability.md, 16).
MINIMUM_LEDGER_RETENTION_DAYS = 14


def check_ledger_retention(days: int) -> int:
    if days != 0 and not MINIMUM_LEDGER_RETENTION_DAYS <= days <= 36500:
        raise ValueError(
            f"WFCLOCK_LEDGER_RETENTION_DAYS must be 0 (never prune) or at least "
            f"{MINIMUM_LEDGER_RETENTION_DAYS} days (at most 36500): a fire can still be delivered "
            "up to 8 days after its instant (catch-up window up to 7 days, starting deadline up "
            f"to 1 day); got {days}"
        )
    return days


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WFCLOCK_", extra="ignore")

    database_url: str = Field("", description="Postgres URL, e.g. postgresql://user:pw@host/db")
    edition: Literal["enterprise", "community"] = "enterprise"
    minimum_interval_minutes: int = Field(5, ge=1, le=1440)
    launcher_image: str = "ghcr.io/wfclock/wfclock:0.1.0"
    # Never where images reach the nodes by import only (the local node, air-gapped clusters).
    launcher_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # Command the launcher container runs; the local stack points it at this checkout's venv.
    launcher_command: list[str] = ["python", "-m", "launcher_job"]
    database_secret_name: str = "wfclock-database"
    database_secret_key: str = "url"
    # Each tenant's launcher pods get a login of their own, which can fire that tenant's
    # schedules and nothing else; the operator keeps it in the namespace's Secret.
    tenant_logins: bool = True
    # The key tenant passwords are derived from (empty: derived from database_url).
    tenant_credential_key: str = ""
    # host:port the launcher pods reach Postgres at, when it differs from the operator's.
    launcher_database_host: str = ""
    # With tenant_logins off: "namespace/name" of a Secret the operator copies into each
    # schedule's namespace (every launcher then holds the administrator's credential).
    database_secret_source: str = ""
    namespaces: list[str] = Field(default_factory=list, description="empty: all namespaces")
    # kopf peering for an active/standby pair (empty: standalone, a single operator).
    peering: str = ""
    priority: int = 100
    # How often every owed fire is accounted for, and every child compared with its schedule.
    accounting_interval_seconds: float = Field(30, ge=1, le=3600)
    resync_interval_seconds: float = Field(300, ge=5, le=86400)
    # How long a replica's peering record stays valid without renewal: a standby takes over at
    # most this long after the active one dies (renewed every lifetime - 5..10 s by kopf).
    peering_lifetime_seconds: int = Field(20, ge=10, le=600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = 8080
    health_port: int = 8081
    # Ledger rows of fires older than this are pruned by the operator (0: never).
    ledger_retention_days: int = 90

    @field_validator("ledger_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        return check_ledger_retention(days)
