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
    When the node is diagnosed for issue 1
    Then the diagnosis finds no fault

  @issue_2
  Scenario: Issue 2 - Workload registration fails with "parent ID not found"
    When the node is diagnosed for issue 2, waiting for the agent to attest until the start timeout
    Then the diagnosis finds no fault

  @issue_3
  Scenario: Issue 3 - PCR values change after reboot
    When the node is diagnosed for issue 3
    Then the diagnosis finds no fault

  @issue_4
  Scenario: Issue 4 - Performance degradation
    When the node is diagnosed for issue 4
    Then the diagnosis finds no fault
