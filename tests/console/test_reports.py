"""The reports in the console, in a real browser against the simulators: a client's scorecard
(shown in its frame with the rows not measured said so, its PDF downloaded and read, frozen with
the signed-in name, a refreeze refused unless confirmed), the KPI dashboard over a month range with
its CSV and JSON, the maturity questionnaire (an incomplete form refused naming what is missing,
the worked example recorded as 3.55, Proactive, with the history), the refusals without the CSRF
token, and the French questionnaire."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from playwright.sync_api import expect

from tests.console.conftest import ENV, NAME, TOKEN, csrf, post

# The worked example: 23, 16, 19 and 13 points -> 4.6, 3.2, 3.8, 2.6 -> 3.55, Proactivité.
WORKED = {"processus": [5, 5, 5, 4, 4], "technologie": [4, 3, 3, 3, 3], "clients": [4, 4, 4, 4, 3],
          "revenus": [3, 3, 3, 2, 2]}


def this_quarter() -> str:
    from hub.periods import quarter_of
    return quarter_of(datetime.now(timezone.utc), "Europe/Paris")   # the world's time zone


def pdf_text(path: str | Path) -> str:
    from pypdf import PdfReader
    return "\n".join(p.extract_text() for p in PdfReader(str(path)).pages)


def test_a_clients_scorecard_shows_in_its_frame_downloads_as_pdf_and_freezes_once(signed_in, world):
    page, quarter = signed_in, this_quarter()
    page.get_by_role("link", name="Reports").first.click()
    row = page.locator('#scorecards tr[data-client="acme"]')
    expect(row.locator(".state")).to_have_text("computed from the store, not frozen")
    row.get_by_role("link", name="Acme Dental").click()
    expect(page).to_have_url(re.compile(r"/console/reports/scorecards/acme$"))
    expect(page.locator("h1")).to_contain_text(f"Acme Dental · {quarter}")
    expect(page.locator("#scorecard-state")).to_contain_text("computed from the store, not frozen")
    expect(page.locator("#overall")).to_have_text(re.compile(r"^\d+(\.\d)? %$"))
    # The report's own page in the frame: the report streams are off, so their rows say "not measured".
    frame = page.frame_locator("#scorecard-frame")
    expect(frame.locator("h1")).to_contain_text("Acme Dental")
    expect(frame.locator("tr", has_text="Antivirus").first).to_contain_text("not measured")
    updates = frame.locator("tr", has_text="Windows updates").first      # with its definition: the configured method
    expect(updates).to_contain_text("not measured")
    expect(updates).to_contain_text("Operating system patches installed in the quarter")
    expect(frame.locator("tr", has_text="Managed devices").first).to_contain_text("%")

    with page.expect_download() as download:
        page.locator("#scorecard-pdf").click()
    assert download.value.suggested_filename == f"scorecard-acme-{quarter}.pdf"
    saved = download.value.path()
    assert Path(saved).read_bytes().startswith(b"%PDF")
    assert "Acme Dental" in pdf_text(saved)

    # Freeze: recorded with the signed-in name, listed as frozen, read back by every render.
    page.get_by_role("button", name="Freeze this scorecard").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Frozen: the scorecard of acme for {quarter}, by {NAME}.")
    expect(page.locator("#scorecard-state")).to_contain_text(f"by {NAME}")
    expect(page.locator(f'#frozen tr[data-quarter="{quarter}"] .by')).to_have_text(NAME)
    expect(frame.locator("body")).to_contain_text(f"by {NAME}")
    first = world.read(lambda s: s.frozen_scorecard("acme", quarter))
    assert first["frozen_by"] == NAME and first["data"]["frozen"]["by"] == NAME

    # Freezing again is refused unless the replacement is confirmed, as the CLI's --refreeze.
    page.get_by_role("button", name="Freeze this scorecard").click()
    expect(page.get_by_role("status").first).to_contain_text("already frozen")
    expect(page.get_by_role("status").first).to_contain_text("nothing was frozen")
    assert world.read(lambda s: s.frozen_scorecard("acme", quarter))["frozen_at"] == first["frozen_at"]
    page.get_by_label("Replace the frozen scorecard with the figures computed now").check()
    page.get_by_role("button", name="Freeze this scorecard").click()
    expect(page.get_by_role("status").first).to_contain_text("Frozen:")
    assert world.read(lambda s: s.frozen_scorecard("acme", quarter))["frozen_at"] != first["frozen_at"]

    page.get_by_role("link", name="Every client's scorecards").click()
    expect(page.locator('#scorecards tr[data-client="acme"] .state')).to_contain_text(f"frozen on")
    expect(page.locator('#scorecards tr[data-client="acme"] .frozen')).to_contain_text(quarter)
    expect(page.locator('#scorecards tr[data-client="birchwood"] .state')).to_have_text(
        "computed from the store, not frozen")


def test_an_unknown_client_or_quarter_is_named_with_its_fix(signed_in):
    page = signed_in
    response = page.goto("/console/reports/scorecards/nobody")
    assert response.status == 404
    expect(page.locator("#report-error")).to_contain_text("unknown client 'nobody'")
    response = page.goto("/console/reports/scorecards/acme?quarter=2026-Q9")
    assert response.status == 400
    expect(page.locator("#report-error")).to_contain_text("is not of the form YYYY-Qn")
    assert page.request.get("/console/reports/scorecards/acme/2026-Q9/pdf").status == 400
    # A report's own page runs nothing, fetches nothing, and only the console's pages may frame it.
    quarter = this_quarter()
    shown = page.request.get(f"/console/reports/scorecards/acme/{quarter}/html")
    assert shown.status == 200 and shown.headers["x-frame-options"] == "SAMEORIGIN"
    assert shown.headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'self'" in shown.headers["content-security-policy"]
    saved = page.request.get(f"/console/reports/scorecards/acme/{quarter}/html?download=1")
    assert saved.headers["content-disposition"] == f'attachment; filename="scorecard-acme-{quarter}.html"'
    assert page.request.get(f"/console/reports/scorecards/acme/{quarter}/svg").status == 404


def test_the_kpi_dashboard_shows_a_month_range_with_its_csv_and_json(signed_in, world):
    page = signed_in
    page.goto("/console/reports")
    page.get_by_role("link", name="KPIs").click()
    # The last three ended months by default.
    expect(page.get_by_label("To")).to_have_value(world.period)
    page.get_by_label("From").fill("2026-10")
    page.get_by_label("To").fill(world.period)
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"from=2026-10&to={world.period}"))
    from hub.reports.kpis import months_between
    months = len(months_between("2026-10", world.period))
    expect(page.locator("#kpi-summary")).to_contain_text(f"over {months} month(s)")
    frame = page.frame_locator("#kpi-frame")
    expect(frame.locator("h1")).to_have_text("Revenue KPIs")
    expect(frame.locator("svg").first).to_be_visible()                     # its charts
    expect(frame.locator("table").first).to_be_visible()                   # and tables

    with page.expect_download() as download:
        page.locator("#kpi-csv").click()
    assert download.value.suggested_filename == f"kpis-2026-10-{world.period}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows and {r["period"] for r in rows} >= {world.period}
    assert tuple(rows[0]) == ("metric", "period", "subject_id", "subject", "currency", "value", "unit")
    with page.expect_download() as download:
        page.locator("#kpi-json").click()
    data = json.loads(Path(download.value.path()).read_text())
    assert (data["from"], data["to"]) == ("2026-10", world.period) and len(data["rows"]) == len(rows)

    # A range backwards is refused with the reason.
    response = page.goto(f"/console/reports/kpis?from={world.period}&to=2026-01")
    assert response.status == 400
    expect(page.locator("#report-error")).to_contain_text("is after")
    expect(page.locator("#kpi-frame")).to_have_count(0)


def answer(page, answers: dict[str, list[int]]) -> None:
    for area, values in answers.items():
        for n, value in enumerate(values, 1):
            page.locator(f"#{area}-{n}-{value}").check()


def test_the_maturity_form_refuses_an_incomplete_form_then_records_the_worked_example(signed_in, world):
    page = signed_in
    page.goto("/console/reports")
    page.get_by_role("link", name="Maturity").click()
    expect(page.locator("#maturity-none")).to_have_text("No assessment recorded yet.")
    expect(page.locator("fieldset.statement")).to_have_count(20)
    expect(page.locator("#q-processus-1 legend")).to_contain_text(
        "Client onboarding and offboarding follow a standard procedure.")

    # Incomplete: refused naming every statement left unanswered; what was answered stays; nothing recorded.
    page.locator("#q-processus-1").get_by_label("5 strongly agree").check()      # each choice is labelled
    answer(page, {"processus": WORKED["processus"], "technologie": WORKED["technologie"][:3]})
    page.get_by_role("button", name="Record the answers").click()
    error = page.locator("#report-error")
    expect(error).to_contain_text("Not recorded: 12 statement(s) without an answer")
    expect(error).to_contain_text("Technology 4, 5; Clients 1, 2, 3, 4, 5; Revenue 1, 2, 3, 4, 5")
    expect(page.locator("fieldset.missing")).to_have_count(12)
    expect(page.locator("#processus-1-5")).to_be_checked()
    assert world.read(lambda s: s.maturity_history()) == []

    # Complete (the last statement by keyboard: an arrow key moves the choice in a radio group).
    answer(page, {"technologie": WORKED["technologie"], "clients": WORKED["clients"],
                  "revenus": WORKED["revenus"][:4]})
    page.locator("#revenus-5-1").focus()
    page.keyboard.press("Space")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#revenus-5-2")).to_be_checked()
    page.get_by_role("button", name="Record the answers").click()
    expect(page.get_by_role("status").first).to_have_text(f"Recorded: 3.55 / 5, Proactive (answered by {NAME}).")
    expect(page.locator("#overall")).to_have_text("3.55")
    expect(page.locator("#stage")).to_have_text("Proactive")
    points = [page.locator(f'#areas tr[data-area="{a}"] .points').inner_text() for a in WORKED]
    assert points == ["23 / 25", "16 / 25", "19 / 25", "13 / 25"]
    expect(page.locator("#areas tr[data-area=\"revenus\"]")).to_contain_text("Stable")   # each area its own stage
    expect(page.locator("#areas")).to_contain_text("Track churn: when and why clients leave.")   # and next step
    expect(page.locator("#signals li").first).to_contain_text("How it is computed")  # signals from data
    history = world.read(lambda s: s.maturity_history())
    assert [(h["answers"], h["answered_by"], h["stage"]) for h in history] == [(WORKED, NAME, "proactivite")]
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history .by")).to_have_text(NAME)

    # The form holds the last answers; another assessment joins the history, newest first.
    expect(page.locator("#revenus-5-2")).to_be_checked()
    page.locator("#revenus-1-5").check()
    page.get_by_role("button", name="Record the answers").click()
    expect(page.locator("#history tbody tr")).to_have_count(2)
    expect(page.locator("#history tbody tr .overall").first).to_have_text("3.65")
    assert len(world.read(lambda s: s.maturity_history())) == 2

    with page.expect_download() as download:
        page.locator("#maturity-pdf").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")


def test_the_reports_posts_need_the_csrf_token(signed_in, world):
    page, quarter = signed_in, this_quarter()
    form = {f"{a}-{n}": str(v) for a, values in WORKED.items() for n, v in enumerate(values, 1)}
    freeze = f"/console/reports/scorecards/acme/{quarter}/freeze"
    assert post(page, freeze, {}).status == 403
    assert post(page, freeze, {"csrf_token": "forged", "refreeze": "yes"}).status == 403
    assert post(page, "/console/reports/maturity", form).status == 403
    assert post(page, "/console/reports/maturity", form, headers={"X-CSRF-Token": "forged"}).status == 403
    assert world.read(lambda s: s.frozen_scorecard("acme", quarter)) is None
    assert world.read(lambda s: s.maturity_history()) == []
    # A value the form does not offer is refused by the answers' own validation, naming the area.
    forged = post(page, "/console/reports/maturity", dict(form, csrf_token=csrf(page), **{"clients-2": "7"}))
    assert forged.status == 400 and "answer 2 is 7, outside 1 to 5" in forged.text()
    assert "clients" in forged.text() and world.read(lambda s: s.maturity_history()) == []
    # With the session's token they go through.
    assert post(page, freeze, {"csrf_token": csrf(page)}).status == 303
    assert world.read(lambda s: s.frozen_scorecard("acme", quarter))["frozen_by"] == NAME
    assert post(page, "/console/reports/maturity", dict(form, csrf_token=csrf(page))).status == 303
    assert len(world.read(lambda s: s.maturity_history())) == 1


def test_a_french_msp_answers_the_questionnaire_in_french(world):
    """The statements and the result in the MSP's language ([reports] language = "fr")."""
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    from hub.console import make_console
    from hub.service import Service
    world.config.write_text(world.config.read_text() + '\n[reports]\nlanguage = "fr"\n')
    env = dict(ENV, C_NINJA=world.ninja.client_secret, C_CW=world.cw.private_key, C_STRIPE=world.stripe.api_key)
    client = Client(make_console(Service(world.config, environ=env)), Response, use_cookies=True)
    signin = client.get("/console/signin").get_data(as_text=True)
    pre = re.search(r'name="csrf_token" value="([^"]+)"', signin).group(1)
    assert client.post("/console/signin", data={"csrf_token": pre, "token": TOKEN, "name": "Jeanne"}).status_code == 303
    form_page = client.get("/console/reports/maturity").get_data(as_text=True)
    assert "Nos procédures d&#39;arrivée et de départ des clients sont standardisées." in form_page
    assert "tout à fait d&#39;accord" in form_page and "Enregistrer les réponses" in form_page
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', form_page).group(1)
    form = {f"{a}-{n}": str(v) for a, values in WORKED.items() for n, v in enumerate(values, 1)}
    refused = client.post("/console/reports/maturity", data=dict(form, csrf_token=token, **{"clients-3": ""}))
    assert refused.status_code == 400
    assert "1 affirmation(s) sans réponse : Clients 3" in refused.get_data(as_text=True)
    done = client.post("/console/reports/maturity", data=dict(form, csrf_token=token))
    assert done.status_code == 303
    result = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Enregistré : 3,55 / 5, Proactivité (réponses de Jeanne)." in result
    assert '<span id="overall">3,55</span>' in result and '<strong id="stage">Proactivité</strong>' in result
