@validate @audit
Feature: Audit beyond the guide
  What an auditor asks of a node after the migration, on every node of the run.
  Read-only. A warning is a pass that the reports show with its text.

  Background:
    Given the audited node

  @audit_1
  Scenario: The join_token attestor is retired once no join_token agent remains
    Then the server has no join_token attestor once no join_token agent remains

  @audit_2
  Scenario: No join token is left on a TPM node
    Given the audited node is in Phase 4
    Then no join token is left in the agent's config, flags or files

  @audit_3
  Scenario: The agent keeps its key on disk
    Then the agent's KeyManager is "disk"

  @audit_4
  Scenario: Backups and journal are readable by root only
    Then the journal and its backups are readable by root only

  @audit_5
  Scenario: The DevID certificate is trusted and not expiring
    Then the DevID certificate chains to the configured DevID CA and is not expiring

  @audit_6
  Scenario: The EK certificate chains to the endorsement CA
    Then the EK certificate chains to the endorsement CA

  @audit_7
  Scenario: The trust bundle and server CA are not expiring
    Then the trust bundle and the server CA are not expiring
