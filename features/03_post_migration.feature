@validate
Feature: Post-migration validation checklist
  The guide's "Post-Migration Validation" checklist, proven on a Phase 4 node.
  These scenarios only read: they change no file, process or registration.
  On a node that is still in Phase 3 they are reported as not applicable.
  The guide's validation commands are all covered here or in the hardening
  feature, through APIs and -output json (docs/traceability.md maps them).

  Background:
    Given the target node is in Phase 4

  @post_check_1
  Scenario: SPIRE Server running with TPM node attestor
    Then the SPIRE server runs with the TPM node attestor

  @post_check_2
  Scenario: SPIRE Agent running with TPM node attestor
    Then the SPIRE agent runs with the TPM node attestor and no other

  @post_check_3
  Scenario: Agent parent ID contains "tpm"
    Then the agent ID contains the TPM attestor path

  @post_check_4
  Scenario: Workloads registered with correct parent ID
    Then every workload entry has the TPM agent as parent

  @post_check_5
  Scenario: Pods can fetch SVIDs successfully
    Then the workload instances run and fetch their SVID

  @post_check_6
  Scenario: mTLS communication works
    Then an mTLS exchange between the workload's client and server is verified

  @post_check_7
  Scenario: TPM attestation verified with verify_tpm.sh
    Then the checks of verify_tpm.sh pass

  @post_check_8
  Scenario: No errors in SPIRE logs
    Then the SPIRE logs hold no error since the migration

  @post_check_9
  Scenario: Application logs show successful operation
    Then the workload logs show successful operation since the deploy

  @post_check_10
  Scenario: Performance is acceptable
    Then the SVID fetch latency is under the target's threshold
