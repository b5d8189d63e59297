"""Billing periods: calendar months in the MSP's time zone (BILLING.md, "Periods")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


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
        return moment.astimezone(ZoneInfo(self.tz)).date()

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
