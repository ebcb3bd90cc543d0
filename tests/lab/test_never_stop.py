"""Never stop what cannot start again (issue 9 point 8), against the lab's real SPIRE.

1. A server.conf the server would not start with (a trust domain the server's CA
   and entries do not have: `spire-server validate` accepts it, the restarted
   server never becomes healthy) is refused before guide step 5: both Phase 3
   processes keep running, untouched.
2. A failure after step 5 (injected in step 7) puts Phase 3 back by itself: the
   configs from the journal, the cached join_token SVID, server then agent; the
   old agent serves again and the journal lets a later run resume.
"""

from __future__ import annotations

import shutil

import pytest

from spire_migration.node import services
from spire_migration.procedures.faults import FAIL_AT
from spire_migration.records.journal import Journal

pytestmark = pytest.mark.lab


def _pids(t) -> tuple[int | None, int | None]:
    server, agent = services.server_proc(t), services.agent_proc(t)
    return (server.pid if server else None, agent.pid if agent else None)


def _back_to_phase3_as_it_was(lab, configs: dict) -> None:
    """Test cleanup: the configs as they were, and no journal (the processes never changed)."""
    t = lab.target
    for path, data in configs.items():
        path.write_bytes(data)
    shutil.rmtree(t.journal.dir / t.node, ignore_errors=True)


def test_a_config_the_server_would_refuse_is_caught_before_step5(lab):
    t = lab.target
    configs = {p: p.read_bytes() for p in (t.server.config, t.agent.config)}
    before = _pids(t)
    assert None not in before
    # An operator's pending edit the running server does not run yet.
    text = configs[t.server.config].decode()
    assert f'trust_domain = "{t.trust_domain}"' in text
    t.server.config.write_text(text.replace(f'trust_domain = "{t.trust_domain}"', 'trust_domain = "other.example"'))
    try:
        run = lab.run_suite("-m", "migrate")
        assert run.code == 1, run.output[-3000:]
        assert run.status("guide_step_5") == "failed", run.output[-4000:]
        assert run.status("guide_step_6") == "not_run"
        assert _pids(t) == before, "both Phase 3 processes must still run, untouched"
        assert services.server_cli(t).healthy() and services.agent_cli(t).healthy()
        assert "/spire/agent/join_token/" in (services.agent_identity(t) or "")
        assert "other.example" in run.output and t.trust_domain in run.output
        assert "nothing was stopped" in run.output
    finally:
        _back_to_phase3_as_it_was(lab, configs)


def test_a_failure_after_step5_puts_phase3_back(lab):
    t = lab.target
    old_id = services.agent_identity(t)
    assert old_id and "/spire/agent/join_token/" in old_id
    run = lab.run_suite("-m", "migrate", env={FAIL_AT: "guide_step_7"})
    assert run.code == 1, run.output[-3000:]
    assert run.status("guide_step_6") == "passed" and run.status("guide_step_7") == "failed", run.output[-4000:]
    assert "Phase 3 was put back" in run.output and "fault injected at guide_step_7" in run.output, run.output[-6000:]
    # The old agent resumed with its cached join_token SVID, no new token, and serves again.
    assert services.agent_identity(t) == old_id
    assert services.server_cli(t).healthy() and services.agent_cli(t).healthy()
    assert services.server_cli(t).agent(old_id) is not None
    assert not [a for a in services.server_cli(t).agents() if "/tpm_devid/" in str(a["id"])]
    for name, path in (("server.conf", t.server.config), ("agent.conf", t.agent.config)):
        journal = Journal(t.journal.dir / t.node, create=False)
        assert path.read_bytes() == journal.verify_backup(name).read_bytes(), f"{name} not restored"
    # The old agent's private key was set aside in its own folder, never copied into the journal.
    assert not [p for p in (t.journal.dir / t.node).rglob("*") if "keys" in p.name]
    # The journal is left for a later run, which then migrates.
    again = lab.run_suite("-m", "migrate")
    assert again.code == 0, again.output[-4000:]
    assert "/spire/agent/tpm_devid/" in (services.agent_identity(t) or "")
    assert not list(t.agent.data_dir.glob("*.phase3")), "the old key is dropped once TPM attestation is proven"
