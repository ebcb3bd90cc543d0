@diagnose
Feature: Common migration issues, diagnosed
  The guide's "Common Migration Issues". Each scenario reads the node (agent and server
  logs, both configs, the agent list, the TPM, the workload), changes nothing, names the
  cause and prints the guide's resolution. A scenario fails when it finds the fault, with
  the cause and the resolution as its message; it passes when the node does not have it.
  The guide's `tpm2_clear` advice destroys the DevID: the suite never runs it.

  Background:
    Given the target node

  @issue_1
  Scenario: Issue 1 - Agent fails to attest with TPM
    The guide: `tail -100 /opt/spire/agent.log | grep -i tpm`, `tail -100 /opt/spire/server.log | grep -i tpm`,
    resolution "Clear TPM if previously used: `sudo tpm2_clear`".
    Real SPIRE: `tpm2_clear` destroys every owner-hierarchy key, the DevID included; `hash_algorithm`
    is no key of any TPM attestor.
    The suite: names the cause: a wrong `tpm_device_path`, no TPM attestor on the server, a DevID or EK
    CA mismatch, or a join token still passed to the agent; it never clears the TPM.

    When the node is diagnosed for issue 1
    Then the diagnosis finds no fault

  @issue_2
  Scenario: Issue 2 - Workload registration fails with "parent ID not found"
    The guide: `sudo /opt/spire/bin/spire-server agent list`, "Wait for agent to complete attestation".
    Real SPIRE: as the guide says.
    The suite: waits (with a deadline, never a fixed sleep) for the agent to attest, then lists the
    agent IDs that exist.

    When the node is diagnosed for issue 2, waiting for the agent to attest until the start timeout
    Then the diagnosis finds no fault

  @issue_3
  Scenario: Issue 3 - PCR values change after reboot
    The guide: `tpm2_pcrread sha256`, `sudo /opt/spire/bin/spire-server entry show`.
    Real SPIRE: no attestor emits `tpm:pcr:` selectors: the guide's PCR-bound entries never match.
    The suite: lists every registration and recorded PCR expectation that depends on a changed PCR.

    When the node is diagnosed for issue 3
    Then the diagnosis finds no fault

  @issue_4
  Scenario: Issue 4 - Performance degradation
    The guide: `time /opt/spire/bin/spire-agent api fetch`, `top -p $(pgrep spire-agent)`.
    Real SPIRE: as the guide says.
    The suite: the SVID fetch latency and the agent's CPU against the target's thresholds.

    When the node is diagnosed for issue 4
    Then the diagnosis finds no fault
