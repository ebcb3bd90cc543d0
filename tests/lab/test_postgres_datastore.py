"""The lab's server on PostgreSQL (``lab up --datastore postgres``): a private cluster, peer auth,
no password anywhere; re-registration works on it; ``down`` stops the postmaster by pid."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from lab import core, postgres
from lab.layout import Layout, private_base
from spire_migration.node import process, services
from spire_migration.procedures.reregister import apply_reparent, reparent_plan
from spire_migration.config.target import Target

OLD = "spiffe://example.org/test/pg-old"
NEW = "spiffe://example.org/test/pg-new"

pytestmark = pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")),
                                reason="Debian's postgresql is not installed")


def test_server_on_postgres_reregisters_and_down_stops_the_cluster():
    root = Path(tempfile.mkdtemp(prefix="lab-pg-", dir=private_base()))
    lay = Layout(root.resolve())
    pg = None
    try:
        t = Target.load(core.up(root, log=lambda m: None, datastore="postgres"))
        conf = lay.server_conf.read_text()
        assert 'database_type = "postgres"' in conf and "password" not in conf
        assert f"host={lay.postgres_dir / 'socket'}" in conf
        pg = postgres.Cluster(lay.postgres_dir).running()
        assert pg is not None and pg.uid != 0   # PostgreSQL never runs as root
        assert any(line.startswith("postgres: running") for line in core.status(root))

        server = services.server_cli(t)
        entries = [{"spiffe_id": f"spiffe://example.org/test/w{i}", "parent_id": OLD,
                    "selectors": [{"type": "unix", "value": f"uid:{i}"}]} for i in range(1200)]
        assert not server.create_entries(entries).failed
        apply_reparent(server, reparent_plan(server, OLD, NEW, t.server_id))
        assert len(server.entries(parentID=NEW)) == 1200 and not server.entries(parentID=OLD)
        assert reparent_plan(server, OLD, NEW, t.server_id).empty
    finally:
        core.down(root, purge=True, log=lambda m: None)
    assert pg and process.proc_info(pg.pid) is None and not root.exists()
