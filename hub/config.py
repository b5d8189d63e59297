"""The hub's one TOML config file: load_config(), HubConfig, and secrets from env vars or files.

A secret is never written inline: a key ``client_secret`` is given as ``client_secret_env =
"VAR"`` (an environment variable) or ``client_secret_file = "path"`` (a file, stripped). Its
value is wrapped in ``Secret``, whose repr and str hide it, so it cannot reach a log by accident.

Every file the hub reads by hand (this config, and the files of ``mappings/``) is checked by a
schema (pydantic models, ``extra="forbid"``, strict types) before any request: an unknown key or a
wrong type is a ConfigError naming the file, the line, the key path and the fix. The schema
helpers (``validate``, ``Money``, ``Hours``, ``parse_duration``) live here and mappings use them.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import (BaseModel, ConfigDict, Field, PlainValidator, ValidationError, ValidationInfo,
                      model_validator)
from pydantic_core import PydanticCustomError

from hub.db import is_postgres_url, url_has_password
from hub.errors import ConfigError

# --- schema helpers: shared by the config and the mappings files ------------------------------


def config_error(message: str, *, file: str, key: str | None = None, fix: str | None = None,
                 line: int | None = None) -> ConfigError:
    """A ConfigError that also names the line of ``file`` (``file, line 12, key 'a.b': ...``)."""
    err = ConfigError(message, file=file, key=key, fix=fix)
    err.line = line
    if line:
        text = f"{file}, line {line}" + (f", key '{key}'" if key else "") + f": {message}"
        err.args = (text + (f" (fix: {fix})" if fix else ""),)
    return err


def key_path(loc: Iterable[str | int]) -> str:
    """``("rule", 2, "matchh")`` -> ``rule[2].matchh``; keys that are not bare are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{text}" if out else text
    return out


def table_label(file: str, loc: tuple[str, ...]) -> str:
    """``contracts.toml [clients.acme]``, ``agreement_types.toml [types."Managed Gold"]``."""
    path = Path(file)
    name = f"{path.parent.name}/{path.name}" if path.parent.name == "contracts" else path.name
    return f"{name} [{key_path(loc)}]"


