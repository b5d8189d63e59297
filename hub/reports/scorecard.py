"""The client scorecard: one client, one quarter, the rows of the reference scorecard as
percentages, this quarter against the last, and the devices or tickets behind each figure.

Reads the store only (never a vendor): devices, the PSA's configurations, antivirus, patches,
backup jobs, device health, alerts and their TRIGGERED/RESET events, every service ticket. A row
with no data is "not measured" (None): shown as such and left out of the overall score, never
counted as 0. The overall score is the weighted average of the measured rows (weights in
``mappings/scorecard.toml``, 0 disables a row).

A scorecard is frozen when it is presented (``freeze``): its data is stored as computed and every
later render reads it (the same bytes); the next quarter's "previous" column reads it too.

For the delivery job and the console:
  ``build(hub, client_id, quarter) -> Scorecard``          computed now from the store
  ``scorecard_for(hub, client_id, quarter) -> Scorecard``  the frozen one, else ``build``
  ``freeze(hub, scorecard, who=None, refreeze=False) -> Scorecard``
  ``render(scorecard, fmt, lang, details=False, msp_name="", logo=None) -> bytes``  (html, pdf, json)
  ``render_for(hub, scorecard, fmt, lang=None, details=False) -> bytes``  with the config's [reports]
  ``clients_with_scorecards(hub) -> list[(client id, name)]``  every linked client
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from hub.errors import HubError
from hub.periods import Period, Quarter, parse_quarter
from hub.reconcile import COUNTED_STATES, why_not_counted
from hub.records import PATCH_APPROVED, PATCH_FAILED, PATCH_INSTALLED, PATCH_MANUAL, PATCH_PENDING
from hub.reports.scorecard_config import AREAS, ROWS, ScorecardSettings, load_settings

FORMAT = 1          # the version of a scorecard's data (frozen scorecards keep theirs)


class ScorecardError(HubError):
    """A scorecard that cannot be made as asked (unknown client, bad quarter, frozen already)."""


# --- quarters -----------------------------------------------------------------------------------

def quarter(text: str, tz: str = "UTC") -> Quarter:
    """``"2026-Q4"`` -> its bounds in ``tz`` (hub.periods); ScorecardError with the expected form
    otherwise."""
    try:
        return parse_quarter(text, tz)
    except ValueError as exc:
        raise ScorecardError(str(exc)) from None


# --- the scorecard ------------------------------------------------------------------------------

@dataclass
class Scorecard:
    """What a scorecard shows, as plain data (``data`` is what is frozen, as JSON)."""

    data: dict[str, Any]

    @property
    def client_id(self) -> str:
        return self.data["client_id"]

    @property
    def quarter(self) -> str:
        return self.data["quarter"]

    @property
    def overall(self) -> float | None:
        return self.data["overall"]

    @property
    def frozen(self) -> dict | None:
        return self.data.get("frozen")

    def row(self, key: str) -> dict:
        return next(r for r in self.data["rows"] if r["key"] == key)


def _pct(num: float, den: float) -> float | None:
    return None if not den else round(100.0 * num / den, 1)


def overall_of(rows: Iterable[dict]) -> float | None:
    """The weighted average of the measured rows (None: no row measured)."""
    measured = [(r["value"], r["weight"]) for r in rows if r["value"] is not None and r["weight"] > 0]
    total = sum(w for _, w in measured)
    return round(sum(v * w for v, w in measured) / total, 1) if total else None


def _area_scores(rows: Iterable[dict]) -> dict[str, float | None]:
    rows = list(rows)
    return {area: overall_of(r for r in rows if r["area"] == area) for area in AREAS}


def _item(kind: str, ident: str, name: str, fact: str, counted: bool, **args: Any) -> dict:
    return {"kind": kind, "id": str(ident), "name": str(name), "fact": fact, "counted": counted,
            "args": {k: v for k, v in args.items()}}


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


class _Reader:
    """The client's records of every linked system, read once per table."""

    def __init__(self, hub, links: dict[str, str]):
        self.store, self.links, self._cache = hub.store, links, {}

    def records(self, table: str) -> list:
        if table not in self._cache:
            self._cache[table] = [r for system, ext in sorted(self.links.items())
                                  for r in self.store.iter_records(table, system, ext)]
        return self._cache[table]

    def has_data(self, table: str) -> bool:
        """Whether any of the client's systems stored anything in ``table`` (for any client)."""
        return bool(set(self.store.sources(table)) & set(self.links))


