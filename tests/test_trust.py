"""Never send a wrong invoice: a push waits until every stream that feeds it is complete.

End to end against the simulators: a fault injected at pull for each stream holds exactly what
that stream feeds, names the stream, its error and the fix, and the next complete pass releases
it, billed once and right.
"""

from datetime import datetime, timedelta

import pytest

from hub.connectors import Page, Stream
from hub.engine import sync_once
from hub.testing import ConnectorPlugin, make_hub
from tests.test_alert_tickets import RULES, AlertEnv
from tests.test_notify import receiver, smtp  # noqa: F401 - a local SMTP server and webhook receiver
from tests.conftest import NOW
from tests.test_psa_billing import PsaEnv, at, invoice, lines, psa  # noqa: F401 - the psa fixture


def held_by_key(report):
    return {h["key"]: h for h in report.held}


def test_a_refused_ninjaone_secret_on_a_fresh_store_sends_nothing(psa):
    psa.time("acme", 1.0, at(10, 5), work_type="Project Work")       # would be invoiced as its time only
    psa.ninja.fail_next(401, times=50)
    report = sync_once(psa.hub())
    assert report.pushed == [] and psa.invoices() == []
    assert report.passes["ninjaone.devices"]["status"] == "failed"
    assert "401" in report.passes["ninjaone.devices"]["error"]
    held = held_by_key(report)
    assert {k.split(":")[1] for k in held if k.startswith("invoice:")} >= {"acme"}
    assert all(h["cause"] == "incomplete" for h in held.values())
    assert any("stream ninjaone.clients failed" in r and "msp-hub resync --connector ninjaone --stream clients" in r
               for r in held["invoice:acme:2026-10"]["reasons"])
    assert psa.hub().store.get_run(report.run_id)["status"] == "failed"
    # The secret is fixed: the next run bills from complete data, once.
    psa.ninja._faults.clear()
    again = sync_once(psa.hub())
    acme = invoice(again, "acme")
    assert acme.status == "create" and "invoice:acme:2026-10" in {p["key"] for p in again.pushed}
    assert any(code.startswith("tier:") for code in lines(acme))          # its devices, not its time only


def test_ninjaone_500s_past_the_retries_hold_what_devices_feed_and_nothing_else(psa):
    sync_once(psa.hub(), dry_run=True)
    psa.ninja.fail_next(500, times=3, path="/v2/devices-detailed")
    report = sync_once(psa.hub())
    held = held_by_key(report)
    assert "invoice:acme:2026-10" in held                                  # billed by its devices
    assert any(r.startswith("stream ninjaone.devices failed") for r in held["invoice:acme:2026-10"]["reasons"])
    # A client billed only by its PSA agreement's time does not depend on NinjaOne's devices.
    pushed = {p["key"] for p in report.pushed}
    elm = f"invoice:connectwise-{psa.co['elm']}:2026-10"
    assert elm in pushed or invoice(report, f"connectwise-{psa.co['elm']}").status == "empty"
    assert not [k for k in pushed if k.startswith("invoice:acme")]


def test_time_entries_failing_hold_the_invoices_they_feed_and_the_hours_are_billed_after(psa):
    psa.time("elm", 2.0, at(10, 6))
    psa.cw.fail_next(429, times=3, path="/time/entries", retry_after=0)
    report = sync_once(psa.hub())
    elm = f"connectwise-{psa.co['elm']}"
    held = held_by_key(report)
    assert not [i for i in psa.invoices() if i["metadata"]["msp_hub_client_id"] == elm]
    reasons = held[f"invoice:{elm}:2026-10"]["reasons"]
    assert any(r.startswith("stream connectwise.time_entries failed") and "429" in r for r in reasons)
    again = sync_once(psa.hub())
    item = invoice(again, elm)
    assert item.status == "create" and any(code.startswith("time:") for code in lines(item))
    assert f"invoice:{elm}:2026-10" in {p["key"] for p in again.pushed}
    assert len([i for i in psa.invoices() if i["metadata"]["msp_hub_client_id"] == elm]) == 1


def test_a_stream_that_failed_after_its_complete_pass_still_holds(psa):
    sync_once(psa.hub(), dry_run=True)                      # complete passes after October ended
    psa.cw.fail_next(500, times=3, path="/finance/agreements")
    report = sync_once(psa.hub())
    assert report.pushed == []
    assert all(any("connectwise.agreements failed" in r for r in h["reasons"]) for h in report.held
               if h["kind"] == "invoice")


