"""Money parsing and rounding, and billing periods."""

from datetime import datetime, timezone
from fractions import Fraction

import pytest

from hub.money import format_minor, format_quantity, round_half_up, to_minor
from hub.periods import last_ended_period, parse_period, period_of


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
