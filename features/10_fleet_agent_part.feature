@fleet
Feature: Fleet migration, the agent part (on each agent node, make before break)
  Each agent node moves on its own, in waves (fleet/migrate.yml). The guide stops everything,
  switches, then re-registers (a gap for every workload). Here the order departs from it:
  the node's new agent ID is known before the switch (tpm_devid: the sha1 of its DevID
  certificate), so its entries are made under that ID on the server host first ("make"); only
  then the agent restarts (the server keeps running); only once the server lists the new agent
  TPM-attested are the old entries deleted and the old agent evicted ("break").
  The registration steps run on the server host, where its API is, from the node's handoff file
  (no secret in it): the node never gets the server's admin socket.
  Parts: `spire-migration migrate --part agent-prepare|agent-switch|agent-finish --target <node's>`
  on the node; `--part make|break --handoff FILE --target <server host's>` on the server host.

  Background:
    Given the fleet migration part of the target node

  @part_agent_prepare @guide_step_1
  Scenario: Step 1 - Verify the node runs Phase 3 (agent node)
    The guide: `pgrep -a spire-agent`, `kubectl logs <pod-name>`.
    Real SPIRE: a running agent may not be attested; pgrep finds any process by name.
    The suite: the agent's exact process answers healthcheck, its cached SVID is a join_token one
    (proven against the agent's own trust bundle and key), and the workload logged VERIFIED.

    When the node is verified: its agent healthy and attested by join_token, its workload VERIFIED
    Then the old join_token agent ID is recorded in the journal, redacted

  @part_agent_prepare @guide_step_2
  Scenario: Step 2 - Verify the node's TPM device (agent node)
    The guide: `sudo ./detect_tpm.sh`.
    Real SPIRE: the attestor needs a TPM 2.0 with a sha256 bank, an EK certificate and a re-creatable EK.
    The suite: reads the TPM with tpm2-pytss. A node whose TPM fails here is not changed at all.

    When the node's TPM device is probed as detect_tpm.sh would
    Then the TPM is a TPM 2.0 with a sha256 PCR bank, an EK certificate and a re-creatable EK

  @part_agent_prepare @guide_step_3
  Scenario: Step 3 - Back up agent.conf (agent node)
    The guide: `sudo cp /opt/spire/conf/agent/agent.conf /opt/spire/conf/agent/agent.conf.phase3.backup`.
    Real SPIRE: as the guide says.
    The suite: agent.conf into the node's journal, hashed, 0600 in a 0700 directory.

    When agent.conf is backed up into the node's journal
    Then the node's journal holds agent.conf with its sha256, readable by root only

  @part_agent_prepare @guide_step_4
  Scenario: Step 4 - agent.conf to exactly one TPM node attestor, and the handoff (agent node)
    The guide: `sudo ./setup_tpm.sh` "Adds TPM node attestor to agent.conf", keeping join_token.
    Real SPIRE: an agent takes exactly one NodeAttestor, and any join token overrides it.
    The suite: the TPM attestor replaces join_token (and join_token_file) in agent.conf; the rest stays
    byte for byte. It writes the handoff for the server host: the node name, the redacted old agent
    ID, the new agent ID and the DevID certificate it comes from (no secret).

    When agent.conf names the TPM node attestor alone and the handoff for the server host is written
    Then agent.conf names exactly one node attestor, the TPM one, and no join_token setting
    And the handoff names the node, its redacted old agent ID and its new agent ID, and holds no secret

  @part_make @guide_step_8
  Scenario: Step 8, make - the node's entries made for its new agent ID (server host)
    The guide: `entry create -parentID $AGENT_ID`, after the switch.
    Real SPIRE: a new parent ID gives a new entry; the old agent still serves the old ones.
    The suite: on the server host, from the node's handoff: checks the new agent ID against the
    DevID certificate and the server's DevID CA, finds the old join_token agent by its redacted
    ID, and copies each of its entries (and a twin of each node alias selecting it) for the new
    ID. Nothing is deleted.

    When the node's entries are made for its new agent ID on the server host
    Then every entry of the node's old agent has its copy for the new agent ID

  @part_agent_switch @guide_step_5 @guide_step_6 @guide_step_7
  Scenario: Steps 5 to 7 - Switch the agent to TPM attestation (agent node)
    The guide: `sudo pkill -f spire-agent`, `spire-agent run -config /opt/spire/conf/agent/agent.conf -joinToken $JOIN_TOKEN`,
    `sudo ./verify_tpm.sh`.
    Real SPIRE: a join token overrides the TPM attestor; a restarted agent reuses its cached SVID.
    The suite: stops the Phase 3 agent (by pid or its systemd unit) once `spire-agent validate`
    accepts agent.conf, drops its cached SVID (backed up), starts it with no join token, and proves
    the new agent ID (its SVID, its own bundle and key). The server never stops. On a failure the
    node's Phase 3 is put back: agent.conf, the cached join_token SVID and its key.

    When the node's agent is restarted without a join token and its TPM attestation verified
    Then the node's agent ID is the TPM attestor's ID, proven by its own bundle and key

  @part_break @guide_step_7 @guide_step_8
  Scenario: Steps 7 and 8, break - the old agent retired (server host)
    The guide: `spire-server agent list`; `entry delete` of the old entries.
    Real SPIRE: an evicted join_token agent cannot come back (its token is spent).
    The suite: on the server host, only once the server lists the node's new agent attested by the
    TPM attestor with its selectors: deletes the old agent's entries and node aliases by ID, and
    evicts the old agent.

    When the node's old agent is retired on the server host once its new agent is TPM-attested
    Then no entry refers to the node's old agent and it is evicted

  @part_agent_finish @guide_step_9
  Scenario: Step 9 - Deploy the Phase 4 application (agent node)
    The guide: `kubectl apply -f mtls-app.yaml`, `kubectl wait --for=condition=ready pod -l app=mtls-demo --timeout=60s`.
    Real SPIRE: as the guide says; the runtime is the target's.
    The suite: redeploys the Phase 4 workload through the node's runtime.

    When the node's Phase 4 workload is deployed through its runtime
    Then the Phase 4 workload is running

  @part_agent_finish @guide_step_10
  Scenario: Step 10 - Verify end-to-end functionality (agent node)
    The guide: `kubectl logs <pod-name> | grep "VERIFIED"`.
    Real SPIRE: a log line from before the deploy proves nothing.
    The suite: the workload's logs since the deploy and a live mTLS check in the workload.

    When the node's workload is checked end to end: its SVID fetch and its mTLS exchange
    Then the workload logged "Successfully fetched SVIDs" and "VERIFIED" since the deploy
