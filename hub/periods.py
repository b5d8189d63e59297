"""Billing periods: calendar months in the MSP's time zone (BILLING.md, "Periods")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# (time zone, UTC day) -> the zone's offset that whole day, None when it changes that day.
_DAY_OFFSETS: dict[tuple[str, date], timedelta | None] = {}


# (moment, time zone) -> its local day: a plan asks for the day of each time entry several times.
_MOMENT_DAYS: dict[tuple[datetime, str], date] = {}


def local_day(moment: datetime, tz: str) -> date:
    """The calendar day of the aware ``moment`` in ``tz``: the zone's rules are looked up once per
    UTC day (a day on which the offset changes, and a naive moment, are converted one by one)."""
    if moment.tzinfo is None:
        return moment.astimezone(ZoneInfo(tz)).date()
    key = (moment, tz)
    day = _MOMENT_DAYS.get(key)
    if day is None:
        if len(_MOMENT_DAYS) > 20_000:   # a client's entries at a time: the plan goes client by client
            _MOMENT_DAYS.clear()
        day = _MOMENT_DAYS[key] = _local_day(moment, tz)
    return day


def _local_day(moment: datetime, tz: str) -> date:
    if moment.tzinfo is timezone.utc:
        utc = moment
    else:
        offset = moment.utcoffset()
        if offset is None:
            return moment.astimezone(ZoneInfo(tz)).date()
        utc = moment.replace(tzinfo=None) - offset
    key = (tz, utc.date())
    day_offset = _DAY_OFFSETS.get(key, False)
    if day_offset is False:
        zone = ZoneInfo(tz)
        midnight = datetime.combine(key[1], time(), timezone.utc)
        offsets = {(midnight + timedelta(hours=h)).astimezone(zone).utcoffset() for h in (0, 6, 12, 18, 24)}
        day_offset = offsets.pop() if len(offsets) == 1 else None
        if len(_DAY_OFFSETS) > 100_000:
            _DAY_OFFSETS.clear()
        _DAY_OFFSETS[key] = day_offset
    if day_offset is None:
        return moment.astimezone(ZoneInfo(tz)).date()
    return (utc + day_offset).date()


@dataclass(frozen=True)
class Period:
    """A calendar month in ``tz``; ``start`` inclusive and ``end`` exclusive, both aware UTC."""

    name: str
    tz: str
    start: datetime
    end: datetime
    first_day: date
    days: int

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def local_day(self, moment: datetime) -> date:
        """The calendar day of ``moment`` in the MSP's time zone."""
        return local_day(moment, self.tz)

    def has_ended(self, now: datetime) -> bool:
        return now >= self.end

    def next(self) -> "Period":
        y, m = self.first_day.year, self.first_day.month
        return month(y + (m == 12), 1 if m == 12 else m + 1, self.tz)

    def previous(self) -> "Period":
        y, m = self.first_day.year, self.first_day.month
        return month(y - (m == 1), 12 if m == 1 else m - 1, self.tz)


def month(year: int, mon: int, tz: str = "UTC") -> Period:
    """The period of ``year``-``mon`` in time zone ``tz``."""
    zone = ZoneInfo(tz)
    first = date(year, mon, 1)
    nxt = date(year + (mon == 12), 1 if mon == 12 else mon + 1, 1)
    start = datetime(first.year, first.month, 1, tzinfo=zone).astimezone(timezone.utc)
    end = datetime(nxt.year, nxt.month, 1, tzinfo=zone).astimezone(timezone.utc)
    return Period(f"{year:04d}-{mon:02d}", tz, start, end, first, (nxt - first).days)


def parse_period(text: str, tz: str = "UTC") -> Period:
    """``"2026-10"`` -> Period; ValueError with the expected form otherwise."""
    m = _PERIOD.match(text.strip())
    if not m:
        raise ValueError(f"period {text!r} is not of the form YYYY-MM (e.g. 2026-10)")
    return month(int(m.group(1)), int(m.group(2)), tz)


def period_of(moment: datetime, tz: str = "UTC") -> Period:
    """The period in which ``moment`` falls, in the MSP's local time."""
    local = moment.astimezone(ZoneInfo(tz))
    return month(local.year, local.month, tz)


def last_ended_period(now: datetime, tz: str = "UTC") -> Period:
    """The most recent period that has ended at ``now`` (the one a scheduled sync invoices)."""
    return period_of(now, tz).previous()


# --- quarters (the reports': a scorecard per quarter, quarterly delivery) ------------------------

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


@dataclass(frozen=True)
class Quarter:
    """A calendar quarter in ``tz``: ``start`` inclusive, ``end`` exclusive (UTC), its first and
    last local days."""

    name: str
    tz: str
    start: datetime
    end: datetime
    first_day: date
    last_day: date

    @property
    def period(self) -> Period:
        """The quarter as a Period (what the billing rules' helpers read)."""
        return Period(self.name, self.tz, self.start, self.end, self.first_day,
                      (self.last_day - self.first_day).days + 1)

    def months(self) -> list[Period]:
        y, q = int(self.name[:4]), int(self.name[-1])
        return [month(y, m, self.tz) for m in range(3 * q - 2, 3 * q + 1)]

    def last_month(self) -> Period:
        return month(self.last_day.year, self.last_day.month, self.tz)

    def previous(self) -> "Quarter":
        y, q = int(self.name[:4]), int(self.name[-1])
        return parse_quarter(f"{y - (q == 1):04d}-Q{4 if q == 1 else q - 1}", self.tz)


def parse_quarter(text: str, tz: str = "UTC") -> Quarter:
    """``"2026-Q4"`` -> the quarter in ``tz``; ValueError naming the form otherwise."""
    m = _QUARTER.match(str(text).strip())
    if not m:
        raise ValueError(f"quarter {text!r} is not of the form YYYY-Qn (e.g. 2026-Q4); write the year, "
                         f"a dash, Q and the quarter 1 to 4")
    y, q = int(m[1]), int(m[2])
    first, last = month(y, 3 * q - 2, tz), month(y, 3 * q, tz)
    return Quarter(f"{y:04d}-Q{q}", tz, first.start, last.end, first.first_day,
                   last.first_day + timedelta(days=last.days - 1))


def is_quarter(text: str) -> bool:
    return bool(_QUARTER.match(str(text)))


def quarter_name(day: date) -> str:
    """The name of the quarter of a calendar day (``2026-Q4``)."""
    return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"


def quarter_of(moment: datetime, tz: str) -> str:
    """The name of the quarter ``moment`` falls in, in ``tz``."""
    return quarter_name(local_day(moment, tz))


def quarter_of_period(period: str) -> str:
    """The quarter of a month's name (``2026-11`` -> ``2026-Q4``)."""
    return quarter_name(date(int(period[:4]), int(period[5:7]), 1))
