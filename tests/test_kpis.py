"""The revenue KPIs (hub.reports.kpis) on hand-computed data.

The store is seeded with the rows a push writes: each sent invoice is recorded with
``Store.record_action`` (its payload lines, its snapshot and, for a block renewal, its block) and
marked sent with ``Store.mark_sent``; each void or credit note with ``Store.record_correction`` then
``mark_sent``; the PSA's clients, agreements, time entries and service tickets with
``Store.write_page``, as a sync writes them. Every expected figure below is worked out by hand in
the comment beside it.
"""

import csv
import html
import io
import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import HubConfig
from hub.errors import ConfigError
from hub.records import Action, Agreement, Client, ServiceTicket, TimeEntry
from hub.reports import kpis
from hub.store import Store
from hub.testing import make_hub
from tests.conftest import ROOT

A, B, G, D = "connectwise-1", "connectwise-2", "connectwise-3", "connectwise-4"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def line(code, amount, things=(), currency="EUR"):
    return {"code": code, "amount": amount, "currency": currency, "things": list(things)}


def devices(*ids):
    return [{"kind": "device", "id": i} for i in ids]


def send_invoice(store, key, client, period, lines, *, currency="EUR", with_tax=None, block=None):
    payload = {"client_name": client, "currency": currency, "period": period, "total": sum(l["amount"] for l in lines),
               "lines": [{"code": l["code"], "description": l["code"], "quantity": "1", "unit_amount": l["amount"],
                          "amount": l["amount"]} for l in lines]}
    if with_tax is not None:
        payload["tax"] = {"total_with_tax": with_tax}
    snapshot = None if key.startswith("renewal:") else [dict(l, currency=currency) for l in lines]
    store.record_action(Action(key, "invoice", "stripe", client, payload, period), "seed", snapshot=snapshot,
                        block=block)
    store.mark_sent(key, f"in_{key}", "sent")


def send_correction(store, kind, invoice_key, client, period, *, lines=None, amount=None, currency="EUR",
                    reissue=None):
    key = f"void:{invoice_key}" if kind == "invoice_void" else f"credit:{invoice_key}:1"
    store.record_correction(Action(key, kind, "stripe", client, {"invoice_key": invoice_key}, period), "seed", {
        "invoice_key": invoice_key, "kind": kind, "client_id": client, "period": period, "requested_by": "test",
        "reason": "wrong", "amount": amount, "currency": currency, "lines": lines, "reissue_key": reissue,
        "frees": "all" if reissue else None})
    store.mark_sent(key, f"cn_{key}", "sent")


