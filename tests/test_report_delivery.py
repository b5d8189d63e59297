"""Report delivery against a real SMTP server (aiosmtpd on 127.0.0.1): the documents written into
the folder, each client's PDF e-mailed once, a failed e-mail retried, a client without an address
reported, files never overwritten; the settings' mistakes; the daemon's report job."""

import email
import email.policy
import io
import json
import socket
from datetime import datetime, timezone

import pypdf
import pytest
from aiosmtpd.controller import Controller

from hub.config import HubConfig, config_from_dict
from hub.daemon import parse_schedule, run_report_job
from hub.errors import ConfigError
from hub.records import Action, Client
from hub.reports import delivery, maturity, render
from hub.reports.delivery import PRODUCERS, Producer, deliver, delivery_settings
from hub.store import Store
from hub.testing import make_hub

NOW = datetime(2026, 10, 5, 7, 0, tzinfo=timezone.utc)      # the last ended quarter is 2026-Q3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping what it accepts; ``refuse`` answers 451 to that many messages first."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refuse -= 1
            return "451 try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


def small_pdf(hub, period, client_id, fmt, lang):
    """The test's scorecard: a real one-page PDF made by render.to_pdf, naming the client and period."""
    title = {"fr": "Revue trimestrielle", "en": "Quarterly review"}[lang]
    return render.to_pdf(render.page(title, f"<p>{client_id} {period}</p>", lang=lang))


@pytest.fixture
def test_producer(monkeypatch):
    made = []

    def make(hub, period, client_id, fmt, lang):
        made.append((client_id, period, fmt, lang))
        return small_pdf(hub, period, client_id, fmt, lang)
    monkeypatch.setitem(PRODUCERS, "scorecard", Producer(make, per_client=True, period="quarter"))
    return made


def config(tmp_path, port=None, **delivery_table):
    table = {"folder": "out", "reports": ["scorecard", "maturity"], "email": port is not None,
             "to": {"psa-2": "ceo@globex.example"}, **delivery_table}
    notify = {"email": {"smtp_host": "127.0.0.1", "smtp_port": port, "starttls": False, "from": "reports@msp.example",
                        "to": ["ops@msp.example"]}} if port is not None else {}
    return HubConfig(path=tmp_path / "msp-hub.toml", database=":memory:", billing={"client_master": "psa"},
                     reports={"msp_name": "Acme IT", "language": "en", "delivery": table}, notify=notify)


def invoiced(store, client, period, sent=True):
    key = f"invoice:{client}:{period}"
    store.record_action(Action(key, "invoice", "stripe", client, {"lines": []}, period), "run-1")
    if sent:
        store.mark_sent(key, "in_1", "sent")


@pytest.fixture
def world(tmp_path, smtp, test_producer):
    """A hub whose PSA has three clients: Acme (its billing e-mail, French), Globex (no e-mail in the
    PSA, an address in [reports.delivery.to]) and Initech (no address anywhere)."""
    store = Store(":memory:")
    store.write_page("clients", [
        Client("psa", "1", "Acme", email="billing@acme.example", email_from="invoiceToEmailAddress"),
        Client("psa", "2", "Globex"), Client("psa", "3", "Initech"), Client("psa", "4", "Umbrella")],
        "psa", "companies", None)
    # Invoiced in 2026-Q3: the three; in 2026-Q2: Acme and Globex; Umbrella never (no report for it).
    for client, period in (("psa-1", "2026-08"), ("psa-2", "2026-09"), ("psa-3", "2026-07"), ("psa-1", "2026-05"),
                           ("psa-2", "2026-04")):
        invoiced(store, client, period)
    invoiced(store, "psa-4", "2026-08", sent=False)
    hub = make_hub(config=config(tmp_path, smtp.port), store=store, clock=lambda: NOW)
    hub.smtp, hub.made, hub.folder = smtp, test_producer, tmp_path / "out"
    yield hub
    hub.close()


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return " ".join(p.extract_text() for p in reader.pages)


