"""One settings object for the operator and the CLI, fed from WFCLOCK_* environment variables."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The longest a fire can still be delivered after its instant in the normal course: a catch-up
# window (up to 7 days) plus a starting deadline (up to 1 day), with margin. Pruning the ledger
# sooner would refuse such late deliveries (see docs/reliability.md, 16).
MINIMUM_LEDGER_RETENTION_DAYS = 14

# Settings renamed in 0.2: they hold a Secret's name, key or "namespace/name", never its data,
# but a name containing SECRET trips the secret-in-environment checks of policy scanners. The
# old names are still read (a warning says to move), so existing installs keep working.
RENAMED = {
    "database_secret_name": "database_credentials_name",
    "database_secret_key": "database_credentials_key",
    "database_secret_source": "database_credentials_source",
}

log = logging.getLogger("wfclock.settings")


def check_ledger_retention(days: int) -> int:
    if days != 0 and not MINIMUM_LEDGER_RETENTION_DAYS <= days <= 36500:
        raise ValueError(
            f"WFCLOCK_LEDGER_RETENTION_DAYS must be 0 (never prune) or at least "
            f"{MINIMUM_LEDGER_RETENTION_DAYS} days (at most 36500): a fire can still be delivered "
            "up to 8 days after its instant (catch-up window up to 7 days, starting deadline up "
            f"to 1 day); got {days}"
        )
    return days


def check_namespace_names(namespaces: list[str]) -> list[str]:
    """Namespace names only: kopf would take a glob ("team-*", "!kube-*"), but the accounting
    sweep, the resync and the restart's list read each entry as one namespace's name, so a
    pattern would leave the schedules it matches unaccounted. A shard lists its namespaces."""
    for namespace in namespaces:
        if not namespace or any(c in namespace for c in "*?[]!, "):
            raise ValueError(
                f"WFCLOCK_NAMESPACES: {namespace!r} is not a namespace name; list the namespaces "
                'by name (e.g. ["team-a", "team-b"]; one list per operator shard), or leave it '
                "empty for all namespaces; patterns are not supported"
            )
    return namespaces


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
    # The Secret (name, key) in each schedule's namespace that launcher pods read the URL from.
    database_credentials_name: str = "wfclock-database"
    database_credentials_key: str = "url"
    # Each tenant's launcher pods get a login of their own, which can fire that tenant's
    # schedules and nothing else; the operator keeps it in the namespace's Secret.
    tenant_logins: bool = True
    # The key tenant passwords are derived from (empty: derived from database_url).
    tenant_credential_key: str = ""
    # host:port the launcher pods reach Postgres at, when it differs from the operator's.
    launcher_database_host: str = ""
    # With tenant_logins off: "namespace/name" of a Secret the operator copies into each
    # schedule's namespace (every launcher then holds the administrator's credential).
    database_credentials_source: str = ""
    # The deprecated names of the three above (see RENAMED); never set them in new installs.
    database_secret_name: str | None = Field(None, exclude=True)
    database_secret_key: str | None = Field(None, exclude=True)
    database_secret_source: str | None = Field(None, exclude=True)
    # A fire's finished Job (and its pod) is deleted by Kubernetes this long after it finished
    # (`ttlSecondsAfterFinished`). The ledger, not the Job, says whether a fire happened, so a
    # one-time Job gone this way is never made again.
    launcher_ttl_seconds_after_finished: int = Field(86400, ge=0, le=90 * 86400)
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
    # How many schedules kopf handles at once in a watched namespace (or in all), its
    # per-object workers; 0: no bound, kopf's own default. Without one, a restart's resume
    # starts a worker for every schedule at once, which sets the operator's memory high-water
    # mark (docs/scale.md). Off by default: a schedule whose registration keeps failing (a
    # quota, an admission policy) holds its worker while kopf retries it, so that many failing
    # schedules would stop every other schedule's handling, pauses and deletes included
    # (docs/decisions.md).
    object_workers: int = Field(0, ge=0, le=100_000)
    # How many events of a watch stream (a resource in a watched namespace, or in all) kopf
    # has in flight at once, from its queue to its handler's end; the rest wait in arrival
    # order, compressed (controller/backpressure.py). Bounds the memory of a restart's resume
    # and of a mass apply. 0: no bound, kopf's own behaviour.
    events_in_flight: int = Field(128, ge=0, le=100_000)
    # How many schedules kopf reads per request of its first list (0: all in one).
    list_chunk_size: int = Field(500, ge=0, le=100_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = 8080
    health_port: int = 8081
    # Ledger rows of fires older than this are pruned by the operator (0: never).
    ledger_retention_days: int = 90
    # How many of the latest fires each schedule's status lists (status.recentFires).
    recent_fires: int = Field(5, ge=0, le=20)
    # Per-schedule metric series (a namespace and schedule label each): seconds since the last
    # launched fire and how late the next one is. Off by default: one series per schedule.
    schedule_metrics: bool = False
    # OpenTelemetry (docs/tracing.md): the OTLP/HTTP endpoint the launcher pods export their
    # fire spans to (empty: the pods trace nothing). The operator's own spans follow the
    # standard OTEL_* variables of its process.
    launcher_otlp_endpoint: str = ""

    @field_validator("ledger_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        return check_ledger_retention(days)

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, namespaces: list[str]) -> list[str]:
        return check_namespace_names(namespaces)

    @model_validator(mode="after")
    def _read_renamed(self) -> Settings:
        """An old name is used where its new one is not set, with a warning to move."""
        for old, new in RENAMED.items():
            value = getattr(self, old)
            if value is None:
                continue
            if new in self.model_fields_set:
                log.warning(
                    "WFCLOCK_%s is ignored: WFCLOCK_%s is set too (remove the old name)",
                    old.upper(),
                    new.upper(),
                )
            else:
                setattr(self, new, value)
                log.warning(
                    "WFCLOCK_%s is deprecated, use WFCLOCK_%s (same value); the old name "
                    "will be removed in a later release",
                    old.upper(),
                    new.upper(),
                )
        return self
