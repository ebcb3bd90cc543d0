"""Issue 9 points 2, 5 and 10 on real SPIRE: no token in sight, the agent's identity proven.

* Rollback generates a fresh join token and starts the agent with it: while it
  runs, the process table (every readable ``/proc/*/cmdline`` and ``environ``)
  is sampled; afterwards every output the run made (terminal, JUnit XML,
  cucumber JSON, summary, Markdown report, journal, SPIRE logs) is searched for
  the token. The token is read back from the agent ID SPIRE made of it
  (``.../join_token/<token>``): spent by then, its literal must still appear
  nowhere but in that ID in SPIRE's own logs.
* The agent the suite started has a minimal environment (none of the suite's
  variables), and the token file is gone.
* A crafted or copied ``agent-data.json`` naming another node's agent makes
  the migration plan refuse, instead of planning to move that node's entries.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import shutil
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab import core
from spire_migration.node import services
from spire_migration.redact import fingerprint

pytestmark = [pytest.mark.lab, pytest.mark.slow]
MARKER = "SECRETS_TEST_MARKER"


class ProcSampler(threading.Thread):
    """Read every readable /proc/<pid>/cmdline and environ, over and over, until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: set[bytes] = set()
        self.rounds = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid_dir in Path("/proc").iterdir():
                if pid_dir.name.isdigit():
                    for name in ("cmdline", "environ"):
                        try:
                            self.seen.add((pid_dir / name).read_bytes())
                        except OSError:
                            pass
            self.rounds += 1
            self.done.wait(0.02)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_rollback_shows_the_join_token_nowhere(lab) -> None:
    t = lab.target
    migrated = lab.run_suite("-m", "migrate")
    assert migrated.code == 0, migrated.output[-4000:]

    out = lab.root / "out"
    out.mkdir()
    junit, cucumber, report = out / "junit.xml", out / "cucumber.json", out / "report.md"
    sampler = ProcSampler()
    sampler.start()
    try:
        rolled = lab.run_suite("-m", "rollback", "--junitxml", str(junit), "--cucumberjson", str(cucumber),
                               "--report", str(report), env={MARKER: "leaked-into-a-daemon"})
    finally:
        sampler.stop()
    assert rolled.code == 0, rolled.output[-4000:]
    assert sampler.rounds > 10, f"the process table was sampled only {sampler.rounds} times"

    agent_id = services.agent_identity(t)
    assert agent_id and "/spire/agent/join_token/" in agent_id, agent_id
    token = agent_id.rsplit("/", 1)[1].encode()
    assert len(token) >= 16

    in_ps = [blob.replace(b"\0", b" ")[:300] for blob in sampler.seen if token in blob]
    assert not in_ps, f"the join token was in the process table: {in_ps[:2]}"

    outputs = {"terminal": rolled.output.encode(), "summary": json.dumps(rolled.summary).encode()}
    for path in [junit, cucumber, report, *_files_under(t.journal.dir)]:
        outputs[str(path)] = path.read_bytes()
    leaked = [name for name, text in outputs.items() if token in text]
    assert not leaked, f"the join token is in {leaked}"
    assert f"join_token/<redacted:{fingerprint(token.decode())}>".encode() in outputs["terminal"] + outputs[
        str(report)], "the new agent is not named (redacted) in the outputs: nothing was searched"
    for log in (t.agent.log, t.server.log):   # SPIRE itself names the agent, token in its ID; nothing else
        bare = re.sub(rb"join_token/" + re.escape(token), b"join_token/<id>", log.read_bytes())
        assert token not in bare, f"{log} holds the join token outside the agent's ID"
    for path in (junit, cucumber):
        assert path.stat().st_mode & 0o777 == 0o600, f"{path} is {oct(path.stat().st_mode & 0o777)}"

    agent = services.agent_proc(t)
    assert agent is not None
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
    names = sorted(v.split(b"=", 1)[0].decode() for v in environ if v)
    assert MARKER not in names and set(names) <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ"}, names
    for i, arg in enumerate(agent.argv):
        if arg == "-joinTokenFile":
            assert not Path(agent.argv[i + 1]).exists(), f"the token file {agent.argv[i + 1]} was left behind"


def _self_signed_svid(agent_id: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "not SPIRE")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(agent_id)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_an_agent_data_file_naming_another_node_is_refused(make_lab) -> None:
    lab = make_lab()
    lab.up(agents=2)
    lay = core.Layout(lab.root)
    node1, node2 = core.target_for(lay, "node-1"), core.target_for(lay, "node-2")
    node2_id = services.agent_identity(node2)
    assert node2_id and "/join_token/" in node2_id
    node2_shown = f"join_token/<redacted:{fingerprint(node2_id.rsplit('/', 1)[1])}>"
    data_file = services.agent_data_file(node1)
    original = data_file.read_bytes()
    plan_target = lab.root / "target-node-1.toml"

    def plan() -> str:
        lab.target_path = plan_target
        run = lab.run_suite("-m", "migrate", "--plan")
        acting = [ln for ln in run.output.splitlines() if "guide_step_" in ln and node2_shown in ln]
        assert not acting, f"the plan acts on node-2's agent: {acting}"
        assert run.code != 0 and "agent-data.json" in run.output, run.output[-3000:]
        return run.output

    crafted = json.loads(original)
    crafted["svid"] = [base64.b64encode(_self_signed_svid(node2_id)).decode()]
    data_file.write_text(json.dumps(crafted))
    assert "did not issue" in plan()

    shutil.copyfile(services.agent_data_file(node2), data_file)   # node-2's real SVID, without its key
    assert "does not hold" in plan()

    data_file.write_bytes(original)
    lab.target_path = plan_target
    run = lab.run_suite("-m", "migrate", "--plan")
    assert run.code == 0, run.output[-3000:]
