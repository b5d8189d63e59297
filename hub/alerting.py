"""Alerts become tickets: rules, maintenance windows, dedup, storms, reopen, auto-close, backstop.

Pure functions: the active alerts, the alert events (triggered/reset), what the hub knows of the
tickets it made, and the rules of ``mappings/alert_rules.toml`` in; ticket intents out, each with
a deterministic key so that a rerun never repeats one. No database, HTTP or clock here.
"""

from __future__ import annotations

import re
import string
import zoneinfo
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal

from pydantic import Field, PlainValidator, field_validator, model_validator

from hub import i18n
from hub.config import Ident, Number, Schema, config_error, fail, known_keys_fix, line_of, read_toml, validate
from hub.records import Alert, AlertEvent, Device

SEVERITIES = ("NONE", "MINOR", "MODERATE", "MAJOR", "CRITICAL")
MATCH_FIELDS = ("client", "device_class", "source_type", "severity", "message")
# The placeholders of ``adopt_external_ref``: what another integration may have written in the
# external reference of the ticket it made for an alert.
ADOPT_PLACEHOLDERS = {
    "alert_uid": lambda a: a.source_id,
    "device_id": lambda a: a.device_source_id,
    "organization_id": lambda a: a.client_source_id,
    "source_type": lambda a: a.source_type,
    "condition": lambda a: a.condition,
}


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
    adopt_external_refs: tuple[str, ...] = ()   # templates, see ADOPT_PLACEHOLDERS

    def adopt_refs(self, alert: Alert) -> list[str]:
        """The external references another integration would have given ``alert``'s ticket."""
        values = {name: str(get(alert) or "") for name, get in ADOPT_PLACEHOLDERS.items()}
        return list(dict.fromkeys(t.format(**values) for t in self.adopt_external_refs))

    def rule_for(self, alert: Alert, client_id: str | None) -> AlertRule | None:
        """The first rule that matches, None when none does (the loader requires a catch-all)."""
        return next((r for r in self.rules if r.matches(alert, client_id)), None)


