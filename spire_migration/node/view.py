"""Read a node's files and processes locally or through a testinfra host.

The hardening and audit checks read host facts (config files, the TPM device
node or socket, the journal's modes, the agent's command line) through a
:class:`HostView`, so one run can audit many nodes: ``--hosts local://,docker://c``
(testinfra backends: local, ssh, paramiko, docker, podman, ansible inventory).
Nothing here writes: every method only reads.

What cannot go through a testinfra host (tpm2-pytss, the SPIRE server API
socket, the Docker API) is only read where the suite runs: ``is_local`` says
whether that is this node.

>>> v = LocalView()
>>> v.stat("/etc/passwd").kind
'regular file'
>>> v.read_text("/no/such/file") is None
True
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spire_migration.node import process, systemd
from spire_migration.node.process import ProcInfo

_KINDS = {"character special file": "character device", "socket": "unix socket",
          "directory": "directory", "regular file": "regular file",
          "regular empty file": "regular file", "fifo": "fifo", "symbolic link": "symlink"}


@dataclass(frozen=True)
class FileStat:
    """Owner, group and mode of one path (symlinks followed)."""

    path: str
    kind: str
    uid: int
    gid: int
    user: str
    group: str
    mode: int

    @property
    def mode_str(self) -> str:
        return f"{self.mode:04o}"

    @property
    def world_bits(self) -> int:
        return self.mode & 0o007

    @property
    def group_bits(self) -> int:
        return self.mode & 0o070


class HostView:
    """What the checks read from one node."""

    name = "?"
    is_local = True

    def read_bytes(self, path: str | Path) -> bytes | None:  # pragma: no cover - interface
        raise NotImplementedError

    def stat(self, path: str | Path) -> FileStat | None:  # pragma: no cover - interface
        raise NotImplementedError

    def read_text(self, path: str | Path) -> str | None:
        raw = self.read_bytes(path)
        return None if raw is None else raw.decode(errors="replace")

    def proc_argv(self, binary: str | Path, pid_file: str | Path) -> tuple[int, list[str]] | None:
        """(pid, argv) of the process named in ``pid_file`` when it runs ``binary``."""
        info = HostView.process(self, binary, pid_file)
        return (info.pid, list(info.argv)) if info else None

    def command(self, argv: list[str]) -> str | None:  # pragma: no cover - interface
        """The output of a read-only command (``systemctl show``, ``journalctl``) on the host; None on failure."""
        raise NotImplementedError

    def journal(self, unit: str) -> str | None:
        """A systemd unit's journal messages (``journalctl -u unit --no-pager -o cat``)."""
        return self.command(["journalctl", "-u", unit, "--no-pager", "-o", "cat"])

    def unit_process(self, unit: str, binary: str | Path) -> ProcInfo | None:
        """The main process of a systemd unit when it runs ``binary`` (``systemctl show -p MainPID``)."""
        text = (self.command(["systemctl", "show", "-p", "MainPID", "--value", "--", unit]) or "").strip()
        if not text.isdigit() or text == "0":
            return None
        return self._proc_at(int(text), binary)

    def process(self, binary: str | Path, pid_file: str | Path,
                socket: str | Path | None = None) -> ProcInfo | None:  # noqa: ARG002
        """The live process of ``pid_file`` running ``binary``, as /proc on the host shows it."""
        text = self.read_text(pid_file)
        return self._proc_at(int(text.strip()), binary) if text and text.strip().isdigit() else None

    def _proc_at(self, pid: int, binary: str | Path) -> ProcInfo | None:
        raw = self.read_bytes(f"/proc/{pid}/cmdline")
        argv = [a.decode(errors="replace") for a in (raw or b"").split(b"\0") if a]
        if not argv or Path(argv[0]).name != Path(binary).name:
            return None
        stat, boot = self.read_text(f"/proc/{pid}/stat"), self.read_text("/proc/stat") or ""
        btime = next((float(ln.split()[1]) for ln in boot.splitlines() if ln.startswith("btime ")), 0.0)
        ticks = int(stat[stat.rindex(")") + 2:].split()[19]) if stat else 0
        return ProcInfo(pid, tuple(argv), btime + ticks / os.sysconf("SC_CLK_TCK"))

    def walk(self, root: str | Path) -> list[FileStat]:  # pragma: no cover - interface
        """Every path under ``root`` (itself included) with owner and mode; [] when absent."""
        raise NotImplementedError

    def users_with_access(self, st: FileStat, want: int = 0o6) -> list[str]:
        """Users that may read or write ``st`` by its mode ("everyone" for world bits).

        ``want`` is the rwx triple to test (0o6: read or write).
        """
        users = {st.user} if st.mode >> 6 & want else set()
        if st.mode >> 3 & want:
            users |= set(self.group_members(st.gid, st.group))
        if st.mode & want:
            users.add("everyone")
        return sorted(users)

    def group_members(self, gid: int, name: str) -> list[str]:
        """Members of a group: listed in /etc/group, plus users whose primary group it is."""
        members: set[str] = set()
        for line in (self.read_text("/etc/group") or "").splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and (parts[2] == str(gid) or parts[0] == name):
                members |= {m for m in parts[3].split(",") if m}
        for line in (self.read_text("/etc/passwd") or "").splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[3] == str(gid):
                members.add(parts[0])
        return sorted(members)


