"""The fleet rollback parts on one real lab host: migrate node-1 with the fleet parts, then roll it
back with `spire-migration rollback --part token|agent|reparent`, make before break.

Two targets as in test_fleet_parts.py: the server host's (node "server") and node-1's. After the
rollback node-1's agent is a join_token agent again (proven by its own bundle and key and by the
server's record), its workload VERIFIED, its TPM agent evicted with no entry left under it. The
token is searched for in every output, summary and journal file, in SPIRE's logs (outside the agent
ID SPIRE makes of it) and in every /proc/*/cmdline and environ sampled during the rollback; forged
rollback handoffs are refused before anything is deleted; a second pass of every part changes nothing.
Before that, the node part refuses to stop anything without a token, and with a token the server
never issued (the agent cannot attest) it puts the TPM agent back: the node keeps a running agent.
"""

from __future__ import annotations

import json
import re
import stat
import tempfile
from pathlib import Path

import pytest

from conftest import Lab
from lab.layout import private_base

from spire_migration.checks import premigration
from spire_migration.node import services
from spire_migration.node.facade import Node
from spire_migration.node.spiffe_ids import is_join_token_agent
from spire_migration.procedures.fleet_rollback import ROLLBACK_HANDOFF, token_path
from spire_migration.procedures.parts import handoff_path
from spire_migration.redact import fingerprint
from test_fleet_parts import PARTS, _changes, _run, hosts  # noqa: F401 - hosts is a fixture
from test_secrets import ProcSampler

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SERVER_PARTS = ("server", "make", "break", "token", "reparent")


@pytest.fixture(scope="module")
def lab():
    """A Phase 3 lab under /run/spire-lab/rb-*, always taken down afterwards."""
    the_lab = Lab(Path(tempfile.mkdtemp(prefix="rb-", dir=private_base())))
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


def _part(lab, hosts, part: str, handoff=None, command: str = "migrate", *extra: str):
    server_target, agent_target = hosts
    return _run(lab, part, server_target if part in SERVER_PARTS else agent_target, handoff, command, *extra)


