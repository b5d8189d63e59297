"""The console's Plan and review page: the plan of a period per client, what is held and why, a held
invoice beside the client's previous invoice, and approve (one by one or in bulk).

The plan is the one ``msp-hub plan`` and ``GET /plan`` compute (``engine.sync_once`` in dry run,
from the data already pulled); each approval goes through ``hub.service.approve_action``, as
``msp-hub approve KEY --why`` does, recorded as "<name> (console)" with the why written on the
page. What an approval lets through is pushed by the next sync: the page says when the next
scheduled job runs and offers the resync button of the overview (``console.resync``).
"""

from __future__ import annotations

from typing import Any

import flask
import structlog

from hub.console.auth import action, page
from hub.console.views import CONSOLE_TRIGGER, bp, done, hub_of, render, status_of
from hub.engine import sync_once
from hub.money import format_minor
from hub.periods import parse_period
from hub.service import ApprovalRefused, approve_action

log = structlog.get_logger()

APPROVABLE = ("guardrail", "review", "veto")   # a person may let these through; the others need a fix
MAX_ITEMS = 8                                   # devices or entries named per line; the rest counted


def money(minor: int | None, currency: str | None) -> str:
    return "-" if minor is None or not currency else format_minor(int(minor), currency)


def line_view(line: Any) -> dict[str, Any]:
    """A billing line as the page shows it (a plan's ``BillingLine``)."""
    names = [str(d.get("name") or d.get("id")) for d in line.items]
    return {"description": line.description, "quantity": line.quantity, "unit": money(line.unit_amount, line.currency),
            "amount": money(line.amount, line.currency), "rule": line.rule, "names": names[:MAX_ITEMS],
            "more": max(0, len(names) - MAX_ITEMS), "count": len(names)}


def snapshot_view(lines: list[dict]) -> tuple[list[dict[str, Any]], str]:
    """The lines of a sent invoice (its snapshot in the store) and their total before tax."""
    currency = next((l.get("currency") for l in lines if l.get("currency")), None)
    rows = [{"description": l.get("description") or l.get("code", ""), "quantity": l.get("quantity", ""),
             "unit": money(l.get("unit_amount"), l.get("currency") or currency),
             "amount": money(l.get("amount"), l.get("currency") or currency)} for l in lines]
    return rows, money(sum(int(l.get("amount") or 0) for l in lines), currency)


def item_view(hub, p, outbox: dict[str, dict], approvals: dict[str, list[dict]]) -> dict[str, Any]:
    """One plan item: its lines explained, why it is held, its outbox row, and the previous invoice."""
    bill = p.bill
    key = p.action.key if p.action else None
    out: dict[str, Any] = {"kind": p.kind, "client_id": p.client_id, "client_name": p.client_name, "period": p.period,
                           "status": p.status, "key": key, "reasons": list(p.reasons), "cause": p.cause,
                           "total": money(p.total, bill.currency) if bill else "-",
                           "lines": [line_view(l) for l in bill.lines] if bill else [],
                           "excluded": {}, "reported": {}, "notes": list(bill.notes) if bill else [],
                           "row": outbox.get(key) if key else None, "approvals": approvals.get(key, []) if key else []}
    if bill:
        for e in bill.excluded:
            why = e.reason.split(" (")[0]
            out["excluded"][why] = out["excluded"].get(why, 0) + 1
        for r in bill.reported:
            why = str(r.get("reason")).replace("_", " ")
            out["reported"][why] = out["reported"].get(why, 0) + int(r.get("count", 1))
    # The outbox's row is what an approval changes (as `msp-hub approve KEY`): held there by the last
    # sync, for the reasons it recorded; this dry run may add its own (a forced period's data).
    out["approvable"] = out["row"] is not None and out["row"]["status"] == "held"
    if p.status == "held" and p.kind == "invoice":
        previous = hub.store.previous_invoice(p.client_id, p.period)
        if previous:
            rows, total = snapshot_view(previous[1])
            out["previous"] = {"period": previous[0], "lines": rows, "total": total}
        else:
            out["previous"] = None
    return out


def qid(q) -> tuple[str, str, str]:
    return (q.client_id, str(q.agreement_id), str(q.addition_id))