def _patterns(value: Any) -> tuple[str, ...]:
    """A match value: one string or a list of strings."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise fail(f"must be a string or a list of strings, got {value!r}", "write severity = [\"MAJOR\", \"CRITICAL\"]")
    return tuple(values)


Patterns = Annotated[tuple[str, ...], PlainValidator(_patterns)]


class _Match(Schema):
    """What a rule matches: every field given must match, any value of a list will do."""

    client: Patterns | None = None
    device_class: Patterns | None = None
    source_type: Patterns | None = None
    severity: Patterns | None = None
    message: Patterns | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, raw: Any) -> Any:
        for k in raw if isinstance(raw, dict) else ():
            if k not in MATCH_FIELDS:
                raise fail(f"cannot match on {k!r}", known_keys_fix(str(k), MATCH_FIELDS), at=(k,))
        return raw

    @field_validator("severity")
    @classmethod
    def _severities(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for s in v or ():
            if s not in SEVERITIES:
                raise fail(f"unknown severity {s!r}", f"use {', '.join(SEVERITIES)} (in capitals)")
        return v

    @field_validator("message")
    @classmethod
    def _regexes(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for pattern in v or ():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fail(f"bad pattern {pattern!r}: {exc}", "write a Python regular expression") from None
        return v


class _Rule(Schema):
    name: str
    match: _Match = _Match()
    board: str = "Help Desk"
    type: str | None = None
    priority: str | None = None
    auto_close: bool = True
    action: Literal["ticket", "ignore"] = "ticket"


def _moment(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = None
    if not isinstance(value, datetime):
        raise fail("needs start and end as ISO datetimes",
                   "write start = \"2026-11-22T22:00:00Z\", end = \"2026-11-23T02:00:00Z\"")
    return value


class _Maintenance(Schema):
    start: Annotated[datetime, PlainValidator(_moment)]
    end: Annotated[datetime, PlainValidator(_moment)]
    client: str | None = None
    device: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> "_Maintenance":
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise fail("start and end need a time zone", "end them with Z or +01:00")
        if (self.client is None) == (self.device is None):
            raise fail("name either a client or a device", "client = \"acme\" or device = \"ninjaone:1234\"")
        if self.end <= self.start:
            raise fail("ends before it starts", "make end later than start")
        return self


def _severity_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise fail(f"must be a table, got {value!r}", "write [settings.severity_priority] CRITICAL = \"Priority 1\"")
    out = {}
    for k, v in value.items():
        if str(k).upper() not in SEVERITIES:
            raise fail(f"unknown severity {k!r}", f"use {', '.join(SEVERITIES)}")
        if not isinstance(v, str):
            raise fail(f"the priority of {k} must be a string, got {v!r}", "write it in quotes")
        out[str(k).upper()] = v
    return out


def _adopt_templates(value: Any) -> tuple[str, ...]:
    """``adopt_external_ref``: one template or a list; each names ``{alert_uid}`` and only known placeholders."""
    templates = [value] if isinstance(value, str) else value
    allowed = ", ".join(f"{{{p}}}" for p in ADOPT_PLACEHOLDERS)
    example = "write adopt_external_ref = \"NinjaOne-{alert_uid}\""
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        raise fail(f"must be a string or a list of strings, got {value!r}", example)
    for template in templates:
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise fail(f"template {template!r} is not valid ({exc})",
                       f"write each placeholder as {{name}} and a literal brace as {{{{ or }}}}; "
                       f"placeholders: {allowed}") from None
        names = []
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in ADOPT_PLACEHOLDERS or spec or conversion:
                shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                raise fail(f"template {template!r} has unknown placeholder {shown}",
                           f"use only {allowed} (no format or conversion)")
            names.append(name)
        if "alert_uid" not in names:
            raise fail(f"template {template!r} does not name {{alert_uid}}: every alert would adopt the same ticket",
                       f"put {{alert_uid}} in it, e.g. \"NinjaOne-{{alert_uid}}\"; placeholders: {allowed}")
    return tuple(dict.fromkeys(templates))


class _Settings(Schema):
    reopen_within_days: Annotated[Number, Field(ge=0)] = 3
    storm_threshold: Annotated[int, Field(ge=1)] = 20
    storm_window_minutes: Annotated[Number, Field(gt=0)] = 10
    fallback_board: str | None = None
    fallback_company: Ident | None = None
    severity_priority: Annotated[dict[str, str], PlainValidator(_severity_map)] = {}
    adopt_external_ref: Annotated[tuple[str, ...], PlainValidator(_adopt_templates)] = ()


class _AlertRulesFile(Schema):
    settings: _Settings = _Settings()
    rule: list[_Rule] = []
    maintenance: list[_Maintenance] = []


def load_alert_rules(path: Path) -> AlertRules:
    """Read ``alert_rules.toml``; errors name the file, the line, the key and the fix (an unknown
    key, in a rule or anywhere, is one: a misspelt ``match`` must not make a catch-all).
    Absent file: one catch-all."""
    if not path.exists():
        return AlertRules((AlertRule("catch-all"),))
    file = str(path)
    raw, text = read_toml(path, missing_fix="create it (see mappings/ in the repository)")
    checked: _AlertRulesFile = validate(_AlertRulesFile, raw, file=file, text=text)
    rules = [AlertRule(r.name, {k: v for k, v in r.match.model_dump().items() if v is not None}, r.board, r.type,
                       r.priority, r.auto_close, r.action) for r in checked.rule]
    if not rules or rules[-1].match:
        raise config_error("the last rule must be a catch-all (no match)", file=file, key="rule",
                           fix="end with [[rule]] name = \"catch-all\" and no match table",
                           line=line_of(text, ("rule", len(rules) - 1)) if rules else None)
    windows = [Window(w.start, w.end, w.client, w.device) for w in checked.maintenance]
    s = checked.settings
    return AlertRules(tuple(rules), tuple(windows), dict(s.severity_priority),
                      timedelta(days=float(s.reopen_within_days)), s.storm_threshold,
                      timedelta(minutes=float(s.storm_window_minutes)), s.fallback_board or None,
                      s.fallback_company or None, s.adopt_external_ref)


@dataclass
class HubTicket:
    """A ticket the hub made or adopted, as the outbox and the PSA know it.

    An adopted ticket (one the PSA already had for the alert: the RMM's ``psa_ticket_id``, or an
    ``adopt_external_ref``) keeps its own external reference: the hub addresses it by
    ``ticket_id`` once its create action recorded the adoption, else by ``adopt`` (how the create
    looks for it) so that the PSA plugin finds the same ticket the create did.
    """

    key: str                 # the create action's key: ticket:<source>:<uid> or ticket:storm:...
    external_ref: str
    device: str              # source:device id ("" for a storm parent)
    condition: str
    client_id: str | None
    uids: set[str]
    closed: bool = False
    closed_at: datetime | None = None
    auto_close: bool = True
    ticket_id: str | None = None          # the PSA's id of an adopted ticket, once recorded
    adopt: dict[str, Any] = field(default_factory=dict)   # psa_ticket_id, adopt_refs, company_id

    def address(self) -> dict[str, Any]:
        """What a note, close or reopen payload carries besides the hub's reference."""
        if self.ticket_id:
            return {"ticket_id": self.ticket_id}
        return {"adopt": dict(self.adopt)} if self.adopt else {}


