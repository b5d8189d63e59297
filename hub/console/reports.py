"""The reports in the console: each client's scorecards, the KPI dashboard, the maturity questionnaire.

Pages (all under ``/console/reports``):

- ``/reports``: every client a scorecard can be made for, this quarter's state (frozen, with who and
  when, or computed from the store) and the quarters frozen so far.
- ``/reports/scorecards/<client>?quarter=2026-Q4``: one client's scorecard of a quarter (this one by
  default), the report's own HTML in a frame (``…/<quarter>/html``), its PDF as a download
  (``…/<quarter>/pdf``), and the freeze button: a quarter already frozen is refused unless the
  "replace" box is ticked (the CLI's ``--refreeze``).
- ``/reports/kpis?from=2026-09&to=2026-11``: the KPI report of those months (the last three ended
  months by default) in a frame, with its CSV and JSON downloads (``/reports/kpis/<fmt>``).
- ``/reports/maturity``: the twenty statements as a form (1 to 5 each), the last assessment's
  result (scores, stage, next steps, signals from data) and every earlier assessment.

Every action is the CLI's own code path: a freeze is ``scorecard.freeze(hub, scorecard.build(...),
who=, refreeze=)`` as ``msp-hub report scorecard --freeze``; answers go through
``maturity.parse_answers`` (the validation of ``answers.toml``) and ``maturity.assess(save=True)``
as ``msp-hub report maturity --answers``; the files are ``scorecard.render_for``,
``kpis.render`` and ``maturity.render_report``. Who froze or answered is the signed-in admin's name.

A report's HTML is served with its own policy (no script, no fetch, only ``data:`` images and its
inline styles) and may be framed by the console's own pages only.
"""

from __future__ import annotations

import re
from typing import Any

import flask
import structlog

from hub.console.auth import action, page
from hub.console.labels import label
from hub.console.views import bp, done, hub_of, language, render
from hub.errors import HubError

log = structlog.get_logger()

# A report's own page: nothing but its inline styles and data: images; framed by the console only.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
MIMETYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "csv": "text/csv; charset=utf-8",
             "json": "application/json"}
FORM_FILE = "the console's maturity form"      # what a ConfigError of the answers names as the "file"
QUARTERS_BACK = 4                              # the quarter picker: this quarter and the three before


def report_file(body: bytes, fmt: str, filename: str, *, attachment: bool) -> flask.Response:
    """A report as a response: shown (``attachment`` False: the frame) or downloaded."""
    response = flask.Response(body, content_type=MIMETYPES[fmt])
    disposition = "attachment" if attachment else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response.headers["Content-Security-Policy"] = REPORT_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


def safe_name(text: str) -> str:
    """A part of a file name: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "report"


def failure(template: str, message: str, status: int, **context: Any) -> flask.Response:
    """``template`` showing ``message`` as the page's error, with ``status``."""
    return flask.make_response(render(template, error=message, **context), status)


# --- scorecards ------------------------------------------------------------------------------------

def this_quarter(hub) -> str:
    from hub.periods import quarter_of
    return quarter_of(hub.clock(), hub.config.timezone)


def frozen_of(hub, client_id: str | None = None) -> list[dict]:
    """The frozen scorecards (client_id, quarter, frozen_at, frozen_by), newest quarter first."""
    rows = [r for r in hub.store.frozen_scorecards() if client_id is None or r["client_id"] == client_id]
    out = []
    for r in rows:
        row = dict(r)
        if "frozen_by" not in row:     # the store's listing may leave who out: read it from the row itself
            row["frozen_by"] = (hub.store.frozen_scorecard(r["client_id"], r["quarter"]) or {}).get("frozen_by")
        out.append(row)
    return sorted(out, key=lambda r: (r["quarter"], r["client_id"]), reverse=True)


@bp.get("/reports")
@page
def reports():
    """Every client a scorecard can be made for: this quarter's state and the frozen quarters."""
    from hub.reports import scorecard as sc
    with hub_of() as hub:
        try:
            clients = sc.clients_with_scorecards(hub)
        except HubError as exc:
            return failure("reports.html", str(exc), 500, clients=[], frozen={}, quarter="")
        quarter = this_quarter(hub)
        frozen: dict[str, list[dict]] = {}
        for row in frozen_of(hub):
            frozen.setdefault(row["client_id"], []).append(row)
    return render("reports.html", clients=clients, frozen=frozen, quarter=quarter, error=None)


def quarter_choices(hub, current: str, frozen: list[dict]) -> list[str]:
    from hub.reports import scorecard as sc
    q, out = sc.quarter(current, hub.config.timezone), []
    for _ in range(QUARTERS_BACK):
        out.append(q.name)
        q = q.previous()
    return sorted(set(out) | {f["quarter"] for f in frozen}, reverse=True)


