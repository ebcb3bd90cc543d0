@validate
Feature: Pre-migration checklist
  The guide's "Pre-Migration Checklist", proven on the node before anything changes.
  These scenarios only read: they change no file, process or registration.
  On a node that is already in Phase 4 they are reported as not applicable.

  Background:
    Given the target node is in Phase 3

  @pre_check_1
  Scenario: Phase 3 demo runs successfully
    Then the SPIRE server is running and healthy
    And the SPIRE agent is running and healthy
    And the agent is attested by join_token
    And the workload entry is registered under the agent
    And the workload fetched an SVID and logged VERIFIED

  @pre_check_2
  Scenario: TPM device is present and accessible
    Then the TPM is a TPM 2.0 with a sha256 PCR bank at the configured path

  @pre_check_3
  Scenario: No critical workload is left unregistered
    Then every critical workload is registered

  @pre_check_4
  Scenario: A backup of the SPIRE configuration exists or is planned
    Then a backup exists or is planned

  @pre_check_5
  Scenario: Current workload registrations are understood
    Then the current registrations are listed with their count
