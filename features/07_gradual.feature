Feature: Gradual migration (Strategy 2) with dual attestation, and finalize
  The guide's Strategy 2: keep Phase 3 running, give the server the TPM attestor next to
  join_token (dual mode), migrate one agent node at a time (`pytest -m migrate` with that
  node's target description, or `--node NAME`: only that node's entries are re-registered),
  and once every agent is TPM-attested remove the join_token attestor.
  SPIRE agents take exactly one NodeAttestor: only the server runs both.

  @strategy_gradual
  Scenario: Dual attestation - the server runs join_token and the TPM attestor side by side
    Given the target node
    Then the server runs the join_token and the TPM node attestors side by side
    And every agent of the server is listed with its node attestation method

  @after_migration
  Scenario: Finalize - remove the join_token attestor once no join_token agent remains
    Given the finalize journal of the target node
    When the join_token node attestor is removed from the server
    Then the server config has no join_token node attestor and the server is healthy
    And every agent of the server is TPM-attested
