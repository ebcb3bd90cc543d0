@migrate
Feature: Step-by-step migration from join_token to TPM node attestation
  The guide's ten migration steps, each performed by its scenario, in order.
  Every step is idempotent: on a migrated node a second run changes nothing.
  The run stops at the first failed step; later steps are reported as not run.
  With --plan each step prints what it would change and changes nothing.

  Background:
    Given the migration journal of the target node

  @guide_step_1
  Scenario: Step 1 - Verify Phase 3 is working
    When the migration performs guide step 1
    Then the old join_token agent ID is recorded in the journal

  @guide_step_2
  Scenario: Step 2 - Verify the TPM device
    When the migration performs guide step 2
    Then the TPM was found usable for TPM attestation

  @guide_step_3
  Scenario: Step 3 - Back up the Phase 3 configuration and registrations
    When the migration performs guide step 3
    Then the journal holds both configs and every registration entry, readable by root only

  @guide_step_4
  Scenario: Step 4 - Configure the TPM node attestor (setup_tpm.sh)
    When the migration performs guide step 4
    Then the server config has the join_token and the TPM node attestors
    And the agent config has exactly one node attestor, the TPM one
    And everything else in both configs is as it was

  @guide_step_5
  Scenario: Step 5 - Stop the Phase 3 SPIRE components
    When the migration performs guide step 5
    Then no Phase 3 SPIRE process is running

  @guide_step_6
  Scenario: Step 6 - Start the Phase 4 SPIRE components
    When the migration performs guide step 6
    Then the server is healthy and the agent runs without any join token

  @guide_step_7
  Scenario: Step 7 - Verify TPM attestation (verify_tpm.sh)
    When the migration performs guide step 7
    Then the agent is attested by the TPM attestor with the expected agent ID

  @guide_step_8
  Scenario: Step 8 - Re-register every workload under the TPM agent
    When the migration performs guide step 8
    Then every entry of the old agent is under the new agent with identical content
    And no entry or node alias refers to the old agent

  @guide_step_9
  Scenario: Step 9 - Deploy the Phase 4 application
    When the migration performs guide step 9
    Then the Phase 4 workload is running

  @guide_step_10
  Scenario: Step 10 - Verify end-to-end functionality
    When the migration performs guide step 10
    Then the workload fetched its SVID from the TPM-attested agent and logged VERIFIED
