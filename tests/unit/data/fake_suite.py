#!/usr/bin/env python3
"""A stand-in for spire-migration on fake fleet hosts (tests/unit/test_fleet_playbook.py only):
each part records itself in the host's state folder, changes something once, and fails when
the folder holds ``broken-<part>``. The playbook's control flow is what is tested here; the
real suite runs in tests/lab/test_fleet.py."""
import argparse
import json
import sys
import time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("command")
p.add_argument("--part", default="finalize")
p.add_argument("--target", required=True)
p.add_argument("--handoff")
p.add_argument("--summary", required=True)
p.add_argument("--progress")
a = p.parse_args()
state = Path(a.target).parent            # <root>/<host>/target.toml
node = json.loads(Path(a.handoff).read_text())["node"] if a.handoff else state.name
done = state / f"done-{node}-{a.part}"
log = state.parent / "calls.log"
t0 = time.time()
with log.open("a") as fh:
    fh.write(f"{t0:.6f} {state.name} {node} {a.part}\n")
rc, changes = 0, []
if (state / f"broken-{a.part}").exists():
    rc = 1
elif not done.exists():
    done.write_text("")
    changes = [f"{a.part}: changed {node}"]
    if a.part == "agent-prepare":
        hand = state / "handoff.json"
        hand.write_text(json.dumps({"node": node,
                                    "old_agent_id": "spiffe://example.org/spire/agent/join_token/<redacted:1234abcd>",
                                    "new_agent_id": f"spiffe://example.org/spire/agent/tpm_devid/{node}"}))
print(json.dumps({"event": "scenario_start", "part": a.part}))
facts = {"agent_after": f"spiffe://example.org/spire/agent/tpm_devid/{node}"} if a.part == "agent-switch" else {}
if a.part == "agent-prepare":
    facts = {"phase_before": "Phase 3 (join_token)" if changes else "Phase 4 (TPM)"}
Path(a.summary).write_text(json.dumps({"exit_status": rc, "change_count": len(changes), "changes": changes,
                                       "duration_s": round(time.time() - t0, 3), "facts": facts,
                                       "phase": "Phase 4 (TPM)" if a.part == "agent-finish" else None}))
sys.exit(rc)
