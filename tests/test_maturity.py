"""The maturity self-assessment: the worked example, the answers file's mistakes, every signal from
data on hand-computed rows (on SQLite and PostgreSQL), the history, the PDF and the command."""

import io
import re
import json
from datetime import datetime, timezone
from fractions import Fraction

import pypdf
import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.connectors import Stream
from hub.errors import ConfigError
from hub.records import Action, Agreement, Alert, Client, ServiceTicket
from hub.reports import maturity
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub
from tests.conftest import mappings_for_tests

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
WORKED = {"processus": [5, 5, 4, 5, 4], "technologie": [3, 3, 4, 3, 3], "clients": [4, 4, 4, 4, 3],
          "revenus": [3, 2, 3, 2, 3]}          # 23, 16, 19 and 13 points


def answers_toml(areas=WORKED, extra=""):
    return "".join(f"{a} = {json.dumps(v)}\n" for a, v in areas.items()) + extra


def clock(moment=NOW):
    return lambda: moment


# --- scoring ----------------------------------------------------------------------------------------

def test_the_worked_example():
    s = maturity.score(maturity.Answers({a: tuple(v) for a, v in WORKED.items()}))
    assert s.points == {"processus": 23, "technologie": 16, "clients": 19, "revenus": 13}
    assert s.areas == {"processus": Fraction("4.6"), "technologie": Fraction("3.2"), "clients": Fraction("3.8"),
                       "revenus": Fraction("2.6")}
    assert s.overall == Fraction("3.55") and s.stage == "proactivite" and not s.close_to_next
    assert maturity.STAGE_NAMES["fr"][s.stage] == "Proactivité"
    assert [s.area_stage(a) for a in maturity.AREAS] == ["evolutivite", "proactivite", "proactivite", "stabilite"]


@pytest.mark.parametrize("points, stage, close", [
    (20, "reactivite", False),       # all 1: 1.0
    (39, "reactivite", True),        # 1.95: between two stages
    (40, "stabilite", False),
    (59, "stabilite", True),         # 2.95, MATURITY.md's example
    (58, "stabilite", False),        # 2.9
    (60, "proactivite", False),
    (80, "evolutivite", False),
    (99, "evolutivite", False),      # 4.95: no stage after the last
    (100, "evolutivite", False),     # 5.0
])
def test_stages_by_the_integer_part(points, stage, close):
    assert maturity.stage_of(Fraction(points, 20)) == (stage, close)


# --- the answers file -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, key, words", [
    (answers_toml(extra="revenu = [1, 1, 1, 1, 1]\n"), 5, "revenu", ["unknown key 'revenu'", "did you mean 'revenus'"]),
    (answers_toml({k: v for k, v in WORKED.items() if k != "clients"}), None, "clients",
     ["missing", "clients = [3, 3, 3, 3, 3]"]),
    (answers_toml({**WORKED, "technologie": [3, 3, 4, 3]}), 2, "technologie", ["has 4 answer(s)", "five"]),
    (answers_toml({**WORKED, "clients": [4, 4, 4, 4, 3, 5]}), 3, "clients", ["has 6 answer(s)"]),
    ('processus = [5, 5, "4", 5, 4]\n' + answers_toml({k: v for k, v in WORKED.items() if k != "processus"}), 1,
     "processus", ["answer 3 ('4') is not a whole number", "without quotes"]),
    (answers_toml({**WORKED, "revenus": [3, 2.5, 3, 2, 3]}), 4, "revenus", ["answer 2 (2.5) is not a whole number"]),
    (answers_toml({**WORKED, "revenus": [3, 2, 0, 2, 3]}), 4, "revenus", ["answer 3 is 0, outside 1 to 5"]),
    (answers_toml({**WORKED, "clients": [4, 4, 4, 4, 6]}), 3, "clients", ["answer 5 is 6, outside 1 to 5"]),
    (answers_toml({**WORKED, "clients": [True, 4, 4, 4, 4]}), 3, "clients", ["answer 1 (True) is not a whole number"]),
    ('processus = 4\n' + answers_toml({k: v for k, v in WORKED.items() if k != "processus"}), 1, "processus",
     ["must be a list of five whole numbers"]),
    (answers_toml(extra="answered_by = 3\n"), 5, "answered_by", ["must be a name in quotes"]),
])
def test_a_wrong_answers_file_names_file_line_key_and_fix(tmp_path, text, line, key, words):
    path = tmp_path / "answers.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        maturity.load_answers(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}, key '{key}': " if line else f"{path}, key '{key}': ")
    assert "(fix: " in message
    for w in words:
        assert w in message


