"""A private PostgreSQL cluster for the lab server's datastore (Debian's ``postgresql``).

Production HA servers share a SQL database; this is that, on one machine. The
cluster lives under the lab root, listens on a unix socket in it only (no TCP),
and authenticates by peer: the OS user the SPIRE server runs as is its database
role, so there is no password anywhere. PostgreSQL refuses to run as root: run
by root, the cluster runs as the ``postgres`` system user. Started and stopped
by pid (the postmaster's), like every lab process.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from spire_migration.node import process
from spire_migration.retry import poll

from .errors import LabError

DATABASE = "spire"
PORT = 5432   # names the socket file only: the cluster has no TCP listener
_ROLE = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")


def pg_bin() -> Path:
    """The newest Debian PostgreSQL binaries (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise LabError("PostgreSQL is not installed", expected="/usr/lib/postgresql/<major>/bin/postgres",
                       found="nothing", remedy="apt-get install postgresql")
    return found[-1].parent


@dataclass(frozen=True)
class Cluster:
    """One cluster under ``dir``: data, socket folder, log and the postmaster's pid file."""

    dir: Path

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "socket"

    @property
    def log(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "postgres.pid"

    @property
    def os_user(self) -> str | None:
        """Who runs the cluster: ``postgres`` when we are root, else ourselves (None)."""
        return "postgres" if os.geteuid() == 0 else None

    def connection_string(self, role: str) -> str:
        """What SPIRE's ``connection_string`` takes: the socket folder, peer auth, no password."""
        return f"dbname={DATABASE} user={role} host={self.socket_dir} port={PORT} sslmode=disable"

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(argv), capture_output=True, text=True, cwd=self.dir, timeout=120,
                              user=self.os_user, env=process.daemon_env())
        if proc.returncode != 0:
            raise LabError(f"{Path(argv[0]).name} failed", expected="exit 0",
                           found=f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}",
                           remedy=f"read {self.log}")
        return proc

    def running(self) -> process.ProcInfo | None:
        return process.find(pg_bin() / "postgres", self.pid_file, user=self.os_user)


def start(cluster_dir: Path, role: str | None = None, timeout: float = 60.0) -> Cluster:
    """Create (first time) and start the cluster; ``role`` (default: our user) owns database ``spire``."""
    c = Cluster(Path(cluster_dir))
    role = role or pwd.getpwuid(os.geteuid()).pw_name
    if not _ROLE.match(role):
        raise LabError("unusable database role name", expected=_ROLE.pattern, found=role)
    if c.running():
        return c
    fresh = not (c.data / "PG_VERSION").exists()
    c.socket_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(c.dir, 0o755)
    os.chmod(c.socket_dir, 0o755)
    if c.os_user:
        for path in (c.dir, c.socket_dir):
            shutil.chown(path, c.os_user, c.os_user)
    bin_dir = pg_bin()
    admin = c.os_user or role   # the bootstrap superuser: whoever runs the cluster (peer auth)
    if fresh:
        c._run(str(bin_dir / "initdb"), "-D", str(c.data), "-U", admin, "--auth-local=peer",
               "--auth-host=reject", "--encoding=UTF8", "--no-instructions")
    process.start([str(bin_dir / "postgres"), "-D", str(c.data), "-c", "listen_addresses=",
                   "-c", f"unix_socket_directories={c.socket_dir}", "-c", f"port={PORT}"],
                  log=c.log, pid_file=c.pid_file, cwd=c.dir, user=c.os_user)
    poll(lambda: subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", str(c.socket_dir), "-p", str(PORT)],
                                capture_output=True).returncode == 0,
         timeout=timeout, what=f"PostgreSQL on {c.socket_dir}", error=LabError)
    if fresh:
        sql = (f'CREATE ROLE "{role}" LOGIN' if role != admin else "SELECT 1",
               f'CREATE DATABASE {DATABASE} OWNER "{role}"')
        for statement in sql:
            c._run(str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(c.socket_dir),
                   "-p", str(PORT), "-U", admin, "-d", "postgres", "-c", statement)
    return c


def stop(cluster_dir: Path, timeout: float = 30.0) -> process.ProcInfo | None:
    """Fast shutdown (SIGINT) of the postmaster, by its pid; returns what was stopped."""
    c = Cluster(Path(cluster_dir))
    info = c.running()
    if info:
        process.stop(info, timeout=timeout, pid_file=c.pid_file, sig=signal.SIGINT)
    return info
