"""Money: integer minor units and an ISO currency code; parsing, formatting, half-up rounding."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

# ISO 4217 currencies without minor units, or with three decimals; all others have two.
_EXPONENTS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "XOF": 0, "XAF": 0, "HUF": 2,
              "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(value: str | int | float, currency: str) -> int:
    """``"120.00"`` EUR -> 12000. Refuses amounts finer than the currency's minor unit."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount (write it like \"120.00\")") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not an amount")
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency.upper()} allows")
    return int(scaled)


def format_minor(amount: int, currency: str) -> str:
    """12000 EUR -> ``"120.00 EUR"``."""
    exp = exponent(currency)
    text = f"{Decimal(amount).scaleb(-exp):.{exp}f}" if exp else str(amount)
    return f"{text} {currency.upper()}"


def round_half_up(value: Fraction) -> int:
    """Round an exact quantity × price to whole minor units, half away from zero (BILLING.md)."""
    sign = -1 if value < 0 else 1
    v = abs(value)
    whole, rest = divmod(v.numerator, v.denominator)
    if 2 * rest >= v.denominator:
        whole += 1
    return sign * whole


def round_times(quantity: Fraction, unit: int) -> int:
    """``round_half_up(quantity * unit)`` for a whole ``unit`` (minor units), in integers: the
    product's numerator over its denominator, rounded half away from zero, without a Fraction."""
    if unit.__class__ is not int:
        return round_half_up(quantity * unit)
    n, d = quantity.numerator * unit, quantity.denominator
    whole, rest = divmod(-n if n < 0 else n, d)
    if 2 * rest >= d:
        whole += 1
    return -whole if n < 0 else whole


def format_quantity(q: Fraction) -> str:
    """An exact quantity as a short decimal string (``42``, ``3.4516``); fractions keep 4 places."""
    if q.denominator == 1:
        return str(q.numerator)
    return f"{Decimal(q.numerator) / Decimal(q.denominator):.4f}".rstrip("0").rstrip(".")