def seed(store):
    """Alpha (EUR): Jan tier 10000 (d1, d2) + backup 2000 (d1) + 1.5 h of t1 3000; Feb tier 15000
    (d1-d3) + backup 4000 (d1, d2) + antivirus 1500 (d1-d3); Mar tier 15000 + backup 4000 (credited
    whole) + a late device of February 5000 (delta); a 10 h block renewal 90000 in March.
    Beta (EUR): Jan 8000 (s1); Feb 9000 voided, re-issued at 6000; nothing in March (lost).
    Gamma (USD): Feb 5000 (g1); Mar 5000 with a credit of 1200 including tax (6000 with tax)."""
    store.write_page("clients", [Client("connectwise", "1", "Alpha"), Client("connectwise", "2", "Beta"),
                                 Client("connectwise", "3", "Gamma"), Client("connectwise", "4", "Delta")],
                     "connectwise", "companies", None)
    send_invoice(store, f"invoice:{A}:2026-01", A, "2026-01", [
        line("tier:gold:workstation", 10000, devices("d1", "d2")), line("addon:backup:workstation", 2000, devices("d1")),
        line("time:entry:t1", 3000, [{"kind": "time", "id": "t1", "billed_hours": "1.5", "amount": 3000}])])
    send_invoice(store, f"invoice:{A}:2026-02", A, "2026-02", [
        line("tier:gold:workstation", 15000, devices("d1", "d2", "d3")),
        line("addon:backup:workstation", 4000, devices("d1", "d2")),
        line("addon:av:workstation", 1500, devices("d1", "d2", "d3"))])
    send_invoice(store, f"invoice:{A}:2026-03", A, "2026-03", [
        line("tier:gold:workstation", 15000, devices("d1", "d2", "d3")),
        line("addon:backup:workstation", 4000, devices("d1", "d2")),
        line("delta:2026-02:tier:gold:workstation", 5000, [{"kind": "delta", "id": "d4"}])])
    send_correction(store, "credit_note", f"invoice:{A}:2026-03", A, "2026-03", amount=4000,
                    lines=[{"code": "addon:backup:workstation", "description": "backup", "amount": 4000}])
    send_invoice(store, f"renewal:{A}:A2:2", A, "2026-03", [line("block:b10", 90000)],
                 block={"client_id": A, "agreement": "A2", "number": 2, "hours": "10", "rate": 9000,
                        "started_at": "2026-03-20T00:00:00+00:00", "source": "renewal"})
    send_invoice(store, f"invoice:{B}:2026-01", B, "2026-01", [line("tier:silver:server", 8000, devices("s1"))])
    send_invoice(store, f"invoice:{B}:2026-02", B, "2026-02", [line("tier:silver:server", 9000, devices("s1"))])
    send_correction(store, "invoice_void", f"invoice:{B}:2026-02", B, "2026-02", amount=9000,
                    reissue=f"invoice:{B}:2026-02:r1")
    send_invoice(store, f"invoice:{B}:2026-02:r1", B, "2026-02", [line("tier:silver:server", 6000, devices("s1"))])
    send_invoice(store, f"invoice:{G}:2026-02", G, "2026-02", [line("tier:gold:workstation", 5000, devices("g1"), "USD")],
                 currency="USD")
    send_invoice(store, f"invoice:{G}:2026-03", G, "2026-03", [line("tier:gold:workstation", 5000, devices("g1"), "USD")],
                 currency="USD", with_tax=6000)
    send_correction(store, "credit_note", f"invoice:{G}:2026-03", G, "2026-03", amount=1200, currency="USD")
    # Not sent: never counted.
    store.record_action(Action(f"invoice:{B}:2026-03", "invoice", "stripe", B,
                               {"currency": "EUR", "total": 7000, "lines": [{"code": "tier:silver:server",
                                                                             "amount": 7000}]}, "2026-03"), "seed")
    store.write_page("agreements", [
        Agreement("connectwise", "A1", "1", "Managed Gold", "Managed", "active", "2026-01-01"),
        Agreement("connectwise", "A2", "1", "Block 10h", "Block", "active", "2026-02-15",
                  application_units="Hours", application_limit="10"),
        Agreement("connectwise", "B1", "2", "Managed Silver", "Managed", "cancelled", "2025-06-01", "2026-02-28"),
        Agreement("connectwise", "G1", "3", "Managed Gold US", "Managed", "active", "2026-02-01"),
        Agreement("connectwise", "D1", "4", "Managed Delta", "Managed", "active", "2026-03-10"),
    ], "connectwise", "agreements", None)

    def entry(sid, client, member, when, hours, billable, ticket=None, agreement=None):
        return TimeEntry("connectwise", sid, client, member, at(when), None, hours, billable, "Remote", "Tech",
                         ticket, agreement)
    store.write_page("time_entries", [
        entry("t1", "1", "alice", "2026-01-10T09:00", "1.5", "billable", "100"),
        entry("t2", "1", "bob", "2026-01-11T09:00", "0.5", "do_not_bill", "101"),
        entry("t3", "1", "alice", "2026-01-12T09:00", "2", "billable", "100"),
        entry("t4", "1", "bob", "2026-02-20T09:00", "3", "billable", "102", "A2"),
        entry("t5", "2", "alice", "2026-02-03T09:00", "1", "no_charge", "103"),
    ], "connectwise", "time_entries", None)

    def ticket(sid, client, opened):
        return ServiceTicket("connectwise", sid, client, "s", "Help Desk", "New", "P3", False, at(opened))
    store.write_page("service_tickets", [
        ticket("100", "1", "2026-01-05T10:00"), ticket("101", "1", "2026-01-06T10:00"),
        ticket("102", "1", "2026-02-10T10:00"), ticket("103", "2", "2026-01-05T11:00"),
        ticket("99", "2", "2025-12-20T11:00"),
    ], "connectwise", "service_tickets", None)