def test_each_client_s_pdf_is_written_and_emailed_once(world):
    result = deliver(world, "scorecard")
    assert result.period == "2026-Q3"
    names = sorted(p.name for p in (world.folder / "2026-Q3").iterdir())
    assert names == ["scorecard-psa-1-2026-Q3.pdf", "scorecard-psa-2-2026-Q3.pdf", "scorecard-psa-3-2026-Q3.pdf"]
    assert [e["client_id"] for e in result.written] == ["psa-1", "psa-2", "psa-3"]
    assert sorted((m["To"], m["Subject"]) for m in world.smtp.messages) == [
        ("billing@acme.example", "Acme IT — your report for 2026-Q3"),
        ("ceo@globex.example", "Acme IT — your report for 2026-Q3")]
    for message in world.smtp.messages:
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        data = attachment.get_content()
        assert data == (world.folder / "2026-Q3" / attachment.get_filename()).read_bytes()
        assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == 1 and "2026-Q3" in pdf_text(data)
        assert "Please find attached the 2026-Q3 report for" in message.get_body(("plain",)).get_content()
    assert [e["client_id"] for e in result.sent] == ["psa-1", "psa-2"]
    (missing,) = result.no_address
    assert missing["client_id"] == "psa-3" and 'psa-3 = "address" to [reports.delivery.to]' in missing["why"]
    assert any(line.startswith("no address: psa-3 (Initech)") for line in result.lines())
    assert not result.ok

    again = deliver(world, "scorecard")
    assert (again.written, again.sent, len(again.already)) == ([], [], 3)
    assert len(world.smtp.messages) == 2 and len(world.made) == 3       # nothing made or sent twice
    assert [e["client_id"] for e in again.no_address] == ["psa-3"]       # still reported, not skipped

    # Once Initech has an address, the next run e-mails its document (the one already written).
    world.config.reports["delivery"]["to"]["psa-3"] = "it@initech.example"
    third = deliver(world, "scorecard")
    assert [e["to"] for e in third.sent] == ["it@initech.example"] and third.ok and len(world.made) == 3
    assert [r["status"] for r in world.store.deliveries("scorecard")] == ["sent", "sent", "sent"]


def test_the_delivery_language_names_the_mail_and_the_document(world):
    world.config.reports["delivery"]["language"] = "fr"
    deliver(world, "scorecard")
    subjects = {m["To"]: m["Subject"] for m in world.smtp.messages}
    assert subjects["billing@acme.example"] == "Acme IT — votre rapport 2026-Q3"
    assert ("psa-1", "2026-Q3", "pdf", "fr") in world.made


def test_an_smtp_failure_leaves_the_document_unsent_and_the_next_run_sends_it(world):
    world.smtp.refuse = 2
    first = deliver(world, "scorecard")
    assert first.sent == [] and sorted(e["to"] for e in first.failed) == ["billing@acme.example", "ceo@globex.example"]
    assert "answered 451: try again later" in first.failed[0]["error"]
    rows = {r["client_id"]: r for r in world.store.deliveries("scorecard")}
    assert (rows["psa-1"]["status"], rows["psa-1"]["attempts"]) == ("failed", 1)
    assert any(line.startswith("e-mail failed (retried next run): psa-1") for line in first.lines())
    second = deliver(world, "scorecard")
    assert sorted(e["to"] for e in second.sent) == ["billing@acme.example", "ceo@globex.example"]
    assert len(world.smtp.messages) == 2 and len(world.made) == 3
    assert deliver(world, "scorecard").sent == [] and len(world.smtp.messages) == 2


def test_a_server_that_does_not_answer_fails_the_same_way(tmp_path, test_producer):
    store = Store(":memory:")
    store.write_page("clients", [Client("psa", "1", "Acme", email="billing@acme.example")], "psa", "companies", None)
    invoiced(store, "psa-1", "2026-09")
    hub = make_hub(config=config(tmp_path, free_port()), store=store, clock=lambda: NOW)
    result = deliver(hub, "scorecard")
    assert [e["client_id"] for e in result.failed] == ["psa-1"] and "ConnectionRefusedError" in result.failed[0]["error"]
    assert (tmp_path / "out" / "2026-Q3" / "scorecard-psa-1-2026-Q3.pdf").exists()
    hub.close()