def _split_dotted(text: str) -> list[str]:
    return [p.strip().strip('"').strip("'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', text.strip())]


def line_of(text: str | None, loc: tuple[str | int, ...]) -> int | None:
    """The line of a TOML text where the key at ``loc`` is written (or the deepest table holding it)."""
    if not text:
        return None
    want = [str(p) for p in loc]
    table: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    best, best_len = None, 0
    for n, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        rest = ""
        if m := re.match(r"\[\[\s*(.+?)\s*\]\]", line):
            parts = _split_dotted(m[1])
            seen[tuple(parts)] = seen.get(tuple(parts), -1) + 1
            table = parts + [str(seen[tuple(parts)])]
            path = table
        elif m := re.match(r"\[\s*(.+?)\s*\]", line):
            table = _split_dotted(m[1])
            path = table
        elif m := re.match(r'((?:"[^"]*"|\'[^\']*\'|[A-Za-z0-9_.\- ])+?)\s*=(.*)', line):
            path, rest = table + _split_dotted(m[1]), m[2]
        else:
            continue
        if path[:len(want)] == want:          # the key itself, or a table under it
            return n
        if want[:len(path)] != path:
            continue
        deeper = [p for p in want[len(path):] if not p.isdigit()]
        if rest and deeper and all(re.search(rf'(^|[{{,\s"]){re.escape(p)}"?\s*=', rest) for p in deeper):
            return n
        if len(path) > best_len:
            best, best_len = n, len(path)
    return best


def _unwrap(tp: Any) -> Any:
    """The model or container type behind Annotated[...] and X | None."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            f = tp.model_fields.get(str(part))
            if f is None:
                return None
            tp = f.annotation
        elif typing.get_origin(tp) in (dict, list, tuple):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def known_keys_fix(key: str, known: Iterable[str]) -> str:
    """``use one of a, b, c (did you mean 'b'?)`` for an unknown ``key``."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"use one of {', '.join(known)}" + (f" (did you mean '{close[0]}'?)" if close else "")


_TYPE_TEXT = {
    "bool_type": ("must be true or false", "write true or false, without quotes"),
    "int_type": ("must be a whole number", "write a whole number without quotes, e.g. 10"),
    "float_type": ("must be a number", "write a number without quotes, e.g. 25"),
    "string_type": ("must be a string", "write it in quotes"),
    "dict_type": ("must be a table", "write it as a table"),
    "model_type": ("must be a table", "write it as a table"),
    "list_type": ("must be a list", "write it as a list, e.g. [\"a\", \"b\"]"),
    "missing": ("missing", "add it"),
}


def schema_error(exc: ValidationError, model: type[BaseModel], *, file: str, text: str | None,
                 prefix: tuple[str | int, ...] = ()) -> ConfigError:
    """The first error of a pydantic validation as a ConfigError naming the file, line, key and fix."""
    errors = exc.errors()
    e = errors[0]
    kind, ctx = e["type"], e.get("ctx") or {}
    loc = tuple(e["loc"]) + (tuple(ctx.get("at", ())) if kind == "hub" else ())
    full = prefix + loc
    key = key_path(full)
    more = f" ({len(errors) - 1} more error(s) in this file after it)" if len(errors) > 1 else ""
    got = e.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        known = parent.model_fields if parent else ()
        message, fix = f"unknown key '{loc[-1]}'", known_keys_fix(str(loc[-1]), known)
    elif kind == "hub":
        message, fix = ctx["message"], ctx.get("fix")
    elif kind == "literal_error":
        message, fix = f"must be {ctx.get('expected')}, got {got!r}", f"use {ctx.get('expected')}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()), "")
        message, fix = f"must be {bound} {limit}, got {got!r}", f"use a value {bound} {limit}"
    elif kind in _TYPE_TEXT:
        message, fix = _TYPE_TEXT[kind]
        if kind != "missing":
            message += f", got {got!r}"
    else:
        message, fix = f"{e['msg']}, got {got!r}", "see the comments of the example file"
    return config_error(message + more, file=file, key=key, fix=fix, line=line_of(text, full))


def validate(model: type[BaseModel], raw: Any, *, file: str, text: str | None = None,
             prefix: tuple[str | int, ...] = (), context: dict[str, Any] | None = None) -> Any:
    """``model.model_validate(raw)``, a failure being a ConfigError (file, line, key path, fix)."""
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        raise schema_error(exc, model, file=file, text=text, prefix=prefix) from None


def read_toml(path: Path, *, missing_fix: str) -> tuple[dict[str, Any], str]:
    """(parsed table, text) of a TOML file; ConfigError naming the file and the line otherwise."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path), fix=missing_fix) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path), fix="correct the syntax at that line") from None


def fail(message: str, fix: str, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """An error raised inside a validator; ``schema_error`` shows ``message`` and ``fix`` as they
    are, at the validated value's key path followed by ``at``."""
    return PydanticCustomError("hub", "{message}", {"message": message, "fix": fix, "at": at})


def _money(value: Any, info: ValidationInfo) -> Any:
    """A price: a string ``"120.10"`` or a whole number; to minor units when the currency is known."""
    if isinstance(value, float):
        raise fail(f"a price is not written as a float ({value!r})",
                   f"write it as a string such as \"{value:.2f}\", or as a whole number")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise fail(f"must be an amount, got {value!r}", "write it as a string such as \"120.00\"")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise fail(f"{value!r} is not an amount", "write it as a string such as \"120.00\"") from None
    if not amount.is_finite():
        raise fail(f"{value!r} is not an amount", "write it as a string such as \"120.00\"")
    if amount < 0:
        raise fail(f"must not be negative, got {value!r}", "use 0 or more")
    currency = (info.context or {}).get("currency")
    if currency is None:
        return str(value)
    from hub.money import to_minor
    try:
        return to_minor(value, currency)
    except ValueError as exc:
        raise fail(str(exc), "write it as a string such as \"120.00\"") from None


def _hours(value: Any) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise fail(f"must be a number of hours, got {value!r}", "write it like \"2\" or \"0.5\"")
    try:
        h = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise fail(f"must be a number of hours, got {value!r}", "write it like \"2\" or \"0.5\"") from None
    if h < 0:
        raise fail(f"must not be negative, got {value!r}", "use 0 or more")
    return h


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"must be a number, got {value!r}", "write a number without quotes, e.g. 25")
    return value


def _ident(value: Any) -> str:
    """An id in another system: a string, or a whole number (NinjaOne's ids are numbers)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise fail(f"must be an id (a string), got {value!r}", "write it in quotes, e.g. \"12\"")
    return str(value)


_DURATION = re.compile(r"\s*(\d+)\s*([smhd])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``"72h"`` -> timedelta(hours=72). A whole number and one unit: s, m, h or d; more than 0."""
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not m or int(m[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration")
    return timedelta(**{_UNITS[m[2]]: int(m[1])})


def _duration(value: Any) -> str:
    try:
        parse_duration(value)
    except ValueError:
        raise fail(f"{value!r} is not a duration", "write a whole number and a unit: \"30m\", \"72h\" or \"3d\" "
                   "(s, m, h, d)") from None
    return value


Money = Annotated[Any, PlainValidator(_money)]           # minor units with a currency in context, else text
Hours = Annotated[Fraction, PlainValidator(_hours)]
Number = Annotated[float, PlainValidator(_number)]
Ident = Annotated[str, PlainValidator(_ident)]
Duration = Annotated[str, PlainValidator(_duration)]


class Schema(BaseModel):
    """Base of every file schema: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- the config file --------------------------------------------------------------------------


class LoggingSettings(Schema):
    """``[logging]``. Unset keys stay None: the CLI and the daemon each have their default."""

    format: Literal["json", "console"] | None = None
    level: Literal["debug", "info", "warning", "error"] | None = None


class GuardrailSettings(Schema):
    """``[billing.guardrails]``: changes that wait for ``msp-hub approve``."""

    allow_zero: bool = False
    max_change_percent: Annotated[Number, Field(ge=0)] = 25
    max_change_devices: Annotated[int, Field(ge=0)] = 10
    invoice_max_change_percent: Annotated[Number, Field(ge=0)] = 30
    invoice_max_device_change_percent: Annotated[Number, Field(ge=0)] = 30
    first_invoice_max: Money = "10000.00"   # a small MSP's largest client pays a few thousand a month

    def first_invoice_max_minor(self, currency: str) -> int:
        """``first_invoice_max`` in minor units of ``currency`` (the contract's); ConfigError when
        it has more decimals than that currency allows."""
        from hub.money import to_minor
        try:
            return to_minor(self.first_invoice_max, currency)
        except ValueError as exc:
            raise ConfigError(str(exc), key="billing.guardrails.first_invoice_max",
                              fix=f"write an amount {currency.upper()} can hold, e.g. \"5000\"") from None


class CompletenessSettings(Schema):
    """``[billing.completeness]``: a full sweep reading this share fewer records is suspect."""

    max_count_drop_percent: Annotated[Number, Field(ge=0, le=100)] = 50


class ReviewSettings(Schema):
    """``[billing.review]``: invoices are pushed as drafts; finalized after ``finalize_after``."""

    enabled: bool = False
    finalize_after: Duration | None = None

    @property
    def finalize_delay(self) -> timedelta | None:
        return parse_duration(self.finalize_after) if self.finalize_after else None


def _digits(count: int, name: str, example: str):
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise fail(f"must be a string, got {value!r}", f"write it in quotes, e.g. \"{example}\"")
        digits = re.sub(r"[\s.]", "", value)
        if not re.fullmatch(rf"\d{{{count}}}", digits):
            raise fail(f"a {name} is {count} digits, got {value!r}", f"write the {count} digits, e.g. \"{example}\"")
        return digits
    return PlainValidator(check)


def _vat_number(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a string, got {value!r}", "write it in quotes, e.g. \"FR40123456789\"")
    number = re.sub(r"[\s.-]", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,12}", number):
        raise fail(f"{value!r} is not a VAT number (two letters of the country, then 2 to 12 letters or digits)",
                   "write it like \"FR40123456789\"")
    return number


def _locale(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z]{2}(-[A-Z]{2}|-[0-9]{3})?", value):
        raise fail(f"{value!r} is not a locale", "write a language and a country, e.g. \"fr-FR\" (or just \"fr\")")
    return value


def _mention(limit: int):
    """A mention's text: one line, at most ``limit`` characters (what Stripe takes)."""
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise fail(f"must be a string, got {value!r}", "write it in quotes")
        text = " ".join(value.split()) if limit <= 140 else value.strip()
        if not text:
            raise fail("is empty", "write the text, or remove the key")
        if len(text) > limit:
            raise fail(f"is {len(text)} characters long; an invoice takes at most {limit} here",
                       f"shorten it to {limit} characters")
        return text
    return PlainValidator(check)


class InvoiceSettings(Schema):
    """``[billing.invoice]``: the language of what the hub writes for clients and the MSP's legal
    mentions (``hub.mentions.invoice_mentions`` makes the invoice's footer and custom fields).

    ``language``: of the invoice lines, notices and alert tickets ("en" or "fr"). ``locale``: the
    clients' preferred locale on the invoicing system unless a client has its own (default: "fr-FR"
    when the language is French, else none). A French B2B invoice carries the seller's legal name,
    address, SIREN (or SIRET), VAT number, payment terms, the late-payment penalty rate and the
    fixed recovery indemnity (Code de commerce L441-9); when ``language = "fr"`` and any mention is
    set, the mandatory ones must all be set (checked at start, naming the key).
    """

    language: Literal["en", "fr"] = "en"
    locale: Annotated[str, PlainValidator(_locale)] | None = None
    legal_name: Annotated[str, _mention(140)] | None = None
    address: Annotated[str, _mention(140)] | None = None
    siren: Annotated[str, _digits(9, "SIREN", "123 456 789")] | None = None
    siret: Annotated[str, _digits(14, "SIRET", "123 456 789 00012")] | None = None
    vat_number: Annotated[str, PlainValidator(_vat_number)] | None = None
    rcs: Annotated[str, _mention(140)] | None = None                  # "RCS Paris 123 456 789"
    share_capital: Annotated[str, _mention(60)] | None = None         # "10 000 €"
    payment_terms: Annotated[str, _mention(140)] | None = None        # "30 jours à réception de facture"
    late_penalty: Annotated[str, _mention(140)] | None = None         # None: 3 times the legal interest rate
    recovery_indemnity: Money = "40"                                   # EUR; fixed by law in France (D441-5)
    early_payment_discount: Annotated[str, _mention(140)] | None = None   # None: "no discount"
    footer: Annotated[str, _mention(2000)] | None = None              # free text after the mentions

    MENTIONS: typing.ClassVar[tuple[str, ...]] = ("legal_name", "address", "siren", "siret", "vat_number", "rcs",
                                                   "share_capital", "payment_terms", "late_penalty")
    REQUIRED_FR: typing.ClassVar[tuple[tuple[str, str], ...]] = (
        ("legal_name", "legal_name = \"Exemple Infogérance SAS\""),
        ("address", "address = \"12 rue de la Paix, 75002 Paris\""),
        ("siren", "siren = \"123 456 789\" (or siret = \"123 456 789 00012\")"),
        ("vat_number", "vat_number = \"FR40123456789\""),
        ("payment_terms", "payment_terms = \"30 jours à réception de facture\""),
    )

    @property
    def has_mentions(self) -> bool:
        """Whether the MSP configured any legal mention."""
        return any(getattr(self, name) is not None for name in self.MENTIONS)

    @property
    def customer_locale(self) -> str | None:
        """The locale for customers that have none of their own."""
        return self.locale or ("fr-FR" if self.language == "fr" else None)

    @model_validator(mode="after")
    def _french_mentions(self) -> "InvoiceSettings":
        if self.language != "fr" or not self.has_mentions:
            return self
        for name, example in self.REQUIRED_FR:
            if getattr(self, name) is None and not (name == "siren" and self.siret is not None):
                raise fail(f"a French invoice must carry the seller's {name.replace('_', ' ')} (language \"fr\" "
                           f"with legal mentions set)", f"add {example} to [billing.invoice]", at=(name,))
        if self.siren and self.siret and not self.siret.startswith(self.siren):
            raise fail(f"SIRET {self.siret} does not start with SIREN {self.siren}",
                       "write the SIRET of this company (its SIREN and 5 digits), or only one of the two",
                       at=("siret",))
        return self


def _period_name(value: Any) -> str:
    """A billing period written ``"2026-10"``."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value.strip()):
        raise fail(f"must be a period written YYYY-MM, got {value!r}", "write it like \"2026-10\"")
    return value.strip()


PeriodName = Annotated[str, PlainValidator(_period_name)]


def _vat_rate(value: Any) -> str:
    """A VAT rate in percent: ``"20"``, ``"5.5"`` or ``20``; its shortest decimal text."""
    from hub.tax import normalize_rate
    try:
        return normalize_rate(value)
    except ValueError as exc:
        raise fail(str(exc), "write the percent as a string such as \"20\" or \"5.5\"") from None


def _country(value: Any) -> str:
    from hub.tax import COUNTRIES
    if not isinstance(value, str) or value.strip().upper() not in COUNTRIES:
        raise fail(f"must be an ISO 3166-1 country code, got {value!r}", "write country = \"FR\"")
    return value.strip().upper()


VatRate = Annotated[str, PlainValidator(_vat_rate)]
Country = Annotated[str, PlainValidator(_country)]


class TaxSettings(Schema):
    """``[billing.tax]``: the MSP's VAT (BILLING.md, "Tax").

    ``country``: where the MSP is established; ``default_rate``: the percent of a line whose
    product, add-on, work type or contract names none; ``name``: the tax's name on invoices;
    the legal mentions of a reverse-charge, outside-the-EU and exempt invoice; ``automatic``:
    Stripe Tax computes the tax (the plan's figures are then an estimate, and a client needs an
    address with a country).
    """

    country: Country = "FR"
    default_rate: VatRate = "20"
    name: Annotated[str, Field(min_length=1, max_length=40)] = "TVA"
    reverse_charge_mention: Annotated[str, Field(min_length=1)] = \
        "Autoliquidation — TVA due par le preneur, article 283-2 du CGI"
    outside_eu_mention: Annotated[str, Field(min_length=1)] = "TVA non applicable, article 259-1 du CGI"
    exempt_mention: Annotated[str, Field(min_length=1)] = "Exonération de TVA"
    automatic: bool = False

    def rules(self):
        """These settings as ``hub.tax.TaxRules``."""
        from hub.tax import TaxRules
        return TaxRules(self.country, self.default_rate, self.name, self.reverse_charge_mention,
                        self.outside_eu_mention, self.exempt_mention, self.automatic)
DEFAULT_CATCH_UP_MONTHS = 3


class BillingSettings(Schema):
    """``[billing]``.

    ``first_period``: the first period the hub invoices (None: the earliest period it sent an
    invoice for, else the last ended one). ``catch_up_months``: how many ended periods, the last
    one included, a run invoices when they were missed; an older one is reported, never billed
    silently (``msp-hub sync --period`` invoices it).
    """

    invoice_connector: str | None = None
    client_master: str | None = None
    notice_board: str = "Help Desk"
    first_period: PeriodName | None = None
    catch_up_months: Annotated[int, Field(ge=1, le=24)] | None = None   # None: DEFAULT_CATCH_UP_MONTHS

    @property
    def catch_up(self) -> int:
        """How many ended periods a run catches up, the last one included."""
        return self.catch_up_months or DEFAULT_CATCH_UP_MONTHS
    guardrails: GuardrailSettings = GuardrailSettings()
    completeness: CompletenessSettings = CompletenessSettings()
    review: ReviewSettings = ReviewSettings()
    tax: TaxSettings = TaxSettings()
    invoice: InvoiceSettings | None = None       # None: not written (the plain dict stays as it was)

    @property
    def invoice_settings(self) -> InvoiceSettings:
        """``[billing.invoice]`` as written, else its defaults (English, no mentions)."""
        return self.invoice or InvoiceSettings()


def _max_ages(value: Any) -> dict[str, str]:
    """``[health.max_age]``: ``"connector.stream" = "2h"``; ``ninjaone.devices = "2h"`` (a nested
    table in TOML) is read the same."""
    if not isinstance(value, dict):
        raise fail(f"must be a table, got {value!r}", "write [health.max_age] with \"ninjaone.devices\" = \"2h\"")
    out = {}
    for name, v in value.items():
        items = [(f"{name}.{k}", w) for k, w in v.items()] if isinstance(v, dict) else [(name, v)]
        for stream, d in items:
            if not re.fullmatch(r"[^.\s]+\.[^.\s]+", stream):
                raise fail(f"{stream!r} does not name a stream as connector.stream",
                           "write \"ninjaone.devices\" = \"2h\"")
            try:
                parse_duration(d)
            except ValueError:
                raise fail(f"max age of {stream} {d!r} is not a duration",
                           "write a whole number and a unit: \"30m\", \"2h\" or \"1d\"") from None
            out[stream] = d
    return out


class HealthSettings(Schema):
    """``[health]``: how old each stream's last complete pass may be."""

    max_age: Annotated[dict[str, str], PlainValidator(_max_ages)] = {}

    def max_ages(self) -> dict[str, timedelta]:
        return {k: parse_duration(v) for k, v in self.max_age.items()}


class ReportSettings(Schema):
    """``[reports]``: what the reports (hub.reports) print about the MSP itself. ``msp_name`` and
    ``logo`` (an image file, relative to the config file) head every page; ``language`` ("en" or
    "fr") is the reports' default, else ``[billing.invoice] language``."""

    msp_name: str = ""
    logo: str | None = None
    language: Literal["en", "fr"] | None = None
    # Checked by their own modules: ``[reports.kpis]`` (hub.reports.kpis: inputs no API holds, such
    # as labour cost) and ``[reports.delivery]`` (hub.reports.delivery: where and to whom).
    kpis: dict[str, Any] = {}
    delivery: dict[str, Any] = {}


class ConfigFile(Schema):
    """The top level of the config file. Connectors, schedule, admin and notify are tables whose
    contents their own modules check."""

    timezone: str = "UTC"
    database: str = "msp-hub.db"
    mappings: str = "mappings"
    connectors: dict[str, dict[str, Any]] = {}
    schedule: dict[str, Any] = {}
    logging: LoggingSettings = LoggingSettings()
    billing: BillingSettings = BillingSettings()
    admin: dict[str, Any] = {}
    notify: dict[str, Any] = {}
    health: HealthSettings = HealthSettings()
    reports: ReportSettings = ReportSettings()


KNOWN_TOP_LEVEL = set(ConfigFile.model_fields)


class Secret:
    """A secret value that does not print itself. ``reveal()`` returns it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str):
        self._value, self.origin = value, origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__


@dataclass
class HubConfig:
    """The loaded config. ``path`` is the file it came from (None when built in code)."""

    path: Path | None = None
    timezone: str = "UTC"
    database: str = "msp-hub.db"
    mappings: Path = Path("mappings")
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    logging: dict[str, Any] = field(default_factory=dict)
    billing: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)     # checked by the notifier
    health: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] | None = None  # for tests; None means os.environ
    tenant: str = "default"   # the MSP this config serves (hub.tenants); "default" without tenants.toml
    # A PostgreSQL database's password (database_password_env / _file), never in the URL; None:
    # libpq's own (PGPASSWORD, ~/.pgpass) or none.
    database_password: Secret | None = None

    # ``billing``, ``logging`` and ``health`` stay plain dicts (defaults filled by load_config) for
    # ``.get()``; these are their typed, validated views, for new code.
    @property
    def billing_settings(self) -> BillingSettings:
        return validate(BillingSettings, self.billing, file=self.file, prefix=("billing",))

    @property
    def logging_settings(self) -> LoggingSettings:
        return validate(LoggingSettings, self.logging, file=self.file, prefix=("logging",))

    @property
    def health_settings(self) -> HealthSettings:
        return validate(HealthSettings, self.health, file=self.file, prefix=("health",))

    @property
    def report_settings(self) -> ReportSettings:
        return validate(ReportSettings, self.reports, file=self.file, prefix=("reports",))

    @property
    def report_language(self) -> str:
        """The reports' language: ``[reports] language``, else the invoices'."""
        return self.report_settings.language or self.billing_settings.invoice_settings.language

    @property
    def report_logo(self) -> Path | None:
        """The logo file named by ``[reports] logo``, relative to the config file's folder."""
        logo = self.report_settings.logo
        if not logo:
            return None
        path = Path(logo)
        return path if path.is_absolute() or self.path is None else self.path.parent / path

    @property
    def file(self) -> str:
        return str(self.path) if self.path else "<config>"

    def connector_section(self, name: str) -> dict[str, Any] | None:
        """The ``[connectors.<name>]`` table, or None when that connector is not configured."""
        section = self.connectors.get(name)
        if section is None:
            return None
        if not isinstance(section, dict):
            raise ConfigError("must be a table", file=self.file, key=f"connectors.{name}",
                              fix=f"write it as [connectors.{name}]")
        return section

    def connector_settings(self, name: str, known: Iterable[str], secrets: Iterable[str] = ()) -> dict[str, Any]:
        """The ``[connectors.<name>]`` table, checked: present, and no key outside ``known``.

        ``secrets`` are the secret keys (``api_key``), which ``secret()`` reads from ``<key>_env``
        or ``<key>_file``; writing one inline is left to ``secret()`` to explain.
        """
        section = self.connector_section(name)
        if section is None:
            raise ConfigError("missing", file=self.file, key=f"connectors.{name}", fix=f"add a [connectors.{name}] table")
        allowed = set(known) | set(secrets)
        for key in section:
            if key not in allowed:
                raise ConfigError(f"unknown key '{key}'", file=self.file, key=f"connectors.{name}.{key}",
                                  fix=f"use one of {', '.join(sorted(set(known)))}")
        return section

    def secret(self, connector: str, key: str, *, required: bool = True) -> Secret | None:
        """Resolve ``<key>_env`` or ``<key>_file`` of ``[connectors.<connector>]`` to a Secret."""
        return self._secret(self.connector_section(connector) or {}, f"connectors.{connector}", key, required)

    def admin_secret(self, key: str = "token", *, required: bool = True) -> Secret | None:
        """Resolve ``<key>_env`` or ``<key>_file`` of ``[admin]`` (the admin API's token) to a Secret."""
        return self._secret(self.admin, "admin", key, required)

    def _secret(self, section: dict[str, Any], table: str, key: str, required: bool) -> Secret | None:
        where = f"{table}.{key}"
        if key in section:
            raise ConfigError("secrets are not written in the config file", file=self.file, key=where,
                              fix=f"use {key}_env = \"VARIABLE\" or {key}_file = \"path\" instead")
        env = self.environ if self.environ is not None else os.environ
        if f"{key}_env" in section:
            var = section[f"{key}_env"]
            value = env.get(str(var))
            if not value:
                raise ConfigError(f"environment variable {var} is not set or empty", file=self.file,
                                  key=f"{where}_env", fix=f"export {var}=... before starting msp-hub")
            return Secret(value, f"${var}")
        if f"{key}_file" in section:
            p = Path(str(section[f"{key}_file"])).expanduser()
            if self.path and not p.is_absolute():
                p = self.path.parent / p
            try:
                value = p.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {p}: {exc.strerror}", file=self.file,
                                  key=f"{where}_file", fix="point it at a readable file") from None
            if not value:
                raise ConfigError(f"secret file {p} is empty", file=self.file, key=f"{where}_file",
                                  fix="write the secret into that file")
            return Secret(value, str(p))
        if required:
            raise ConfigError("missing secret", file=self.file, key=where,
                              fix=f"set {key}_env = \"VARIABLE\" or {key}_file = \"path\"")
        return None

    def secret_values(self) -> list[str]:
        """Every configured secret's value (for redaction); unreadable ones are skipped."""
        values = []
        for name, section in self.connectors.items():
            if not isinstance(section, dict):
                continue
            for k in section:
                for suffix in ("_env", "_file"):
                    if k.endswith(suffix):
                        try:
                            s = self.secret(name, k[: -len(suffix)])
                        except ConfigError:
                            continue
                        values.append(s.reveal())
        if self.database_password is not None:
            values.append(self.database_password.reveal())
        if "token_env" in self.admin or "token_file" in self.admin:
            try:
                values.append(self.admin_secret().reveal())
            except ConfigError:
                pass
        # The notifier's secrets: the SMTP password and the webhook URLs (Slack's, Teams').
        notify = self.notify if isinstance(self.notify, dict) else {}
        tables = [("notify.email", notify.get("email"))]
        hooks = notify.get("webhooks")
        tables += [(f"notify.webhooks[{i}]", t) for i, t in enumerate(hooks if isinstance(hooks, list) else [])]
        for where, table in tables:
            if not isinstance(table, dict):
                continue
            for key in ("password", "url"):
                try:
                    s = self._secret(table, where, key, False)
                except ConfigError:
                    continue
                if s is not None:
                    values.append(s.reveal())
        return values


def load_config(path: str | Path, *, environ: dict[str, str] | None = None) -> HubConfig:
    """Read and validate the config file; relative paths in it are relative to the file."""
    path = Path(path)
    raw, text = read_toml(path, missing_fix="pass --config PATH, or copy examples/msp-hub.toml")
    return config_from_dict(raw, path=path, environ=environ, text=text)


def config_from_dict(raw: dict[str, Any], *, path: Path | None = None,
                     environ: dict[str, str] | None = None, text: str | None = None) -> HubConfig:
    """Validate a parsed config table into a HubConfig (``text``, the file's, finds error lines)."""
    file = str(path) if path else "<config>"
    if isinstance(raw, dict) and "database_password" in raw:
        raise config_error("secrets are not written in the config file", file=file, key="database_password",
                           fix='use database_password_env = "VARIABLE" or database_password_file = "path" instead',
                           line=line_of(text, ("database_password",)))
    # database_password_env / _file: read here, beside the schema, so that they stay out of the
    # top-level keys an unknown key's message lists (they are named where they matter).
    secrets = {}
    if isinstance(raw, dict):
        raw = dict(raw)
        for key in ("database_password_env", "database_password_file"):
            if key in raw:
                value = raw.pop(key)
                if not isinstance(value, str) or not value:
                    raise config_error("must be a non-empty string", file=file, key=key,
                                       fix=f'write {key} = "..."', line=line_of(text, (key,)))
                secrets[key] = value
    checked = validate(ConfigFile, raw, file=file, text=text)
    base = path.parent if path else Path.cwd()
    tz = checked.timezone
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise config_error(f"unknown time zone {tz!r}", file=file, key="timezone",
                           fix="use an IANA name such as \"Europe/Paris\"", line=line_of(text, ("timezone",))) from None
    database = checked.database
    password = _database_password(secrets, file=file, base=base, environ=environ, text=text)
    if is_postgres_url(database):
        if url_has_password(database):
            # The message never repeats the URL: it holds the password.
            raise config_error("the database URL holds a password", file=file, key="database",
                               fix="remove it from the URL (postgresql://USER@HOST:PORT/DATABASE) and give it as "
                                   'database_password_env = "VARIABLE" or database_password_file = "path" '
                                   "(or PGPASSWORD in the environment)", line=line_of(text, ("database",)))
    elif password is not None:
        raise config_error("a password is set but the database is a SQLite file", file=file,
                           key="database_password_env" if "database_password_env" in secrets else "database_password_file",
                           fix="remove it, or set database to a postgresql:// URL")
    elif database != ":memory:":
        if not Path(database).is_absolute():
            database = str(base / database)
        folder = Path(database).parent
        if not folder.is_dir():
            raise config_error(f"the database's folder {folder} does not exist", file=file, key="database",
                               fix=f"create {folder}, or point database at an existing folder",
                               line=line_of(text, ("database",)))
    mappings = Path(checked.mappings)
    if not mappings.is_absolute():
        mappings = base / mappings
    return HubConfig(path=path, timezone=tz, database=database, mappings=mappings,
                     connectors={k: dict(v) for k, v in checked.connectors.items()}, schedule=dict(checked.schedule),
                     logging=checked.logging.model_dump(exclude_none=True),
                     billing=checked.billing.model_dump(exclude_none=True), admin=dict(checked.admin),
                     notify=dict(checked.notify), health=checked.health.model_dump(), reports=checked.reports.model_dump(exclude_none=True),
                     environ=environ,
                     database_password=password)


def _database_password(secrets: dict[str, str], *, file: str, base: Path, environ: dict[str, str] | None,
                       text: str | None) -> Secret | None:
    """The PostgreSQL password from ``database_password_env`` or ``database_password_file``; a
    tenant's config (``environ`` given) may also take its secrets' ``PGPASSWORD``."""
    env = environ if environ is not None else os.environ
    if "database_password_env" in secrets and "database_password_file" in secrets:
        raise config_error("both database_password_env and database_password_file are set", file=file,
                           key="database_password_env", fix="keep one of them")
    if "database_password_env" in secrets:
        var = secrets["database_password_env"]
        value = env.get(var)
        if not value:
            raise config_error(f"environment variable {var} is not set or empty", file=file,
                               key="database_password_env", fix=f"export {var}=... before starting msp-hub",
                               line=line_of(text, ("database_password_env",)))
        return Secret(value, f"${var}")
    if "database_password_file" in secrets:
        p = Path(secrets["database_password_file"]).expanduser()
        if not p.is_absolute():
            p = base / p
        try:
            value = p.read_text().strip()
        except OSError as exc:
            raise config_error(f"cannot read secret file {p}: {exc.strerror}", file=file,
                               key="database_password_file", fix="point it at a readable file") from None
        if not value:
            raise config_error(f"secret file {p} is empty", file=file, key="database_password_file",
                               fix="write the password into that file")
        return Secret(value, str(p))
    if environ is not None and environ.get("PGPASSWORD"):
        return Secret(environ["PGPASSWORD"], "$PGPASSWORD")
    return None
