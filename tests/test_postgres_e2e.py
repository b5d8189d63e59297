"""The hub end to end on a PostgreSQL store, against the NinjaOne and Stripe simulators: the same
invoices as on SQLite, pushed exactly once, whoever runs the sync; and the config, the tenant's
schema and ``msp-hub backup`` on a PostgreSQL database."""

import collections
import threading

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import HubConfig, load_config
from hub.engine import Hub, LockedError, sync_once
from hub.errors import ConfigError
from hub.plugins import get_plugin_manager
from hub.store import SENDING, SENT, Store, open_store
from hub.testing import ConnectorPlugin, empty_mappings, make_hub
from tests.conftest import NOW, Env
from tests.test_engine import Crash, crash_after


class PgEnv(Env):
    """The tests' simulators and mappings, the hub's store on PostgreSQL."""

    def __init__(self, tmp_path, url, **kw):
        super().__init__(tmp_path, **kw)
        self.url = url

    def hub(self, *plugins, clock=NOW):
        return make_hub(ConnectorPlugin(*self.connectors()), *self.plugins, *plugins, mappings=self.mappings,
                        store=Store(self.url), clock=lambda: clock)


def invoices_by_key(env):
    """Each invoice's total, currency and lines (amount, quantity, description), by action key."""
    return {i["metadata"]["msp_hub_action_key"]: (i["subtotal"], i["currency"], i["status"],
                                                 sorted((item.get("amount"), item.get("quantity"), item.get("description"))
                                                        for item in env.stripe.list_objects("invoiceitem")
                                                        if item.get("invoice") == i["id"]))
            for i in env.invoices()}


def outcome(env):
    """What a sync left: the invoices at Stripe, the outbox and the pulled records, in comparable form."""
    hub = env.hub()
    try:
        actions = [(a["key"], a["kind"], a["status"], a["attempts"], a["payload"]) for a in hub.store.actions()]
        records = {t: [{k: v for k, v in r.items()} for r in hub.store.rows(t)] for t in ("clients", "devices")}
        ledger = sorted(tuple(r.values()) for r in hub.store.db.query(
            "select kind, item_id, client_id, period, action_key, quantity, amount from billed_items"))
        return invoices_by_key(env), actions, records, ledger
    finally:
        hub.close()


