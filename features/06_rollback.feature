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
    The guide: `sudo pkill -f spire-agent`, `sudo pkill -f spire-server`, `kubectl delete deployment mtls-app`.
    Real SPIRE: `pkill -f` kills any process whose command line mentions the word; and while other
    nodes' agents are TPM-attested (a gradual migration) the server must keep running both attestors.
    The suite: first checks that both config backups exist and are unaltered (nothing is stopped when
    the way back is not there), then stops the exact pids; the workload is replaced in step 3.

    When the Phase 4 spire-agent, and spire-server unless other nodes still need it, are stopped by pid
    Then no Phase 4 SPIRE agent is running

  @rollback_step_2
  Scenario: Rollback step 2 - Restore the Phase 3 configuration
    The guide: `sudo cp /opt/spire/conf/server/server.conf.phase3.backup /opt/spire/conf/server/server.conf`,
    the same for agent.conf.
    Real SPIRE: as the guide says; a missing or altered backup would restore the wrong file.
    The suite: restores both from the journal's backups, hash checked before any write and after it;
    server.conf is kept (dual mode) while other nodes' agents are TPM-attested.

    When server.conf and agent.conf are restored from the journal's hash-checked backups
    Then server.conf and agent.conf are byte-for-byte the Phase 3 backups

  @rollback_step_3
  Scenario: Rollback step 3 - Restart the Phase 3 components with a new join token
    The guide: `sudo ./run_k8s_demo.sh`.
    Real SPIRE: the old join token is spent and the evicted join_token agent can never re-attest.
    The suite: a new join token (`token generate -spiffeID` with the first token's node alias), the
    agent started with it after forgetting the TPM agent's cached SVID, every entry re-parented under
    the new join_token agent, the TPM agent evicted, the Phase 3 workload redeployed. The new token is
    a secret: redacted everywhere, never written to the journal.

    When Phase 3 is restarted with a new join token and every entry is re-parented under the new join_token agent
    Then the agent runs attested by a new join token that appears nowhere in the journal
    And every original entry is under the new join_token agent with its original content
    And the TPM agent is evicted

  @rollback_step_4
  Scenario: Rollback step 4 - Verify Phase 3 functionality
    The guide: `pgrep -a spire`, `kubectl get pods -l app=mtls-demo`, `kubectl logs <pod-name>`.
    Real SPIRE: as the guide says; pgrep alone proves no attestation.
    The suite: runs the pre-migration checks and waits for the workload's VERIFIED since the redeploy;
    then resets the migration journal (its backups kept under backups/cycle-N/).

    When Phase 3 is verified as the pre-migration checklist does
    Then the pre-migration checks pass and the workload logged VERIFIED
    And the migration journal is reset for a new migration
