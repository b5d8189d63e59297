"""Money parsing and rounding, and billing periods."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from fractions import Fraction

import pytest

from hub.money import format_minor, format_quantity, round_half_up, to_minor
from hub.periods import last_ended_period, month, parse_period, period_of


@pytest.mark.parametrize("text, cur, minor", [("120.00", "EUR", 12000), ("120", "EUR", 12000),
                                              ("0.5", "usd", 50), ("1500", "JPY", 1500), (99, "EUR", 9900)])
def test_to_minor(text, cur, minor):
    assert to_minor(text, cur) == minor


@pytest.mark.parametrize("text", ["12.345", "abc", "nan"])
def test_to_minor_refuses_what_is_not_an_amount(text):
    with pytest.raises(ValueError):
        to_minor(text, "EUR")


@pytest.mark.parametrize("value, rounded", [(Fraction(1, 2), 1), (Fraction(149, 100), 1), (Fraction(3, 2), 2),
                                            (Fraction(-1, 2), -1), (Fraction(5, 1), 5)])
def test_round_half_up(value, rounded):
    assert round_half_up(value) == rounded


def test_formatting():
    assert format_minor(12000, "eur") == "120.00 EUR"
    assert format_minor(1500, "JPY") == "1500 JPY"
    assert format_quantity(Fraction(45, 31)) == "1.4516"
    assert format_quantity(Fraction(4)) == "4"


def test_periods():
    p = parse_period("2026-12", "UTC")
    assert p.days == 31 and p.next().name == "2027-01" and p.previous().name == "2026-11"
    now = datetime(2026, 11, 22, 17, 0, tzinfo=timezone.utc)
    assert last_ended_period(now).name == "2026-10"
    assert period_of(datetime(2026, 10, 31, 23, 30, tzinfo=timezone.utc), "Europe/Paris").name == "2026-11"
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_period("2026-13")


# --- Period.contains at both boundaries, in UTC and across a DST change in Europe/Paris ---

UTC = timezone.utc
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize("moment, inside", [
    (datetime(2026, 10, 1, tzinfo=UTC), True),                       # the start is in
    (datetime(2026, 10, 1, tzinfo=UTC) - TICK, False),
    (datetime(2026, 11, 1, tzinfo=UTC), False),                      # the end is out
    (datetime(2026, 11, 1, tzinfo=UTC) - TICK, True),
])
def test_period_contains_its_start_not_its_end(moment, inside):
    assert parse_period("2026-10").contains(moment) is inside


def test_october_in_paris_spans_the_end_of_summer_time():
    oct_ = month(2026, 10, "Europe/Paris")
    # Summer time (UTC+2) when it starts, winter time (UTC+1) when it ends, on 25 October.
    assert oct_.start == datetime(2026, 9, 30, 22, tzinfo=UTC) and oct_.end == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert oct_.days == 31 and oct_.end - oct_.start == timedelta(days=31, hours=1)
    assert oct_.contains(oct_.start) and not oct_.contains(oct_.start - TICK)
    assert oct_.contains(oct_.end - TICK) and not oct_.contains(oct_.end)
    assert not oct_.contains(datetime(2026, 10, 31, 23, 30, tzinfo=UTC))     # 00:30 on 1 November in Paris
    assert month(2026, 11, "Europe/Paris").contains(datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    # 02:30 local happens twice on 25 October; both are in October, on the 25th.
    for moment in (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)):
        assert oct_.contains(moment) and oct_.local_day(moment) == date(2026, 10, 25)


def test_march_in_paris_spans_the_start_of_summer_time():
    mar = month(2026, 3, "Europe/Paris")
    assert mar.start == datetime(2026, 2, 28, 23, tzinfo=UTC) and mar.end == datetime(2026, 3, 31, 22, tzinfo=UTC)
    assert mar.end - mar.start == timedelta(days=30, hours=23)
    assert mar.contains(mar.start) and not mar.contains(mar.start - TICK)
    assert mar.contains(mar.end - TICK) and not mar.contains(mar.end)
    assert not mar.contains(datetime(2026, 3, 31, 22, 30, tzinfo=UTC))       # 00:30 on 1 April in Paris
    assert mar.contains(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))            # 03:30 summer time, just after the change


def test_contains_compares_instants_whatever_the_offset_of_the_moment():
    paris = ZoneInfo("Europe/Paris")
    oct_ = month(2026, 10, "Europe/Paris")
    assert oct_.contains(datetime(2026, 10, 1, 0, 0, tzinfo=paris))
    assert not oct_.contains(datetime(2026, 11, 1, 0, 0, tzinfo=paris))
    half_past_midnight = datetime(2026, 11, 1, 0, 30, tzinfo=paris)          # 23:30 UTC on 31 October
    assert parse_period("2026-10", "UTC").contains(half_past_midnight)
    assert not oct_.contains(half_past_midnight)


@pytest.mark.parametrize("now, ended", [
    (datetime(2026, 10, 31, 23, tzinfo=UTC), True),
    (datetime(2026, 10, 31, 23, tzinfo=UTC) - TICK, False),
])
def test_a_period_has_ended_at_its_end(now, ended):
    assert month(2026, 10, "Europe/Paris").has_ended(now) is ended


@pytest.mark.parametrize("value, rounded", [
    (Fraction(5, 2), 3), (Fraction(249, 100), 2), (Fraction(251, 100), 3),     # at, below, above one half
    (Fraction(-5, 2), -3), (Fraction(-249, 100), -2), (Fraction(0), 0), (Fraction(1, 3), 0), (Fraction(2, 3), 1),
])
def test_round_half_up_at_its_edge(value, rounded):
    assert round_half_up(value) == rounded


@pytest.mark.parametrize("text, cur, minor", [("0.01", "EUR", 1), ("1.000", "KWD", 1000), ("0.001", "KWD", 1),
                                              ("-1.50", "EUR", -150), ("1.0", "JPY", 1)])
def test_to_minor_at_the_currencys_minor_unit(text, cur, minor):
    assert to_minor(text, cur) == minor


@pytest.mark.parametrize("text, cur", [("0.001", "EUR"), ("0.0001", "KWD"), ("1.5", "JPY")])
def test_to_minor_refuses_one_decimal_more_than_the_currency(text, cur):
    with pytest.raises(ValueError, match="more decimals than"):
        to_minor(text, cur)


@pytest.mark.parametrize("q, text", [(Fraction(1, 100000), "0"), (Fraction(-1, 2), "-0.5"), (Fraction(1, 8), "0.125"),
                                     (Fraction(2, 3), "0.6667"), (Fraction(-7), "-7")])
def test_format_quantity_keeps_four_places_and_no_trailing_zero_or_point(q, text):
    assert format_quantity(q) == text


@pytest.mark.parametrize("text, cur, message", [
    ("abc", "EUR", "'abc' is not an amount (write it like \"120.00\")"),
    ("nan", "EUR", "'nan' is not an amount"),
    ("12.345", "eur", "'12.345' has more decimals than EUR allows"),
])
def test_to_minor_says_what_is_wrong(text, cur, message):
    with pytest.raises(ValueError) as err:
        to_minor(text, cur)
    assert str(err.value) == message


@pytest.mark.parametrize("name, previous, next_", [
    ("2026-01", "2025-12", "2026-02"), ("2026-02", "2026-01", "2026-03"), ("2026-10", "2026-09", "2026-11"),
    ("2026-12", "2026-11", "2027-01"),
])
def test_previous_and_next_period_keep_the_time_zone(name, previous, next_):
    p = parse_period(name, "Europe/Paris")
    for other, expected in ((p.previous(), previous), (p.next(), next_)):
        assert (other.name, other.tz) == (expected, "Europe/Paris")
        assert other == parse_period(expected, "Europe/Paris")
    assert p.previous().end == p.start and p.next().start == p.end


def test_period_bounds_are_in_utc():
    p = month(2026, 10, "Europe/Paris")
    assert p.start.tzinfo is timezone.utc and p.end.tzinfo is timezone.utc


def test_the_time_zone_given_is_the_one_used():
    late = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)                     # 00:30 on 1 November in Paris
    assert parse_period("2026-10", "Europe/Paris").tz == "Europe/Paris"
    assert period_of(late).name == "2026-10" and period_of(late).tz == "UTC"
    assert (period_of(late, "Europe/Paris").name, period_of(late, "Europe/Paris").tz) == ("2026-11", "Europe/Paris")
    assert last_ended_period(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "Europe/Paris").name == "2026-11"
    assert last_ended_period(datetime(2026, 11, 30, 23, 30, tzinfo=UTC)).name == "2026-10"
    assert last_ended_period(late, "Europe/Paris").tz == "Europe/Paris"


def test_quarters_in_the_msps_time_zone():
    from hub.periods import is_quarter, parse_quarter, quarter_name, quarter_of, quarter_of_period
    q = parse_quarter("2026-Q1", "Europe/Paris")
    assert (q.name, q.first_day.isoformat(), q.last_day.isoformat()) == ("2026-Q1", "2026-01-01", "2026-03-31")
    assert q.start == datetime(2025, 12, 31, 23, tzinfo=timezone.utc)          # midnight in Paris
    assert q.end == datetime(2026, 3, 31, 22, tzinfo=timezone.utc)             # summer time from March 29
    assert [m.name for m in q.months()] == ["2026-01", "2026-02", "2026-03"] and q.last_month().name == "2026-03"
    assert q.previous().name == "2025-Q4" and q.period.days == 90
    assert quarter_of(datetime(2026, 3, 31, 22, 30, tzinfo=timezone.utc), "Europe/Paris") == "2026-Q2"
    assert quarter_name(date(2026, 12, 7)) == "2026-Q4" and quarter_of_period("2026-07") == "2026-Q3"
    assert is_quarter("2026-Q4") and not is_quarter("2026-Q5") and not is_quarter("2026-11")
    with pytest.raises(ValueError, match="is not of the form YYYY-Qn"):
        parse_quarter("2026Q4")