def test_a_node_rolls_back_in_parts_and_the_token_shows_nowhere(lab, hosts):
    t = lab.target
    server = services.server_cli(t)
    handoff = handoff_path(t)
    for part in PARTS:
        code, out, _ = _part(lab, hosts, part, handoff if part in ("make", "break") else None)
        assert code == 0, f"migrate {part}: {out[-3000:]}"
    tpm_agent = services.agent_identity(t)
    assert tpm_agent and "/tpm_devid/" in tpm_agent
    workload_entries = server.entries(parentID=tpm_agent)
    assert workload_entries

    pid = services.agent_proc(t).pid
    entries_before = server.entries()
    for part, h in (("token", handoff), ("agent", None)):   # a plan changes nothing
        code, out, summary = _part(lab, hosts, part, h, "rollback", "--plan")
        assert code == 0 and _changes(summary), f"{part} --plan: {out[-3000:]}"
    assert not token_path(t.journal_root).exists() and server.entries() == entries_before
    assert services.agent_proc(t).pid == pid

    code, out, _ = _part(lab, hosts, "agent", None, "rollback")   # no token yet: nothing is stopped
    assert code != 0 and "no join token for this node's rollback" in out, out[-3000:]
    assert services.agent_proc(t).pid == pid and services.node_agent_identity(t) == tpm_agent

    bogus = token_path(t.journal_root)   # a token the server never issued: the agent cannot attest
    bogus.write_text("0badc0de-0000-4000-8000-000000000000\n")
    bogus.chmod(0o600)
    code, out, _ = _part(lab, hosts, "agent", None, "rollback")
    assert code != 0 and "the TPM agent was put back" in out, out[-3000:]
    assert services.agent_proc(t).pid != pid, "the TPM agent was never stopped: nothing was put back"
    assert services.node_agent_identity(t) == tpm_agent, "the node's agent is not the TPM agent again"
    assert services.agent_identity(t) == tpm_agent and not bogus.exists()
    assert Node(t).runtime.check(60).get("verified"), "the Phase 4 workload is not served after the put-back"

    outputs: dict[str, str] = {}
    sampler = ProcSampler()
    sampler.start()
    try:
        code, out, summary = _part(lab, hosts, "token", handoff, "rollback")
        outputs["token"] = out + json.dumps(summary)
        assert code == 0, out[-3000:]
        token_file = token_path(t.journal_root)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 16
        jt_agent = f"spiffe://{t.trust_domain}/spire/agent/join_token/{token}"
        made = server.entries()
        assert sorted(e["spiffe_id"]["path"] for e in made if e["parent_id"]["path"].endswith(token)) == \
            sorted(e["spiffe_id"]["path"] for e in workload_entries), "the TPM agent's entries were not made first"

        code, out, summary = _part(lab, hosts, "agent", None, "rollback")
        outputs["agent"] = out + json.dumps(summary)
        assert code == 0, out[-3000:]
        assert services.node_agent_identity(t) == jt_agent
        assert not token_file.exists(), "the token file was left on the node"
        rb_handoff = t.journal_root / ROLLBACK_HANDOFF
        text = rb_handoff.read_text()
        assert token not in text and json.loads(text)["tpm_agent"] == tpm_agent

        for field, forged in (("tpm_agent", tpm_agent[:-4] + "beef"),
                              ("new_agent", json.loads(text)["new_agent"][:-9] + "0badf00d>")):
            path = lab.root / f"forged-{field}.json"
            path.write_text(json.dumps({**json.loads(text), field: forged}))
            code, out, _ = _part(lab, hosts, "reparent", path, "rollback")
            outputs[f"forged {field}"] = out
            assert code != 0 and "did not issue" in out, out[-3000:]
            assert server.agent(tpm_agent) is not None, "a forged handoff evicted the TPM agent"

        code, out, summary = _part(lab, hosts, "reparent", rb_handoff, "rollback")
        outputs["reparent"] = out + json.dumps(summary)
        assert code == 0, out[-3000:]
    finally:
        sampler.stop()

    assert server.agent(tpm_agent) is None, "the TPM agent was not evicted"
    assert not server.entries(parentID=tpm_agent), "entries are left under the TPM agent"
    record = server.agent(jt_agent)
    assert record and record["attestation_type"] == "join_token"
    assert services.agent_identity(t) == jt_agent and is_join_token_agent(jt_agent)
    node = Node(t)
    verified = premigration.workload_verified(node)
    assert verified.ok, verified.message()
    assert node.runtime.check(60).get("verified")

    assert sampler.rounds > 10, f"the process table was sampled only {sampler.rounds} times"
    in_ps = [blob.replace(b"\0", b" ")[:300] for blob in sampler.seen if token.encode() in blob]
    assert not in_ps, f"the join token was in the process table: {in_ps[:2]}"
    for path in [p for p in t.journal.dir.rglob("*") if p.is_file()]:
        outputs[str(path)] = path.read_text(errors="replace")
    leaked = [name for name, text in outputs.items() if token in text]
    assert not leaked, f"the join token is in {leaked}"
    assert f"join_token/<redacted:{fingerprint(token)}>" in outputs["agent"], "the new agent is not named, redacted"
    for log in (t.agent.log, t.server.log):
        bare = re.sub(r"join_token/" + re.escape(token), "join_token/<id>", log.read_text(errors="replace"))
        assert token not in bare, f"{log} holds the join token outside the agent's ID"

    for part, h in (("token", handoff), ("agent", None), ("reparent", rb_handoff)):   # a second pass
        code, out, summary = _part(lab, hosts, part, h, "rollback")
        assert code == 0, f"{part}: {out[-3000:]}"
        assert not _changes(summary), f"{part} changed {_changes(summary)} on a rolled-back node"
    assert services.node_agent_identity(t) == jt_agent