def test_a_file_in_the_way_is_never_overwritten(world):
    target = world.folder / "2026-Q3" / "scorecard-psa-1-2026-Q3.pdf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the MSP's own file")
    result = deliver(world, "scorecard")
    (error,) = result.errors
    assert error["client_id"] == "psa-1" and "exists but no delivery recorded it: it is not overwritten" in error["error"]
    assert target.read_bytes() == b"the MSP's own file"
    assert [m["To"] for m in world.smtp.messages] == ["ceo@globex.example"]
    assert world.store.get_delivery("scorecard", "psa-1", "2026-Q3") is None


def test_a_file_changed_after_it_was_written_is_not_emailed(world):
    deliver(world, "scorecard")
    path = world.folder / "2026-Q3" / "scorecard-psa-3-2026-Q3.pdf"
    path.write_bytes(path.read_bytes() + b"\n% edited")
    world.config.reports["delivery"]["to"]["psa-3"] = "it@initech.example"
    result = deliver(world, "scorecard")
    assert result.sent == [] and "changed since it was written; not e-mailed" in result.errors[0]["error"]


def test_an_email_whose_run_stopped_mid_send_is_never_sent_twice(world):
    world.config.reports["delivery"]["email"] = False
    first = deliver(world, "scorecard")                    # written, not to be e-mailed
    assert len(first.written) == 3 and world.smtp.messages == []
    assert {r["status"] for r in world.store.deliveries()} == {"kept"}
    world.config.reports["delivery"]["email"] = True
    assert deliver(world, "scorecard").sent == []          # a document kept unmailed stays so
    # A claim committed by a run that then died: the outcome is unknown, so it is reported, not re-sent.
    world.store.record_delivery("scorecard", "psa-1", "2026-Q2", file=str(world.folder / "x.pdf"), sha256="0",
                                language="en", status="produced")
    assert world.store.claim_delivery("scorecard", "psa-1", "2026-Q2", "billing@acme.example")
    result = deliver(world, "scorecard", "2026-Q2")
    (unknown,) = result.unknown
    assert unknown["to"] == "billing@acme.example" and "not sent again automatically" in unknown["why"]
    assert [m["To"] for m in world.smtp.messages] == ["ceo@globex.example"]   # Globex's 2026-Q2 only


def test_the_maturity_report_is_written_for_the_msp_and_not_emailed(world):
    missing = deliver(world, "maturity")
    assert missing.period == "2026-Q3" and "not made: no maturity self-assessment is recorded yet" in missing.errors[0]["error"]
    maturity.assess(world, maturity.Answers({a: (4, 4, 3, 3, 4) for a in maturity.AREAS}), by="Jeanne")
    result = deliver(world, "maturity")
    path = world.folder / "2026-Q3" / "maturity-2026-Q3.pdf"
    assert [e["file"] for e in result.written] == [str(path)] and result.ok
    text = pdf_text(path.read_bytes())
    assert "Maturity self-assessment" in text and "Acme IT" in text and "3.6 / 5" in text
    assert world.smtp.messages == []


def test_a_missing_report_module_is_reported(world, monkeypatch):
    monkeypatch.setitem(PRODUCERS, "maturity", Producer(
        lambda hub, period, client, fmt, lang: delivery._module("hub.reports.no_such_report"), False, "quarter"))
    result = deliver(world, "maturity")
    assert "hub.reports.no_such_report cannot be imported" in result.errors[0]["error"]