def test_a_forced_period_needs_a_complete_pass_in_this_run(psa):
    sync_once(psa.hub(), dry_run=True)
    hub = psa.hub()
    report = sync_once(hub, pull_first=False, period="2026-11")          # no pull: nothing is fresh
    nov = [p for p in report.plan if p.kind == "invoice" and p.status == "held"]
    assert nov and all(p.cause == "incomplete" and any("not read completely in this run" in r for r in p.reasons)
                       for p in nov)


def test_a_companies_404_holds_alert_tickets_and_the_storm_stays_one_ticket(tmp_path):
    env = AlertEnv(tmp_path, RULES)
    devices = [d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] == 5]
    for i in range(25):
        env.ninja.trigger_alert(devices[i % len(devices)], condition=f"svc-{i}",
                                source_type="CONDITION_WINDOWS_SERVICE_STATE_CHANGED", severity="MODERATE",
                                message=f"service {i} stopped")
    env.cw.fail_next(404, times=1, path="/company/companies", body={"code": "NotFound", "message": "Cannot route"})
    first = env.sync()
    assert first.passes["connectwise.clients"]["status"] == "failed"
    assert env.hub_tickets() == [] and [h for h in first.held if h["kind"] == "ticket"]
    assert all(h["cause"] == "incomplete" for h in first.held if h["kind"] == "ticket")
    second = env.sync()
    storm = [p for p in second.pushed if p["key"].startswith("ticket:storm:")]
    assert len(storm) == 1 and len(env.hub_tickets()) == 1


class SweepingConnector:
    """A devices source whose full sweeps read as many records as the test says."""

    name, action_kinds = "sweeper", frozenset()

    def __init__(self):
        self.counts = []

    def streams(self):
        def pages(cursor, started):
            n = self.counts.pop(0)
            yield Page([], {"swept": n}, sweep_count=n)
        return [Stream(self.name, "devices", "devices", pages)]

    def push(self, action, context):
        raise AssertionError("nothing to push")

    def close(self):
        pass


def test_a_sweep_that_reads_far_fewer_records_is_suspect_until_approved(tmp_path):
    from hub.completeness import Gate
    from hub.engine import RunReport
    from hub.mappings import Contract
    source = SweepingConnector()
    source.counts = [100, 40, 40, 95]
    hub = make_hub(ConnectorPlugin(source))
    contract = Contract("c1", "Client", "silver", "EUR", links={"sweeper": "1"})

    def problems():
        report = sync_once(hub, dry_run=True)
        return Gate(hub, RunReport(report.run_id, "plan", report.started_at)).problems(
            Gate(hub, report).billing_streams(contract), after=None, this_run=False)

    assert problems() == []                                           # the first sweep: nothing to compare
    suspect = problems()
    assert len(suspect) == 1 and "read 40 records, 60% fewer than the 100" in suspect[0]
    assert "msp-hub approve --stream sweeper.devices" in suspect[0]
    last = hub.store.stream_passes("sweeper", "devices", limit=1)[0]
    hub.store.record_approval(f"pass:{last['id']}", "ops@example", "a client left")
    assert problems() == []                                           # 40 after an approved 40
    assert problems() == []                                           # growing back is fine


def test_the_limit_of_a_count_drop_is_configurable_and_exact(tmp_path):
    from hub.completeness import Gate
    from hub.config import HubConfig
    from hub.engine import RunReport
    from hub.mappings import Contract
    contract = Contract("c1", "Client", "silver", "EUR", links={"sweeper": "1"})
    for second, suspect in ((80, False), (79, True)):
        source = SweepingConnector()
        source.counts = [100, second]
        hub = make_hub(ConnectorPlugin(source), config=HubConfig(database=":memory:",
                                                                 billing={"completeness": {"max_count_drop_percent": 20}}))
        sync_once(hub, dry_run=True)
        report = sync_once(hub, dry_run=True)
        gate = Gate(hub, RunReport(report.run_id, "plan", report.started_at))
        assert bool(gate.problems(gate.billing_streams(contract), after=None, this_run=False)) is suspect


