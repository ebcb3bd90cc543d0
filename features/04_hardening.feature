@validate
Feature: Security hardening
  The guide's "Security Hardening" list, proven at any phase, on every node
  of the run (--hosts: one scenario per host). Read-only.

  Background:
    Given the audited node

  @hardening_1
  Scenario: Restrict TPM access to the SPIRE agent
    Then the TPM device node or socket is accessible only by the agent's user

  @hardening_2
  Scenario: Use the TPM resource manager
    Then the agent uses the TPM resource manager or a socket that serialises access

  @hardening_3
  Scenario: Document PCR usage
    Then every PCR a registration depends on has its expected value recorded and unchanged

  @hardening_4
  Scenario: Regular audits are possible
    Then attestation records and this run's reports are available to auditors

  @hardening_5
  Scenario: Update procedure for PCR-changing updates is known
    Then every entry that depends on PCR values is listed with the update procedure
