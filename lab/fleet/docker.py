"""The docker CLI against the lab's private engine (never the machine's /var/run/docker.sock)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from spire_migration.redact import redact

from ..errors import LabError


@dataclass(frozen=True)
class Docker:
    host: str     # unix:///run/spire-lab/<lab>/docker/docker.sock

    def run(self, *args: str, stdin: str | bytes | None = None, check: bool = True,
            timeout: float = 120.0) -> subprocess.CompletedProcess:
        """``docker -H host ARGS``; text output unless ``stdin`` is bytes."""
        text = not isinstance(stdin, bytes)
        try:
            proc = subprocess.run(["docker", "-H", self.host, *args], input=stdin, capture_output=True,
                                  text=text, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"docker {args[0]} timed out", expected=f"an answer within {timeout:g} s",
                           found="no answer", remedy="is the lab dockerd running?") from exc
        if check and proc.returncode != 0:
            err = proc.stderr if text else proc.stderr.decode(errors="replace")
            raise LabError(f"docker {' '.join(args[:2])} failed", expected="exit code 0",
                           found=redact(f"exit {proc.returncode}: {err.strip()[-1500:]}"),
                           remedy="read the lab dockerd log (<root>/docker/dockerd.log)")
        return proc

    def exec(self, container: str, *argv: str, stdin: str | None = None, check: bool = True,
             user: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``argv`` in a host (stdin given by pipe, never on the command line)."""
        opts = ["-i"] if stdin is not None else []
        opts += ["-u", user] if user else []
        return self.run("exec", *opts, container, *argv, stdin=stdin, check=check, timeout=timeout)
