"""Tenant launcher logins: the database credential a tenant's launcher pods hold.

Each tenant gets its own Postgres login, a member of `wfclock_launcher`, with no privilege on any
table: it may only run `wfclock_fire`, which fires that tenant's schedules and nothing else
(migration 0004). Its password is derived from the operator's credential key (HMAC-SHA256 of the
tenant), so every replica computes the same one without storing it; the database keeps only a
fingerprint, so a restart rewrites nothing. Rotating the key (`WFCLOCK_TENANT_CREDENTIAL_KEY`,
or the administrator's URL it is derived from when unset) and restarting the operator changes
each login's password and each namespace's Secret once; new fire pods read the new Secret.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from wfclock.db import store

ROLE_PREFIX = "wfclock_t_"


def login_name(tenant: str, installation: str = "") -> str:
    """The tenant's login: `wfclock_t_<installation>_<tenant>`, within Postgres' 63-byte names.
    Roles belong to the whole server while wfclock's tables belong to one database, so the
    login names its installation (a hash of the database's name): a second installation on the
    same server (staging beside production) never adopts, or re-passwords, another's login."""
    prefix = f"{ROLE_PREFIX}{installation}_" if installation else ROLE_PREFIX
    name = prefix + tenant.replace("-", "_")
    if len(name) <= 63:
        return name
    return f"{name[:54]}_{hashlib.sha256(tenant.encode()).hexdigest()[:8]}"


def installation_of(admin_url: str) -> str:
    """A short, stable id of the database wfclock is installed in."""
    database = urlsplit(admin_url).path.lstrip("/") or "postgres"
    return hashlib.sha256(database.encode()).hexdigest()[:6]


def credential_key(settings) -> bytes:
    secret = settings.tenant_credential_key or f"derived:{settings.database_url}"
    return hashlib.sha256(secret.encode()).digest()


def password_for(key: bytes, tenant: str) -> str:
    return hmac.new(key, f"wfclock-tenant:{tenant}".encode(), hashlib.sha256).hexdigest()


def fingerprint(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()[:16]


# What a tenant's URL keeps of the administrator's query string: connection settings only,
# never a user, password, passfile, service or host that would override the tenant's login.
KEPT_PARAMETERS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                   "target_session_attrs", "options", "application_name"}  # fmt: skip


def tenant_url(admin_url: str, login: str, password: str, host: str = "") -> str:
    """The administrator's URL with the tenant's login (and the launchers' host, when set)."""
    parts = urlsplit(admin_url)
    netloc = host or parts.netloc.rsplit("@", 1)[-1]
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in KEPT_PARAMETERS])
    return urlunsplit(
        (scheme, f"{quote(login, safe='')}:{quote(password, safe='')}@{netloc}", parts.path,
         query, "")
    )  # fmt: skip


class TenantLogins:
    """Ensures each tenant's login once per process (and again when the key changes)."""

    def __init__(self, engine, settings):
        self.engine, self.settings = engine, settings
        self.key = credential_key(settings)
        self._ensured: dict[str, str] = {}
        self._lock = threading.Lock()

    def url_for(self, tenant: str) -> str:
        """The URL a launcher of `tenant` connects with; its login exists with that password."""
        with self._lock:  # one writer per process; another replica may race: see the store
            if tenant not in self._ensured:
                installation = installation_of(self.settings.database_url)
                login, password = login_name(tenant, installation), password_for(self.key, tenant)
                credential = fingerprint(password)
                store.ensure_tenant_login(self.engine, login, tenant, password, credential)
                self._ensured[tenant] = tenant_url(
                    self.settings.database_url,
                    login,
                    password,
                    self.settings.launcher_database_host,
                )
            return self._ensured[tenant]
