"""Issue 9 point 3 in the lab: rollback never writes through, nor leaves, a planted agent.conf link.

A migrated lab node; agent.conf replaced by a symbolic link to a victim file (what a local user who
may write the config dir could do). ``pytest -m rollback`` must refuse naming the link before it
stops anything, leave the victim untouched, and roll back once the real file is back.
"""

from __future__ import annotations

import pytest

from spire_migration.node import services
from spire_migration.node.facade import Node, Phase

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VICTIM = "# a file root must never overwrite\n"


def test_rollback_refuses_a_planted_agent_conf_link(lab):
    run = lab.run_suite("-m", "migrate")
    assert run.code == 0, run.output[-3000:]
    t = lab.target
    agent = services.agent_proc(t)
    assert agent is not None and Node(t).phase() is Phase.PHASE4

    real = t.agent.config.read_bytes()
    victim = lab.root / "victim.conf"
    victim.write_text(VICTIM)
    t.agent.config.unlink()
    t.agent.config.symlink_to(victim)

    run = lab.run_suite("-m", "rollback")
    assert run.code != 0 and f"refusing to write {t.agent.config}: it is a symbolic link" in run.output, \
        run.output[-3000:]
    assert victim.read_text() == VICTIM and t.agent.config.is_symlink()
    still = services.agent_proc(t)
    assert still is not None and still.pid == agent.pid, "nothing is stopped when the way back is a link"

    t.agent.config.unlink()
    t.agent.config.write_bytes(real)
    run = lab.run_suite("-m", "rollback")
    assert run.code == 0, run.output[-3000:]
    assert not t.agent.config.is_symlink() and victim.read_text() == VICTIM
    assert Node(t).phase() is Phase.PHASE3
