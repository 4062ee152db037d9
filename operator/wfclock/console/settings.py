"""The console's settings, from WFCLOCK_CONSOLE_* environment variables (Helm values set them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WFCLOCK_CONSOLE_", extra="ignore")

    # The read-only login (`wfclock db console-role`): run data is read with it, nothing else.
    database_url: str = Field("", description="Postgres URL of the console's read-only login")
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    # The console's own Kubernetes login checks tokens (TokenReview) and asks what a user may
    # see (SubjectAccessReview); empty: in-cluster, else the current kubeconfig.
    kubeconfig: str = ""
    # Namespaces to offer beside those the ledger knows schedules in.
    namespaces: list[str] = Field(default_factory=list)
    # Served over HTTPS when both are set (the chart mounts its certificate there).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Cookies only over HTTPS (on whenever TLS is on; set it behind a TLS-terminating Ingress).
    secure_cookies: bool = False
    # A signed-in session ends after this long idle; its token is forgotten with it.
    session_idle_minutes: int = Field(60, ge=1, le=24 * 60)
    # How long what a user may see (one SubjectAccessReview per namespace) is reused.
    access_cache_seconds: float = Field(30, ge=0, le=600)
    log_level: str = "info"