def hub_on(store, **kpi_settings):
    config = HubConfig(database=":memory:", billing={"client_master": "connectwise"},
                       reports={"kpis": kpi_settings} if kpi_settings else {})
    return make_hub(config=config, store=store)


def value(k, metric, period="", subject="", currency=""):
    got = [r for r in k["rows"] if r["metric"] == metric and r["period"] == period and r["currency"] == currency
           and (r["subject_id"] == subject or r["subject"] == subject)]
    assert len(got) <= 1, got
    return got[0]["value"] if got else None


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """A store on a SQLite file or on a fresh PostgreSQL database (the KPI reads run on both)."""
    url = str(tmp_path / "hub.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(url)
    yield s
    s.close()


@pytest.fixture
def built(store):
    seed(store)
    return kpis.build(hub_on(store, labour_cost_per_hour="20.00", technicians=2), "2026-01", "2026-03")


def test_revenue_and_mrr_per_month_per_currency_after_voids_and_credit_notes(built):
    # EUR Jan: Alpha 15000 + Beta 8000. Feb: Alpha 20500 + its late device 5000 (the delta counts in
    # February) + Beta's re-issue 6000 (the voided 9000 is not revenue). Mar: Alpha 15000 + 4000
    # - 4000 credited + renewal 90000; Beta's unsent invoice is not counted.
    assert [value(built, "revenue", m, currency="EUR") for m in ("2026-01", "2026-02", "2026-03")] == [23000, 31500, 105000]
    assert [value(built, "mrr", m, currency="EUR") for m in ("2026-01", "2026-02", "2026-03")] == [20000, 31500, 15000]
    # USD, never added to EUR: the 1200 credit includes tax; 1200 × 5000 / 6000 = 1000 before tax.
    assert [value(built, "revenue", m, currency="USD") for m in ("2026-01", "2026-02", "2026-03")] == [0, 5000, 4000]
    assert value(built, "mrr", "2026-03", currency="USD") == 4000
    assert value(built, "revenue_client", "2026-02", A, "EUR") == 25500
    assert value(built, "revenue_client", "2026-02", B, "EUR") == 6000
    assert value(built, "revenue_client", "2026-03", B, "EUR") is None
    assert built["currencies"] == ["EUR", "USD"]


def test_mrr_movement_new_expansion_contraction_lost(built):
    def moves(m, cur="EUR"):
        return [value(built, k, m, currency=cur) for k in ("mrr_new", "mrr_expansion", "mrr_contraction", "mrr_lost")]
    assert moves("2026-01") == [20000, 0, 0, 0]           # both new against an empty December
    assert moves("2026-02") == [0, 13500, 2000, 0]        # Alpha 12000 -> 25500, Beta 8000 -> 6000
    assert moves("2026-03") == [0, 0, 10500, 6000]        # Alpha 25500 -> 15000, Beta lost (6000)
    assert moves("2026-02", "USD") == [5000, 0, 0, 0] and moves("2026-03", "USD") == [0, 0, 1000, 0]
    assert value(built, "clients_lost", "2026-03", currency="EUR") == 1
    assert value(built, "client_lost", "2026-03", B, "EUR") == 6000
    assert value(built, "clients_new", "2026-01", currency="EUR") == 2


def test_new_agreements_their_value_and_average(built):
    assert [value(built, "new_agreements", m) for m in ("2026-01", "2026-02", "2026-03")] == [1, 2, 1]
    assert value(built, "new_agreements_type", "2026-02", "Managed") == 1
    assert value(built, "new_agreements_type", "2026-02", "Block") == 1
    # A1: Alpha's MRR in January 12000 - December 0; A2: February 25500 - January 12000; G1: 5000 USD.
    assert value(built, "new_agreement_value", "2026-01", "connectwise:A1", "EUR") == 12000
    assert value(built, "new_agreement_value", "2026-02", "connectwise:A2", "EUR") == 13500
    assert value(built, "new_agreement_value_avg", "2026-02", currency="EUR") == 13500
    assert value(built, "new_agreement_value_avg", "2026-02", currency="USD") == 5000
    # D1's client has no invoice since its start: not invoiced yet, no average.
    assert value(built, "new_agreements_not_invoiced", "2026-03") == 1
    assert value(built, "new_agreement_value_avg", "2026-03", currency="EUR") is None


def test_upsell_is_recurring_revenue_of_offers_new_to_an_existing_client(built):
    # February: Alpha (MRR in January) adds the antivirus add-on, 1500; Gamma is new, not upsell.
    assert value(built, "upsell", "2026-02", currency="EUR") == 1500
    assert value(built, "upsell_client", "2026-02", A, "EUR") == 1500
    assert value(built, "upsell", "2026-02", currency="USD") == 0
    assert value(built, "upsell", "2026-03", currency="EUR") == 0


def test_devices_under_management_and_cross_sell_per_addon(built):
    # Tier devices: Jan d1 d2 s1; Feb d1-d3, s1 (the re-issue's snapshot), g1; Mar d1-d3, g1.
    assert [value(built, "devices_managed", m) for m in ("2026-01", "2026-02", "2026-03")] == [3, 5, 4]
    assert [value(built, "devices_growth", m) for m in ("2026-01", "2026-02", "2026-03")] == [3, 2, -1]
    assert value(built, "devices_growth_percent", "2026-01") is None       # nothing the month before
    assert value(built, "devices_growth_percent", "2026-02") == "66.7"
    assert value(built, "devices_growth_percent", "2026-03") == "-20.0"
    # Backup: Jan 1 of 2 clients, 1 of 3 devices; Feb 1 of 3 clients, 2 of 5 devices; Mar credited.
    assert value(built, "addon_client_share", "2026-01", "backup") == "50.0"
    assert value(built, "addon_device_share", "2026-01", "backup") == "33.3"
    assert value(built, "addon_client_share", "2026-02", "backup") == "33.3"
    assert value(built, "addon_device_share", "2026-02", "backup") == "40.0"
    assert value(built, "addon_device_share", "2026-03", "backup") == "0.0"
    assert value(built, "addon_device_share", "2026-02", "av") == "60.0"
    assert value(built, "addon_client_share", "2026-01", "av") == "0.0"


def test_ticket_volumes_per_client_per_day_week_month_and_the_top(built):
    assert value(built, "tickets_client", "2026-01", A) == 2 and value(built, "tickets_client", "2026-01", B) == 1
    assert value(built, "tickets_client", "2026-02", A) == 1
    assert value(built, "tickets_client_day", "2026-01-05", A) == 1
    assert value(built, "tickets_client_week", "2026-W02", A) == 2
    assert value(built, "tickets_week", "2026-W02") == 3 and value(built, "tickets_week", "2026-W07") == 1
    assert [value(built, "tickets", m) for m in ("2026-01", "2026-02", "2026-03")] == [3, 1, 0]   # December's left out
    # 90 days: Alpha 3 / 90 = 0.03 a day, 21 / 90 = 0.23 a week; Beta 1 / 90, 7 / 90.
    assert value(built, "tickets_client_per_day", "", A) == "0.03"
    assert value(built, "tickets_client_per_week", "", A) == "0.23"
    assert value(built, "tickets_client_per_week", "", B) == "0.08"
    top = [(r["subject"], r["value"]) for r in built["rows"] if r["metric"] == "tickets_top"]
    assert top == [("1. Alpha", 3), ("2. Beta", 1)]


def test_hours_per_client_and_tasks_per_technician_and_their_spread(built):
    assert value(built, "hours_worked_client", "2026-01", A) == "4"
    assert value(built, "hours_billable_client", "2026-01", A) == "3.5"
    assert value(built, "hours_invoiced_client", "2026-01", A) == "1.5"
    assert value(built, "hours_billable_client", "2026-02", B) == "0"
    assert value(built, "technician_hours", "2026-01", "alice") == "3.5"
    assert value(built, "technician_tickets", "2026-01", "alice") == 1        # t1 and t3: one ticket
    # January hours 3.5 and 0.5: mean 2, standard deviation 1.5 -> 0.75; tickets 1 and 1 -> 0.
    assert value(built, "technician_hours_cv", "2026-01") == "0.75"
    assert value(built, "technician_tickets_cv", "2026-01") == "0.00"
    assert value(built, "technician_hours_cv", "2026-02") == "0.50"          # 3 and 1
    assert value(built, "technician_hours_cv", "2026-03") is None            # no time: not measured
    assert value(built, "time_revenue_technician", "2026-01", "alice", "EUR") == 3000


def test_revenue_per_technician_from_the_configured_headcount(built):
    assert value(built, "revenue_per_technician", "2026-01", currency="EUR") == 11500     # 23000 / 2
    assert value(built, "revenue_per_technician", "2026-02", currency="USD") == 2500
    assert not any(m["set"] == "technicians" for m in built["not_available"])


def test_effective_hourly_rate_and_margin_per_agreement(built):
    alpha_a1, alpha_both = f"{A}|connectwise:A1", f"{A}|connectwise:A1,connectwise:A2"
    # January (A1 alone): 15000 for 4 h worked -> 3750 an hour; margin 15000 - 4 × 2000.
    assert value(built, "effective_rate_billed", "", alpha_a1, "EUR") == 15000
    assert value(built, "effective_rate_hours", "", alpha_a1) == "4"
    assert value(built, "effective_rate", "", alpha_a1, "EUR") == 3750
    assert value(built, "effective_rate_margin", "", alpha_a1, "EUR") == 7000
    # February and March (A1 and A2): 25500 + 105000 for 3 h.
    assert value(built, "effective_rate", "", alpha_both, "EUR") == 43500
    assert value(built, "effective_rate", "", f"{B}|connectwise:B1", "EUR") == 14000      # 8000 + 6000 for 1 h
    # Gamma: billed, no hour worked: no rate (not a division by zero); its USD has no labour cost.
    assert value(built, "effective_rate_billed", "", f"{G}|connectwise:G1", "USD") == 9000
    assert value(built, "effective_rate", "", f"{G}|connectwise:G1", "USD") is None
    assert [m["message"]["en"] for m in built["not_available"]] == [
        'margin after labour cost in USD: not available: set [reports.kpis] labour_cost_per_hour = { USD = "..." }']


def test_block_usage_hours_used_and_renewals(built):
    assert value(built, "block_hours_used", "2026-02", "connectwise:A2") == "3"
    assert value(built, "block_renewals", "2026-03") == 1 and value(built, "block_renewals", "2026-02") == 0
    assert value(built, "block_renewal_hours", "2026-03") == "10"
    assert value(built, "block_renewal_revenue", "2026-03", currency="EUR") == 90000


def test_missing_labour_cost_and_headcount_are_said_not_guessed(tmp_path):
    store = Store(str(tmp_path / "hub.db"))
    seed(store)
    k = kpis.build(hub_on(store), "2026-01", "2026-03")
    assert not [r for r in k["rows"] if r["metric"] in ("effective_rate_margin", "revenue_per_technician")]
    assert {m["set"] for m in k["not_available"]} == {"labour_cost_per_hour", "technicians"}
    assert any("not available: set [reports.kpis] labour_cost_per_hour" in m["message"]["en"] for m in k["not_available"])
    page = html.unescape(kpis.render(k, "html", "en").decode())
    assert "not available: set [reports.kpis] labour_cost_per_hour" in page
    page = html.unescape(kpis.render(k, "html", "fr").decode())
    assert "non disponible : renseignez [reports.kpis] technicians" in page


def test_months_with_no_data_are_zero_or_not_measured_never_invented(tmp_path):
    store = Store(str(tmp_path / "hub.db"))
    seed(store)
    k = kpis.build(hub_on(store), "2025-08", "2025-09")
    assert k["currencies"] == [] and not [r for r in k["rows"] if r["unit"] == "minor"]
    assert value(k, "devices_managed", "2025-09") == 0 and value(k, "devices_growth_percent", "2025-09") is None
    assert value(k, "tickets", "2025-08") == 0 and value(k, "new_agreements", "2025-08") == 0
    assert value(k, "technician_hours_cv", "2025-08") is None
    html = kpis.render(k, "html", "en").decode()
    assert "No data in this range." in html


@pytest.mark.parametrize("settings, fragment", [
    ({"labor_cost": "20.00"}, "labor_cost"),
    ({"labour_cost_per_hour": 20.5}, "labour_cost_per_hour"),
    ({"labour_cost_per_hour": {"EURO": "20.00"}}, "EURO"),
    ({"technicians": 0}, "technicians"),
])
def test_a_wrong_reports_kpis_key_is_a_config_error_naming_it(tmp_path, settings, fragment):
    hub = hub_on(Store(":memory:"), **settings)
    with pytest.raises(ConfigError) as err:
        kpis.build(hub, "2026-01", "2026-02")
    assert fragment in str(err.value) and "reports.kpis" in str(err.value)


def test_a_wrong_range_is_refused():
    with pytest.raises(ValueError, match="after --to"):
        kpis.months_between("2026-05", "2026-01")
    with pytest.raises(ValueError, match="YYYY-MM"):
        kpis.months_between("2026-5", "2026-06")


def test_csv_has_one_row_per_metric_period_and_subject(built):
    text = kpis.render(built, "csv", "en").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == kpis.CSV_COLUMNS and len(rows) == len(built["rows"])
    assert {"metric": "mrr", "period": "2026-02", "subject_id": "", "subject": "", "currency": "EUR",
            "value": "31500", "unit": "minor"} in rows
    keys = [(r["metric"], r["period"], r["subject_id"], r["currency"]) for r in rows]
    assert len(keys) == len(set(keys))


def test_json_round_trips_the_figures_without_the_page_settings(built):
    data = json.loads(kpis.render(built, "json", "en"))
    assert data["rows"] == built["rows"] and "page" not in data
    assert data["definitions"]["en"]["mrr"].startswith("Recurring: the device lines")


def test_html_is_one_page_with_charts_in_both_languages(built):
    en = kpis.render(built, "html", "en").decode()
    assert en.startswith("<!DOCTYPE html>") and en.count("<svg") >= 4 and 'src="http' not in en
    assert "Monthly recurring revenue (MRR)" in en and "315.00" in en
    fr = html.unescape(kpis.render(built, "html", "fr").decode())
    assert "Revenu mensuel récurrent (MRR)" in fr and "Chiffre d'affaires par client" in fr
    assert "Monthly recurring" not in fr
    with pytest.raises(ValueError, match="format 'xls'"):
        kpis.render(built, "xls", "en")


def test_cli_writes_each_format_and_refuses_a_bad_month(tmp_path):
    db = tmp_path / "hub.db"
    store = Store(str(db))
    seed(store)
    store.close()
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'database = "{db.as_posix()}"\nmappings = "{(ROOT / "mappings").as_posix()}"\n'
                   '[billing]\nclient_master = "connectwise"\n[reports]\nmsp_name = "Acme IT"\nlanguage = "fr"\n'
                   '[reports.kpis]\ntechnicians = 2\n')
    runner = CliRunner()
    got = runner.invoke(main, ["report", "kpis", "--config", str(cfg), "--from", "2026-01", "--to", "2026-03",
                               "--format", "json"])
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)
    assert value(data, "revenue", "2026-02", currency="EUR") == 31500
    out = tmp_path / "kpis.html"
    got = runner.invoke(main, ["report", "kpis", "--config", str(cfg), "--from", "2026-01", "--to", "2026-03",
                               "--out", str(out)])
    assert got.exit_code == 0, got.output
    page = out.read_text()
    assert "Acme IT" in page and "Indicateurs de revenus" in page            # [reports] language = "fr"
    got = runner.invoke(main, ["report", "kpis", "--config", str(cfg), "--from", "2026-01", "--to", "2026-03",
                               "--format", "csv", "--lang", "en"])
    assert got.exit_code == 0 and got.stdout.startswith("metric,period,subject_id")
    got = runner.invoke(main, ["report", "kpis", "--config", str(cfg), "--from", "2026-1", "--to", "2026-03"])
    assert got.exit_code == 2 and "--from" in got.output and "2026-10" in got.output
    got = runner.invoke(main, ["report", "kpis", "--config", str(cfg), "--from", "2026-04", "--to", "2026-03"])
    assert got.exit_code == 2 and "after --to" in got.output


