"""Issue 5, Strategy 2: a two-node lab migrates one node while the other keeps serving SVIDs.

Real SPIRE, two swtpms, one dockerd. The untouched node's workload runs its
``check`` (an SVID fetch and one mTLS exchange) in a loop, in a thread, for as
long as the other node migrates: zero failures allowed. ``finalize`` refuses
while a join_token agent remains (naming it), then removes join_token.
"""

from __future__ import annotations

import threading
import time

import pytest

from spire_migration.node import services
from spire_migration.config.hclconfig import HclConfig
from spire_migration.node.facade import Node, Phase
from spire_migration.node.runtimes import get_runtime
from spire_migration.config.target import Target

pytestmark = [pytest.mark.lab, pytest.mark.slow]


class Sampler(threading.Thread):
    """SVID fetches on one node, back to back, until stopped (bounded: max_samples, deadline)."""

    def __init__(self, target: Target, max_samples: int = 2000, deadline_s: float = 600) -> None:
        super().__init__(daemon=True)
        self.rt = get_runtime(target)
        self.spiffe_id = target.workload.spiffe_id
        self.stop_event = threading.Event()
        self.max_samples, self.deadline = max_samples, time.monotonic() + deadline_s
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set() and self.ok + len(self.failures) < self.max_samples \
                and time.monotonic() < self.deadline:
            try:
                res = self.rt.check(10)
                if res.get("verified") and res.get("spiffe_id") == self.spiffe_id:
                    self.ok += 1
                else:
                    self.failures.append(str(res))
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.stop_event.wait(0.1)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def _migrate_while_sampling(lab, node: str, other: Target) -> Sampler:
    sampler = Sampler(other)
    sampler.start()
    try:
        t0 = time.monotonic()
        run = lab.run_suite("-m", "migrate", "--node", node)
        print(f"migrate {node}: exit {run.code} in {time.monotonic() - t0:.1f}s {run.summary.get('scenarios')}")
        assert run.code == 0, run.output[-4000:]
    finally:
        sampler.finish()
    print(f"SVID fetches on {other.node} during the migration of {node}: {sampler.ok} ok, "
          f"{len(sampler.failures)} failed")
    return sampler


def test_gradual_two_nodes_then_finalize(make_lab):
    lab = make_lab()
    lab.up(agents=2)
    t1 = Target.load(lab.root / "target-node-1.toml")
    t2 = Target.load(lab.root / "target-node-2.toml")

    # each node's runtime sees only its own containers (deployment label per node)
    for t in (t1, t2):
        names = [i.name for i in get_runtime(t).instances()]
        assert names and all(n.startswith(f"{t.node}-") for n in names), names

    s = _migrate_while_sampling(lab, "node-1", t2)
    assert s.ok >= 5 and not s.failures, f"node-2 fetches failed: {s.failures[:5]}"
    assert Node(t1).phase() is Phase.PHASE4 and Node(t2).phase() is Phase.PHASE3
    assert {i.phase for i in get_runtime(t2).instances()} == {3}, "node-2's workload was touched"
    server_att = set(HclConfig.load(t1.server.config).plugins("NodeAttestor"))
    assert server_att == {"join_token", "tpm_devid"}, server_att

    run = lab.run_suite("-m", "strategy_gradual", "--node", "node-1")
    assert run.code == 0 and run.summary["scenarios"]["passed"] == 1, run.output[-3000:]

    # finalize refuses while node-2's join_token agent remains, and names it
    run = lab.run_suite("-m", "after_migration")
    print(f"finalize before node-2: exit {run.code}")
    assert run.code != 0 and "join_token agent(s) remain" in run.output and "node-2" in run.output, run.output[-3000:]
    assert "join_token" in HclConfig.load(t1.server.config).plugins("NodeAttestor")

    s = _migrate_while_sampling(lab, "node-2", t1)
    assert s.ok >= 5 and not s.failures, f"node-1 fetches failed: {s.failures[:5]}"
    assert Node(t2).phase() is Phase.PHASE4

    t0 = time.monotonic()
    run = lab.run_suite("-m", "after_migration")
    print(f"finalize: exit {run.code} in {time.monotonic() - t0:.1f}s, {run.summary.get('changes')}")
    assert run.code == 0, run.output[-3000:]
    assert set(HclConfig.load(t1.server.config).plugins("NodeAttestor")) == {"tpm_devid"}
    for t in (t1, t2):
        assert services.server_cli(t).healthy() and services.agent_cli(t).healthy()
        res = get_runtime(t).check(10)
        assert res.get("verified"), res
    again = lab.run_suite("-m", "after_migration")
    assert again.code == 0 and again.summary["change_count"] == 0, again.summary
    run = lab.run_suite("-m", "strategy_gradual")
    assert run.code == 0 and run.summary["scenarios"]["not_applicable"] == 1, run.output[-2000:]


def test_big_bang_all_nodes_at_once(make_lab):
    """Strategy 1 in the lab: every node migrated in one go (downtime accepted), then finalize."""
    lab = make_lab()
    lab.up(agents=2)
    t0 = time.monotonic()
    for node in ("node-1", "node-2"):
        run = lab.run_suite("-m", "migrate", "--node", node)
        assert run.code == 0, run.output[-3000:]
    run = lab.run_suite("-m", "after_migration")
    assert run.code == 0, run.output[-3000:]
    print(f"big bang: 2 nodes migrated and finalized in {time.monotonic() - t0:.1f}s")
    for name in ("node-1", "node-2"):
        t = Target.load(lab.root / f"target-{name}.toml")
        assert Node(t).phase() is Phase.PHASE4
        assert get_runtime(t).check(10).get("verified")
    assert set(HclConfig.load(t.server.config).plugins("NodeAttestor")) == {"tpm_devid"}