def test_periods_and_reports_are_checked(world):
    with pytest.raises(ValueError, match=r"made per quarter: '2026-09' is not of the form YYYY-QN"):
        deliver(world, "scorecard", "2026-09")
    with pytest.raises(ConfigError, match=r"the kpis report is not among the reports delivered"):
        deliver(world, "kpis")
    assert delivery.last_ended("month", datetime(2026, 1, 4).date()) == "2025-12"
    assert delivery.last_ended("quarter", datetime(2026, 1, 4).date()) == "2025-Q4"
    assert delivery.last_ended("quarter", datetime(2026, 12, 31).date()) == "2026-Q3"


@pytest.mark.parametrize("table, key, words", [
    ({"email": True}, "reports.delivery.email", "needs the MSP's SMTP server"),
    ({"to": {"acme": "not-an-address"}}, "reports.delivery.to.acme", "is not an e-mail address"),
    ({"subject": {"fr": "Rapport {quarter}"}}, "reports.delivery.subject.fr", "unknown placeholder {quarter}"),
    ({"reports": ["scorecards"]}, "reports.delivery.reports[0]", "must be 'scorecard', 'kpis' or 'maturity'"),
    ({"folderr": "out"}, "reports.delivery.folderr", "did you mean 'folder'"),
    ({"email": "yes"}, "reports.delivery.email", "must be true or false"),
])
def test_delivery_settings_mistakes_name_the_key_and_the_fix(tmp_path, table, key, words):
    cfg = HubConfig(path=tmp_path / "msp-hub.toml", reports={"delivery": table})
    with pytest.raises(ConfigError) as caught:
        delivery_settings(cfg)
    assert f"key '{key}'" in str(caught.value) and words in str(caught.value) and "(fix: " in str(caught.value)


def test_delivery_rows_on_both_backends(tmp_path, request):
    for database in (str(tmp_path / "hub.db"), request.getfixturevalue("pg_url")):
        store = Store(database)
        store.record_delivery("scorecard", "acme", "2026-Q3", file="f.pdf", sha256="ab", language="fr",
                              status="produced")
        store.record_delivery("scorecard", "acme", "2026-Q3", file="other.pdf", sha256="cd", language="en",
                              status="produced")          # the first record stays
        other = Store(database)
        assert store.claim_delivery("scorecard", "acme", "2026-Q3", "a@acme.example")
        assert not other.claim_delivery("scorecard", "acme", "2026-Q3", "a@acme.example")   # one sender
        store.finish_delivery("scorecard", "acme", "2026-Q3", error="SMTP down")
        assert other.claim_delivery("scorecard", "acme", "2026-Q3", "a@acme.example")      # failed: retried
        other.finish_delivery("scorecard", "acme", "2026-Q3")
        row = store.get_delivery("scorecard", "acme", "2026-Q3")
        assert (row["file"], row["status"], row["attempts"], row["last_error"], row["recipient"]) == (
            "f.pdf", "sent", 2, None, "a@acme.example") and row["sent_at"]
        assert not store.claim_delivery("scorecard", "acme", "2026-Q3", "a@acme.example")
        saved = store.save_maturity_answers({"processus": [1, 2, 3, 4, 5]}, at="2026-12-01T00:00:00+00:00", by="me",
                                            overall="3", stage="proactivite")
        assert store.maturity_history() == [saved]
        store.close()
        other.close()


# --- the daemon's report job -------------------------------------------------------------------------

def schedule_config(tmp_path, jobs, **delivery_table):
    return config_from_dict({"schedule": {"jobs": jobs}, "reports": {"delivery": {"folder": "out", **delivery_table}}},
                            path=tmp_path / "msp-hub.toml")


def test_a_report_job_is_read_from_the_schedule(tmp_path):
    cfg = schedule_config(tmp_path, [{"name": "scorecards", "report": "scorecard", "cron": "0 7 2 1,4,7,10 *"},
                                     {"name": "sync", "every": "15m"}], reports=["scorecard", "kpis"])
    jobs = parse_schedule(cfg)
    assert [(j.name, j.report, j.cron, j.scope) for j in jobs] == [
        ("scorecards", "scorecard", "0 7 2 1,4,7,10 *", {}), ("sync", None, None, {})]