def _why_not_managed(device, period: Period) -> dict | None:
    """Why a device is not managed in the quarter (the billing rule's reasons, as a code and its
    facts for the labels of both languages), None when it is."""
    if why_not_counted(device, period) is None:
        return None
    if device.approval_status not in COUNTED_STATES:
        return {"reason": "not_approved", "status": device.approval_status}
    if device.created_at is not None and device.created_at >= period.end:
        return {"reason": "created_after"}
    if device.last_contact is None:
        return {"reason": "never_seen"}
    return {"reason": "not_seen", "last": device.last_contact.date().isoformat()}


def _matches(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value or "", p) for p in patterns)


def build(hub, client_id: str, quarter_name: str, *, settings: ScorecardSettings | None = None,
          previous: bool = True) -> Scorecard:
    """Compute the client's scorecard for the quarter from the store (nothing frozen is read but
    the previous quarter's, for the "previous" column and the trend)."""
    from hub.engine import RunReport
    from hub.planner import build_context

    settings = settings or load_settings(getattr(hub.config, "mappings", None))
    tz = hub.config.timezone
    q = quarter(quarter_name, tz)
    now = hub.clock()
    if q.start > now:
        raise ScorecardError(f"quarter {q.name} has not begun (it starts on {q.first_day.isoformat()}); "
                             f"ask for a quarter that has begun, e.g. the current one")
    ctx = build_context(hub, RunReport("scorecard", "report", now), q.last_month())
    client = ctx.registry.clients.get(client_id)
    if client is None:
        raise ScorecardError(f"unknown client {client_id!r}; msp-hub clients lists the hub's client ids")
    end = min(q.end, now)
    reader = _Reader(hub, client.links)
    calc = _Rows(hub, settings, q, end, reader, ctx.contracts.get(client_id), client_id)
    rows = []
    for key, area in ROWS:
        value, items, note, extra = getattr(calc, key)()
        rows.append({"key": key, "area": area, "value": value, "previous": None, "weight": settings.weight(key),
                     "note": note if value is None else None, "items": items, **extra})
    data: dict[str, Any] = {
        "format": FORMAT, "client_id": client_id, "client_name": client.name, "quarter": q.name,
        "first_day": q.first_day.isoformat(), "last_day": q.last_day.isoformat(), "timezone": tz,
        "measured_until": _iso(end), "partial": end < q.end, "rows": rows, "overall": overall_of(rows),
        "areas": _area_scores(rows), "previous_quarter": q.previous().name, "previous_overall": None,
        "previous_areas": {a: None for a in AREAS}, "previous_frozen": False, "trend": []}
    if previous:
        _add_previous(hub, data, q, settings)
    return Scorecard(data)


def _add_previous(hub, data: dict, q: Quarter, settings: ScorecardSettings) -> None:
    """The previous quarter's figures (its frozen scorecard, else computed) and the trend over the
    last quarters from frozen scorecards, with this one last."""
    prev_q = q.previous()
    frozen = hub.store.frozen_scorecard(data["client_id"], prev_q.name)
    prev = None
    if frozen is not None:
        prev = frozen["data"]
        data["previous_frozen"] = True
    else:
        try:
            prev = build(hub, data["client_id"], prev_q.name, settings=settings, previous=False).data
        except ScorecardError:
            prev = None
    if prev is not None:
        by_key = {r["key"]: r["value"] for r in prev["rows"]}
        for r in data["rows"]:
            r["previous"] = by_key.get(r["key"])
        data["previous_overall"] = prev["overall"]
        data["previous_areas"] = prev.get("areas") or _area_scores(prev["rows"])
    trend, at = [], q
    for _ in range(settings.trend_quarters):
        at = at.previous()
        f = hub.store.frozen_scorecard(data["client_id"], at.name)
        if f is not None:
            trend.append({"quarter": at.name, "overall": f["data"]["overall"], "areas": f["data"].get("areas")})
    trend.reverse()
    trend.append({"quarter": q.name, "overall": data["overall"], "areas": data["areas"]})
    data["trend"] = trend


