@validate
Feature: Pre-migration checklist
  The guide's "Pre-Migration Checklist", proven on the node before anything changes.
  These scenarios only read: they change no file, process or registration.
  On a node that is already in Phase 4 they are reported as not applicable.

  Background:
    Given the target node is in Phase 3

  @pre_check_1
  Scenario: Phase 3 demo runs successfully
    The guide: `Phase 3 demo runs successfully`, by `pgrep -a spire-server`, `pgrep -a spire-agent`,
    `sudo ./run_k8s_demo.sh` and `kubectl logs <pod-name>`.
    Real SPIRE: a process found by name may be another one, and a running agent may not be attested.
    The suite: the exact processes (pid file, socket owner) answering healthcheck, the agent's SVID
    and `agent list -output json` agreeing on join_token, the workload entry under that agent, and
    the workload's own log lines through the runtime's API.

    Then the SPIRE server is running and healthy
    And the SPIRE agent is running and healthy
    And the agent is attested by join_token
    And the workload entry is registered under the agent
    And the workload fetched an SVID and logged VERIFIED

  @pre_check_2
  Scenario: TPM device is present and accessible
    The guide: `TPM device is present and accessible`, by `sudo ./detect_tpm.sh`.
    Real SPIRE: the TPM attestor needs a TPM 2.0 with a sha256 bank; a device node alone proves neither.
    The suite: opens the TPM with tpm2-pytss at the target's path (device or swtpm socket).

    Then the TPM is a TPM 2.0 with a sha256 PCR bank at the configured path

  @pre_check_3
  Scenario: No critical workload is left unregistered
    The guide: `No critical workloads running (or plan for downtime)`.
    Real SPIRE: a workload without a matching entry gets no SVID after the move either.
    The suite: every SPIFFE ID listed as critical in the target has an entry, and every running
    workload instance matches an entry's selectors.

    Then every critical workload is registered

  @pre_check_4
  Scenario: A backup of the SPIRE configuration exists or is planned
    The guide: `Backup of current SPIRE configuration files`, by
    `sudo cp /opt/spire/conf/agent/agent.conf /opt/spire/conf/agent/agent.conf.phase3.backup` in Step 3.
    Real SPIRE: as the guide says.
    The suite: a backup in the journal, or a writable journal directory where migration step 3 writes it.

    Then a backup exists or is planned

  @pre_check_5
  Scenario: Current workload registrations are understood
    The guide: `Understanding of current workload registrations`, by `spire-server entry show`.
    Real SPIRE: `entry show` text is not an interface.
    The suite: `entry show -output json`, every entry listed by parent with the count.

    Then the current registrations are listed with their count