@pytest.mark.parametrize("job, delivery_table, key, words", [
    ({"report": "kpis", "cron": "0 7 1 * *"}, {}, "schedule.jobs[0].report", "not among [reports.delivery] reports"),
    ({"report": "invoices", "cron": "0 7 1 * *"}, {}, "schedule.jobs[0].report", '"scorecard", "kpis" or "maturity"'),
    ({"report": "scorecard", "cron": "0 7 1 * *", "streams": ["devices"]}, {}, "schedule.jobs[0].streams",
     "a report job runs no sync"),
    ({"report": "scorecard", "cron": "0 7 1 * *"}, {"email": True}, "reports.delivery.email", "SMTP server"),
])
def test_report_job_mistakes_name_the_key(tmp_path, job, delivery_table, key, words):
    with pytest.raises(ConfigError) as caught:
        parse_schedule(schedule_config(tmp_path, [{"name": "r", **job}], **delivery_table))
    assert caught.value.key == key and words in str(caught.value) and caught.value.fix


class OneHubService:
    """What ``run_report_job`` needs of a hub.service.Service: the config and a hub per firing."""

    def __init__(self, hub):
        self.hub, self.config, self.opened = hub, hub.config, 0

    def open_hub(self):
        self.opened += 1
        return self.hub


def test_the_daemon_s_report_job_delivers_once(world, monkeypatch):
    monkeypatch.setattr(world, "close", lambda: None)      # one hub for both firings
    service = OneHubService(world)
    first = run_report_job(service, "scorecards", "scorecard")
    assert len(first.sent) == 2 and len(world.smtp.messages) == 2
    second = run_report_job(service, "scorecards", "scorecard")
    assert second.sent == [] and len(world.smtp.messages) == 2 and service.opened == 2
    world.config.reports["delivery"]["reports"] = ["maturity"]
    assert run_report_job(service, "scorecards", "scorecard") is None       # logged, never raised


