@validate @audit
Feature: Audit beyond the guide
  What an auditor asks of a node after the migration, on every node of the run.
  Read-only. A warning is a pass that the reports show with its text.

  Background:
    Given the audited node

  @audit_1
  Scenario: The join_token attestor is retired once no join_token agent remains
    The guide: `Remove Join Token Attestor`: "Once all agents migrated, remove from configuration".
    Real SPIRE: while the server runs join_token, anyone holding a token it generated can join as a node.
    The suite: a warning while join_token agents remain (or until finalize), a failure when join_token
    is configured again after finalize.

    Then the server has no join_token attestor once no join_token agent remains

  @audit_2
  Scenario: No join token is left on a TPM node
    The guide: `-joinToken $JOIN_TOKEN` in Step 6 leaves a token on the command line.
    Real SPIRE: a join token is a secret until spent, and with one the agent attests by join_token.
    The suite: no join token in the agent's config (`join_token`, `join_token_file`), command line or files.

    Given the audited node is in Phase 4
    Then no join token is left in the agent's config, flags or files

  @audit_3
  Scenario: The agent keeps its key on disk
    The guide: (silent) the agent's KeyManager.
    Real SPIRE: with `KeyManager "memory"` an agent loses its key at restart.
    The suite: the agent config's KeyManager, read through the host.

    Then the agent's KeyManager is "disk"

  @audit_4
  Scenario: Backups and journal are readable by root only
    The guide: `Backup Everything`; its backups go next to the configs and to /tmp.
    Real SPIRE: the backups hold the old agent ID (with its spent join token) and every entry.
    The suite: the journal and everything under it owned by root, with no group or other bits.

    Then the journal and its backups are readable by root only

  @audit_5
  Scenario: The DevID certificate is trusted and not expiring
    The guide: (silent) the DevID, which the tpm_devid attestor needs.
    Real SPIRE: the server accepts the DevID only if it chains to its `devid_ca_path` bundle.
    The suite: the chain verified by signature, and more than `thresholds.cert_expiry_days` left.

    Then the DevID certificate chains to the configured DevID CA and is not expiring

  @audit_6
  Scenario: The EK certificate chains to the endorsement CA
    The guide: (silent) the EK certificate.
    Real SPIRE: the server verifies the EK certificate against its `endorsement_ca_path` bundle.
    The suite: the EK certificate read from the TPM (NV 0x01c00002, tpm2-pytss) and its direct issuer.

    Then the EK certificate chains to the endorsement CA

  @audit_7
  Scenario: The trust bundle and server CA are not expiring
    The guide: (silent) the trust bundle.
    Real SPIRE: a self-signing server rotates its CA at half its `ca_ttl`.
    The suite: the bundle and the server CA against the threshold (or half the ca_ttl when shorter).

    Then the trust bundle and the server CA are not expiring
