#!/usr/bin/env bash
# The main job: on this machine, bring up the swtpm lab (a real Phase 3 SPIRE node),
# audit it, plan and migrate it to TPM attestation, retire join_token (finalize),
# audit it again, prove a second migrate changes nothing, and print the reports.
# Reports (Markdown and HTML) land in ./reports/. The lab is always taken down at the end.
# Needs SPIRE, swtpm and dockerd only: setup builds no Kubernetes for it.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 4
PY="$PWD/.venv/bin/python"

ROOT="${SPIRE_LAB_ROOT:-/run/spire-lab/main}"   # lab roots live in a private 0700 folder
OUT="$PWD/reports"
mkdir -p "$OUT"
"$PY" -m lab down --root "$ROOT" >/dev/null 2>&1 || true
trap '"$PY" -m lab down --root "$ROOT" >/dev/null 2>&1' EXIT

TARGET=$("$PY" -m lab up --root "$ROOT" | tail -n 1) || { echo "lab up failed"; exit 4; }
echo "lab target: $TARGET"

status=0
run() {  # name, command, extra args: the suite's entry point, live progress on the terminal
  local name=$1 cmd=$2; shift 2
  echo; echo "=== spire-migration $cmd $* ($name) ==="
  "$PWD/.venv/bin/spire-migration" "$cmd" --target "$TARGET" \
    --report "$OUT/$name.md" --html "$OUT/$name.html" --junitxml "$OUT/$name.xml" \
    --cucumberjson "$OUT/$name.cucumber.json" --summary "$OUT/$name.summary.json" "$@" || status=$?
}
run 1-pre-migration validate
run 2-plan migrate --plan
run 3-migrate migrate
run 4-finalize finalize
run 5-post-migration validate
run 6-migrate-again migrate

echo; echo "=== report: $OUT/3-migrate.md ==="; cat "$OUT/3-migrate.md"
echo; echo "=== report: $OUT/5-post-migration.md ==="; cat "$OUT/5-post-migration.md"
echo; echo "HTML reports (open in a browser): $OUT/3-migrate.html, $OUT/5-post-migration.html"
"$PY" - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for name in ("1-pre-migration", "2-plan", "3-migrate", "4-finalize", "5-post-migration", "6-migrate-again"):
    s = json.loads((out / f"{name}.summary.json").read_text())
    print(f"{name:18} {s['scenarios']}  changes: {s['change_count']}  {s['duration_s']} s")
PY
exit $status
