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
    The guide: `pgrep -a spire-server`, `pgrep -a spire-agent`, `sudo ./run_k8s_demo.sh`, `kubectl logs <pod-name>`.
    Real SPIRE: pgrep finds any process with the word in its name; the demo script is not on the node.
    The suite: first checks every input the later steps need (both configs parse and SPIRE accepts them,
    the attestor's inputs, the TPM, the workload runtime, the server); then the pre-migration checks
    are the gate (pid file and healthcheck, the agent attested by join_token, the workload VERIFIED).

    When Phase 3 is verified: server and agent healthy, the agent attested by join_token, the workload VERIFIED
    Then the old join_token agent ID is recorded in the journal, redacted

  @guide_step_2
  Scenario: Step 2 - Verify the TPM device
    The guide: `sudo ./detect_tpm.sh`, "Script reports TPM device found and accessible".
    Real SPIRE: the TPM attestor needs more than a device node: a TPM 2.0, a sha256 bank, an EK
    certificate in NV 0x01c00002 and an EK the TPM can re-create.
    The suite: reads the TPM with tpm2-pytss, never by scraping tpm2-tools output.

    When the TPM device is probed as detect_tpm.sh would
    Then the TPM is a TPM 2.0 with a sha256 PCR bank, an EK certificate and a re-creatable EK

  @guide_step_3
  Scenario: Step 3 - Back up the Phase 3 configuration and registrations
    The guide: `sudo cp /opt/spire/conf/server/server.conf /opt/spire/conf/server/server.conf.phase3.backup`,
    the same for agent.conf, `sudo /opt/spire/bin/spire-server entry show > /tmp/spire-entries-phase3.txt`.
    Real SPIRE: `entry show` text is not an interface, and /tmp is readable by every user.
    The suite: copies both configs and every entry (`-output json`) into the journal, hashed, 0600 in a
    0700 directory; a second run never overwrites the Phase 3 copy.

    When server.conf, agent.conf and every registration entry are backed up into the journal
    Then the journal holds server.conf and agent.conf with their sha256, readable by root only
    And the journal holds every registration entry as JSON

  @guide_step_4
  Scenario: Step 4 - Configure the TPM node attestor (setup_tpm.sh)
    The guide: `sudo ./setup_tpm.sh`, which "Adds TPM node attestor to server.conf" and
    "Adds TPM node attestor to agent.conf", keeping `NodeAttestor "join_token"` in both.
    Real SPIRE: an agent takes exactly one NodeAttestor (`expected exactly 1 but got 2`: it does not
    start); there is no built-in `tpm` plugin and `hash_algorithm` is no key of any TPM attestor.
    The suite: the server gets the TPM attestor of the target's profile (tpm_devid by default) next to
    join_token; the agent gets it in place of join_token; the rest of both files stays byte for byte.

    When the TPM node attestor is added to server.conf next to join_token and replaces join_token in agent.conf
    Then server.conf names the join_token and the TPM node attestors
    And agent.conf names exactly one node attestor, the TPM one, and no join_token setting
    And everything else in both configs is as it was, comments included

  @guide_step_5
  Scenario: Step 5 - Stop the Phase 3 SPIRE components
    The guide: `sudo pkill -f spire-agent`, `sudo pkill -f spire-server`, `pgrep -f spire`.
    Real SPIRE: `pkill -f` kills any process whose command line mentions the word; and an agent keeps
    serving its cached SVIDs while its server restarts, so stopping it here only makes a gap.
    The suite: departs from the guide's order (make before break): it stops the exact server pid (pid
    file, socket owner, /proc checked) if it runs the Phase 3 config, and leaves the agent serving;
    the agent is switched in step 6, once its entries exist under its new ID.

    When the Phase 3 spire-server is stopped by pid while the agent keeps serving
    Then no spire-server runs the Phase 3 config and the agent still serves its cached SVID

  @guide_step_6
  Scenario: Step 6 - Start the Phase 4 SPIRE components
    The guide: `spire-server run -config /opt/spire/conf/server/server.conf`, `sleep 5`,
    `spire-server token generate`, `spire-agent run -config /opt/spire/conf/agent/agent.conf -joinToken $JOIN_TOKEN`.
    Real SPIRE: a join token makes the agent attest by join_token whatever its config says, and a
    restarted agent reuses its cached SVID (agent-data.json) and keeps its join_token identity.
    The tpm_devid agent ID is known before the switch (the sha1 of the DevID certificate).
    The suite: starts the server and polls it healthy; creates every entry of the old agent (and a twin
    of every node alias selecting it) for the new agent ID, before the agent restarts (make before
    break: the guide re-registers in step 8, after a gap); then stops the Phase 3 agent by pid, drops
    its cached SVID (backed up) and starts it with no join token, polling until it has attested.

    When spire-server is started and polled healthy, the old agent's entries are made for the new agent ID, then spire-agent is restarted without a join token
    Then spire-server is running and healthy with the Phase 4 config
    And the old agent's entries existed under the new agent ID before the agent restarted
    And spire-agent runs without any join token and holds a new agent SVID

  @guide_step_7
  Scenario: Step 7 - Verify TPM attestation (verify_tpm.sh)
    The guide: `sudo ./verify_tpm.sh`, `sudo /opt/spire/bin/spire-server agent list`,
    `tail -50 /opt/spire/agent.log | grep -i tpm`; expected "Agent list shows SPIFFE ID with "tpm" in path".
    Real SPIRE: the tpm_devid agent ID is `spiffe://<td>/spire/agent/tpm_devid/<sha1 of the DevID certificate>`,
    not `.../spire/agent/tpm/<hash>`.
    The suite: computes the expected ID from the DevID certificate and reads `agent list -output json`
    and the agent's logfmt log.

    When TPM attestation is verified as verify_tpm.sh would
    Then the agent ID is the TPM attestor's ID for this node
    And the server lists the agent as TPM-attested with TPM selectors and its log records the attestation

  @guide_step_8
  Scenario: Step 8 - Re-register every workload under the TPM agent
    The guide: `spire-server entry delete -spiffeID spiffe://example.org/k8s-workload`, then one
    `entry create -parentID $AGENT_ID`.
    Real SPIRE: `entry delete` has no `-spiffeID` flag; the other entries of the old agent (and the
    `token generate -spiffeID` node alias) would be orphaned.
    The suite: the break half of make before break. Step 6 made the copies (in batches, each result's
    status checked; with a node alias target, step 8 makes them here), so this step creates only what
    is still missing, then deletes the old entries and node aliases by ID and evicts the old agent.

    When every entry of the old agent is re-created under the TPM agent and the old ones are deleted by ID
    Then every entry of the old agent is under the new agent with identical content
    And no entry or node alias refers to the old agent and the old agent is evicted

  @guide_step_9
  Scenario: Step 9 - Deploy the Phase 4 application
    The guide: `kubectl delete deployment mtls-app`, `kubectl apply -f mtls-app.yaml`,
    `kubectl wait --for=condition=ready pod -l app=mtls-demo --timeout=60s`.
    Real SPIRE: as the guide says; the runtime is the target's (docker, or kubernetes through its API).
    The suite: redeploys the Phase 4 workload through the target's runtime (a server-side dry run first
    on Kubernetes, so a refused manifest deletes nothing).

    When the Phase 4 workload is deployed through the target's runtime
    Then the Phase 4 workload is running

  @guide_step_10
  Scenario: Step 10 - Verify end-to-end functionality
    The guide: `kubectl logs <pod-name> | grep "Successfully fetched SVIDs"`,
    `kubectl logs <pod-name> | grep "VERIFIED"`, `sudo ./verify_tpm.sh`.
    Real SPIRE: as the guide says; a log line from before the deploy proves nothing.
    The suite: reads the workload's logs since the deploy through the runtime's API and runs a live
    mTLS check in the workload.

    When the workload is checked end to end: its SVID fetch and its mTLS exchange
    Then the workload logged "Successfully fetched SVIDs" and "VERIFIED" since the deploy
    And the workload is served by the TPM-attested agent