def test_a_sync_on_postgresql_pushes_each_invoice_once_as_on_sqlite(tmp_path, pg_url):
    pg = PgEnv(tmp_path / "pg", pg_url)
    lite = Env(tmp_path / "lite")
    for env in (pg, lite):
        env.tmp_path.mkdir(exist_ok=True)
    for env in (pg, lite):
        hub = env.hub()
        report = sync_once(hub)
        hub.close()
        assert sorted(p["key"] for p in report.pushed) == \
            [f"invoice:{c}:2026-10" for c in ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")]
        assert report.errors == []
    assert collections.Counter(i["metadata"]["msp_hub_action_key"] for i in pg.invoices()) == \
        {f"invoice:{c}:2026-10": 1 for c in ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")}
    assert outcome(pg) == outcome(lite)
    # A second sync pushes nothing more.
    hub = pg.hub()
    again = sync_once(hub)
    hub.close()
    assert again.pushed == [] and again.failed == [] and len(pg.invoices()) == 5
    assert {p.status for p in again.plan if p.period == "2026-10"} == {"unchanged"}
    requests = pg.stripe.requests
    hub = pg.hub()
    sync_once(hub)
    hub.close()
    assert pg.stripe.requests == requests


def test_a_push_lost_mid_way_on_postgresql_is_completed_once(tmp_path, pg_url):
    env = PgEnv(tmp_path, pg_url)
    crash_after(env, "/add_lines", times=1)
    hub = env.hub()
    with pytest.raises(Crash):
        sync_once(hub)
    assert [a["status"] for a in hub.store.actions() if a["status"] == SENDING] == [SENDING]
    hub.close()
    env.stripe_handler = env.stripe.handler
    hub = env.hub()
    report = sync_once(hub)
    assert report.errors == []
    assert collections.Counter(i["metadata"]["msp_hub_action_key"] for i in env.invoices()) == \
        {f"invoice:{c}:2026-10": 1 for c in ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")}
    assert {a["status"] for a in hub.store.actions(kind="invoice")} == {SENT}
    hub.close()


def test_two_hubs_on_one_postgresql_syncing_at_once_push_each_invoice_once(tmp_path, pg_url):
    env = PgEnv(tmp_path, pg_url)
    hubs = [env.hub(), env.hub()]
    barrier, results = threading.Barrier(2), {}

    def run(i):
        barrier.wait()
        try:
            results[i] = sync_once(hubs[i], holder=f"machine-{i}")
        except LockedError as exc:
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in hubs:
        h.close()
    assert len(results) == 2
    pushed = [k["key"] for r in results.values() if not isinstance(r, LockedError) for k in r.pushed]
    assert sorted(pushed) == [f"invoice:{c}:2026-10" for c in ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")]
    assert len(env.invoices()) == 5


def test_a_hub_opens_its_tenants_schema(pg_url):
    config = HubConfig(database=pg_url, tenant="acme-it")
    hub = Hub(config, pm=get_plugin_manager(load_entrypoints=False), mappings=empty_mappings())
    try:
        assert (hub.store.backend, hub.store.schema) == ("postgres", "tenant_acme_it")
        hub.store.set_link("c1", "stripe", "cus_1")
    finally:
        hub.close()
    default = open_store(HubConfig(database=pg_url))
    again = open_store(config)
    try:
        assert default.schema == "public" and default.get_link("c1", "stripe") is None
        assert again.get_link("c1", "stripe") == "cus_1"
    finally:
        default.close()
        again.close()


def write_config(tmp_path, text):
    path = tmp_path / "msp-hub.toml"
    path.write_text('timezone = "UTC"\n' + text)
    return path


def test_a_postgresql_url_is_kept_as_is_and_its_password_comes_from_a_secret(tmp_path, pg_url):
    config = load_config(write_config(tmp_path, f'database = "{pg_url}"\ndatabase_password_env = "HUB_DB_PW"\n'),
                         environ={"HUB_DB_PW": "pw-from-env"})
    assert config.database == pg_url
    assert config.database_password.reveal() == "pw-from-env" and "pw-from-env" in config.secret_values()
    assert "pw-from-env" not in repr(config.database_password)
    (tmp_path / "pw").write_text("pw-from-file\n")
    config = load_config(write_config(tmp_path, f'database = "{pg_url}"\ndatabase_password_file = "pw"\n'), environ={})
    assert config.database_password.reveal() == "pw-from-file"
    # A tenant's secrets may hold PGPASSWORD; the process environment is libpq's own.
    config = load_config(write_config(tmp_path, f'database = "{pg_url}"\n'), environ={"PGPASSWORD": "tenant-pw"})
    assert config.database_password.reveal() == "tenant-pw"
    store = open_store(config)     # trust authentication: the password is sent and not needed
    store.close()


@pytest.mark.parametrize("text, key, fix", [
    ('database = "postgresql://hub:hunter2@db.example:5432/hub"\n', "database", "database_password_env"),
    ('database = "postgres://hub@db.example/hub?password=hunter2"\n', "database", "database_password_file"),
    ('database = "postgresql://hub@db.example/hub"\ndatabase_password = "hunter2"\n', "database_password",
     "database_password_env"),
    ('database = "hub.db"\ndatabase_password_env = "PW"\n', "database_password_env", "postgresql://"),
])
def test_a_password_in_the_config_file_is_refused_without_repeating_it(tmp_path, text, key, fix):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, text), environ={"PW": "hunter2"})
    assert err.value.key == key and fix in str(err.value) and "hunter2" not in str(err.value)
    result = CliRunner().invoke(main, ["backup", "--config", str(tmp_path / "msp-hub.toml")])
    assert result.exit_code == 2 and "hunter2" not in result.output


def test_backup_refuses_a_postgresql_store_and_names_pg_dump(tmp_path, pg_url):
    result = CliRunner().invoke(main, ["backup", "--config", str(write_config(tmp_path, f'database = "{pg_url}"\n'))])
    assert result.exit_code == 2
    assert "pg_dump --schema=public" in result.output and "schema public" in result.output
    assert "PostgreSQL" in result.output and list(tmp_path.iterdir()) == [tmp_path / "msp-hub.toml"]
    from hub.backup import backup_store
    with pytest.raises(ConfigError, match="pg_dump --schema=tenant_acme"):
        backup_store(pg_url, tmp_path, schema="tenant_acme")