class _Rows:
    """One method per row: (value or None, items, the reason it is not measured, extra fields)."""

    def __init__(self, hub, settings: ScorecardSettings, q: Quarter, end: datetime, reader: _Reader, contract,
                 client_id: str):
        self.hub, self.s, self.q, self.end, self.r = hub, settings, q, end, reader
        self.contract, self.client_id = contract, client_id
        self.period = q.period
        classes = hub.mappings.device_classes
        self.devices = reader.records("devices")
        self.managed = [d for d in self.devices if why_not_counted(d, self.period) is None]
        self.dclass = {(d.source, d.source_id): classes.get(d.source, {}).get(d.node_class) for d in self.devices}
        self.configs = [c for c in reader.records("configurations") if c.active]
        self._match_configs()

    # -- helpers --

    def cls(self, d) -> str | None:
        return self.dclass.get((d.source, d.source_id))

    def of_classes(self, classes: Iterable[str]) -> list:
        classes = set(classes)
        return [d for d in self.managed if self.cls(d) in classes]

    def _match_configs(self) -> None:
        """Each PSA configuration's RMM device: by the RMM id the PSA holds, else the serial
        number, else the same name (case ignored)."""
        by_id = {d.source_id: d for d in self.devices}
        by_serial = {d.serial_number.strip().lower(): d for d in self.devices if d.serial_number}
        by_name = {str(d.name).strip().lower(): d for d in self.devices}
        self.config_device = {}
        for c in self.configs:
            d = ((by_id.get(c.device_identifier) if c.device_identifier else None)
                 or (by_serial.get(c.serial_number.strip().lower()) if c.serial_number else None)
                 or by_name.get(str(c.name).strip().lower()))
            self.config_device[c.source_id] = d
        self.device_config = {(d.source, d.source_id): c for c in self.configs
                              if (d := self.config_device[c.source_id]) is not None}

    # -- asset management --

    def managed_devices(self):
        managed_ids = {(d.source, d.source_id) for d in self.managed}
        items = []
        if self.configs:
            n = 0
            for c in sorted(self.configs, key=lambda c: (c.name, c.source_id)):
                d = self.config_device[c.source_id]
                ok = d is not None and (d.source, d.source_id) in managed_ids
                n += ok
                items.append(_item("configuration", c.source_id, c.name,
                                   "config_managed" if ok else ("config_device_not_managed" if d else "config_no_device"),
                                   ok, device=d.name if d else None, type=c.type_name))
            return _pct(n, len(self.configs)), items, "no_devices", {"basis": "configurations"}
        devices = [d for d in self.devices if d.created_at is None or d.created_at < self.q.end]
        for d in sorted(devices, key=lambda d: (str(d.name), d.source_id)):
            why = _why_not_managed(d, self.period)
            items.append(_item("device", d.source_id, d.name, "device_managed" if why is None else "device_not_managed",
                               why is None, **(why or {})))
        n = sum(i["counted"] for i in items)
        return _pct(n, len(devices)), items, "no_devices", {"basis": "devices"}

    def _warranty(self, classes: list[str]):
        last = self.q.last_day.isoformat()
        items, known, under = [], 0, 0
        wanted = set(classes)
        for d in sorted(self.of_classes(classes), key=lambda d: (str(d.name), d.source_id)):
            c = self.device_config.get((d.source, d.source_id))
            end = d.warranty_end or (c.warranty_end if c is not None else None)
            items.append(self._warranty_item("device", d.source_id, d.name, end, last))
        for c in self.configs:
            if self.config_device[c.source_id] is None and self.s.classes.psa_types.get(c.type_name) in wanted:
                items.append(self._warranty_item("configuration", c.source_id, c.name, c.warranty_end, last))
        for i in items:
            if i["fact"] != "warranty_unknown":
                known += 1
                under += i["counted"]
        return _pct(under, known), items, ("no_warranty_dates" if items else "no_devices"), {}

    @staticmethod
    def _warranty_item(kind: str, ident: str, name: str, end: str | None, last: str) -> dict:
        if not end:
            return _item(kind, ident, name, "warranty_unknown", False)
        end = end[:10]
        return _item(kind, ident, name, "warranty_until" if end >= last else "warranty_expired", end >= last, date=end)

    def server_warranty(self):
        return self._warranty(self.s.classes.servers + self.s.classes.network)

    def workstation_warranty(self):
        return self._warranty(self.s.classes.workstations)

    # -- security --

    def antivirus(self):
        devices = self.of_classes(self.s.classes.protected)
        if not devices:
            return None, [], "no_devices", {}
        if not self.r.has_data("antivirus"):
            return None, [], "no_antivirus_data", {}
        active = {s.upper() for s in self.s.antivirus.active_states}
        current = {s.upper() for s in self.s.antivirus.up_to_date}
        products: dict[str, list] = {}
        for a in self.r.records("antivirus"):
            products.setdefault(a.device_source_id, []).append(a)
        threats = {h.device_source_id: h.active_threats for h in self.r.records("device_health")}
        items, covered, protected = [], 0, 0
        for d in sorted(devices, key=lambda d: (str(d.name), d.source_id)):
            mine = products.get(d.source_id, [])
            good = [a for a in mine if str(a.product_state).upper() in active
                    and str(a.definition_status).upper() in current]
            threat = threats.get(d.source_id, 0) or 0
            if not mine:
                fact = "av_none"
            elif threat:
                fact = "av_threats"
            elif not good:
                fact = "av_not_current"
            else:
                fact = "av_protected"
            covered += bool(mine)
            protected += fact == "av_protected"
            items.append(_item("device", d.source_id, d.name, fact, fact == "av_protected",
                               products=", ".join(f"{a.product_name} ({a.product_state}, {a.definition_status})"
                                                  for a in mine), threats=threat))
        coverage, protection = _pct(covered, len(devices)), _pct(protected, len(devices))
        return round((coverage + protection) / 2, 1), items, None, {"coverage": coverage, "protection": protection}

    def _patches(self, kind: str, row):
        devices = self.managed
        if not devices:     # not measured: the method still names the row's definition
            return None, [], "no_devices", {"method": row.method}
        mine = [p for p in self.r.records("patches") if p.kind == kind]
        if not self.r.has_data("patches"):
            return None, [], "no_patch_data", {"method": row.method}
        by_device: dict[str, list] = {}
        for p in mine:
            by_device.setdefault(p.device_source_id, []).append(p)
        start, end = self.q.start, self.end
        items = []
        if row.method == "buckets":
            scores = []
            for d in sorted(devices, key=lambda d: (str(d.name), d.source_id)):
                missing = [p for p in by_device.get(d.source_id, [])
                           if p.status in (PATCH_PENDING, PATCH_APPROVED, PATCH_MANUAL)]
                score = next((b.score for b in row.buckets if len(missing) <= b.up_to), row.more)
                scores.append(score)
                items.append(_item("device", d.source_id, d.name, "patch_missing", not missing, missing=len(missing),
                                   score=score, names=", ".join(sorted(p.name for p in missing)[:5])))
            return round(sum(scores) / len(scores), 1), items, None, {"method": "buckets"}
        installed = approved = 0
        names = {d.source_id: d.name for d in devices}
        for d in sorted(devices, key=lambda d: (str(d.name), d.source_id)):
            done = failed = waiting = 0
            for p in by_device.get(d.source_id, []):
                if p.status in (PATCH_INSTALLED, PATCH_FAILED):
                    if p.installed_at is None or not (start <= p.installed_at < end):
                        continue
                    done += p.status == PATCH_INSTALLED
                    failed += p.status == PATCH_FAILED
                elif p.status == PATCH_APPROVED:
                    waiting += 1
            if done + failed + waiting:
                items.append(_item("device", d.source_id, names[d.source_id], "patch_ratio", not (failed + waiting),
                                   installed=done, failed=failed, waiting=waiting))
            installed += done
            approved += done + failed + waiting
        return (_pct(installed, approved), items, "no_approved_patches",
                {"method": "installed_over_approved", "installed": installed, "approved": approved})

    def os_patches(self):
        return self._patches("os", self.s.rows.os_patches)

    def software_patches(self):
        return self._patches("software", self.s.rows.software_patches)

    def firewall(self):
        manual = self.s.firewall.manual.get(self.client_id)
        if manual is not None:
            return (100.0 if manual else 0.0), [_item("answer", self.client_id, self.client_id, "firewall_manual",
                                                      manual, answer=manual)], None, {"manual": True}
        health = {h.device_source_id: h for h in self.r.records("device_health")}
        items = []
        for d in sorted((d for d in self.devices if d.node_class in self.s.firewall.node_classes),
                        key=lambda d: (str(d.name), d.source_id)):
            h = health.get(d.source_id)
            seen = _why_not_managed(d, self.period)
            if seen is not None:
                fact, ok = "firewall_not_seen", False
            elif h is None:
                fact, ok = "firewall_no_health", False
            elif h.health != "healthy" or h.offline:
                fact, ok = "firewall_unhealthy", False
            else:
                fact, ok = "firewall_healthy", True
            items.append(_item("device", d.source_id, d.name, fact, ok, health=h.health if h else None, **(seen or {})))
        for c in self.configs:
            if c.type_name in self.s.firewall.psa_types and self.config_device[c.source_id] is None:
                items.append(_item("configuration", c.source_id, c.name, "firewall_psa_only", False))
        if not items:
            return None, [], "no_firewall", {}
        return _pct(sum(i["counted"] for i in items), len(items)), items, None, {"manual": False}

    def data_protection(self):
        from hub.reconcile import bill_devices
        if self.contract is None:
            return None, [], "no_contract", {}
        # The devices the contract bills with a backup service: its tier's (or a class's tier's)
        # services, or an add-on's, as the invoice of the quarter's last month counts them.
        bill = bill_devices(self.contract, self.hub.mappings, self.devices, self.q.last_month())
        m, services, add_ons = self.hub.mappings, set(self.s.backup.services), set(self.s.backup.add_ons)
        should: dict[str, str] = {}
        for line in bill.lines:
            kind, ident = line.code.split(":")[:2]
            if kind == "tier" and ident in m.tiers and m.tiers[ident].services & services:
                why = f"tier {m.tiers[ident].name}"
            elif kind == "addon" and ident in m.addons and (m.addons[ident].service in services or ident in add_ons):
                why = f"add-on {m.addons[ident].name}"
            else:
                continue
            for it in line.items:
                should.setdefault(it["id"], why)
        if not should:
            return None, [], "no_backup_service", {}
        if not self.r.has_data("backups"):
            return None, [], "no_backup_data", {}
        done: dict[str, datetime] = {}
        for b in self.r.records("backups"):
            at = b.ended_at or b.started_at
            if b.status == "completed" and at is not None and self.q.start <= at < self.end:
                done[b.device_source_id] = max(done.get(b.device_source_id, at), at)
        names = {d.source_id: d.name for d in self.devices}
        items = [_item("device", i, names.get(i, i), "backup_done" if i in done else "backup_none", i in done,
                       by=why, at=_iso(done.get(i))) for i, why in sorted(should.items(), key=lambda x: (str(names.get(x[0])), x[0]))]
        return _pct(len(done.keys() & should.keys()), len(should)), items, None, {}

    # -- availability --

    def _open_time(self, conditions, classes: list[str]):
        devices = self.of_classes(classes)
        if not devices:
            return None, [], "no_devices", {}
        if not (self.r.has_data("alert_events") or self.r.has_data("alerts")):
            return None, [], "no_alert_data", {}
        ids = {d.source_id for d in devices}
        alerts = {a.source_id: a for a in self.r.records("alerts")}
        series_ok = {uid for uid, a in alerts.items()
                     if (_matches(conditions.source_types, a.source_type) or _matches(conditions.conditions, a.condition))
                     and (not conditions.severities or a.severity in conditions.severities)}
        events: dict[str, list] = {}
        wanted = sorted(ids)
        for system in sorted(self.r.links):
            for at in range(0, len(wanted), 500):
                part = wanted[at:at + 500]
                for e in self.r.store.iter_records("alert_events", system, where="device_source_id in ({})".format(
                        ", ".join("?" for _ in part)), args=part):
                    if e.series_uid in series_ok:
                        events.setdefault(e.device_source_id, []).append(e)
        start, end = self.q.start, self.end
        span = (end - start).total_seconds()
        items, shares = [], []
        for d in sorted(devices, key=lambda d: (str(d.name), d.source_id)):
            intervals = []
            by_series: dict[str, list] = {}
            for e in events.get(d.source_id, []):
                by_series.setdefault(e.series_uid, []).append(e)
            for evs in by_series.values():
                opened = None
                for n, e in enumerate(sorted(evs, key=lambda e: (e.occurred_at, e.status != "triggered"))):
                    if e.status == "triggered" and opened is None:
                        opened = e.occurred_at
                    elif e.status == "reset" and opened is not None:
                        intervals.append((opened, e.occurred_at))
                        opened = None
                    elif e.status == "reset" and n == 0:
                        # its trigger is older than the activities kept: open from the quarter's start
                        intervals.append((start, e.occurred_at))
                if opened is not None:
                    intervals.append((opened, end))
            down = _union_seconds(intervals, start, end)
            share = 100.0 * (1 - down / span) if span > 0 else 100.0
            shares.append(share)
            items.append(_item("device", d.source_id, d.name, "open_time", down == 0, hours=round(down / 3600, 2),
                               share=round(share, 2)))
        return round(sum(shares) / len(shares), 1), items, None, {}

    def service_availability(self):
        return self._open_time(self.s.alerts.availability, self.s.classes.servers)

    def network_reliability(self):
        return self._open_time(self.s.alerts.availability, self.s.classes.network)

    def performance(self):
        return self._open_time(self.s.alerts.performance, self.s.classes.performance)

    # -- tickets --

    def tickets(self):
        if not self.r.has_data("service_tickets"):
            return None, [], "no_ticket_data", {"summary": None}
        start, end = self.q.start, self.end
        targets = self.s.tickets.target_hours
        by_priority: dict[str, dict[str, int]] = {}
        items, durations, within, with_target = [], [], 0, 0
        for t in sorted(self.r.records("service_tickets"), key=lambda t: (t.opened_at or start, t.source_id)):
            opened = t.opened_at is not None and start <= t.opened_at < end
            closed = t.closed and t.closed_at is not None and start <= t.closed_at < end
            if not (opened or closed):
                continue
            p = by_priority.setdefault(t.priority or "-", {"opened": 0, "closed": 0})
            p["opened"] += opened
            p["closed"] += closed
            if not closed:
                fact = "ticket_closed_no_date" if t.closed and t.closed_at is None else "ticket_open"
                items.append(_item("ticket", t.source_id, t.summary, fact, False, priority=t.priority))
                continue
            if t.opened_at is None:
                items.append(_item("ticket", t.source_id, t.summary, "ticket_no_open_date", False, priority=t.priority))
                continue
            hours = (t.closed_at - t.opened_at).total_seconds() / 3600
            durations.append(hours)
            target = targets.get(t.priority)
            if target is None:
                items.append(_item("ticket", t.source_id, t.summary, "ticket_no_target", False, priority=t.priority,
                                   hours=round(hours, 2)))
                continue
            with_target += 1
            within += hours <= target
            items.append(_item("ticket", t.source_id, t.summary, "ticket_within" if hours <= target else "ticket_late",
                               hours <= target, priority=t.priority, hours=round(hours, 2), target=target))
        summary = {"by_priority": {k: by_priority[k] for k in sorted(by_priority)},
                   "opened": sum(p["opened"] for p in by_priority.values()),
                   "closed": sum(p["closed"] for p in by_priority.values()),
                   "mean_hours": round(sum(durations) / len(durations), 2) if durations else None,
                   "within_target": within, "with_target": with_target}
        return _pct(within, with_target), items, "no_closed_tickets", {"summary": summary}