@bp.get("/reports/scorecards/<client_id>")
@page
def scorecard(client_id: str):
    """One client's scorecard of a quarter (``?quarter=``, this quarter by default), frozen or computed."""
    from hub.reports import scorecard as sc
    with hub_of() as hub:
        current = this_quarter(hub)
        wanted = flask.request.args.get("quarter", "").strip() or current
        frozen = frozen_of(hub, client_id)
        context: dict[str, Any] = dict(client_id=client_id, quarter=wanted, current=current, frozen=frozen,
                                       card=None, choices=[current])
        try:
            context["choices"] = quarter_choices(hub, current, frozen)
            card = sc.scorecard_for(hub, client_id, wanted)
        except HubError as exc:
            unknown = "unknown client" in str(exc)
            return failure("report_scorecard.html", str(exc), 404 if unknown else 400, **context)
    from hub.reports.scorecard_render import _num
    context.update(card=card, quarter=card.quarter, overall=_num(card.overall, language()))
    return render("report_scorecard.html", error=None, **context)


@bp.get("/reports/scorecards/<client_id>/<quarter>/<fmt>")
@page
def scorecard_file(client_id: str, quarter: str, fmt: str):
    """The scorecard as the CLI writes it: ``html`` (shown in the page's frame; ``?download=1`` to
    save it), ``pdf`` or ``json`` (downloads)."""
    from hub.reports import scorecard as sc
    if fmt not in ("html", "pdf", "json"):
        flask.abort(404)
    with hub_of() as hub:
        try:
            card = sc.scorecard_for(hub, client_id, quarter)
            body = sc.render_for(hub, card, fmt)
        except HubError as exc:
            return flask.Response(f"{exc}\n", 404 if "unknown client" in str(exc) else 400,
                                  content_type="text/plain; charset=utf-8")
    name = f"scorecard-{safe_name(client_id)}-{safe_name(card.quarter)}.{fmt}"
    return report_file(body, fmt, name, attachment=fmt != "html" or bool(flask.request.args.get("download")))


@bp.post("/reports/scorecards/<client_id>/<quarter>/freeze")
@action
def freeze_scorecard(client_id: str, quarter: str):
    """Freeze the scorecard as presented (``msp-hub report scorecard --freeze``), recording the
    signed-in admin; a quarter already frozen is refused unless the form says ``refreeze=yes``."""
    from hub.reports import scorecard as sc
    refreeze = flask.request.form.get("refreeze") == "yes"
    back = dict(client_id=client_id, quarter=quarter)
    lang = language()
    with hub_of() as hub:
        try:
            name = sc.quarter(quarter, hub.config.timezone).name
            old = hub.store.frozen_scorecard(client_id, name)
            if old is not None and not refreeze:
                return done("console.scorecard", label(lang, "sc.refused").format(
                    client=client_id, quarter=name, at=old["frozen_at"], by=old["frozen_by"]), "error", **back)
            card = sc.freeze(hub, sc.build(hub, client_id, name), who=flask.g.session.name, refreeze=refreeze)
        except HubError as exc:
            return done("console.scorecard", str(exc), "error", **back)
    log.info("console.scorecard_frozen", client=client_id, quarter=card.quarter, refreeze=refreeze,
             admin=flask.g.session.name)
    return done("console.scorecard", label(lang, "sc.frozen_now").format(
        client=client_id, quarter=card.quarter, by=card.frozen["by"]), **back)


# --- KPIs ----------------------------------------------------------------------------------------

def kpi_range(hub) -> tuple[str, str, str | None]:
    """(from, to, the problem) of the request: the last three ended months by default; a month not
    written YYYY-MM is named with its fix."""
    from hub.periods import last_ended_period, parse_period
    last = last_ended_period(hub.clock(), hub.config.timezone)
    default_to, default_from = last.name, last.previous().previous().name
    args = flask.request.args
    first = args.get("from", "").strip() or default_from
    final = args.get("to", "").strip() or default_to
    for field, value in (("from", first), ("to", final)):
        try:
            parse_period(value)
        except ValueError as exc:
            return first, final, f"{label(language(), 'kpi.' + field)}: {exc} (fix: write a month such as {default_to})"
    return first, final, None


@bp.get("/reports/kpis")
@page
def kpis():
    """The KPI dashboard: months from/to, the report (its charts and tables) and its downloads."""
    from hub.reports import kpis as kpi_report
    with hub_of() as hub:
        first, final, problem = kpi_range(hub)
        data = None
        if problem is None:
            try:
                data = kpi_report.build(hub, first, final)
            except (ValueError, HubError) as exc:
                problem = str(exc)
    context = dict(first=first, final=final, data=data)
    if problem:
        return failure("report_kpis.html", problem, 400, **context)
    return render("report_kpis.html", error=None, **context)


