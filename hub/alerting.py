"""Alerts become tickets: rules, maintenance windows, dedup, storms, reopen, auto-close, backstop.

Pure functions: the active alerts, the alert events (triggered/reset), what the hub knows of the
tickets it made, and the rules of ``mappings/alert_rules.toml`` in; ticket intents out, each with
a deterministic key so that a rerun never repeats one. No database, HTTP or clock here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from hub.errors import ConfigError
from hub.records import Alert, AlertEvent

SEVERITIES = ("NONE", "MINOR", "MODERATE", "MAJOR", "CRITICAL")
MATCH_FIELDS = ("client", "device_class", "source_type", "severity", "message")


@dataclass(frozen=True)
class AlertRule:
    """One rule: what it matches, and the ticket it makes (or ``action = "ignore"``)."""

    name: str
    match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    board: str = "Help Desk"
    ticket_type: str | None = None
    priority: str | None = None          # overrides the severity -> priority map
    auto_close: bool = True
    action: str = "ticket"               # or "ignore"

    def matches(self, alert: Alert, client_id: str | None) -> bool:
        for key, wanted in self.match.items():
            if key == "message":
                if not any(re.search(p, alert.message or "", re.I) for p in wanted):
                    return False
                continue
            value = client_id if key == "client" else getattr(alert, key)
            if value not in wanted:
                return False
        return True


@dataclass(frozen=True)
class Window:
    """A maintenance window for a client (hub id) or a device (``source:id``), in UTC."""

    start: datetime
    end: datetime
    client: str | None = None
    device: str | None = None

    def covers(self, alert: Alert, client_id: str | None, moment: datetime) -> bool:
        if not self.start <= moment < self.end:
            return False
        if self.device is not None:
            return self.device == f"{alert.source}:{alert.device_source_id}"
        return self.client is not None and self.client == client_id


@dataclass(frozen=True)
class AlertRules:
    """Everything in ``alert_rules.toml``."""

    rules: tuple[AlertRule, ...]
    windows: tuple[Window, ...] = ()
    severity_priority: dict[str, str] = field(default_factory=dict)
    reopen_within: timedelta = timedelta(days=3)
    storm_threshold: int = 20
    storm_window: timedelta = timedelta(minutes=10)
    fallback_board: str | None = None
    fallback_company: str | None = None

    def rule_for(self, alert: Alert, client_id: str | None) -> AlertRule | None:
        """The first rule that matches, None when none does (the loader requires a catch-all)."""
        return next((r for r in self.rules if r.matches(alert, client_id)), None)


def load_alert_rules(path: Path) -> AlertRules:
    """Read ``alert_rules.toml``; errors name the file, the key and the fix. Absent: one catch-all."""
    if not path.exists():
        return AlertRules((AlertRule("catch-all"),))
    file = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file, fix="correct the syntax at that line") from None
    s = raw.get("settings", {})
    rules = []
    for i, r in enumerate(raw.get("rule", [])):
        where = f"rule[{i}]"
        if not isinstance(r, dict) or "name" not in r:
            raise ConfigError("each rule needs a name", file=file, key=where, fix="add name = \"...\"")
        match = r.get("match", {})
        for k, v in match.items():
            if k not in MATCH_FIELDS:
                raise ConfigError(f"cannot match on {k!r}", file=file, key=f"{where}.match.{k}",
                                  fix=f"use one of {', '.join(MATCH_FIELDS)}")
            if k == "message":
                for pattern in ([v] if isinstance(v, str) else v):
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise ConfigError(f"bad pattern {pattern!r}: {exc}", file=file, key=f"{where}.match.message",
                                          fix="write a Python regular expression") from None
        action = r.get("action", "ticket")
        if action not in ("ticket", "ignore"):
            raise ConfigError(f"unknown action {action!r}", file=file, key=f"{where}.action", fix="use ticket or ignore")
        rules.append(AlertRule(str(r["name"]), {k: tuple([v] if isinstance(v, str) else v) for k, v in match.items()},
                               str(r.get("board", "Help Desk")), r.get("type"), r.get("priority"),
                               bool(r.get("auto_close", True)), action))
    if not rules or rules[-1].match:
        raise ConfigError("the last rule must be a catch-all (no match)", file=file, key="rule",
                          fix="end with [[rule]] name = \"catch-all\" and no match table")
    windows = []
    for i, w in enumerate(raw.get("maintenance", [])):
        where = f"maintenance[{i}]"
        try:
            start, end = (datetime.fromisoformat(str(w[k]).replace("Z", "+00:00")) for k in ("start", "end"))
        except (KeyError, ValueError):
            raise ConfigError("needs start and end as ISO datetimes", file=file, key=where,
                              fix="write start = \"2026-11-22T22:00:00Z\", end = \"2026-11-23T02:00:00Z\"") from None
        if start.tzinfo is None or end.tzinfo is None:
            raise ConfigError("start and end need a time zone", file=file, key=where, fix="end them with Z or +01:00")
        if ("client" in w) == ("device" in w):
            raise ConfigError("name either a client or a device", file=file, key=where,
                              fix="client = \"acme\" or device = \"ninjaone:1234\"")
        windows.append(Window(start, end, w.get("client"), w.get("device")))
    return AlertRules(tuple(rules), tuple(windows), {str(k).upper(): str(v) for k, v in s.get("severity_priority", {}).items()},
                      timedelta(days=float(s.get("reopen_within_days", 3))), int(s.get("storm_threshold", 20)),
                      timedelta(minutes=float(s.get("storm_window_minutes", 10))),
                      s.get("fallback_board") or None, str(s["fallback_company"]) if s.get("fallback_company") else None)


@dataclass
class HubTicket:
    """A ticket the hub made, as the outbox and the PSA know it."""

    key: str                 # the create action's key: ticket:<source>:<uid> or ticket:storm:...
    external_ref: str
    device: str              # source:device id ("" for a storm parent)
    condition: str
    client_id: str | None
    uids: set[str]
    closed: bool = False
    closed_at: datetime | None = None
    auto_close: bool = True


@dataclass(frozen=True)
class TicketIntent:
    """One thing to do in the PSA: ``ticket`` (create), ``ticket_note``, ``ticket_close``, ``ticket_reopen``."""

    kind: str
    key: str
    client_id: str | None
    payload: dict[str, Any]
    rule: str
    reason: str


@dataclass
class AlertPlan:
    intents: list[TicketIntent] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)   # alerts that made nothing, and why


def external_ref(key: str) -> str:
    return f"msp-hub:{key}"[:100]


def _when(alert: Alert, now: datetime) -> datetime:
    return alert.created_at or alert.updated_at or now


def plan_alert_tickets(alerts: Iterable[Alert], events: Iterable[AlertEvent], tickets: Iterable[HubTicket],
                       rules: AlertRules, client_of: Callable[[Alert], str | None],
                       company_of: Callable[[str | None], str | None], now: datetime, *,
                       decide: Callable[[Alert, str | None], AlertRule | None] = lambda a, c: None,
                       known_uids: frozenset[str] = frozenset()) -> AlertPlan:
    """Decide the ticket intents for the alerts as they stand.

    Args:
        alerts: the alerts active now in the RMM.
        events: the triggered/reset events pulled so far (resets are seen even when the alert left
            the active list).
        tickets: the tickets the hub made (open or closed), with the alert uids attached to each.
        client_of / company_of: an alert's hub client (None: unmapped); a client's PSA company.
        decide: a site plugin's choice of rule (first answer wins), else the rules' first match.
        known_uids: alert uids the hub already acted on (created, noted, reopened, logged).
    """
    plan = AlertPlan()
    dated = []
    for a in alerts:
        moment = _when(a, now)
        if isinstance(moment, datetime) and moment.utcoffset() is not None:
            dated.append(a)
        else:
            plan.log.append({"uid": a.source_id, "client": None,
                             "what": f"{a.source} alert {a.source_id} on {a.device_name} has time {moment!r} with no "
                                     f"time zone, so its window, storm and reopen cannot be decided: no ticket; "
                                     f"correct its mapping in the {a.source} plugin"})
    active = sorted(dated, key=lambda a: (_when(a, now), a.source_id))
    active_uids = {a.source_id for a in active}
    by_pair: dict[tuple[str, str], HubTicket] = {}
    by_uid: dict[str, HubTicket] = {}
    for t in sorted(tickets, key=lambda t: t.key):
        if t.device:
            current = by_pair.get((t.device, t.condition))
            if current is None or (current.closed and not t.closed):
                by_pair[(t.device, t.condition)] = t
        for uid in t.uids:
            by_uid[uid] = t
    resets = {e.series_uid for e in events if e.status == "reset"}
    triggered = {e.series_uid for e in events if e.status == "triggered"}

    new: list[tuple[Alert, str | None, AlertRule]] = []
    for a in active:
        if a.source_id in known_uids or a.source_id in by_uid or a.source_id in resets:
            continue
        client = client_of(a)
        moment = _when(a, now)
        window = next((w for w in rules.windows if w.covers(a, client, moment)), None)
        if window:
            plan.log.append({"uid": a.source_id, "client": client, "what": "in a maintenance window",
                             "window": f"{window.start.isoformat()} - {window.end.isoformat()}"})
            continue
        rule = decide(a, client) or rules.rule_for(a, client)
        if rule is None:
            plan.log.append({"uid": a.source_id, "client": client,
                             "what": f"no rule of alert_rules.toml matches it: no ticket; end the rules with a "
                                     f"catch-all [[rule]] (no match table)"})
            continue
        if rule.action == "ignore":
            plan.log.append({"uid": a.source_id, "client": client, "what": f"ignored by rule {rule.name}"})
            continue
        device = f"{a.source}:{a.device_source_id}"
        open_t = by_pair.get((device, a.condition))
        if open_t and not open_t.closed:
            plan.intents.append(TicketIntent("ticket_note", f"ticket_note:{a.source}:{a.source_id}", open_t.client_id, {
                "ticket_external_ref": open_t.external_ref, "uid": a.source_id, "parent": open_t.key,
                "text": f"Alert triggered again on {a.device_name}: {a.message} (severity {a.severity}, alert {a.source_id})",
                "internal": False}, rule.name, "re-triggered while its ticket is open"))
            open_t.uids.add(a.source_id)
            by_uid[a.source_id] = open_t
            continue
        if open_t and open_t.closed and open_t.closed_at and moment - open_t.closed_at <= rules.reopen_within:
            plan.intents.append(TicketIntent("ticket_reopen", f"ticket_reopen:{a.source}:{a.source_id}", open_t.client_id, {
                "external_ref": open_t.external_ref, "uid": a.source_id, "parent": open_t.key,
                "note": f"Alert triggered again on {a.device_name}: {a.message} (alert {a.source_id}); reopened"},
                rule.name, f"triggered within {rules.reopen_within.days} day(s) of the close"))
            open_t.closed, open_t.uids = False, open_t.uids | {a.source_id}
            by_uid[a.source_id] = open_t
            continue
        new.append((a, client, rule))

    # Storms: more than N new alerts of one client within a window become one parent ticket.
    buckets: dict[tuple[str | None, int], list[tuple[Alert, str | None, AlertRule]]] = {}
    span = max(int(rules.storm_window.total_seconds()), 1)
    for item in new:
        buckets.setdefault((item[1], int(_when(item[0], now).timestamp()) // span), []).append(item)
    for (client, bucket), items in sorted(buckets.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if client is not None and len(items) > rules.storm_threshold:
            start = datetime.fromtimestamp(bucket * span, timezone.utc)
            key = f"ticket:storm:{client}:{start.strftime('%Y%m%dT%H%M')}"
            worst = max(items, key=lambda i: SEVERITIES.index(i[0].severity) if i[0].severity in SEVERITIES else 0)
            listed = "\n".join(f"- {a.device_name}: {a.message} ({a.severity}, alert {a.source_id})" for a, _, _ in items)
            plan.intents.append(TicketIntent("ticket", key, client, _ticket_payload(
                key, worst[0], worst[2], rules, company_of(client),
                summary=f"Alert storm: {len(items)} alerts in {int(rules.storm_window.total_seconds() // 60)} min",
                description=f"{len(items)} alerts from {start.isoformat()}:\n{listed}",
                uids=[a.source_id for a, _, _ in items]), worst[2].name,
                f"{len(items)} alerts within {int(rules.storm_window.total_seconds() // 60)} min: one parent ticket"))
            continue
        for a, client, rule in items:
            plan.intents.extend(_create(a, client, rule, rules, company_of, plan))

    # Resets: close (untouched, auto-close) or note; the backstop treats a vanished alert as reset.
    for t in sorted({id(t): t for t in by_uid.values()}.values(), key=lambda t: t.key):
        if t.closed:
            continue
        gone = {u for u in t.uids if u in resets or u not in active_uids}
        if not t.uids or gone != t.uids:
            continue
        last = sorted(t.uids)[-1]
        missed = not (t.uids & resets)
        reason = "every alert of the ticket was reset" + (" (not seen in the activity log: caught by the backstop)" if missed else "")
        if t.auto_close:
            plan.intents.append(TicketIntent("ticket_close", f"ticket_close:{t.key}:{last}", t.client_id, {
                "external_ref": t.external_ref, "uid": last,
                "note": f"The alert cleared in the RMM; closed by msp-hub ({reason}).",
                "touched_note": f"The alert cleared in the RMM ({reason}); the ticket stays open because a "
                                f"technician worked on it."}, "", reason))
        else:
            plan.intents.append(TicketIntent("ticket_note", f"ticket_note:cleared:{t.key}:{last}", t.client_id, {
                "ticket_external_ref": t.external_ref, "uid": last,
                "text": f"The alert cleared in the RMM ({reason}); the rule does not auto-close this ticket.",
                "internal": False}, "", reason))
    for uid in sorted((triggered & resets) - set(by_uid) - active_uids - set(known_uids)):
        plan.log.append({"uid": uid, "client": None, "what": "triggered and reset before the hub saw it: recorded, no ticket"})
    return plan


def _ticket_payload(key: str, a: Alert, rule: AlertRule, rules: AlertRules, company: str | None, *,
                    summary: str, description: str, uids: list[str], board: str | None = None) -> dict[str, Any]:
    payload = {"external_ref": external_ref(key), "summary": summary[:100], "board": board or rule.board,
               "initial_description": description, "company_id": company, "uids": uids,
               "device": f"{a.source}:{a.device_source_id}", "condition": a.condition, "auto_close": rule.auto_close,
               "rule": rule.name}
    priority = rule.priority or rules.severity_priority.get(a.severity)
    if priority:
        payload["priority"] = priority
    if rule.ticket_type:
        payload["type"] = rule.ticket_type
    return payload


def _create(a: Alert, client: str | None, rule: AlertRule, rules: AlertRules, company_of, plan: AlertPlan) -> list[TicketIntent]:
    key = f"ticket:{a.source}:{a.source_id}"
    company = company_of(client) if client else None
    board = None
    reason = "new alert"
    if company is None:
        if rules.fallback_board and rules.fallback_company:
            company, board = rules.fallback_company, rules.fallback_board
            why = "is linked to no hub client" if client is None else f"({client}) has no PSA company"
            reason = f"the client of device {a.device_name} ({a.source} org {a.client_source_id or '?'}) {why}: fallback board {board}"
        else:
            plan.log.append({"uid": a.source_id, "client": client,
                             "what": f"{a.source} device {a.device_name} (org {a.client_source_id or '?'}) belongs to no "
                                     f"client linked to the PSA, and alert_rules.toml sets no fallback board: no ticket"})
            return []
    summary = f"{a.device_name}: {a.message or a.source_type}"
    description = (f"{a.severity} alert on {a.device_name} ({a.device_class}), {a.source_type}\n{a.message}\n"
                   f"alert {a.source_id}, rule {rule.name}")
    return [TicketIntent("ticket", key, client, _ticket_payload(key, a, rule, rules, company, summary=summary,
                                                                description=description, uids=[a.source_id], board=board),
                         rule.name, reason)]