def test_an_explicit_link_to_an_existing_stripe_customer_is_invoiced_on_it(tmp_path):
    env = PsaEnv(tmp_path)
    env.cw.add_agreement(env.co["acme"], "Managed Gold")
    existing = env.stripe._create_customer({"name": "Acme Dental (existing)", "email": "billing@acme.example"})
    text = (env.mappings / "contracts.toml").read_text().replace(
        'links = { ninjaone = "1" }', f'links = {{ ninjaone = "1", stripe = "{existing["id"]}" }}')
    (env.mappings / "contracts.toml").write_text(text)
    report = sync_once(env.hub())
    assert "invoice:acme:2026-10" in {p["key"] for p in report.pushed}
    customers = env.stripe.list_objects("customer")
    assert len([c for c in customers if "Acme" in (c.get("name") or "")]) == 1
    acme = [i for i in env.invoices() if i["metadata"]["msp_hub_client_id"] == "acme"]
    assert len(acme) == 1 and acme[0]["customer"] == existing["id"]


def test_a_contract_linked_to_an_id_its_system_does_not_have_holds_that_client(psa):
    text = (psa.mappings / "contracts.toml").read_text().replace('links = { ninjaone = "1" }',
                                                                 'links = { ninjaone = "99" }')
    (psa.mappings / "contracts.toml").write_text(text)
    psa.time("elm", 1.0, at(10, 4))
    report = sync_once(psa.hub())
    held = held_by_key(report)
    assert held["invoice:acme:2026-10"]["cause"] == "error"
    assert any("linked to ninjaone id '99', which no pulled ninjaone client has" in r and "contracts.toml" in r
               for r in held["invoice:acme:2026-10"]["reasons"])
    assert not [p for p in report.pushed if p["key"].startswith("invoice:acme")]
    assert [p for p in report.pushed if p["key"].startswith("invoice:")]            # the others are billed