def _union_seconds(intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) covered by at least one interval."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += (cur_b - cur_a).total_seconds()
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += (cur_b - cur_a).total_seconds()
    return total


# --- frozen scorecards ----------------------------------------------------------------------------

def scorecard_for(hub, client_id: str, quarter_name: str) -> Scorecard:
    """The client's frozen scorecard of the quarter, else one computed now (``build``)."""
    q = quarter(quarter_name, hub.config.timezone)
    frozen = hub.store.frozen_scorecard(client_id, q.name)
    if frozen is not None:
        return Scorecard(frozen["data"])
    return build(hub, client_id, q.name)


def freeze(hub, scorecard: Scorecard, *, who: str | None = None, refreeze: bool = False) -> Scorecard:
    """Store the scorecard as presented, with who froze it and when; the frozen scorecard (what
    every later render reads). A quarter already frozen is refused unless ``refreeze``."""
    from hub.store import system_user
    who = who or system_user()
    at = hub.clock().astimezone(timezone.utc).isoformat()
    data = dict(scorecard.data, frozen={"at": at, "by": who})
    if not hub.store.freeze_scorecard(scorecard.client_id, scorecard.quarter, data, at=at, who=who,
                                      replace=refreeze):
        old = hub.store.frozen_scorecard(scorecard.client_id, scorecard.quarter)
        raise ScorecardError(f"the scorecard of client {scorecard.client_id} for {scorecard.quarter} was already frozen "
                             f"on {old['frozen_at']} by {old['frozen_by']}; it is kept as presented (add --refreeze "
                             f"to replace it with the figures computed now)")
    return Scorecard(hub.store.frozen_scorecard(scorecard.client_id, scorecard.quarter)["data"])