def test_the_deliver_command(tmp_path):
    from click.testing import CliRunner

    from hub.cli import main
    from tests.conftest import mappings_for_tests
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'database = "hub.db"\nmappings = "{mappings_for_tests(tmp_path).as_posix()}"\n'
                   '[reports]\nmsp_name = "Acme IT"\n[reports.delivery]\nfolder = "out"\nreports = ["maturity"]\n')
    (tmp_path / "answers.toml").write_text("".join(f"{a} = [3, 3, 3, 3, 3]\n" for a in maturity.AREAS))
    run = CliRunner().invoke
    assert run(main, ["report", "maturity", "--config", str(cfg), "--answers", str(tmp_path / "answers.toml"),
                      "--format", "json"]).exit_code == 0
    first = run(main, ["report", "deliver", "maturity", "--config", str(cfg), "--period", "2026-Q3"])
    assert first.exit_code == 0, first.output
    assert first.stdout == "maturity 2026-Q3: 1 written, 0 already written, 0 e-mailed\n"
    assert "Maturity self-assessment" in pdf_text((tmp_path / "out" / "2026-Q3" / "maturity-2026-Q3.pdf").read_bytes())
    again = run(main, ["report", "deliver", "maturity", "--config", str(cfg), "--period", "2026-Q3", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["written"] == [] and len(json.loads(again.stdout)["already"]) == 1
    wrong = run(main, ["report", "deliver", "maturity", "--config", str(cfg), "--period", "2026-09"])
    assert wrong.exit_code == 2 and "YYYY-QN (e.g. 2026-Q3)" in wrong.output
    (tmp_path / "out" / "2026-Q2").mkdir()
    (tmp_path / "out" / "2026-Q2" / "maturity-2026-Q2.pdf").write_bytes(b"mine")
    blocked = run(main, ["report", "deliver", "maturity", "--config", str(cfg), "--period", "2026-Q2"])
    assert blocked.exit_code == 1 and "exists but no delivery recorded it" in blocked.stdout


def test_only_the_clients_invoiced_in_the_period_or_those_named(world):
    assert [e["client_id"] for e in deliver(world, "scorecard", "2026-Q2").written] == ["psa-1", "psa-2"]
    world.config.reports["delivery"]["clients"] = ["psa-4"]            # never invoiced, named
    named = deliver(world, "scorecard", "2026-Q4")
    assert [e["client_id"] for e in named.written] == ["psa-4"] and named.no_address[0]["name"] == "Umbrella"
    world.config.reports["delivery"]["clients"] = ["psa-9"]
    with pytest.raises(ConfigError, match=r"key 'reports.delivery.clients': no hub client has the id 'psa-9' "
                                          r"\(fix: use the ids msp-hub clients lists\)"):
        deliver(world, "scorecard", "2026-Q4")


def test_the_scheduler_runs_a_report_job_as_a_delivery(world, tmp_path):
    from hub.daemon import Job, build_scheduler
    jobs = [Job("scorecards", {}, cron="0 7 2 1,4,7,10 *", report="scorecard")]
    scheduler = build_scheduler(OneHubService(world), jobs, catch_up=False)
    job = scheduler.get_job("scorecards")
    assert job.func is run_report_job and job.args[1:] == ("scorecards", "scorecard")
    assert str(job.trigger).startswith("cron[") and "month='1,4,7,10'" in str(job.trigger)


def test_no_scorecard_is_made_to_be_emailed_from_a_stream_that_failed(tmp_path, smtp, monkeypatch):
    """As for an invoice (hub.completeness): the streams a client's document reads must have a complete
    pass that ended after the period and no failure since; else nothing is made or e-mailed, and a
    later run makes it once they are read again."""
    from hub.testing import ConnectorPlugin
    from tests.test_maturity import FakeConnector
    made = []
    monkeypatch.setitem(PRODUCERS, "scorecard", Producer(
        lambda *a: made.append(a[2]) or small_pdf(*a), per_client=True, period="quarter",
        reads=frozenset({"clients", "service_tickets"})))
    store = Store(":memory:")
    store.write_page("clients", [Client("psa", "1", "Acme", email="billing@acme.example")], "psa", "companies", None)
    invoiced(store, "psa-1", "2026-08")
    psa = FakeConnector("psa", [("companies", "clients"), ("tickets", "service_tickets"), ("time", "time_entries")])
    hub = make_hub(ConnectorPlugin(psa), config=config(tmp_path, smtp.port), store=store, clock=lambda: NOW)
    try:
        for stream in ("companies", "tickets", "time"):
            store.record_pass("psa", stream, "r1", "2026-10-02T00:00:00+00:00", "complete", 1,
                              finished_at="2026-10-02T00:01:00+00:00")
        store.record_pass("psa", "tickets", "r2", "2026-10-03T00:00:00+00:00", "failed", 0, error="HTTP 500",
                          finished_at="2026-10-03T00:01:00+00:00")
        store.record_pass("psa", "time", "r2", "2026-10-03T00:00:00+00:00", "failed", 0, error="HTTP 500",
                          finished_at="2026-10-03T00:01:00+00:00")    # a stream the scorecard does not read
        held = deliver(hub, "scorecard")
        assert [len(held.held), held.written, held.sent, made, smtp.messages] == [1, [], [], [], []]
        assert "stream psa.tickets failed at 2026-10-03T00:01:00 (run r2): HTTP 500" in held.held[0]
        assert not held.ok and any(line.startswith("held") for line in held.lines())
        assert not (tmp_path / "out" / "2026-Q3").exists()
        store.record_pass("psa", "tickets", "r3", "2026-10-04T00:00:00+00:00", "complete", 1,
                          finished_at="2026-10-04T00:01:00+00:00")
        done = deliver(hub, "scorecard")
        assert (done.held, made, [m["To"] for m in smtp.messages]) == ([], ["psa-1"], ["billing@acme.example"])
    finally:
        hub.close()