def test_a_missing_or_broken_answers_file(tmp_path):
    with pytest.raises(ConfigError, match=r"answers\.toml: file not found \(fix: write the file"):
        maturity.load_answers(tmp_path / "answers.toml")
    (tmp_path / "answers.toml").write_text("processus = [5, 5\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        maturity.load_answers(tmp_path / "answers.toml")


def test_answered_by_is_read(tmp_path):
    path = tmp_path / "answers.toml"
    path.write_text(answers_toml(extra='answered_by = "Jeanne Martin"\n'))
    assert maturity.load_answers(path) == maturity.Answers({a: tuple(v) for a, v in WORKED.items()}, "Jeanne Martin")


# --- signals from data -----------------------------------------------------------------------------

class FakeConnector:
    """A configured connector that pulls nothing: only its streams' names and tables matter here."""

    action_kinds = frozenset()

    def __init__(self, name, streams):
        self.name, self._streams = name, [Stream(name, s, table, lambda cursor, started: iter(())) for s, table in streams]

    def streams(self):
        return self._streams

    def close(self):
        pass


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def invoice(store, client, period, lines, currency="EUR", status="sent"):
    key = f"invoice:{client}:{period}"
    payload = {"currency": currency, "period": period, "total": sum(l[3] for l in lines),
               "lines": [{"code": c, "quantity": str(q), "unit_amount": u, "amount": a} for c, q, u, a in lines]}
    store.record_action(Action(key, "invoice", "stripe", client, payload, period), "run-1")
    if status == "sent":
        store.mark_sent(key, f"in_{client}_{period}", "sent")


def ticket(store, n, uids, sent=True):
    key = f"ticket:{n}"
    store.record_action(Action(key, "ticket", "psa", "acme", {"uids": uids}), "run-1")
    if sent:
        store.mark_sent(key, str(n), "made")


def alert(uid, created):
    return Alert("rmm", uid, "1", "d1", "pc-1", "WINDOWS_WORKSTATION", "CONDITION", "cpu", "MAJOR", "HIGH", "cpu high",
                 at(created))


def agreement(n, client, status, start, end=None):
    return Agreement("psa", str(n), client, f"Managed {n}", "Managed", status, start, end)


def closed_ticket(n, opened, closed):
    return ServiceTicket("psa", str(n), "c1", f"ticket {n}", "Help Desk", "Closed" if closed else "New", "P3",
                         bool(closed), at(opened), at(closed) if closed else None)


@pytest.fixture(params=["sqlite", "postgres"])
def seeded(request, tmp_path):
    """A hub on a store holding hand-computed data (see each signal's test), on both backends."""
    database = str(tmp_path / "hub.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = Store(database)
    rmm = FakeConnector("rmm", [("devices", "devices"), ("alerts", "alerts")])
    psa = FakeConnector("psa", [("agreements", "agreements"), ("tickets", "service_tickets")])
    hub = make_hub(ConnectorPlugin(rmm, psa), store=store, clock=clock())
    # Invoices: in the last twelve ended months (2025-12 to 2026-11) acme 2026-09 and 2026-10, beta
    # 2026-08 (a late change of a tier line), gamma 2026-01 (a product only); acme 2025-06 is older.
    invoice(store, "acme", "2025-06", [("tier:gold:workstation", 10, 4500, 45000)])
    invoice(store, "acme", "2026-09", [("tier:gold:workstation", 10, 5000, 50000), ("addon:backup:server", 2, 2000, 4000),
                                       ("time:remote", 2, 9000, 18000)])
    invoice(store, "acme", "2026-10", [("tier:gold:workstation", 10, 5500, 55000), ("product:ssd", 1, 6000, 6000),
                                       ("minimum", 1, 3000, 3000)])     # the monthly minimum's top-up is recurring
    invoice(store, "beta", "2026-08", [("tier:silver:server", 1, 10000, 10000),
                                       ("delta:2026-07:tier:silver:server", 1, 10000, 10000)])
    invoice(store, "gamma", "2026-01", [("product:laptop", 1, 10000, 10000)])
    invoice(store, "delta", "2026-11", [("tier:gold:workstation", 1, 9999, 9999)], status="pending")   # never sent
    # Frozen scorecards: acme 2026-Q3 (invoiced then), beta 2026-Q2 (not invoiced then), gamma 2026-Q4 (current).
    for client, quarter in (("acme", "2026-Q3"), ("beta", "2026-Q2"), ("gamma", "2026-Q4")):
        store._insert("scorecards", {"client_id": client, "quarter": quarter, "frozen_at": NOW.isoformat(),
                                     "frozen_by": "me", "data": "{}"})
    # Alerts of the last 90 days (since 2026-09-08): a1, a2, a3; a4 is older.
    store.write_page("alerts", [alert("a1", "2026-11-01T00:00:00"), alert("a2", "2026-11-20T00:00:00"),
                                alert("a3", "2026-10-15T00:00:00"), alert("a4", "2026-08-01T00:00:00")],
                     "rmm", "alerts", None)
    ticket(store, 1, ["a1", "a4"])
    ticket(store, 2, ["a2"])
    ticket(store, 3, ["a3"], sent=False)
    # Stream passes: rmm.devices complete 6 h ago, rmm.alerts failed last, psa.agreements complete two
    # days ago, psa.tickets never read.
    store.record_pass("rmm", "devices", "r1", "2026-12-07T03:59:00+00:00", "complete", 10,
                      finished_at="2026-12-07T04:00:00+00:00")
    store.record_pass("rmm", "alerts", "r1", "2026-12-07T03:00:00+00:00", "complete", 4,
                      finished_at="2026-12-07T03:01:00+00:00")
    store.record_pass("rmm", "alerts", "r2", "2026-12-07T04:00:00+00:00", "failed", 0, error="HTTP 500",
                      finished_at="2026-12-07T04:01:00+00:00")
    store.record_pass("psa", "agreements", "r1", "2026-12-05T08:00:00+00:00", "complete", 5,
                      finished_at="2026-12-05T08:01:00+00:00")
    # Agreements (today 2026-12-07, a year ago 2025-12-07): c1 cancelled on 2026-05-31 (lost); c2 has
    # one expired and one open (kept); c3 started 2026-02-01; c4 ended 2025-06-30 (before the window).
    store.write_page("clients", [Client("psa", "c1", "Client One"), Client("psa", "c2", "Client Two")],
                     "psa", "companies", None)
    store.write_page("agreements", [agreement(1, "c1", "cancelled", "2024-01-01", "2026-05-31"),
                                    agreement(2, "c2", "expired", "2023-01-01", "2026-03-31"),
                                    agreement(3, "c2", "active", "2026-04-01"),
                                    agreement(4, "c3", "active", "2026-02-01"),
                                    agreement(5, "c4", "cancelled", "2022-01-01", "2025-06-30")],
                     "psa", "agreements", None)
    # Service tickets closed in the last 90 days: 4 h, 24 h and 2 h; one older, one open.
    store.write_page("service_tickets", [closed_ticket(1, "2026-11-01T08:00:00", "2026-11-01T12:00:00"),
                                         closed_ticket(2, "2026-11-10T00:00:00", "2026-11-11T00:00:00"),
                                         closed_ticket(3, "2026-12-01T09:00:00", "2026-12-01T11:00:00"),
                                         closed_ticket(4, "2026-07-01T09:00:00", "2026-08-01T11:00:00"),
                                         closed_ticket(5, "2026-12-06T09:00:00", None)],
                     "psa", "tickets", None)
    yield hub
    hub.close()


def test_signals_on_hand_computed_data(seeded):
    s = maturity.signals(seeded)
    assert set(s) == {"psa_rmm_daily", "alert_tickets", "connectors", "quarterly_reviews", "resolution_time",
                      "recurring_share", "churn", "price_review"}
    assert not any(x.no_data for x in s.values())

    q = s["quarterly_reviews"]        # invoiced: gamma in Q1, acme and beta in Q3; reviewed: acme in Q3
    assert (q.area, q.statement, q.value) == ("clients", 0, pytest.approx(1 / 3))
    assert q.details["2026-Q3"] == {"invoiced": 2, "reviewed": 1} and q.details["2026-Q1"] == {"invoiced": 1, "reviewed": 0}
    assert q.figure["en"] == "1 review(s) of 3 client-quarters (33%); at least one review in 1 of 4 quarters; 2026-Q3: 1 of 2"
    assert "2025-Q4 to 2026-Q3" in q.how["en"]

    a = s["alert_tickets"]            # a1 and a2 ticketed (sent), a3's ticket unsent, a4 too old
    assert a.value == pytest.approx(2 / 3)
    assert a.figure["en"] == "2 of 3 alert(s) turned into a ticket automatically (67%)"
    assert a.figure["fr"] == "2 alerte(s) sur 3 devenues un ticket automatiquement (67 %)"

    c = s["connectors"]
    assert c.value == 0.5 and c.details["not_healthy"] == ["psa.tickets", "rmm.alerts"]
    assert c.figure["en"] == ("2 of 4 streams read completely on their last read (connectors: psa, rmm); "
                              "failed or never read: psa.tickets, rmm.alerts")

    p = s["psa_rmm_daily"]
    assert p.value == 0.5
    assert p.figure["en"] == "1 of 2: RMM (rmm) read 6 h ago; PSA (psa) not read since 2026-12-05"

    r = s["recurring_share"]          # (50000 + 4000 + 55000 + 3000 + 20000) of (72000 + 64000 + 20000 + 10000)
    assert r.value == pytest.approx(132000 / 166000)
    assert r.details == {"EUR": {"recurring": 132000, "total": 166000}}
    assert r.figure["en"] == "80% recurring (1320.00 EUR of 1660.00 EUR)"

    ch = s["churn"]
    assert ch.value == 0.5 and ch.details == {"lost": ["Client One"], "in_force_at_start": 2}
    assert ch.figure["en"] == "1 client(s) lost in twelve months (50% of the 2 clients under contract a year ago): Client One"

    pr = s["price_review"]            # gold/workstation 45.00 -> 50.00 in 2026-09 (then 55.00); silver unchanged
    assert pr.value == 0.5
    assert pr.details["changed"] == {"tier:gold:workstation": ["45.00 EUR", "50.00 EUR", "2026-09"]}
    assert pr.figure["en"] == "1 of 2 prices changed: gold/workstation 45.00 EUR → 50.00 EUR (2026-09)"

    t = s["resolution_time"]          # 4, 24 and 2 hours
    assert t.details == {"tickets": 3, "mean_hours": 10.0, "median_hours": 4.0}
    assert t.figure["fr"] == "3 ticket(s) : résolution en 10 h en moyenne, 4 h en médiane"


def test_every_signal_says_no_data_on_an_empty_hub():
    hub = make_hub(clock=clock())
    s = maturity.signals(hub)
    empty = {k for k, v in s.items() if v.no_data}
    assert empty == {"alert_tickets", "connectors", "quarterly_reviews", "resolution_time", "recurring_share",
                     "churn", "price_review"}
    assert all(s[k].value is None and s[k].figure["en"].startswith("no data: ") for k in empty)
    assert all(s[k].figure["fr"].startswith("pas de données : ") for k in empty)
    # No RMM or PSA configured is itself what the data shows: 0 of 2, not "no data".
    assert s["psa_rmm_daily"].value == 0 and s["psa_rmm_daily"].figure["en"] == "0 of 2: RMM: no connector; PSA: no connector"
    hub.close()


# --- assessments over time -------------------------------------------------------------------------

def answers(areas):
    return maturity.Answers({a: tuple(v) for a, v in areas.items()})


def test_answers_are_kept_with_date_and_who_and_the_history_is_shown(seeded):
    later = {**WORKED, "revenus": [4, 4, 4, 4, 4]}
    first = maturity.assess(seeded, answers(WORKED), by="Jeanne")
    assert first.saved and first.answered_by == "Jeanne" and first.answered_at == NOW.isoformat()
    seeded.clock = clock(datetime(2027, 3, 8, 9, 0, tzinfo=timezone.utc))
    second = maturity.assess(seeded, answers(later), by="Paul")
    history = seeded.store.maturity_history()
    assert [(h["answered_at"][:10], h["answered_by"], h["overall"], h["stage"]) for h in history] == [
        ("2026-12-07", "Jeanne", "3.55", "proactivite"), ("2027-03-08", "Paul", "3.9", "proactivite")]
    data = json.loads(maturity.render_report(second, "json", "en"))
    assert [(h["answered_at"][:10], h["overall"], h["areas"]["revenus"]) for h in data["history"]] == [
        ("2026-12-07", 3.55, 2.6), ("2027-03-08", 3.9, 4.0)]
    html = maturity.render_report(second, "html", "en").decode()
    assert "<polyline" in html and "2026-12-07" in html and "2027-03-08" in html      # the path as a line chart
    assert "Previous assessment (2026-12-07)" in html                                  # beside this one's bars
    # Shown again without answers: the last recorded assessment, nothing recorded.
    again = maturity.assess(seeded, None)
    assert again.answers.areas == answers(later).areas and again.answered_by == "Paul" and len(seeded.store.maturity_history()) == 2


def test_the_same_answers_the_same_day_are_recorded_once_and_a_preview_not_at_all(seeded):
    maturity.assess(seeded, answers(WORKED))
    assert maturity.assess(seeded, answers(WORKED)).saved
    preview = maturity.assess(seeded, answers({**WORKED, "clients": [1, 1, 1, 1, 1]}), save=False)
    assert not preview.saved and len(seeded.store.maturity_history()) == 1
    assert "This assessment is not recorded." in maturity.render_report(preview, "html", "en").decode()


def test_no_assessment_recorded_yet_says_how_to_answer():
    hub = make_hub(clock=clock())
    with pytest.raises(ConfigError, match=r"no maturity self-assessment is recorded yet \(fix: answer it once: "
                                          r"msp-hub report maturity --answers answers.toml"):
        maturity.assess(hub, None)
    hub.close()


# --- rendering ---------------------------------------------------------------------------------------

def test_the_pdf_in_french_holds_the_scores_the_advice_and_the_signals(seeded):
    assessment = maturity.assess(seeded, answers(WORKED), by="Jeanne")
    pdf = maturity.render_report(assessment, "pdf", "fr")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert 2 <= len(reader.pages) <= 6
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    for expected in ("Auto-évaluation de maturité", "Score global : 3,55 / 5", "Proactivité", "Évolutivité",
                     "Processus et opérations — 4,6 / 5", "Revenus et croissance — 2,6 / 5",
                     "Suivez la perte de clients : quand et pourquoi ils partent.",   # revenus at Stabilité
                     "Investissez dans des outils", "Auditez les équipes", "Ce que montrent les données",
                     "2 alerte(s) sur 3 devenues un ticket automatiquement (67 %)", "80 % récurrent",
                     "Réponses du 2026-12-07, par Jeanne"):
        assert expected in text, expected


def test_the_html_is_self_contained_with_the_bar_chart_and_every_statement(seeded):
    html = maturity.render_report(maturity.assess(seeded, answers(WORKED)), "html", "en").decode()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<rect" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)                 # nothing fetched from outside
    for area in maturity.AREAS:
        for _, en in maturity.STATEMENTS[area]:
            assert en.replace("'", "&#x27;") in html
    assert "Overall score: 3.55 / 5" in html and "Stage: <strong>Proactive</strong>" in html
    assert "no data" not in html          # every signal has data here


# --- the command -------------------------------------------------------------------------------------

@pytest.fixture
def cli_config(tmp_path):
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'database = "hub.db"\nmappings = "{mappings_for_tests(tmp_path).as_posix()}"\n'
                   '[reports]\nmsp_name = "Acme IT"\nlanguage = "fr"\n')
    (tmp_path / "answers.toml").write_text(answers_toml(extra='answered_by = "Jeanne"\n'))
    return cfg


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_command_json_html_and_pdf(cli_config, tmp_path):
    cfg, answers_file = str(cli_config), str(tmp_path / "answers.toml")
    none_yet = run("report", "maturity", "--config", cfg)
    assert none_yet.exit_code == 2 and "no maturity self-assessment is recorded yet" in none_yet.output
    out = run("report", "maturity", "--config", cfg, "--answers", answers_file, "--format", "json", "--lang", "en")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert (data["overall"], data["stage"], data["stage_name"], data["answered_by"], data["saved"]) == (
        3.55, "proactivite", "Proactive", "Jeanne", True)
    assert [data["areas"][a]["score"] for a in maturity.AREAS] == [4.6, 3.2, 3.8, 2.6]
    refused = run("report", "maturity", "--config", cfg, "--format", "pdf")
    assert refused.exit_code == 2 and "--out" in refused.output
    pdf = tmp_path / "maturite.pdf"
    made = run("report", "maturity", "--config", cfg, "--format", "pdf", "--out", str(pdf))
    assert made.exit_code == 0, made.output
    assert "maturity 3.55 / 5, Proactivité" in made.output            # [reports] language = "fr"
    assert pdf.read_bytes().startswith(b"%PDF") and "Acme IT" in pypdf.PdfReader(pdf).pages[0].extract_text()
    html = run("report", "maturity", "--config", cfg, "--no-save", "--answers", answers_file)
    assert html.exit_code == 0 and "Auto-évaluation de maturité" in html.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("processus = [1]\n")
    wrong = run("report", "maturity", "--config", cfg, "--answers", str(bad))
    assert wrong.exit_code == 2 and f"{bad}, line 1, key 'processus': has 1 answer(s)" in wrong.output