def clients_with_scorecards(hub) -> list[tuple[str, str]]:
    """Every linked hub client (id, name), by id: the clients a scorecard can be made for."""
    from hub.engine import RunReport
    from hub.periods import last_ended_period
    from hub.planner import build_context
    ctx = build_context(hub, RunReport("scorecard", "report", hub.clock()),
                        last_ended_period(hub.clock(), hub.config.timezone))
    return [(cid, c.name) for cid, c in sorted(ctx.registry.clients.items()) if c.links]


def render(scorecard: Scorecard, fmt: str = "html", lang: str = "en", *, details: bool = False,
           msp_name: str = "", logo: str | None = None) -> bytes:
    """The scorecard as ``html``, ``pdf`` (from the same HTML) or ``json``; only its data is read,
    so a frozen scorecard renders to the same bytes every time."""
    from hub.reports import scorecard_render
    return scorecard_render.render(scorecard.data, fmt, lang, details=details, msp_name=msp_name, logo=logo)


def render_for(hub, scorecard: Scorecard, fmt: str = "html", lang: str | None = None, *,
               details: bool = False) -> bytes:
    """``render`` with the MSP's name, logo and language of the config's ``[reports]`` (``lang``
    None: ``[reports] language``, else the invoices'). A logo file that is not there is an error
    naming the key and the fix."""
    from hub.reports.render import data_uri
    config = hub.config
    settings = config.report_settings
    logo_path = config.report_logo
    if logo_path is not None and not logo_path.is_file():
        raise ScorecardError(f"[reports] logo: {logo_path} is not a file; correct the path in {config.file} "
                             f"(relative to the config's folder) or remove the key")
    logo = data_uri(logo_path) if logo_path is not None else None
    return render(scorecard, fmt, lang or config.report_language, details=details, msp_name=settings.msp_name or "",
                  logo=logo)