def test_under_the_review_window_invoices_stay_drafts_until_the_run_is_approved_then_finalize_once(tmp_path):
    env = PsaEnv(tmp_path, billing={"review": {"enabled": True}})
    env.cw.add_agreement(env.co["acme"], "Managed Gold")
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    env.time("elm", 1.0, at(10, 4))
    first = sync_once(env.hub())
    drafts = [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"].startswith("invoice:")]
    assert len(drafts) == 2 and {i["status"] for i in drafts} == {"draft"}
    waiting = [h for h in first.held if h["cause"] == "review"]
    assert {h["key"] for h in waiting} == {f"finalize:{i['metadata']['msp_hub_action_key']}" for i in drafts}
    assert all(f"msp-hub approve --run {first.run_id}" in h["reasons"][0] and h["total"] > 0 for h in waiting)
    again = sync_once(env.hub())                                    # nothing moves without the approval
    assert not [p for p in again.pushed if p["key"].startswith("finalize:")]
    assert {i["status"] for i in env.invoices() if i["metadata"]["msp_hub_action_key"].startswith("invoice:")} == {"draft"}
    hub = env.hub()
    hub.store.record_approval(f"run:{first.run_id}", "admin@msp.example", "checked the totals")
    approved = sync_once(hub)
    assert sorted(p["key"] for p in approved.pushed if p["key"].startswith("finalize:")) == sorted(h["key"] for h in waiting)
    assert {i["status"] for i in env.invoices() if i["metadata"]["msp_hub_action_key"].startswith("invoice:")} == {"open"}
    assert not [p for p in sync_once(env.hub()).pushed if p["key"].startswith("finalize:")]    # once
    assert len(env.invoices()) == 2                                 # finalized, never created twice


def test_drafts_are_finalized_after_the_review_delay_when_nothing_was_held(tmp_path):
    env = PsaEnv(tmp_path, billing={"review": {"enabled": True, "finalize_after": "48h"}})
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    env.time("elm", 1.0, at(10, 4))
    first = sync_once(env.hub())
    assert first.held and {h["cause"] for h in first.held} == {"review"}
    assert env.hub().store.get_run(first.run_id)["status"] in ("ok", "warnings")
    sent = datetime.fromisoformat(env.hub().store.get_action("invoice:connectwise-%s:2026-10" % env.co["elm"])["sent_at"])
    soon = sync_once(env.hub(clock=sent + timedelta(hours=47)))
    assert not [p for p in soon.pushed if p["key"].startswith("finalize:")]
    later = sync_once(env.hub(clock=sent + timedelta(hours=49)))
    finalized = {p["key"] for p in later.pushed if p["key"].startswith("finalize:")}
    assert {h["key"] for h in first.held} <= finalized


def test_a_contract_error_never_falls_back_to_the_psa_agreement(psa):
    text = (psa.mappings / "contracts.toml").read_text().replace('tier = "gold"', 'tier = "gould"')
    (psa.mappings / "contracts.toml").write_text(text)
    report = sync_once(psa.hub())
    held = held_by_key(report)
    assert held["invoice:acme:2026-10"]["cause"] == "error"
    assert any("unknown tier 'gould'" in r for r in held["invoice:acme:2026-10"]["reasons"])
    assert f"connectwise-{psa.co['acme']}" not in report.registry.clients
    assert report.registry.clients["acme"].links.get("connectwise") == str(psa.co["acme"])
    assert not [p for p in report.pushed if "acme" in p["key"] or str(psa.co["acme"]) in p["key"]]


def test_after_a_lost_store_recover_rebuilds_what_was_sent_and_nothing_is_billed_twice(tmp_path):
    import os
    from hub.recover import recover
    env = PsaEnv(tmp_path)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    env.time("elm", 2.0, at(10, 4))
    first = sync_once(env.hub())
    sent = {p["key"] for p in first.pushed if p["key"].startswith("invoice:")}
    assert sent
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(env.db + suffix):
            os.remove(env.db + suffix)                             # the store is lost
    env.stripe.expire_idempotency_keys()                           # days later: Stripe forgot the keys
    hub = env.hub()
    sync_once(hub, dry_run=True)                                   # pull again, push nothing
    found = recover(hub)
    assert {a["key"] for a in found.actions} == sent
    assert {l["client_id"] for l in found.links} >= {k.split(":")[1] for k in sent}
    assert all(a["total_now"] == a["total"] for a in found.actions)
    assert recover(hub).actions == []                              # a second recover finds nothing new
    again = sync_once(env.hub())
    assert not [p for p in again.pushed if p["key"] in sent]
    nov = sync_once(env.hub(), period="2026-11")                   # October's hours are not billed again
    elm = f"invoice:connectwise-{env.co['elm']}:2026-11"
    assert elm not in {p["key"] for p in nov.pushed}
    keys = [i["metadata"]["msp_hub_action_key"] for i in env.invoices()]
    assert all(keys.count(k) == 1 for k in sent) and all(k.endswith("2026-11") for k in keys if k not in sent)


def test_a_held_invoice_reaches_the_local_smtp_server_and_webhook_once_with_its_release(tmp_path, smtp, receiver):
    from hub.config import HubConfig
    from hub.store import Store
    from tests.conftest import NOW
    from tests.test_notify import environ, notify_table

    class NotifiedEnv(PsaEnv):
        def hub(self, *plugins, clock=NOW):
            config = HubConfig(database=":memory:", notify=notify_table(smtp, receiver, formats=("json",)),
                               environ=environ(receiver, formats=("json",)))
            return make_hub(ConnectorPlugin(*self.connectors()), *plugins, mappings=self.mappings, config=config,
                            store=Store(self.db), clock=lambda: clock)

    env = NotifiedEnv(tmp_path)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    env.time("elm", 1.0, at(10, 4))
    env.cw.fail_next(500, times=3, path="/time/entries")
    first = sync_once(env.hub())
    key = f"invoice:connectwise-{env.co['elm']}:2026-10"
    assert key in held_by_key(first) and env.invoices() == []
    [mail] = smtp.messages
    body = mail.get_content()
    assert key in body and "connectwise.time_entries" in body
    assert "msp-hub resync --connector connectwise --stream time_entries" in body
    [post] = receiver.bodies(f"/json/{environ(receiver, ('json',))['HOOK_JSON'].rsplit('/', 1)[1]}")
    assert any(i["key"] == key and i["cause"] == "incomplete" for i in post["items"])
    env.cw.fail_next(500, times=3, path="/time/entries")
    again = sync_once(env.hub())                 # the same hold again: not sent again
    assert key in held_by_key(again) and len(smtp.messages) == 1


def test_an_invoice_that_moves_sharply_against_the_previous_one_waits_for_approval(tmp_path):
    from datetime import timezone
    from tests.conftest import Env
    env = Env(tmp_path)
    october = datetime(2026, 10, 15, tzinfo=timezone.utc).timestamp()
    for i in range(30):                                   # seen in October only: gone in November
        env.ninja.add_device(1, "WINDOWS_WORKSTATION", created=october, last_contact=october, name=f"OLD-{i}")
    first = sync_once(env.hub())
    assert "invoice:acme:2026-10" in {p["key"] for p in first.pushed}
    nov = sync_once(env.hub(), period="2026-11")
    held = held_by_key(nov)
    reasons = " ".join(held["invoice:acme:2026-11"]["reasons"])
    assert held["invoice:acme:2026-11"]["cause"] == "guardrail"
    assert "billed devices fell from" in reasons and "more than the limit of 30 %" in reasons
    assert "msp-hub approve invoice:acme:2026-11" in reasons
    assert "invoice:acme:2026-11" not in {p["key"] for p in nov.pushed}
    assert {p["key"] for p in nov.pushed} >= {"invoice:cobalt:2026-11"}     # the others go out
    hub = env.hub()
    hub.store.approve("invoice:acme:2026-11", who="ops@msp.example", why="30 PCs decommissioned in October")
    assert hub.store.approvals("invoice:acme:2026-11")[0]["who"] == "ops@msp.example"
    released = sync_once(hub, period="2026-11")
    assert "invoice:acme:2026-11" in {p["key"] for p in released.pushed}
    assert [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == "invoice:acme:2026-11"]


def _stream_path(env, stream):
    agreement = env.cw.ids("agreements")[0]
    return {"ninjaone.clients": "/v2/organizations", "ninjaone.devices": "/v2/devices-detailed",
            "connectwise.clients": "/company/companies", "connectwise.agreements": "/finance/agreements",
            "connectwise.additions": f"/finance/agreements/{agreement}/additions",
            "connectwise.time_entries": "/time/entries", "connectwise.products": "/procurement/products"}[stream]


@pytest.mark.parametrize("stream", ["ninjaone.clients", "ninjaone.devices", "connectwise.clients",
                                    "connectwise.agreements", "connectwise.additions", "connectwise.time_entries",
                                    "connectwise.products"])
def test_500s_past_the_retries_on_any_billing_stream_hold_the_invoices_it_feeds(psa, stream):
    connector = stream.split(".")[0]
    sim = psa.ninja if connector == "ninjaone" else psa.cw
    sim.fail_next(500, times=3, path=_stream_path(psa, stream))
    report = sync_once(psa.hub())
    assert report.passes[stream]["status"] == "failed"
    acme = held_by_key(report)["invoice:acme:2026-10"]
    assert acme["cause"] == "incomplete"
    assert any(r.startswith(f"stream {stream} failed") and f"--stream {stream.split('.')[1]}" in r
               for r in acme["reasons"])
    assert not [i for i in psa.invoices() if i["metadata"]["msp_hub_action_key"] == "invoice:acme:2026-10"]


def test_a_connectwise_page_that_lost_records_fails_its_full_pass_against_the_count(psa):
    for day in (3, 4, 5):
        psa.time("elm", 1.0, at(10, day))
    psa.cw.lose_next("/time/entries", records=1)
    report = sync_once(psa.hub())
    assert report.passes["connectwise.time_entries"]["status"] == "failed"
    elm = held_by_key(report)[f"invoice:connectwise-{psa.co['elm']}:2026-10"]
    assert any("connectwise.time_entries" in r and "count" in r for r in elm["reasons"])
    again = sync_once(psa.hub())                                   # the full pass again, complete
    assert f"invoice:connectwise-{psa.co['elm']}:2026-10" in {p["key"] for p in again.pushed}
    assert len(lines(invoice(again, f"connectwise-{psa.co['elm']}"))) >= 1


def test_a_ninjaone_page_cut_short_loses_no_device(psa):
    sync_once(psa.hub(), dry_run=True)
    expected = psa.hub().store.count("devices")
    psa.ninja.short_page_next(path="/v2/devices-detailed")                   # one page cut short
    psa.ninja.max_page_size = 7                                     # and every page capped below what is asked
    report = sync_once(psa.hub())
    assert report.passes["ninjaone.devices"]["status"] == "complete"
    assert report.passes["ninjaone.devices"]["sweep_count"] == expected
    assert "invoice:acme:2026-10" in {p["key"] for p in report.pushed}
