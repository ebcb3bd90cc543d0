"""``python -m lab.k8s build|smoke|down|tier``: the kubelet build, a one-pod smoke run of a node,
and which Kubernetes tier this machine runs (one line, for CI's log)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import LabError

from . import containerd, gobuild, kubelet, pods, tier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.k8s",
                                     description="Tier 2 smoke: a real kubelet node for the lab's control plane.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the kubelet; print its path")
    p_smoke = sub.add_parser("smoke", help="containerd + kubelet + one pod, then tear down")
    p_smoke.add_argument("--lab-root", type=Path, required=True,
                         help="root of a lab brought up with `python -m lab up --kubernetes --root ...`")
    p_smoke.add_argument("--root", type=Path, default=kubelet.SMOKE_ROOT)
    p_smoke.add_argument("--keep", action="store_true", help="leave containerd and the kubelet running")
    p_down = sub.add_parser("down", help="stop what `smoke --keep` left running")
    p_down.add_argument("--root", type=Path, default=kubelet.SMOKE_ROOT)
    sub.add_parser("tier", help="print which Kubernetes tier the lab tests run on this machine")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.cmd == "tier":
            print(tier.detect().line(), flush=True)
        elif args.cmd == "build":
            print(gobuild.build_kubelet(log))
        elif args.cmd == "down":
            kubelet.teardown(args.root, log=log)
        else:
            saved = kubelet.save_tunables(args.root)
            ok = False
            try:
                endpoint = containerd.containerd_up(args.root)
                log(f"containerd up: {endpoint}")
                log(f"imported {', '.join(containerd.import_images(args.root))}")
                node = kubelet.start(args.lab_root, endpoint, root=args.root, keep=True, log=log)
                print(pods.pod_smoke(args.lab_root, node).strip(), flush=True)
                ok = True
            finally:
                if not (ok and args.keep):
                    kubelet.teardown(args.root, saved, log=log)
                    (args.root / "tunables.before.json").unlink(missing_ok=True)
    except LabError as exc:
        print(f"lab.k8s {args.cmd}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
