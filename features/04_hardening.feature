@validate
Feature: Security hardening
  The guide's "Security Hardening" list, proven at any phase, on every node
  of the run (--hosts: one scenario per host). Read-only.

  Background:
    Given the audited node

  @hardening_1
  Scenario: Restrict TPM access to the SPIRE agent
    The guide: `Restrict TPM Access`: "Limit TPM device permissions to SPIRE Agent only".
    Real SPIRE: as the guide says; the TPM may also be a socket (swtpm, a resource manager's).
    The suite: the owner and mode of the device node or socket the agent's config names, read through
    the host: only the agent's user (and root) may open it.

    Then the TPM device node or socket is accessible only by the agent's user

  @hardening_2
  Scenario: Use the TPM resource manager
    The guide: `Use Resource Manager`: "Prefer /dev/tpmrm0 over /dev/tpm0".
    Real SPIRE: as the guide says; a socket that serialises access (swtpm, tpm2-abrmd) serves as well.
    The suite: the path the agent's TPM attestor is configured with.

    Then the agent uses the TPM resource manager or a socket that serialises access

  @hardening_3
  Scenario: Document PCR usage
    The guide: `Document PCR Usage`, read with `tpm2_pcrread sha256`.
    Real SPIRE: no attestor emits the guide's `tpm:pcr:` selectors, so an entry that names one never
    matches; PCR bindings of the target (`[attestor] pcr_bindings`) are what a registration depends on.
    The suite: every PCR a registration depends on has an expected value recorded in the journal
    (`python -m spire_migration.checks.pcrs record`) that the TPM still reports (tpm2-pytss).

    Then every PCR a registration depends on has its expected value recorded and unchanged

  @hardening_4
  Scenario: Regular audits are possible
    The guide: `Regular Audits`: "Review TPM access logs and attestation records".
    Real SPIRE: attestation records are the agent's "Node attestation was successful" and the server's
    attestation log lines; text output is not an interface, logfmt is.
    The suite: attestation records in the SPIRE logs, the journal's history, and this run's reports.

    Then attestation records and this run's reports are available to auditors

  @hardening_5
  Scenario: Update procedure for PCR-changing updates is known
    The guide: `Update Procedures`: "Document how to handle system updates that change PCRs".
    Real SPIRE: as the guide says, for the entries that depend on PCR values.
    The suite: lists every such entry with the procedure (record, update, re-register).

    Then every entry that depends on PCR values is listed with the update procedure
