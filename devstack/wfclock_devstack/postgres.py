"""A throw-away PostgreSQL server on 127.0.0.1, for the tests and the local stack.

Uses the machine's server binaries (`make postgres` installs Debian's package when there are
none). When running as root, the server runs as the `postgres` user, as initdb requires.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from wfclock_devstack.ports import free_port

# The administrator logs in without a password over the loopback (tests and the local stack);
# every other login, such as a tenant's launcher login, needs its password.
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


def server_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(os.path.realpath(found)).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "run `make postgres` to install Debian's postgresql package"
    )


def _run_as() -> dict:
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid}


@dataclass
class PostgresServer:
    root: Path
    port: int = field(default_factory=free_port)
    # Beside 127.0.0.1 (trusted): addresses to listen on too, and networks allowed to log in
    # there with a password (a local node's pods: `node.host_ip`, `node.pod_subnet`).
    also_listen: tuple[str, ...] = ()
    password_networks: tuple[str, ...] = ()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(server_bin_dir() / tool), *args],
            check=check,
            capture_output=True,
            text=True,
            **_run_as(),
        )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if _run_as():
            os.chown(self.root, _run_as()["user"], _run_as()["group"])
        if not (self.data / "PG_VERSION").exists():
            self._pg("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
            hba = self.data / "pg_hba.conf"
            hba.write_text(
                HBA + "".join(f"host all all {n} scram-sha-256\n" for n in self.password_networks)
            )
            if _run_as():
                os.chown(hba, _run_as()["user"], _run_as()["group"])

    def start(self) -> None:
        self.init()
        options = (
            f"-p {self.port} -k {self.root} "
            f"-c listen_addresses={','.join(('127.0.0.1', *self.also_listen))} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start; see {self.log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def discard(self) -> None:
        """Stops the server and removes its folder (a temporary server's last step)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def temporary_server() -> PostgresServer:
    return PostgresServer(Path(tempfile.mkdtemp(prefix="wfclock-pg-")))