def test_figures_of_invoices_pushed_to_the_stripe_simulator_and_a_credit_note(tmp_path):
    """End to end: the real planner bills 2026-10 and pushes to the Stripe simulator; the KPIs read
    back what Stripe holds, before tax, and a credit note (an amount with tax) takes its share off."""
    from hub import corrections
    from hub.engine import sync_once
    from tests.conftest import Env

    env = Env(tmp_path, devices=20)
    hub = env.hub()
    sync_once(hub)
    hub.close()
    invoices = {i["metadata"]["msp_hub_client_id"]: i for i in env.invoices()}
    assert len(invoices) >= 3

    def build():
        hub = env.hub()
        try:
            return kpis.build(hub, "2026-10", "2026-10")
        finally:
            hub.close()
    k = build()
    for client, inv in invoices.items():
        assert value(k, "revenue_client", "2026-10", client, "EUR") == inv["subtotal"]
    recurring = sum(line["amount"] for inv in invoices.values() for line in inv["lines"]["data"]
                    if line["metadata"]["msp_hub_line"].startswith(("tier:", "addon:", "minimum")))
    assert any(line["metadata"]["msp_hub_line"] == "minimum" for inv in invoices.values()
               for line in inv["lines"]["data"])          # the monthly minimum's top-up is recurring
    assert value(k, "mrr", "2026-10", currency="EUR") == recurring
    assert value(k, "revenue", "2026-10", currency="EUR") == sum(i["subtotal"] for i in invoices.values())
    assert value(k, "devices_managed", "2026-10") == sum(
        int(line["metadata"]["msp_hub_quantity"]) for inv in invoices.values() for line in inv["lines"]["data"]
        if line["metadata"]["msp_hub_line"].startswith("tier:"))

    cobalt = invoices["cobalt"]
    hub = env.hub()
    try:
        corrections.request_credit(hub, "invoice:cobalt:2026-10", amount=1200, reason="goodwill", by="test")
    finally:
        hub.close()
    hub = env.hub()
    sync_once(hub)
    hub.close()
    assert [n["amount"] for n in env.stripe.credit_notes.values()] == [1200]
    # 1200 with tax is 1200 × subtotal ÷ total before tax (20 % VAT: 1000).
    assert cobalt["total"] * 5 == cobalt["subtotal"] * 6
    assert value(build(), "revenue_client", "2026-10", "cobalt", "EUR") == cobalt["subtotal"] - 1000


def test_the_delivery_job_keeps_the_kpis_as_a_pdf_of_the_report(store):
    """What the delivery job writes for the MSP: the year to date as the HTML report's PDF."""
    import io

    import pypdf
    from hub.reports.delivery import PRODUCERS
    seed(store)
    hub = hub_on(store)
    pdf = PRODUCERS["kpis"](hub, "2026-03", None, "pdf", "fr")
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert pdf.startswith(b"%PDF") and "de 2026-01 à 2026-03" in text and "Chiffre d'affaires" in text
