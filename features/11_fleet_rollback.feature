@fleet_rollback
Feature: Fleet rollback, one node back to Phase 3 (make before break, SPIRE never down on it)
  The guide's Rollback Procedure for one node of a fleet (fleet/rollback.yml -e node=NAME). The
  guide stops the server too and restarts Phase 3 with its demo script; in a fleet the server keeps
  running in dual mode (other nodes are TPM-attested) and only this node goes back. The order departs
  from the guide's: the server host issues the node a new join token and makes the node's entries
  for the join_token agent ID that token gives (SPIRE names the agent after its token) before the
  node's agent restarts; only once the server lists that agent are the TPM agent's entries deleted
  and the TPM agent evicted. The token travels only as a 0600 file: server host, the Ansible
  controller (no_log), the node; it is removed on both sides once used, and shown nowhere.
  Parts: `spire-migration rollback --part token --handoff <node's handoff.json>` and
  `--part reparent --handoff <node's rollback-handoff.json>` on the server host;
  `spire-migration rollback --part agent` on the node.

  Background:
    Given the fleet rollback part of the target node

  @part_rollback_token @rollback_step_3
  Scenario: Rollback step 3, token - a new join token for the node and its entries made (server host)
    The guide: `sudo ./run_k8s_demo.sh`, whose token comes from
    `JOIN_TOKEN=$(sudo /opt/spire/bin/spire-server token generate -spiffeID spiffe://example.org/agent | grep "Token:" | awk '{print $2}')`.
    Real SPIRE: the node's first token is spent and its join_token agent evicted; the output of
    `token generate` would put a live token in a terminal, a log and a shell variable.
    The suite: on the server host, from the node's migration handoff (its TPM agent ID checked against
    its DevID certificate and the DevID CA): a token with a short TTL and the node alias the first
    token had, written only to a 0600 file in the server host's journal of that node (its fingerprint
    alone is recorded); every entry of the TPM agent made for the join_token agent ID that token gives.

    When a new join token for the node is written to a private file and its entries are made for the join_token agent it gives
    Then the node's token is in a 0600 file and nowhere in the journal
    And every entry of the node's TPM agent has its copy for the join_token agent of the new token

  @part_rollback_agent @rollback_step_1
  Scenario: Rollback step 1 - Stop the node's TPM agent (agent node)
    The guide: `sudo pkill -f spire-agent`, `sudo pkill -f spire-server`.
    Real SPIRE: the server is on its own host and other nodes need it; pkill finds any process by name.
    The suite: only once the Phase 3 agent.conf backup is hash-checked and the new token is here (a 0600
    file of root's): the TPM agent stopped by pid; its agent.conf, cached SVID and key kept for a put-back.

    When the node's TPM agent is stopped by pid once the way back and the new token are both on the node
    Then no Phase 4 SPIRE agent runs on the node

  @part_rollback_agent @rollback_step_2
  Scenario: Rollback step 2 - Restore the node's Phase 3 agent.conf (agent node)
    The guide: `sudo cp /opt/spire/conf/agent/agent.conf.phase3.backup /opt/spire/conf/agent/agent.conf`.
    Real SPIRE: as the guide says; server.conf is the server host's and keeps both attestors.
    The suite: agent.conf byte for byte from the node's journal, hash checked; a failure puts the TPM agent back.

    When the node's agent.conf is restored from its journal's hash-checked backup
    Then the node's agent.conf is byte for byte its Phase 3 backup

  @part_rollback_agent @rollback_step_3
  Scenario: Rollback step 3 - Restart the node's agent with its new join token (agent node)
    The guide: `sudo ./run_k8s_demo.sh`.
    Real SPIRE: an agent with a cached SVID does not attest again; a token on the command line shows in `ps`.
    The suite: the TPM SVID dropped (backed up), the agent started with the token in a 0600 file (never a
    command line), its join_token ID proven by its own bundle and key and matched to the token's
    fingerprint; the token file removed; the rollback handoff written (no secret in it). A failure puts
    the TPM agent back: its agent.conf, cached SVID and key; the node is never left without an agent.

    When the node's agent is restarted with its new join token and its join_token attestation is proven
    Then the node's agent is the join_token agent of its new token, and the token file is gone
    And the rollback handoff names the node, its redacted join_token agent and its TPM agent, and holds no secret

  @part_rollback_agent @rollback_step_4
  Scenario: Rollback step 4 - Verify Phase 3 on the node (agent node)
    The guide: `pgrep -a spire`, `kubectl get pods -l app=mtls-demo`, `kubectl logs <pod-name>`.
    Real SPIRE: pgrep alone proves no attestation; a log line from before the redeploy proves nothing.
    The suite: the Phase 3 workload redeployed; the agent healthy; the workload's logs since the
    redeploy and a live mTLS check; then the node's migration journal is reset for a new migration.

    When the node's Phase 3 workload is redeployed and checked end to end
    Then the node's workload logged VERIFIED from its join_token agent

  @part_rollback_reparent @rollback_step_3
  Scenario: Rollback step 3, break - the node's TPM agent retired (server host)
    The guide: `sudo ./run_k8s_demo.sh`.
    Real SPIRE: a TPM agent evicted can attest again; its entries would still be served to it.
    The suite: on the server host, from the node's rollback handoff, checked against the token this
    host issued (its fingerprint): only once the server lists the new agent attested by join_token,
    the TPM agent's entries and node aliases deleted by ID and the TPM agent evicted.

    When the node's TPM agent is retired on the server host once its join_token agent is listed
    Then no entry refers to the node's TPM agent and it is evicted