class LocalView(HostView):
    """This machine, read directly (no testinfra needed)."""

    name = "local"
    is_local = True

    def read_bytes(self, path: str | Path) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError,
                ProcessLookupError):
            return None
        except OSError:
            return None

    def stat(self, path: str | Path) -> FileStat | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        m = st.st_mode
        kind = ("character device" if stat_mod.S_ISCHR(m) else "unix socket" if stat_mod.S_ISSOCK(m)
                else "directory" if stat_mod.S_ISDIR(m) else "regular file" if stat_mod.S_ISREG(m)
                else "other")
        return FileStat(str(path), kind, st.st_uid, st.st_gid, _user(st.st_uid), _group(st.st_gid),
                        stat_mod.S_IMODE(m))

    def process(self, binary: str | Path, pid_file: str | Path,
                socket: str | Path | None = None) -> ProcInfo | None:
        """By pid file, else by the owner of ``socket`` (see :func:`spire_migration.node.process.find`)."""
        return process.find(binary, Path(pid_file), Path(socket) if socket else None)

    def command(self, argv: list[str]) -> str | None:
        res = systemd.run(argv)
        return res.stdout if res.returncode == 0 else None

    def walk(self, root: str | Path) -> list[FileStat]:
        out = []
        if self.stat(root) is None:
            return out
        out.append(self.stat(root))
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                st = self.stat(os.path.join(dirpath, name))
                if st is not None:
                    out.append(st)
        return [s for s in out if s is not None]


class TestinfraView(HostView):
    """A node reached through a testinfra host (``host`` fixture, ``--hosts``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, host: Any) -> None:
        self.host = host
        backend = host.backend
        self.name = backend.get_pytest_id()
        self.is_local = getattr(backend, "NAME", "") == "local"

    def read_bytes(self, path: str | Path) -> bytes | None:
        result = self.host.run(f"cat -- {shlex.quote(str(path))}")
        if result.rc != 0:
            return None
        return result.stdout_bytes

    def command(self, argv: list[str]) -> str | None:
        result = self.host.run(" ".join(shlex.quote(a) for a in argv))
        return result.stdout if result.rc == 0 else None

    def stat(self, path: str | Path) -> FileStat | None:
        result = self.host.run(f"stat -L -c '%F|%u|%g|%U|%G|%a' -- {shlex.quote(str(path))}")
        if result.rc != 0:
            return None
        kind, uid, gid, user, group, mode = result.stdout.strip().split("|")
        return FileStat(str(path), _KINDS.get(kind, kind), int(uid), int(gid), user, group, int(mode, 8))

    def walk(self, root: str | Path) -> list[FileStat]:
        result = self.host.run(f"find {shlex.quote(str(root))} -printf '%y|%U|%G|%u|%g|%m|%p\\n'")
        if result.rc != 0:
            return []
        kinds = {"f": "regular file", "d": "directory", "s": "unix socket", "c": "character device",
                 "l": "symlink", "p": "fifo"}
        out = []
        for line in result.stdout.splitlines():
            kind, uid, gid, user, group, mode, path = line.split("|", 6)
            out.append(FileStat(path, kinds.get(kind, kind), int(uid), int(gid), user, group, int(mode, 8)))
        return out


def view_for(host: Any | None) -> HostView:
    """A :class:`TestinfraView` for a testinfra host, else :class:`LocalView`."""
    if host is None:
        return LocalView()
    view = TestinfraView(host)
    return LocalView() if view.is_local else view


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