@bp.get("/reports/kpis/<fmt>")
@page
def kpi_file(fmt: str):
    """The KPI report of ``?from=&to=`` as ``msp-hub report kpis`` writes it: ``html`` (shown in
    the page's frame), ``csv`` or ``json`` (downloads)."""
    from hub.reports import kpis as kpi_report
    if fmt not in ("html", "csv", "json"):
        flask.abort(404)
    with hub_of() as hub:
        first, final, problem = kpi_range(hub)
        try:
            if problem:
                raise ValueError(problem)
            data = kpi_report.build(hub, first, final)
            body = kpi_report.render(data, fmt, kpi_report.language_of(hub.config))
        except (ValueError, HubError) as exc:
            return flask.Response(f"{exc}\n", 400, content_type="text/plain; charset=utf-8")
    name = f"kpis-{safe_name(first)}-{safe_name(final)}.{fmt}"
    return report_file(body, fmt, name, attachment=fmt != "html" or bool(flask.request.args.get("download")))


# --- maturity ------------------------------------------------------------------------------------

def statements(lang: str) -> list[dict]:
    """The four areas and their five statements in ``lang``, with the field name of each answer."""
    from hub.reports import maturity as m
    li = 0 if lang == "fr" else 1
    return [{"key": a, "name": m.AREA_NAMES[lang][a], "short": m.SHORT_AREA_NAMES[lang][a],
             "statements": [{"n": i + 1, "field": f"{a}-{i + 1}", "text": m.STATEMENTS[a][i][li]} for i in range(5)]}
            for a in m.AREAS]


def maturity_context(hub, lang: str) -> dict[str, Any]:
    """The last recorded assessment (its result, scores and signals as the report's JSON) and every
    earlier one; the form pre-filled with the last answers."""
    from hub.reports import maturity as m
    history = hub.store.maturity_history()
    result = m.assess(hub, None, save=False).as_json(lang) if history else None
    given = ({f"{a}-{i + 1}": str(v) for a in m.AREAS for i, v in enumerate(history[-1]["answers"][a])}
             if history else {})
    rows = [dict(h, overall_text=m.number(m.score(h["answers"]).overall, lang),
                 areas_text={a: m.number(m.score(h["answers"]).areas[a], lang) for a in m.AREAS},
                 stage_name=m.STAGE_NAMES[lang][h["stage"]]) for h in reversed(history)]
    return dict(areas=statements(lang), choices=m.ANSWER_LABELS[lang], result=result, history=rows, given=given,
                missing=set(), number=lambda v: m.number(v, lang))


@bp.get("/reports/maturity")
@page
def maturity_page():
    """The questionnaire, the last assessment's result and the history."""
    lang = language()
    with hub_of() as hub:
        context = maturity_context(hub, lang)
    return render("report_maturity.html", error=None, **context)


@bp.post("/reports/maturity")
@action
def maturity_answer():
    """Record the answers (``msp-hub report maturity --answers``): every statement answered 1 to 5,
    else refused naming each one missing and nothing recorded; who answered is the signed-in admin."""
    from hub.reports import maturity as m
    lang = language()
    form = flask.request.form
    given = {f"{a}-{i + 1}": form.get(f"{a}-{i + 1}", "").strip() for a in m.AREAS for i in range(5)}
    missing = [(a, i + 1) for a in m.AREAS for i in range(5) if not given[f"{a}-{i + 1}"]]
    error = None
    if missing:
        names = "; ".join(f"{m.SHORT_AREA_NAMES[lang][a]} " + ", ".join(str(n) for b, n in missing if b == a)
                          for a in m.AREAS if any(b == a for b, _ in missing))
        error = label(lang, "mat.missing").format(count=len(missing), names=names)
    with hub_of() as hub:
        if error is None:
            raw = {a: [int(given[f"{a}-{i + 1}"]) if given[f"{a}-{i + 1}"].isdigit() else given[f"{a}-{i + 1}"]
                       for i in range(5)] for a in m.AREAS}
            try:
                answers = m.parse_answers(raw, file=FORM_FILE)
                assessment = m.assess(hub, answers, save=True, by=flask.g.session.name)
            except HubError as exc:
                error = str(exc)
        if error is not None:
            context = maturity_context(hub, lang)
            context.update(given={k: v for k, v in given.items() if v}, missing={f"{a}-{n}" for a, n in missing})
            return failure("report_maturity.html", error, 400, **context)
    log.info("console.maturity_recorded", overall=m.number(assessment.score.overall, "en"),
             stage=assessment.score.stage, admin=flask.g.session.name)
    return done("console.maturity_page", label(lang, "mat.recorded").format(
        overall=m.number(assessment.score.overall, lang), stage=m.STAGE_NAMES[lang][assessment.score.stage],
        by=assessment.answered_by))


@bp.get("/reports/maturity/<fmt>")
@page
def maturity_file(fmt: str):
    """The report of the last recorded assessment as ``msp-hub report maturity`` writes it."""
    from hub.reports import maturity as m
    if fmt not in ("html", "pdf", "json"):
        flask.abort(404)
    lang = language()
    with hub_of() as hub:
        try:
            body = m.render_report(m.assess(hub, None, save=False), fmt, lang, config=hub.config)
        except HubError as exc:
            return flask.Response(f"{exc}\n", 404, content_type="text/plain; charset=utf-8")
    return report_file(body, fmt, f"maturity.{fmt}",
                       attachment=fmt != "html" or bool(flask.request.args.get("download")))
