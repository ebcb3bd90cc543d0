"""SPIRE log parsing and PCR dependency logic (no TPM, no SPIRE)."""

from datetime import datetime, timezone

from spire_migration.node import logs
from spire_migration.checks import pcrs
from spire_migration.config.target import Target

LINES = [
    'time="2026-11-28T23:07:08Z" level=error msg="No identity issued" method=FetchX509SVID pid=7378',
    'time="2026-11-28T23:07:21Z" level=info msg="Node attestation was successful" spiffe_id="spiffe://x/y z"',
    'time="2026-11-28T23:07:30Z" level=error msg="quoted \\"inner\\" text" subsystem_name=endpoints',
    "garbage line",
]


def test_parse_logfmt_quotes_and_bare_values():
    rec = logs.parse_logfmt(LINES[2])
    assert rec["msg"] == 'quoted "inner" text' and rec["subsystem_name"] == "endpoints"
    assert logs.parse_logfmt(LINES[1])["spiffe_id"] == "spiffe://x/y z"


def test_errors_since_filters_level_and_time():
    since = datetime(2026, 11, 28, 23, 7, 20, tzinfo=timezone.utc)
    assert [r["msg"] for r in logs.errors_since(LINES, since)] == ['quoted "inner" text']
    assert len(logs.errors_since(LINES, None)) == 2


def _entry(eid, sels):
    return {"id": eid, "spiffe_id": {"trust_domain": "example.org", "path": f"/{eid}"},
            "parent_id": {"trust_domain": "example.org", "path": "/agent"},
            "selectors": [dict(zip(("type", "value"), s.split(":", 1))) for s in sels]}


def test_pcr_uses_from_entries_and_target():
    t = Target.from_dict({"attestor": {"pcr_bindings": [7]}})
    entries = [_entry("a", ["tpm:pcr:16:ABCD", "docker:label:x:y"]), _entry("b", ["docker:label:x:y"])]
    uses = pcrs.pcr_uses(entries, t)
    assert [(u.index, u.bank, u.selector_value) for u in uses] == [(16, "sha256", "abcd"), (7, "sha256", None)]


def test_compare_names_pcr_recorded_and_current():
    t = Target()
    uses = pcrs.pcr_uses([_entry("a", ["tpm:pcr:16:aa"])], t)
    ok = pcrs.compare(uses, {"sha256": {16: "aa"}}, {"sha256": {16: "aa"}})
    assert ok[0].ok
    changed = pcrs.compare(uses, {"sha256": {16: "aa"}}, {"sha256": {16: "bb"}})[0]
    assert not changed.ok and "PCR sha256:16 recorded aa, current bb" in changed.describe()
    unrecorded = pcrs.compare(uses, {}, {"sha256": {16: "aa"}})[0]
    assert not unrecorded.ok and "NOT RECORDED" in unrecorded.describe()


def test_unparsable_pcr_selector_is_reported():
    assert pcrs.unparsable_pcr_selectors([_entry("a", ["tpm:pcr:zero:aa"])]) == [
        "spiffe://example.org/a: tpm:pcr:zero:aa"]
