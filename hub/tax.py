"""VAT: which treatment a client's invoice gets, the rate of each line, and the tax per rate.

Pure functions (BILLING.md, "Tax"): the MSP's tax settings (``[billing.tax]``), a client's
billing details (``hub.clientdetails.ClientDetails``) and its contract's tax option in; the
treatment, the legal mention, the Stripe ``tax_exempt`` value, the notes a person should read and
the reasons to hold the invoice out. Nothing is guessed: a client whose tax status cannot be
decided (a VAT number of another country than its address, a malformed VAT number, an unknown
country code, reverse charge without a VAT number) is held with the reason and the fix.

Treatments:

* ``standard``: the client is in the MSP's country, or nothing says otherwise (no address and no
  VAT number: taxed as a domestic client, with a note). Each line carries its VAT rate.
* ``reverse_charge``: a business in another EU country with a VAT number; no VAT, the mention
  "Autoliquidation". Without a VAT number the invoice is held.
* ``outside_eu``: a client outside the EU; no French VAT, the mention of article 259-1 du CGI.
* ``exempt``: the contract says so (``tax = "exempt"``); no VAT, the contract's or the config's mention.

Amounts: the tax of a line is its amount × rate / 100, rounded half up in minor units (a
negative line gets a negative tax the same way), then summed per rate: what Stripe computes with
tax rates on invoice items. Amounts before tax are never changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Iterable, Sequence

from hub.money import format_minor, round_half_up

STANDARD, REVERSE_CHARGE, OUTSIDE_EU, EXEMPT = "standard", "reverse_charge", "outside_eu", "exempt"
CONTRACT_TAX = ("standard", "reverse_charge", "exempt")

# The member states of the European Union (ISO 3166-1 alpha-2).
EU = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
# A VAT number's prefix is its country's ISO code, except Greece (EL) and Northern Ireland (XI).
VAT_PREFIX_COUNTRY = {"EL": "GR", "XI": "GB"}
COUNTRY_VAT_PREFIX = {"GR": "EL"}

# Every ISO 3166-1 alpha-2 code (officially assigned).
COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO
JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR
MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO
RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV
TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())

# The shape of an EU VAT number once spaces, dots and dashes are removed: prefix + 2 to 13 characters.
_VAT_SHAPE = re.compile(r"[A-Z]{2}[A-Z0-9]{2,13}")

REVERSE_CHARGE_MENTION = "Autoliquidation — TVA due par le preneur, article 283-2 du CGI"
OUTSIDE_EU_MENTION = "TVA non applicable, article 259-1 du CGI"
EXEMPT_MENTION = "Exonération de TVA"


@dataclass(frozen=True)
class TaxRules:
    """The MSP's tax settings (``[billing.tax]``): its ``country``, the ``default_rate`` (a
    percent as a decimal string) and ``name`` of its VAT, the legal mentions, and whether Stripe
    Tax computes the tax (``automatic``; the plan's figures are then an estimate)."""

    country: str = "FR"
    default_rate: str = "20"
    name: str = "TVA"
    reverse_charge_mention: str = REVERSE_CHARGE_MENTION
    outside_eu_mention: str = OUTSIDE_EU_MENTION
    exempt_mention: str = EXEMPT_MENTION
    automatic: bool = False


@dataclass(frozen=True)
class Decision:
    """The tax treatment of one client's invoice.

    ``tax_exempt``: Stripe's customer value (``none``, ``reverse``, ``exempt``). ``notes``: what a
    person should know (taxed as domestic for want of an address...). ``problems``: why the
    invoice cannot be sent (each names the thing, where it comes from and the fix); non-empty
    means held."""

    treatment: str
    mention: str | None = None
    tax_exempt: str = "none"
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def taxed(self) -> bool:
        return self.treatment == STANDARD


def normalize_rate(value: Any) -> str:
    """A VAT rate in percent as its shortest decimal text: ``20`` -> ``"20"``, ``"5.50"`` ->
    ``"5.5"``. ValueError unless it is a number from 0 to less than 100 with at most 4 decimals."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a VAT rate")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a VAT rate") from None
    if not d.is_finite() or d < 0 or d >= 100:
        raise ValueError(f"{value!r} is not a VAT rate from 0 to 100 (a percent)")
    if d != d.quantize(Decimal("0.0001")):
        raise ValueError(f"{value!r} has more than 4 decimals")
    text = format(d.normalize(), "f")
    return text


def normalize_vat(number: str) -> str:
    """A VAT number as written on an invoice: upper case, without spaces, dots or dashes."""
    return re.sub(r"[\s.\-]", "", number).upper()


def vat_country(number: str) -> str | None:
    """The ISO country of a (normalized) VAT number's prefix (``EL`` -> ``GR``), None when the
    prefix is no country."""
    prefix = number[:2]
    country = VAT_PREFIX_COUNTRY.get(prefix, prefix)
    return country if country in COUNTRIES else None


def decide(details, rules: TaxRules, contract_tax: str | None = None, contract_mention: str | None = None, *,
           where: str = "the contract") -> Decision:
    """The treatment of an invoice to the client of ``details`` (a ``ClientDetails``).

    Args:
        details: the client's billing details (``country``, ``vat_number``, ``address``, ``sources``).
        rules: the MSP's tax settings.
        contract_tax: the contract's ``tax`` option (``standard``, ``reverse_charge``, ``exempt``;
            None: decided from the client's country and VAT number).
        contract_mention: the contract's ``tax_mention`` (for ``exempt``; None: the config's).
        where: where the contract's options are written, for the fixes.
    """
    name = details.name
    sources = getattr(details, "sources", {}) or {}

    def src(key: str) -> str:
        return f" (from {sources[key]})" if sources.get(key) else ""

    problems: list[str] = []
    notes: list[str] = []
    address_country = (details.country or "").strip().upper() or None
    if address_country is not None and address_country not in COUNTRIES:
        problems.append(f"client {name!r}: country {details.country!r} of its address{src('address')} is not an ISO "
                        f"3166-1 country code, so its VAT treatment cannot be decided; write the two-letter code "
                        f"(FR, DE, GR...) in the company's address")
        address_country = None
    vat = normalize_vat(details.vat_number) if details.vat_number else None
    vat_from = None
    if vat is not None:
        if not _VAT_SHAPE.fullmatch(vat) or vat_country(vat) is None:
            problems.append(f"client {name!r}: VAT number {details.vat_number!r}{src('vat_number')} is malformed "
                            f"(an EU VAT number is its country prefix and 2 to 13 letters or digits, e.g. "
                            f"DE123456789); correct it in the PSA company's tax identifier or the contract")
        elif vat[:2] in COUNTRY_VAT_PREFIX:
            problems.append(f"client {name!r}: VAT number {vat}{src('vat_number')} starts with {vat[:2]}, but a "
                            f"VAT number of {vat[:2]} starts with {COUNTRY_VAT_PREFIX[vat[:2]]}; correct it in the "
                            f"PSA company's tax identifier or the contract")
        else:
            vat_from = vat_country(vat)
            if address_country is not None and vat_from != address_country:
                expected = COUNTRY_VAT_PREFIX.get(address_country, address_country)
                problems.append(f"client {name!r}: VAT number {vat}{src('vat_number')} is of {vat_from} but its "
                                f"address{src('address')} is in {address_country} (a VAT number of {address_country} "
                                f"starts with {expected}), so its VAT treatment cannot be decided; correct the VAT "
                                f"number or the address")
    if rules.automatic and address_country is None and not problems:
        problems.append(f"client {name!r} has no address with a country{src('address')}, which Stripe Tax "
                        f"([billing.tax] automatic = true) needs to compute the tax; add the address to the PSA "
                        f"company or the contract")
    if problems:
        return Decision(STANDARD, problems=tuple(problems))
    country = address_country or vat_from
    if contract_tax == "exempt":
        return Decision(EXEMPT, contract_mention or rules.exempt_mention, "exempt")
    if contract_tax == "standard":
        return Decision(STANDARD, None, "none", _domestic_note(details, rules, country))
    if contract_tax == "reverse_charge":
        if vat is None:
            return Decision(REVERSE_CHARGE, problems=(
                f"client {name!r}: {where} says tax = \"reverse_charge\" but the client has no VAT number, which a "
                f"reverse-charge invoice must carry; add the VAT number to the PSA company's tax identifier (or "
                f"the contract's vat_number), or set tax = \"standard\" in {where}",))
        if country == rules.country or country not in EU:
            return Decision(REVERSE_CHARGE, problems=(
                f"client {name!r}: {where} says tax = \"reverse_charge\" but the client is in {country}"
                f"{' (the MSP country)' if country == rules.country else ', outside the EU'}; reverse charge applies "
                f"to a business in another EU country: correct the address, or remove tax from {where}",))
        return Decision(REVERSE_CHARGE, rules.reverse_charge_mention, "reverse")
    if country is None or country == rules.country:
        return Decision(STANDARD, None, "none", _domestic_note(details, rules, country))
    if country in EU:
        if vat is None:
            return Decision(REVERSE_CHARGE, problems=(
                f"client {name!r} is in {country}, another EU country, but has no VAT number: a business there is "
                f"invoiced without VAT (reverse charge) only with its VAT number; add the VAT number to the PSA "
                f"company's tax identifier, or set tax = \"standard\" in {where} to charge "
                f"{rules.name}",))
        return Decision(REVERSE_CHARGE, rules.reverse_charge_mention, "reverse")
    return Decision(OUTSIDE_EU, rules.outside_eu_mention, "exempt")


def _domestic_note(details, rules: TaxRules, country: str | None) -> tuple[str, ...]:
    if country is not None:
        return ()
    if not details.address:
        return (f"no address: taxed as a client in {rules.country}",)
    return (f"no country in the address: taxed as a client in {rules.country}",)


def line_tax(amount: int, percent: str) -> int:
    """The tax of one line: ``amount`` (minor units, may be negative) × ``percent`` / 100, half up."""
    return round_half_up(Fraction(amount) * Fraction(Decimal(percent)) / 100)


def by_rate(lines: Iterable[tuple[int, str | None]], name: str) -> list[dict[str, Any]]:
    """Per rate: the base (the lines' amounts) and the tax (the lines' taxes summed), from the
    (amount, percent or None) of each line; highest rate first."""
    groups: dict[str, list[int]] = {}
    for amount, percent in lines:
        if percent is None:
            continue
        base_tax = groups.setdefault(percent, [0, 0])
        base_tax[0] += amount
        base_tax[1] += line_tax(amount, percent)
    return [{"percent": p, "name": name, "base": b, "tax": t}
            for p, (b, t) in sorted(groups.items(), key=lambda kv: Decimal(kv[0]), reverse=True)]


def invoice_tax(amounts: Sequence[int], rates: Sequence[str], decision: Decision, rules: TaxRules
                ) -> tuple[list[dict[str, str] | None], dict[str, Any]]:
    """The ``tax`` of each line (None for an untaxed one) and the invoice's ``tax`` block
    (treatment, country, mention, by_rate, total_tax, total_with_tax, automatic), for lines of
    ``amounts`` at ``rates`` (one percent per line) under ``decision``."""
    taxed = decision.taxed
    per_line = [{"percent": r, "name": rules.name} if taxed else None for r in rates]
    rows = by_rate(zip(amounts, [r if taxed else None for r in rates]), rules.name)
    total_tax = sum(r["tax"] for r in rows)
    block = {"treatment": decision.treatment, "country": rules.country, "mention": decision.mention,
             "by_rate": rows, "total_tax": total_tax, "total_with_tax": sum(amounts) + total_tax,
             "automatic": bool(rules.automatic)}
    return per_line, block


def describe(block: dict[str, Any], currency: str) -> list[str]:
    """The plan's words for an invoice's tax block: one line per rate, the mention, the estimate."""
    out = [f"{r['name']} {r['percent']} % on {format_minor(r['base'], currency)}: {format_minor(r['tax'], currency)}"
           for r in block.get("by_rate", ())]
    if block.get("mention"):
        out.append(f"{block['treatment'].replace('_', ' ')}: {block['mention']}")
    if block.get("automatic"):
        out.append("tax computed by Stripe Tax: these figures are an estimate")
    return out


__all__ = ["CONTRACT_TAX", "COUNTRIES", "Decision", "EU", "EXEMPT", "OUTSIDE_EU", "REVERSE_CHARGE", "STANDARD",
           "TaxRules", "by_rate", "decide", "describe", "invoice_tax", "line_tax", "normalize_rate",
           "normalize_vat", "vat_country"]
