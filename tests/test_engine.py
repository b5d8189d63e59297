"""The engine end to end against the NinjaOne and Stripe simulators."""

import collections
from datetime import datetime, timezone

import pytest

from hub.engine import sync_once
from hub.hookspecs import hookimpl
from hub.records import BillingLine
from tests.conftest import Env, mappings_for_tests


def by_key(invoices):
    return collections.Counter(i["metadata"]["msp_hub_action_key"] for i in invoices)


def test_first_sync_invoices_each_client_once_and_a_second_sync_pushes_nothing(env):
    hub = env.hub()
    report = sync_once(hub)
    assert report.records["ninjaone.devices"] == 120 and report.records["ninjaone.clients"] == 6
    pushed = sorted(p["key"] for p in report.pushed)
    assert pushed == [f"invoice:{c}:2026-10" for c in ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")]
    invoices = env.invoices()
    assert by_key(invoices) == {k: 1 for k in pushed}
    assert all(i["status"] == "open" for i in invoices)
    # The hub's totals are Stripe's totals.
    plan = {p.action.key: p for p in report.plan if p.action}
    for inv in invoices:
        assert inv["subtotal"] == plan[inv["metadata"]["msp_hub_action_key"]].total
    # The current period is planned as a preview, never pushed.
    assert {p.status for p in report.plan if p.period == "2026-11"} == {"preview"}
    # The client without a contract is reported, not billed: a standing warning, not an error.
    assert any("Fairview Schools" in e and "linked to no hub client" in e for e in report.warnings)
    assert report.errors == [] and hub.store.get_run(report.run_id)["status"] == "warnings"
    hub.close()

    hub = env.hub()
    again = sync_once(hub)
    assert again.pushed == [] and again.failed == []
    assert {p.status for p in again.plan if p.period == "2026-10"} == {"unchanged"}
    assert len(env.invoices()) == len(invoices)


def test_dry_run_pulls_and_plans_but_stores_no_action_and_sends_nothing(env):
    hub = env.hub()
    report = sync_once(hub, dry_run=True)
    assert {p.status for p in report.plan if p.period == "2026-10"} == {"create"}
    assert hub.store.actions() == [] and env.invoices() == []
    assert env.stripe.requests == 0


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing catches it on the way."""


def crash_after(env, path_fragment, times=1):
    """Let the simulator act on a matching request, then lose the answer as a dying process would."""
    real, left = env.stripe.handler, [times]

    def handler(request):
        response = real(request)
        if path_fragment in request.url.path and request.method == "POST" and left[0] > 0:
            left[0] -= 1
            raise Crash(f"killed after {request.method} {request.url.path}")
        return response
    env.stripe_handler = handler


@pytest.mark.parametrize("step", ["/v1/invoices", "/add_lines", "/finalize", "/v1/customers"])
def test_crash_between_action_stored_and_vendor_answer_then_rerun_leaves_exactly_one_invoice(env, step):
    crash_after(env, step)
    hub = env.hub()
    with pytest.raises(Crash):
        sync_once(hub)
    assert any(a["status"] == "sending" for a in hub.store.actions())
    hub.close()

    env.stripe_handler = env.stripe.handler
    hub = env.hub()
    report = sync_once(hub)
    assert not report.failed
    counts = by_key(env.invoices())
    assert len(counts) == 5 and set(counts.values()) == {1}
    assert all(i["status"] == "open" for i in env.invoices())
    assert {a["status"] for a in hub.store.actions()} == {"sent"}
    assert len(env.stripe.list_objects("customer")) == 5


def test_rerun_after_the_idempotency_keys_expired_still_creates_no_duplicate(env):
    crash_after(env, "/v1/invoices")   # Stripe created the draft; the hub never heard of it
    hub = env.hub()
    with pytest.raises(Crash):
        sync_once(hub)
    hub.close()
    env.stripe.expire_idempotency_keys()   # more than 24 h later: Stripe forgot every key
    env.stripe_handler = env.stripe.handler
    hub = env.hub()
    sync_once(hub)
    counts = by_key(env.invoices())
    assert len(counts) == 5 and set(counts.values()) == {1}


@pytest.mark.parametrize("status", [400, 401, 404])
def test_a_vendor_error_on_one_invoice_fails_that_action_only_and_the_next_run_retries_it(env, status):
    env.stripe.fail_next(status, times=1, path="/v1/invoices")
    hub = env.hub()
    report = sync_once(hub)
    assert len(report.failed) == 1 and len(report.pushed) == 4
    failed = hub.store.actions(status="failed")
    assert len(failed) == 1 and f"HTTP {status}" in failed[0]["last_error"]
    hub.close()
    hub = env.hub()
    again = sync_once(hub)
    assert [p["key"] for p in again.pushed] == [failed[0]["key"]]
    assert len(by_key(env.invoices())) == 5


def test_a_failed_pull_holds_every_invoice_it_feeds_until_a_complete_pass(env):
    hub = env.hub()
    sync_once(hub, dry_run=True)                       # devices complete once, nothing pushed
    env.ninja.garbage_next(times=3, path="/v2/devices-detailed")    # every retry of the run
    report = sync_once(hub)
    assert any("ninjaone.devices" in e for e in report.errors)
    assert report.passes["ninjaone.devices"]["status"] == "failed"
    assert report.passes["ninjaone.clients"]["status"] == "complete"
    assert report.records["ninjaone.clients"] == 6
    assert report.pushed == [] and env.invoices() == []
    held = {h["key"]: h for h in report.held}
    assert len(held) == 5 and {h["cause"] for h in held.values()} == {"incomplete"}
    assert all(any(r.startswith("stream ninjaone.devices failed") and "msp-hub resync --connector ninjaone "
                   "--stream devices" in r for r in h["reasons"]) for h in held.values())
    assert {r["status"] for r in hub.store.actions()} <= {"held"}      # nothing waits to be sent
    again = sync_once(hub)                             # the vendor answers again: a complete pass
    assert len(again.pushed) == 5 and again.held == []
    assert len(env.invoices()) == 5


def test_cursor_resumes_a_sweep_from_the_last_committed_page(env):
    import httpx
    env.ninja = type(env.ninja)(seed=3, organizations=6, devices=2500, now=env.ninja.now)
    real, calls = env.ninja.handler, []

    def handler(request):
        if request.url.path == "/v2/devices-detailed":
            calls.append(request.url.params.get("after"))
            if len(calls) == 3:   # the third page: a non-retryable error
                return httpx.Response(404, json={"resultCode": "NOT_FOUND"})
        return real(request)
    env.ninja.handler = handler
    hub = env.hub()
    report = sync_once(hub, dry_run=True)
    assert any("ninjaone.devices" in e and "404" in e for e in report.errors)
    cursor = hub.store.get_cursor("ninjaone", "devices")
    stored = hub.store.count("devices")
    assert set(cursor) == {"after", "read"} and 0 < stored < 2500
    assert max(int(d.source_id) for d in hub.store.iter_devices("ninjaone")) == cursor["after"]
    report = sync_once(hub, dry_run=True)
    assert not [e for e in report.errors if e.startswith("pull")]
    assert calls[3] == str(cursor["after"])          # the rerun starts where the commit stopped
    assert hub.store.count("devices") == 2500
    assert set(hub.store.get_cursor("ninjaone", "devices")) == {"swept_at"}


@pytest.mark.parametrize("unlisted", ["not_billed", "error"])
def test_bad_mappings_hold_only_the_clients_they_concern(tmp_path, unlisted):
    m = mappings_for_tests(tmp_path)
    text = (m / "contracts.toml").read_text().replace('tier = "silver"\nminimum', 'tier = "diamond"\nminimum')
    (m / "contracts.toml").write_text(text)
    (m / "contracts").mkdir(exist_ok=True)
    (m / "contracts" / "broken.toml").write_text("[clients.fairview\nlinks = 6\n")
    classes = (m / "device_classes.toml").read_text()
    (m / "device_classes.toml").write_text(classes.replace('unlisted = "not_billed"', f'unlisted = "{unlisted}"'))
    env = Env(tmp_path, mappings=m)
    for name in ("CLOUD-1", "CLOUD-2", "CLOUD-3"):
        env.ninja.add_device(3, node_class="CLOUD_MONITOR_TARGET", name=name, last_contact=env.ninja.now)
    hub = env.hub()
    report = sync_once(hub)
    errors = "\n".join(report.errors)
    assert "clients.birchwood.tier" in errors and "unknown tier 'diamond'" in errors
    assert "broken.toml" in errors and "not valid TOML" in errors
    held = {p.client_id: p for p in report.plan if p.status == "held" and p.period == "2026-10"}
    pushed = {p["key"].split(":")[1] for p in report.pushed}
    assert held["birchwood"].cause == "error" and "unknown tier 'diamond'" in " ".join(held["birchwood"].reasons)
    if unlisted == "error":
        # Each error holds its own client, shown as held with the error: birchwood (a typo in its
        # tier), fairview (named by the malformed file), cobalt (devices of an unlisted node class).
        for name in ("CLOUD-1", "CLOUD-2", "CLOUD-3"):
            assert f"'{name}'" in errors
        assert "node class 'CLOUD_MONITOR_TARGET'" in errors and "device_classes.toml" in errors
        assert set(held) == {"birchwood", "cobalt", "fairview"}
        assert pushed == {"acme", "driftwood", "elmstreet"}
        return
    # By default an unlisted node class is not billed: cobalt is invoiced without those devices,
    # and its plan says so once for the class, not once per device.
    assert "CLOUD_MONITOR_TARGET" not in errors
    assert set(held) == {"birchwood", "fairview"}
    assert pushed == {"acme", "cobalt", "driftwood", "elmstreet"}
    (cobalt,) = [p for p in report.plan if p.client_id == "cobalt" and p.period == "2026-10" and p.bill]
    assert [n for n in cobalt.bill.notes if "CLOUD_MONITOR_TARGET" in n] == [
        "ninjaone node class 'CLOUD_MONITOR_TARGET' is named by no mapping: 3 device(s) not billed ('CLOUD-1', "
        "'CLOUD-2', 'CLOUD-3'); add CLOUD_MONITOR_TARGET = \"workstation\" (or another class) under [ninjaone] of "
        "mappings/device_classes.toml to bill it"]
    billed = [item["name"] for line in cobalt.bill.lines for item in line.items]
    assert billed and not [name for name in billed if name.startswith("CLOUD-")]
    assert not [e for e in cobalt.bill.excluded if e.name.startswith("CLOUD-")]


def test_a_contract_typo_holds_its_client_and_once_fixed_it_is_invoiced_once_on_its_own_customer(tmp_path):
    m = mappings_for_tests(tmp_path)
    good = (m / "contracts.toml").read_text()
    (m / "contracts.toml").write_text(good.replace('tier = "silver"\nminimum', 'tier = "silvr"\nminimum'))
    env = Env(tmp_path, mappings=m)
    report = sync_once(env.hub())
    assert "invoice:birchwood:2026-10" in {h["key"] for h in report.held}
    assert not [i for i in env.invoices() if "birchwood" in i["metadata"]["msp_hub_action_key"]]
    assert not [k for k in report.registry.clients if k.startswith("ninjaone-")]   # never re-created under another id
    (m / "contracts.toml").write_text(good)
    fixed = sync_once(env.hub())
    assert "invoice:birchwood:2026-10" in {p["key"] for p in fixed.pushed}
    sync_once(env.hub())
    mine = [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == "invoice:birchwood:2026-10"]
    assert len(mine) == 1
    customers = [c for c in env.stripe.list_objects("customer") if c["metadata"].get("msp_hub_client_id") == "birchwood"]
    assert len(customers) == 1 and mine[0]["customer"] == customers[0]["id"]


def test_forced_period_invoices_a_period_that_has_not_ended(env):
    hub = env.hub()
    report = sync_once(hub, period="2026-11")
    assert sorted(p["key"] for p in report.pushed)[0] == "invoice:acme:2026-11"


# --- hooks -------------------------------------------------------------------------------------

def test_hook_register_connectors_connectors_come_from_plugins(env):
    hub = env.hub()
    assert sorted(hub.connectors) == ["ninjaone", "stripe"]
    assert hub.invoice_connector().name == "stripe"


def test_hook_add_billing_lines_adds_a_line_to_the_invoice(env):
    class Fee:
        @hookimpl
        def add_billing_lines(self, client_id, period, lines):
            if client_id != "acme":
                return []
            assert lines and all(isinstance(l, BillingLine) for l in lines)
            return [BillingLine(client_id, period, "fee:portal", "Client portal", "1", 2500, 2500, "EUR", "flat fee")]
    hub = env.hub(Fee())
    sync_once(hub)
    acme = [i for i in env.invoices() if i["metadata"]["msp_hub_client_id"] == "acme"][0]
    assert "Client portal" in [l["description"] for l in acme["lines"]["data"]]


def test_hook_amend_action_changes_what_is_pushed(env):
    class Amend:
        @hookimpl
        def amend_action(self, action):
            import dataclasses
            return dataclasses.replace(action, payload={**action.payload, "description": "Amended " + action.client_id})
    hub = env.hub(Amend())
    sync_once(hub)
    assert {i["description"] for i in env.invoices()} == {f"Amended {c}" for c in
                                                          ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")}


def test_hook_veto_action_holds_an_action_until_no_plugin_objects(env):
    class Veto:
        active = True

        @hookimpl
        def veto_action(self, action):
            return "awaiting approval" if self.active and action.client_id == "cobalt" else None
    veto = Veto()
    hub = env.hub(veto)
    report = sync_once(hub)
    assert [h["key"] for h in report.held] == ["invoice:cobalt:2026-10"]
    assert "cobalt" not in {i["metadata"]["msp_hub_client_id"] for i in env.invoices()}
    assert hub.store.get_action("invoice:cobalt:2026-10")["status"] == "held"
    veto.active = False
    again = sync_once(hub)
    assert [p["key"] for p in again.pushed] == ["invoice:cobalt:2026-10"]


def test_hook_sync_finished_is_told_the_run_report(env):
    seen = []

    class Listener:
        @hookimpl
        def sync_finished(self, run):
            seen.append(run)

    class Broken:
        @hookimpl
        def sync_finished(self, run):
            raise RuntimeError("notification failed")
    hub = env.hub(Listener(), Broken())
    report = sync_once(hub)
    assert seen == [report] and len(report.pushed) == 5
    assert hub.store.runs()[0]["id"] == report.run_id


def test_a_record_that_cannot_be_mapped_is_set_aside_and_the_stream_goes_on(env):
    env.ninja = type(env.ninja)(seed=3, organizations=6, devices=2500, now=env.ninja.now)
    bad = env.ninja.device_ids[10]
    env.ninja._devices[bad]["approvalStatus"] = "QUARANTINED"   # a value the hub does not know
    env.ninja._put_device(env.ninja._devices[bad])
    hub = env.hub()
    report = sync_once(hub)
    assert hub.store.count("devices") == 2499
    assert set(hub.store.get_cursor("ninjaone", "devices")) == {"swept_at"}
    (error,) = [e for e in report.errors if "set aside" in e]
    assert f"record {bad}" in error and "QUARANTINED" in error
    rows = list(hub.store.db.query("select * from rejected_records"))
    assert [(r["stream"], r["source_id"]) for r in rows] == [("devices", str(bad))]
    # 2,500 devices make first invoices above the first-invoice limit: those wait for a person.
    first = [h for h in report.held if h["cause"] == "guardrail"]
    assert first and all("first invoice" in h["reasons"][0] for h in first)
    assert len(report.pushed) + len(first) == 5


def test_a_device_created_mid_period_is_prorated_when_the_contract_says_so(env):
    def workstations(report, client):
        item = next(p for p in report.plan if p.client_id == client and p.period == "2026-10")
        return next(line for line in item.bill.lines if line.code == "tier:gold:workstation")
    before = sync_once(env.hub(), dry_run=True)
    created = datetime(2026, 10, 17, 8, tzinfo=timezone.utc).timestamp()       # 15 of 31 days
    new = env.ninja.add_device(4, "WINDOWS_WORKSTATION", created=created, last_contact=env.ninja.now, name="NEW-WS")
    env.ninja.add_device(1, "WINDOWS_WORKSTATION", created=created, last_contact=env.ninja.now, name="ACME-NEW")
    after = sync_once(env.hub(), dry_run=True)
    line = workstations(after, "driftwood")
    assert next(i for i in line.items if i["id"] == str(new))["weight"] == "0.4839" and "prorated" in line.rule
    added = line.amount - workstations(before, "driftwood").amount
    assert abs(added - 15 / 31 * line.unit_amount) <= 1                     # one rounding, per line
    acme = workstations(after, "acme")                                       # no proration: a whole month
    assert acme.amount - workstations(before, "acme").amount == acme.unit_amount
