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
    The guide: `SPIRE Server running with TPM node attestor`, by `pgrep -a spire`.
    Real SPIRE: the TPM attestor is tpm_devid (built in) or the external spire-tpm-plugin, never `tpm`.
    The suite: the server's pid (pid file, /proc) answering healthcheck, started after server.conf was
    last written, with the target's TPM attestor in it.

    Then the SPIRE server runs with the TPM node attestor

  @post_check_2
  Scenario: SPIRE Agent running with TPM node attestor
    The guide: `SPIRE Agent running with TPM node attestor`, by `pgrep -a spire`.
    Real SPIRE: an agent takes exactly one NodeAttestor, and a join token on its command line or in its
    config makes it attest by join_token whatever the config names.
    The suite: the agent's pid answering healthcheck, its config naming only the TPM attestor, no join
    token on its command line or in its config.

    Then the SPIRE agent runs with the TPM node attestor and no other

  @post_check_3
  Scenario: Agent parent ID contains "tpm"
    The guide: `Agent parent ID contains "tpm"`, by `sudo /opt/spire/bin/spire-server agent list`.
    Real SPIRE: the agent ID is `spiffe://<td>/spire/agent/tpm_devid/<sha1 of the DevID certificate>`;
    "tpm" somewhere in the path would also match a wrong ID.
    The suite: the exact path of the target's attestor, from the agent's SVID and `agent list -output json`.

    Then the agent ID contains the TPM attestor path

  @post_check_4
  Scenario: Workloads registered with correct parent ID
    The guide: `Workloads registered with correct parent ID`, by `sudo /opt/spire/bin/spire-server entry show`.
    Real SPIRE: an entry may also be parented to a node alias that selects the agent.
    The suite: the workload entry under this node's TPM agent (or its node alias) with the expected
    selectors, none left under a retired join_token agent (`entry show -output json`).

    Then every workload entry has the TPM agent as parent

  @post_check_5
  Scenario: Pods can fetch SVIDs successfully
    The guide: `Pods can fetch SVIDs successfully`, by `kubectl get pods -l app=mtls-demo`.
    Real SPIRE: as the guide says; a running pod has not necessarily fetched anything.
    The suite: the workload instances through the runtime's API, and a fresh SVID fetch by the
    workload's own check mode.

    Then the workload instances run and fetch their SVID

  @post_check_6
  Scenario: mTLS communication works
    The guide: `mTLS communication works`.
    Real SPIRE: as the guide says.
    The suite: a live mTLS exchange between the workload's client and server, with SPIFFE-ID authorization.

    Then an mTLS exchange between the workload's client and server is verified

  @post_check_7
  Scenario: TPM attestation verified with verify_tpm.sh
    The guide: `TPM attestation verified with verify_tpm.sh`, by `sudo ./verify_tpm.sh`.
    Real SPIRE: there is no verify_tpm.sh; its checks are the agent ID, the attestation type, the TPM
    selectors and the agent log.
    The suite: agent ID = the DevID's tpm_devid ID, the attestation type, `tpm_devid:` selectors, and
    the agent's logfmt "Node attestation was successful" record.

    Then the checks of verify_tpm.sh pass

  @post_check_8
  Scenario: No errors in SPIRE logs
    The guide: `No errors in SPIRE logs`, by `tail -50 /opt/spire/server.log` and `tail -50 /opt/spire/agent.log`.
    Real SPIRE: the last 50 lines may hide an error, or show one from before the migration.
    The suite: both logs parsed as logfmt, `level=error|fatal|panic` since the journal's migrated_at
    (or `--logs-since`).

    Then the SPIRE logs hold no error since the migration

  @post_check_9
  Scenario: Application logs show successful operation
    The guide: `Application logs show successful operation`, by `kubectl logs <pod-name>`.
    Real SPIRE: as the guide says; a log line from before the deploy proves nothing.
    The suite: "Successfully fetched SVIDs" and "VERIFIED" in the workload's logs since the deploy.

    Then the workload logs show successful operation since the deploy

  @post_check_10
  Scenario: Performance is acceptable
    The guide: `Performance is acceptable`, by `time /opt/spire/bin/spire-agent api fetch`.
    Real SPIRE: as the guide says.
    The suite: the workload's measured SVID fetch time against the target's `thresholds.svid_fetch_ms`.

    Then the SVID fetch latency is under the target's threshold