def adoption(a: Alert, rules: AlertRules) -> dict[str, Any]:
    """The create payload's keys that let the PSA plugin adopt the ticket the alert already has."""
    out: dict[str, Any] = {}
    if a.psa_ticket_id:
        out["psa_ticket_id"] = a.psa_ticket_id
    refs = rules.adopt_refs(a)
    if refs:
        out["adopt_refs"] = refs
    return out


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
                       known_uids: frozenset[str] = frozenset(),
                       facts: TicketFacts | None = None) -> AlertPlan:
    """Decide the ticket intents for the alerts as they stand.

    Args:
        alerts: the alerts active now in the RMM.
        events: the triggered/reset events pulled so far (resets are seen even when the alert left
            the active list).
        tickets: the tickets the hub made (open or closed), with the alert uids attached to each.
        client_of / company_of: an alert's hub client (None: unmapped); a client's PSA company.
        decide: a site plugin's choice of rule (first answer wins), else the rules' first match.
        known_uids: alert uids the hub already acted on (created, noted, reopened, logged).
        facts: what the ticket text tells beyond the alert (the device, names, the MSP's time zone).
    """
    facts = facts or TicketFacts()
    lang = facts.language
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
                "ticket_external_ref": open_t.external_ref, **open_t.address(), "uid": a.source_id, "parent": open_t.key,
                "text": i18n.text("alert.again", lang, device=a.device_name, message=a.message, severity=a.severity,
                                  uid=a.source_id),
                "internal": False}, rule.name, "re-triggered while its ticket is open"))
            open_t.uids.add(a.source_id)
            by_uid[a.source_id] = open_t
            continue
        if open_t and open_t.closed and open_t.closed_at and moment - open_t.closed_at <= rules.reopen_within:
            plan.intents.append(TicketIntent("ticket_reopen", f"ticket_reopen:{a.source}:{a.source_id}", open_t.client_id, {
                "external_ref": open_t.external_ref, **open_t.address(), "uid": a.source_id, "parent": open_t.key,
                "note": i18n.text("alert.reopen", lang, device=a.device_name, message=a.message, uid=a.source_id)},
                rule.name, f"triggered within {rules.reopen_within.days} day(s) of the close"))
            open_t.closed, open_t.uids = False, open_t.uids | {a.source_id}
            by_uid[a.source_id] = open_t
            continue
        new.append((a, client, rule))

    # Storms: more than N new alerts of one client within a window become one parent ticket.
    buckets: dict[tuple[str | None, int], list[tuple[Alert, str | None, AlertRule]]] = {}
    span = max(int(rules.storm_window.total_seconds()), 1)
    for item in new:
        if item[0].psa_ticket_id:
            continue      # it has its own ticket in the PSA already: adopted below, never in a storm
        buckets.setdefault((item[1], int(_when(item[0], now).timestamp()) // span), []).append(item)
    for (client, bucket), items in sorted(buckets.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if client is not None and len(items) > rules.storm_threshold:
            start = datetime.fromtimestamp(bucket * span, timezone.utc)
            key = f"ticket:storm:{client}:{start.strftime('%Y%m%dT%H%M')}"
            worst = max(items, key=lambda i: SEVERITIES.index(i[0].severity) if i[0].severity in SEVERITIES else 0)
            plan.intents.append(TicketIntent("ticket", key, client, _ticket_payload(
                key, worst[0], worst[2], rules, company_of(client),
                summary=i18n.text("alert.storm", lang, count=len(items),
                                  minutes=int(rules.storm_window.total_seconds() // 60)),
                description=_storm_description([a for a, _, _ in items], client, start, rules, facts),
                uids=[a.source_id for a, _, _ in items], facts=facts), worst[2].name,
                f"{len(items)} alerts within {int(rules.storm_window.total_seconds() // 60)} min: one parent ticket"))
            continue
        for a, client, rule in items:
            plan.intents.extend(_adopting(a, rules, _create(a, client, rule, rules, company_of, plan, facts)))
    for a, client, rule in new:
        if a.psa_ticket_id:
            plan.intents.extend(_adopting(a, rules, _create(a, client, rule, rules, company_of, plan, facts)))

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
        said = i18n.text("alert.reset_missed" if missed else "alert.reset", lang)
        if t.auto_close:
            plan.intents.append(TicketIntent("ticket_close", f"ticket_close:{t.key}:{last}", t.client_id, {
                "external_ref": t.external_ref, **t.address(), "uid": last,
                "note": i18n.text("alert.closed", lang, reason=said),
                "touched_note": i18n.text("alert.touched", lang, reason=said)}, "", reason))
        else:
            plan.intents.append(TicketIntent("ticket_note", f"ticket_note:cleared:{t.key}:{last}", t.client_id, {
                "ticket_external_ref": t.external_ref, **t.address(), "uid": last,
                "text": i18n.text("alert.cleared", lang, reason=said),
                "internal": False}, "", reason))
    for uid in sorted((triggered & resets) - set(by_uid) - active_uids - set(known_uids)):
        plan.log.append({"uid": uid, "client": None, "what": "triggered and reset before the hub saw it: recorded, no ticket"})
    return plan


def _adopting(a: Alert, rules: AlertRules, intents: list[TicketIntent]) -> list[TicketIntent]:
    """The create intents of ``a`` with the keys that let the PSA plugin adopt its existing ticket."""
    keys = adoption(a, rules)
    if not keys:
        return intents
    ways = ([f"the ticket {a.source} says its PSA integration made ({a.psa_ticket_id})"] if a.psa_ticket_id else []) + \
        [f"a ticket with externalXRef {ref!r}" for ref in keys.get("adopt_refs", ())]
    out = []
    for intent in intents:
        if intent.kind == "ticket":
            intent.payload.update(keys)
            intent = replace(intent, reason=f"{intent.reason}; adopts {' or '.join(ways)} if the PSA has it for "
                                            f"the same company, else creates one")
        out.append(intent)
    return out


def _ticket_payload(key: str, a: Alert, rule: AlertRule, rules: AlertRules, company: str | None, *,
                    summary: str, description: str, uids: list[str], board: str | None = None,
                    facts: TicketFacts | None = None, single: bool = False) -> dict[str, Any]:
    payload = {"external_ref": external_ref(key), "summary": _summary(summary), "board": board or rule.board,
               "initial_description": description, "company_id": company, "uids": uids,
               "device": f"{a.source}:{a.device_source_id}", "condition": a.condition, "auto_close": rule.auto_close,
               "rule": rule.name}
    priority = rule.priority or rules.severity_priority.get(a.severity)
    if priority:
        payload["priority"] = priority
    if rule.ticket_type:
        payload["type"] = rule.ticket_type
    if single:
        # What the PSA may match the device's configuration by: its serial number, then its name.
        device = (facts or TicketFacts()).device(a)
        match = {"name": a.device_name}
        if device is not None and device.serial_number:
            match["serial_number"] = device.serial_number
        payload["configuration"] = match
    return payload


def _create(a: Alert, client: str | None, rule: AlertRule, rules: AlertRules, company_of, plan: AlertPlan,
            facts: TicketFacts | None = None) -> list[TicketIntent]:
    facts = facts or TicketFacts()
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
    return [TicketIntent("ticket", key, client, _ticket_payload(
        key, a, rule, rules, company, summary=summary, description=_description(a, client, rule, facts),
        uids=[a.source_id], board=board, facts=facts, single=True), rule.name, reason)]


# --- the ticket text ---------------------------------------------------------------------------

SYSTEM_NAMES = {"ninjaone": "NinjaOne", "connectwise": "ConnectWise"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


@dataclass(frozen=True)
class TicketFacts:
    """What an alert ticket tells a technician beyond the alert itself.

    ``device``: the device as the RMM last reported it (OS, IP addresses, serial number, last
    contact, console link), None when the hub has not stored it; ``client_name``: a hub client's
    name; ``organization``: the name of the alert's organization in the RMM; ``timezone``: the
    MSP's (config ``timezone``), in which every time is shown, with UTC beside it; ``language``:
    of the ticket texts (``[billing.invoice] language``, hub.i18n).
    """

    timezone: str = "UTC"
    language: str = i18n.DEFAULT_LANGUAGE
    device: Callable[[Alert], Device | None] = lambda a: None
    client_name: Callable[[str | None], str | None] = lambda c: None
    organization: Callable[[Alert], str | None] = lambda a: None


def system_name(source: str) -> str:
    return SYSTEM_NAMES.get(source, source)


def local_time(moment: datetime | None, tz: str) -> str | None:
    """``2026-11-04 14:32 CET (13:32 UTC)``: the moment in the MSP's time zone, UTC beside it (with
    its date when the day differs); ``2026-11-04 13:32 UTC`` when the MSP's zone is UTC."""
    if moment is None or moment.utcoffset() is None:
        return None
    utc = moment.astimezone(timezone.utc)
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is None or tz.upper() in ("UTC", "ETC/UTC", "Z"):
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    local = utc.astimezone(zone)
    if local.utcoffset() == timedelta(0) and local.tzname() in ("UTC", "GMT"):
        return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    beside = f"{utc:%H:%M}" if utc.date() == local.date() else f"{utc:%Y-%m-%d %H:%M}"
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({beside} UTC)"


def _summary(text: str, limit: int = 100) -> str:
    """One line of at most ``limit`` characters, cut at a word when one ends in its last third."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rstrip()
    space = cut.rfind(" ")
    if space < limit * 2 // 3:
        return text[:limit]
    return cut[:space].rstrip(" ,;:-") + "…"


def _device_lines(a: Alert, device: Device | None, tz: str, lang: str = i18n.DEFAULT_LANGUAGE) -> list[str]:
    """``Device: PC-10 (WINDOWS_WORKSTATION)`` then OS, last contact, IP addresses, serial number:
    what the RMM reports; what it does not is left out."""
    lines = [i18n.text("alert.device_class", lang, device=a.device_name, device_class=a.device_class)
             if a.device_class else i18n.text("alert.device", lang, device=a.device_name)]
    if device is None:
        return lines
    seen = local_time(device.last_contact, tz)
    for key, value in (("alert.os", device.os_name), ("alert.last_contact", seen), ("alert.ip", device.ip_addresses),
                       ("alert.serial", device.serial_number)):
        if value:
            lines.append(i18n.text(key, lang, value=value))
    return lines


def _condition(a: Alert) -> str:
    """The source type, and the condition when it is a name rather than a config uid."""
    if a.condition and a.condition != a.source_type and not _UUID.match(a.condition):
        return (i18n.text("alert.condition", source_type=a.source_type, condition=a.condition) if a.source_type
                else a.condition)
    return a.source_type or a.condition or "?"


def _description(a: Alert, client: str | None, rule: AlertRule, facts: TicketFacts) -> str:
    rmm = system_name(a.source)
    device = facts.device(a)
    lang = facts.language
    t = lambda key, **kw: i18n.text(key, lang, **kw)   # noqa: E731
    lines = [t("alert.title", severity=a.severity or t("alert.unrated"), device=a.device_name)]
    triggered = local_time(a.created_at or a.updated_at, facts.timezone)
    if triggered:
        lines.append(t("alert.triggered", when=triggered))
    name = facts.client_name(client) if client else None
    lines.append(t("alert.client", name=name, client=client) if name else t("alert.client_id", client=client)
                 if client else t("alert.no_client"))
    org = facts.organization(a)
    if org or a.client_source_id:
        lines.append(t("alert.organization", rmm=rmm, org=org, id=a.client_source_id) if org and a.client_source_id
                     else t("alert.organization_only", rmm=rmm, org=org or a.client_source_id))
    lines.extend(_device_lines(a, device, facts.timezone, lang))
    if device is not None and device.console_url:
        lines.append(t("alert.open_in", rmm=rmm, url=device.console_url))
    priority = t("alert.priority", value=a.priority) if a.priority and a.priority != "NONE" else ""
    lines += ["", t("alert.message"), a.message or t("alert.no_message"), "",
              t("alert.source", value=_condition(a)), t("alert.severity", value=a.severity or "?") + priority,
              t("alert.id", value=a.source_id), t("alert.rule", value=rule.name)]
    return "\n".join(lines)


def _storm_description(alerts: list[Alert], client: str | None, start: datetime, rules: AlertRules,
                       facts: TicketFacts) -> str:
    """The storm's window, its client, then one compact block per alert: the device (class, OS,
    last contact, IP addresses), the alert message, severity and id, the console link."""
    minutes = int(rules.storm_window.total_seconds() // 60)
    name = facts.client_name(client) if client else None
    lang = facts.language
    lines = [i18n.text("alert.storm_head", lang, count=len(alerts), minutes=minutes,
                       start=local_time(start, facts.timezone)),
             i18n.text("alert.client", lang, name=name, client=client) if name
             else i18n.text("alert.client_id", lang, client=client), ""]
    for a in alerts:
        device = facts.device(a)
        about = [a.device_class] if a.device_class else []
        if device is not None:
            seen = local_time(device.last_contact, facts.timezone)
            about += [v for v in (device.os_name, seen and i18n.text("alert.storm_last_contact", lang, value=seen),
                                  device.ip_addresses and f"IP {device.ip_addresses}") if v]
        lines.append(f"- {a.device_name}" + (f" ({'; '.join(about)})" if about else ""))
        lines.append("  " + i18n.text("alert.storm_alert", lang, message=a.message or a.source_type,
                                      severity=a.severity or "?", uid=a.source_id))
        if device is not None and device.console_url:
            lines.append(f"  {device.console_url}")
    return "\n".join(lines)
