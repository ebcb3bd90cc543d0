@fleet @part_server
Feature: Fleet migration, the server part (once per server, on the server host)
  The guide's Strategy 2 ("migrate one agent at a time") on a real fleet: the server (or HA pair)
  has its own host, every agent node its own. This part runs on the server host, once; it is
  idempotent. The guide's order stops every SPIRE process first; here the server restarts alone
  and every agent keeps serving its workloads from its cached SVIDs meanwhile.
  Run it with `spire-migration migrate --part server --target <the server host's target>`.

  Background:
    Given the fleet migration part of the target node

  @guide_step_1
  Scenario: Step 1 - Verify the server runs Phase 3 (server host)
    The guide: `pgrep -a spire-server`.
    Real SPIRE: pgrep finds any process with the word in its name.
    The suite: server.conf parses, the attestor's server inputs (DevID CA, endorsement CA) are
    readable, and the server's exact process (pid file, socket owner) answers healthcheck.

    When the server host is verified: server.conf readable, the TPM attestor's CA bundles present, the server healthy
    Then the SPIRE server is running and healthy

  @guide_step_3
  Scenario: Step 3 - Back up server.conf and every registration entry (server host)
    The guide: `sudo cp /opt/spire/conf/server/server.conf /opt/spire/conf/server/server.conf.phase3.backup`,
    `sudo /opt/spire/bin/spire-server entry show > /tmp/spire-entries-phase3.txt`.
    Real SPIRE: `entry show` text is not an interface, and /tmp is readable by every user.
    The suite: server.conf and every entry (`-output json`) into the server host's journal, hashed,
    0600 in a 0700 directory; a second run never overwrites the Phase 3 copy.

    When server.conf and every registration entry are backed up into the server host's journal
    Then the journal holds every registration entry as JSON

  @guide_step_4
  Scenario: Step 4 - The TPM node attestor next to join_token in server.conf (server host)
    The guide: `sudo ./setup_tpm.sh` "Adds TPM node attestor to server.conf".
    Real SPIRE: a server takes several NodeAttestors; there is no built-in `tpm` plugin.
    The suite: the TPM attestor of the target's profile (tpm_devid by default) next to join_token;
    the rest of server.conf stays byte for byte. After finalize (no join_token left) it changes nothing.

    When the TPM node attestor is added to server.conf next to join_token on the server host
    Then server.conf names the join_token and the TPM node attestors

  @guide_step_5 @guide_step_6
  Scenario: Steps 5 and 6 - Restart the server alone in dual mode (server host)
    The guide: `sudo pkill -f spire-server`, `spire-server run -config /opt/spire/conf/server/server.conf`, `sleep 5`.
    Real SPIRE: agents keep serving workloads from their cached SVIDs while the server is away.
    The suite: departs from the guide's order: only the server restarts (by pid or its systemd unit),
    once `spire-server validate` accepts the new config and its port and directories are checked;
    it is polled healthy, and every agent it listed before is listed after.

    When spire-server alone is restarted with the dual-mode config and polled healthy
    Then spire-server is running and healthy with the Phase 4 config
    And every agent the server listed before its restart is listed after it
