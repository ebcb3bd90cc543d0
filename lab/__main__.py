"""``python -m lab up|down|status|exec|build`` (see lab/core.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spire_migration.errors import MigrationError

from . import configs, core
from .fleet import lifecycle as fleet
from .fleet.layout import FleetLayout
from .k8s import control_plane, gobuild
from .layout import DEFAULT_ROOT, Layout
from .spire_build import ensure_spire


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description="The swtpm lab: a real Phase 3 SPIRE node.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="provision the lab; prints the target file path last")
    p_up.add_argument("--agents", type=int, default=1, help="number of agent nodes (each with its own swtpm)")
    p_up.add_argument("--fleet", type=int, default=None, metavar="N",
                      help="instead: a server host and N agent hosts, each a container with systemd, "
                           "its own swtpm, SPIRE at the guide's paths and sshd; prints the Ansible inventory")
    p_up.add_argument("--datastore", choices=configs.DATASTORES, default="sqlite3",
                      help="the server's datastore: the guide's sqlite3 file, or a private PostgreSQL cluster")
    p_up.add_argument("--kubernetes", action="store_true",
                      help="also a real control plane (etcd, kube-apiserver, controller-manager, scheduler) "
                           "with a kwok node, built from Go modules")
    p_up.add_argument("--kubelet", action="store_true",
                      help="also a real kubelet node (containerd; implies --kubernetes) whose pods the agent "
                           "attests with SPIRE's k8s workload attestor; changes kernel sysctls until `down`")
    p_down = sub.add_parser("down", help="stop every lab process by pid")
    p_down.add_argument("--purge", action="store_true", help="also remove the lab root")
    sub.add_parser("status", help="what runs")
    p_exec = sub.add_parser("exec", help="run CMD in the lab's environment")
    p_exec.add_argument("--node", default=None)
    p_exec.add_argument("command", nargs=argparse.REMAINDER)
    p_build = sub.add_parser("build", help="find or build the pinned SPIRE binaries; prints their directory")
    p_build.add_argument("--kubernetes", action="store_true", help="also build the Kubernetes control plane")
    p_build.add_argument("--kubelet", action="store_true",
                         help="also build the control plane and the kubelet (cgo)")
    for p in (p_up, p_down, sub.choices["status"], p_exec):
        p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"lab root (default {DEFAULT_ROOT})")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.cmd == "up" and args.fleet is not None:
            print(fleet.up(args.root, args.fleet, log=log), flush=True)
        elif args.cmd == "up":
            target = core.up(args.root, agents=args.agents, log=log, datastore=args.datastore)
            if args.kubernetes or args.kubelet:
                log(f"kubeconfig: {control_plane.up(args.root, log=log)}")
            if args.kubelet:
                from .k8s import kubelet, pods

                kubelet.up(args.root, log=log)
                pods.attest_pods(args.root, core.target_for(Layout(args.root.resolve())), log=log)
            print(target, flush=True)
        elif args.cmd == "down":
            from .k8s import kubelet

            kubelet.down(args.root, log=log)
            control_plane.down(args.root, log=log)
            fleet.down(args.root, log=log)
            core.down(args.root, purge=args.purge, log=log)
        elif args.cmd == "status":
            if FleetLayout(args.root.resolve()).hosts_json.exists():
                print("\n".join(fleet.status(args.root)))
            else:
                k8s = control_plane.status(args.root) if control_plane.kube_root(args.root).exists() else []
                print("\n".join(core.status(args.root) + k8s))
        elif args.cmd == "build":
            print(ensure_spire(log))
            if args.kubernetes or args.kubelet:
                print(gobuild.build(log))
            if args.kubelet:
                print(gobuild.build_kubelet(log))
        elif args.cmd == "exec":
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not cmd:
                parser.error("exec needs a command: python -m lab exec -- CMD ...")
            env = control_plane.exec_env(args.root, core.exec_env(args.root, args.node))
            os.execvpe(cmd[0], cmd, env)
    except MigrationError as exc:
        print(f"lab {args.cmd}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