def next_sync(hub) -> dict | None:
    """The next scheduled run that pushes invoices and agreement quantities: an unscoped job's
    (a job scoped to connectors or streams pushes only what they feed; a preview pushes nothing)."""
    from hub.daemon import parse_schedule, triggers
    try:
        jobs = parse_schedule(hub.config, flask.g.service.streams)
    except Exception:      # the overview shows a schedule that does not load; here: no next sync
        return None
    pushing = {job_id for job in jobs if not job.report for job_id, _, scope in triggers(job, hub.config.timezone)
               if not scope.get("connectors") and not scope.get("streams") and not scope.get("dry_run")}
    listed = (status_of(hub).get("scheduler") or {}).get("jobs") or []
    due = sorted((j for j in listed if j.get("next_run_at") and j["id"] in pushing), key=lambda j: j["next_run_at"])
    return due[0] if due else None


@bp.get("/plan")
@page
def plan():
    """The plan of a period (``?period=YYYY-MM``; by default the last ended and the current, as
    ``msp-hub plan``), per client, with what is held and the agreement quantities."""
    period = (flask.request.args.get("period") or "").strip() or None
    if period is not None:
        try:
            parse_period(period)
        except ValueError as exc:   # no plan rather than another period's
            error = f"period: {exc} (write it as YYYY-MM, e.g. 2026-11)"
            return flask.make_response(render("plan.html", period=period, error=error, by_client={}, held=[],
                                              quantities=[], discrepancies=[], errors=[], upcoming=None,
                                              approved=[], approvable=APPROVABLE), 400)
    with hub_of() as hub:
        report = sync_once(hub, dry_run=True, pull_first=False, period=period, trigger=CONSOLE_TRIGGER)
        outbox = {a["key"]: a for a in hub.store.actions()}
        approvals: dict[str, list[dict]] = {}
        for a in hub.store.approvals():
            approvals.setdefault(a["target"], []).append(a)
        items = [item_view(hub, p, outbox, approvals) for p in report.plan
                 if p.kind != "agreement_quantity"]
        quantity_keys = {qid(p.quantity): p.action.key for p in report.plan
                         if p.kind == "agreement_quantity" and p.quantity is not None and p.action is not None}
        quantities = []
        for q in report.quantities:
            key = quantity_keys.get(qid(q))
            row = outbox.get(key) if key else None
            quantities.append({"q": q, "key": key, "row": row, "approvals": approvals.get(key, []) if key else [],
                               "approvable": q.status == "held" and row is not None and row["status"] == "held"})
        upcoming = next_sync(hub)
    by_client: dict[str, dict[str, Any]] = {}
    for it in items:
        by_client.setdefault(it["client_id"], {"name": it["client_name"], "items": []})["items"].append(it)
    held = [it for it in items if it["status"] == "held"]
    approved = [k for k in flask.request.args.getlist("approved") if k]
    return render("plan.html", period=period or "", error=None, by_client=by_client, held=held,
                  quantities=quantities, discrepancies=report.discrepancies, errors=report.errors,
                  upcoming=upcoming, approved=approved, approvable=APPROVABLE)


@bp.post("/plan/approve")
@action
def plan_approve():
    """Approve each checked ``key`` (one, or many in bulk) with the ``why`` written, recorded as the
    signed-in admin; through ``hub.service.approve_action`` as ``msp-hub approve KEY --why``."""
    form = flask.request.form
    keys = [k for k in dict.fromkeys(form.getlist("key")) if k]
    why = " ".join(form.get("why", "").split())
    period = form.get("period", "")
    back = {"period": period} if period else {}
    if not keys:
        return done("console.plan", "nothing to approve: tick at least one held item", "error", **back)
    ok, refused = [], []
    with hub_of() as hub:
        for key in keys:
            try:
                approve_action(hub, key, flask.g.session.approver, why)
                ok.append(key)
            except ApprovalRefused as exc:
                refused.append(str(exc))
    log.info("console.approved", keys=ok, refused=len(refused), admin=flask.g.session.name)
    for message in refused:
        flask.g.session.flashes.append(("error", message))
    if ok:
        return done("console.plan", f"approved by {flask.g.session.approver}: {', '.join(ok)}", approved=ok, **back)
    return flask.redirect(flask.url_for("console.plan", **back), 303)
