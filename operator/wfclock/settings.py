"""One settings object for the operator and the CLI, fed from WFCLOCK_* environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WFCLOCK_", extra="ignore")

    database_url: str = Field("", description="Postgres URL, e.g. postgresql://user:pw@host/db")
    edition: Literal["enterprise", "community"] = "enterprise"
    minimum_interval_minutes: int = Field(5, ge=1, le=1440)
    launcher_image: str = "ghcr.io/wfclock/wfclock:0.1.0"
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
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = 8080
    health_port: int = 8081
