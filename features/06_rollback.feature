@rollback
Feature: Rollback to Phase 3
  The guide's Rollback Procedure, performed from what the migration journal recorded.
  Real SPIRE cannot take the old join token back (spent) nor the old join_token agent
  (evicted by migration step 8), so Phase 3 comes back with a new join token and every
  entry re-parented, with its original content, under the new join_token agent.
  Every step is idempotent and resumable; the run stops at the first failed step.
  After a completed rollback the migration journal is reset: `pytest -m migrate` migrates again.

  Background:
    Given the rollback journal of the target node

  @rollback_step_1
  Scenario: Rollback step 1 - Stop the Phase 4 components
    When the rollback performs rollback step 1
    Then no Phase 4 SPIRE agent is running

  @rollback_step_2
  Scenario: Rollback step 2 - Restore the Phase 3 configuration
    When the rollback performs rollback step 2
    Then server.conf and agent.conf are byte-for-byte the Phase 3 backups

  @rollback_step_3
  Scenario: Rollback step 3 - Restart the Phase 3 components with a new join token
    When the rollback performs rollback step 3
    Then the agent runs attested by a new join token that appears nowhere in the journal
    And every original entry is under the new join_token agent with its original content
    And the TPM agent is evicted

  @rollback_step_4
  Scenario: Rollback step 4 - Verify Phase 3 functionality
    When the rollback performs rollback step 4
    Then the pre-migration checks pass and the workload logged VERIFIED
    And the migration journal is reset for a new migration
