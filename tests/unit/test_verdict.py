"""The check kernel: results name what failed, and never print a secret."""

from __future__ import annotations

from spire_migration.errors import ConfigError
from spire_migration.redact import register_secret
from spire_migration.verdict import CheckResult, StepResult, check, failed, guarded

TOKEN = "5b1e2c3d-1111-2222-3333-444455556666"


def test_repr_redacts_evidence() -> None:
    register_secret(TOKEN)
    r = check("t", True, "e", f"token {TOKEN}", argv=["spire-agent", "-joinToken", TOKEN],
              agent_id=f"spiffe://d/spire/agent/join_token/{TOKEN}")
    assert TOKEN not in repr(r) and TOKEN not in r.found and TOKEN not in r.message()
    step = StepResult("guide_step_1", [f"used {TOKEN}"], evidence={"token": TOKEN})
    step.prove(r)
    assert TOKEN not in repr(step)


def test_guarded_names_the_error() -> None:
    @guarded
    def agent_conf_readable() -> CheckResult:
        """The agent config is readable."""
        raise ConfigError("agent.conf unreadable", expected="HCL", found="garbage", remedy="fix it")

    r = agent_conf_readable()
    assert (r.title, r.ok, r.expected, r.found, r.remedy) == (
        "The agent config is readable", False, "HCL", "garbage", "fix it")
    assert r.evidence == {"error": "agent.conf unreadable"}
    assert agent_conf_readable.__name__ == "agent_conf_readable"
    assert failed("x", ConfigError("m")).found == "m"


def test_step_result_carries_evidence_and_checks() -> None:
    step = StepResult("guide_step_4", ["added tpm_devid"], evidence={"diff": "+NodeAttestor"})
    assert step.ok  # no check attached yet
    step.prove(check("server conf", False, "dual", "join_token only"))
    assert not step.ok and step.evidence["diff"] == "+NodeAttestor"
    assert check("w", True, "e", "f").warn("careful").warnings == ["careful"]


def test_checks_over_a_workload_fetch_build_their_results() -> None:
    """The checks that take the workload's fetch result name it apart from the kernel's ``check``."""
    from spire_migration.checks import postmigration
    from spire_migration.node.facade import Node
    from spire_migration.config.target import Target

    node = Node(Target())
    fetch = {"verified": True, "peer_id": "spiffe://example.org/k8s-workload", "fetch_ms": 12.5}
    assert postmigration.mtls_works(node, fetch).ok
    assert postmigration.performance(node, fetch).evidence == {"fetch_ms": 12.5, "threshold_ms": 1000.0}
