Feature: Gradual migration (Strategy 2) with dual attestation, and finalize
  The guide's Strategy 2: keep Phase 3 running, give the server the TPM attestor next to
  join_token (dual mode), migrate one agent node at a time (`pytest -m migrate` with that
  node's target description, or `--node NAME`: only that node's entries are re-registered),
  and once every agent is TPM-attested remove the join_token attestor.
  SPIRE agents take exactly one NodeAttestor: only the server runs both.

  @strategy_gradual
  Scenario: Dual attestation - the server runs join_token and the TPM attestor side by side
    The guide: `NodeAttestor "join_token"` next to `NodeAttestor "tpm"` on the server, and
    "Document which agents use which attestation method".
    Real SPIRE: a server takes several NodeAttestors, an agent exactly one; there is no built-in `tpm`
    plugin (the profile is the target's, tpm_devid by default).
    The suite: reads server.conf and `agent list -output json`; before any node is migrated (no TPM
    attestor) or after finalize (no join_token) the scenario is not applicable.

    Given the target node
    Then the server runs the join_token and the TPM node attestors side by side
    And every agent of the server is listed with its node attestation method

  @after_migration
  Scenario: Finalize - remove the join_token attestor once no join_token agent remains
    The guide: "Once all agents migrated, remove join token attestor" (After Migration 1, Strategy 2 step 4).
    Real SPIRE: as the guide says (a config change and a server restart); the guide does not say how to
    know that every agent migrated: the server's agent list does.
    The suite: refuses, naming every remaining join_token agent, its node and its workloads; otherwise
    backs up server.conf into the journal, removes `NodeAttestor "join_token"` and restarts the server.

    Given the finalize journal of the target node
    When the join_token node attestor is removed from server.conf and the server restarted
    Then server.conf has no join_token node attestor and the server is healthy
    And every agent of the server is TPM-attested
