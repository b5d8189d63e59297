"""What an MSP edits by hand in ``mappings/`` (TOML): tiers, add-ons, device classes, contracts.

Files:
  ``tiers.toml``           currency, ``[tiers.<id>]`` (name, includes, services, prices per class),
                           ``[addons.<id>]`` (name, service, price or prices per class, classes)
  ``device_classes.toml``  ``not_billed = [...]`` classes no tier has to price (listed as excluded
                           on the plan), ``unlisted = "not_billed" | "error"`` (a node class no
                           section names), and ``[<source>]`` vendor node class -> hub device class
  ``defaults.toml``        the global default of each contract option (proration, minimum, rounding,
                           on-site minimum, block warning and overage, default rate, time_lines),
                           overridden per agreement type or per contract (``load_defaults``)
  ``time.toml``            ``[defaults]`` (its time options; still read), ``[work_types."<name>"]``,
                           ``[blocks."<id>"]``
  ``agreement_types.toml`` ``[types."<PSA agreement type>"]`` contract terms, ``[additions]`` what
                           each agreement addition bills: an add-on, a tier, the classes it counts
  ``links.toml``           ``[clients.<id>]`` name and the client's id in each system
  ``alert_rules.toml``     see hub.alerting
  ``contracts.toml`` and/or ``contracts/*.toml``   ``[clients.<client id>]`` one contract each

Every file is checked by a schema (hub.config's helpers): an unknown key or a wrong type is an
error naming the file, the line, the key path and the fix. Tiers, device classes, time, agreement
types and alert rules are shared by every client: an error there stops the load (ConfigError).
A contract's error, or a links.toml entry's, only concerns that client: it is collected in
``Mappings.contract_errors`` and the other clients are still billed. A contracts or links file
that is not valid TOML holds the clients whose ``[clients.<id>]`` headers it has; when none can be
found, the file is in ``Mappings.file_errors`` (and every invoice waits).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import Field, PlainValidator, TypeAdapter, ValidationError, field_validator

from hub.config import (Hours, Ident, Money, Schema, VatRate, config_error, fail, key_path, known_keys_fix, table_label,
                        line_of, read_toml, schema_error, validate)
from hub.errors import ConfigError
from hub.money import format_minor, format_quantity


@dataclass(frozen=True)
class Tier:
    """A managed-service tier. ``services`` is cumulative: its own plus every included tier's."""

    id: str
    name: str
    prices: dict[str, int]          # device class -> minor units per device per month
    services: frozenset[str]
    includes: str | None = None


@dataclass(frozen=True)
class Addon:
    """An à-la-carte add-on billed per device. ``classes`` None: the devices billed under the tier."""

    id: str
    name: str
    prices: dict[str, int]          # device class -> minor units; "*" prices every class
    service: str | None = None
    classes: frozenset[str] | None = None
    vat_rate: str | None = None     # percent; None: the contract's rate

    def price_for(self, device_class: str) -> int | None:
        return self.prices.get(device_class, self.prices.get("*"))


@dataclass(frozen=True)
class WorkType:
    """How time of one PSA work type is billed: hourly ``rate`` (minor units), whether it is
    on-site (minimum per entry), the managed ``service`` it delivers (time in a managed tier's
    services is included), or a ``flat_rate`` per ticket that replaces the hours."""

    name: str
    rate: int | None = None
    onsite: bool = False
    service: str | None = None
    flat_rate: int | None = None
    vat_rate: str | None = None     # percent; None: the contract's rate


@dataclass(frozen=True)
class BlockSize:
    """A prepaid block of hours sold at ``price`` (bigger blocks are cheaper per hour)."""

    id: str
    hours: Fraction
    price: int


@dataclass(frozen=True)
class TimeTerms:
    """How a contract bills time (BILLING.md, "Time" and "Prepaid blocks").

    ``increment_minutes``: each billable entry is rounded up to it. ``onsite_minimum``: hours an
    on-site entry counts at least. ``work_types``: rate, on-site flag, service, flat rate per
    work type; ``default_rate`` for a work type without a rate (then the PSA's hourly rate; with
    none of them such time is an error).
    ``included_services``: a managed contract's tier services; time delivering one of them is
    included, not billed. Block fields apply to ``kind == "block"`` contracts.
    ``time_lines``: the invoice lines of time and materials (and of a block's overage): one per
    ``entry`` (BILLING.md's default), per ``ticket`` or per ``work_type``.
    ``sources``: where each contract option set in a file came from (option key as written, e.g.
    ``proration``, -> ``defaults.toml`` or ``contracts.toml [clients.acme]``), for the plan's
    explanations; an option absent from it is BILLING.md's default.
    """

    work_types: dict[str, WorkType] = field(default_factory=dict)
    default_rate: int | None = None
    increment_minutes: int = 15
    onsite_minimum: Fraction = Fraction(1)
    included_services: frozenset[str] = frozenset()
    block: BlockSize | None = None
    renewal: BlockSize | None = None
    warning_hours: Fraction = Fraction(2)
    beyond_balance: str = "overage"          # or "carry"
    overage_rate: int | None = None           # None: the block's hourly rate
    time_lines: str = "entry"                # or "ticket", "work_type"
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    """One client's contract. ``links`` maps a system (``ninjaone``...) to the client's id there.

    ``kind``: ``managed`` (per-device tier; time outside the tier's services billed as time and
    materials), ``block`` (prepaid hours) or ``time_and_materials`` (break/fix). ``origin`` says
    where it came from: the mappings file, or the PSA agreement it was read from.
    """

    client_id: str
    name: str
    tier: str | None
    currency: str
    links: dict[str, str] = field(default_factory=dict)
    addons: tuple[str, ...] = ()
    minimum: int = 0
    proration: bool = False
    file: str = ""
    kind: str = "managed"
    time: TimeTerms = field(default_factory=TimeTerms)
    agreement: str | None = None   # the PSA agreement id it draws on (blocks), if any
    origin: str = "mappings"
    # The days it is in force (ISO dates, inclusive), from the PSA agreement; None: open-ended
    # (a contract in mappings/ is in force every day).
    start: str | None = None
    end: str | None = None
    # What the agreement's active additions change (``[additions]`` of agreement_types.toml): the
    # classes an add-on they switched on counts (None: the add-on's own), the tier a device class
    # is billed at (class -> (tier, product)), and what each of them did, said on the plan.
    addon_classes: dict[str, frozenset[str] | None] = field(default_factory=dict)
    class_tiers: dict[str, tuple[str, str]] = field(default_factory=dict)
    from_additions: tuple[str, ...] = ()
    # The client's billing details contracts.toml sets (email, vat_number, locale, address: a
    # dict of line1, line2, city, postal_code, state, country), over its PSA company's.
    details: dict[str, Any] = field(default_factory=dict)
    # VAT (BILLING.md, "Tax"): the percent of a line whose product, add-on or work type names none
    # (None: [billing.tax] default_rate); ``tax``: "standard", "reverse_charge" or "exempt" (None:
    # decided from the client's country and VAT number); ``tax_mention``: an exempt invoice's mention.
    vat_rate: str | None = None
    tax: str | None = None
    tax_mention: str | None = None


@dataclass(frozen=True)
class AdditionProduct:
    """What a PSA agreement addition (a catalog item) bills and counts, by ``[additions]``.

    ``addon``: an active addition switches that add-on on for the client's contract and counts
    the devices it bills; ``tier``: the devices of ``classes`` are billed at that tier, whatever
    the agreement type's; neither: it counts devices billed under the agreement's tier.
    ``classes`` None: every device billed under the tier (an add-on: the devices it counts).
    """

    product: str
    addon: str | None = None
    tier: str | None = None
    classes: frozenset[str] | None = None


def addition_product(product: str, spec: "str | AdditionProduct") -> AdditionProduct:
    """An ``[additions]`` entry as written: ``"workstation"``, ``"backup/server"`` or a table."""
    if isinstance(spec, AdditionProduct):
        return spec
    if "/" in spec:
        addon, dclass = spec.split("/", 1)
        return AdditionProduct(product, addon=addon, classes=frozenset({dclass}))
    return AdditionProduct(product, classes=frozenset({spec}))


@dataclass
class Mappings:
    """Everything loaded from ``mappings/``."""

    currency: str
    tiers: dict[str, Tier]
    addons: dict[str, Addon]
    device_classes: dict[str, dict[str, str]]      # source -> node class -> device class
    contracts: dict[str, Contract]
    contract_errors: dict[str, str] = field(default_factory=dict)  # client id -> message (held)
    file_errors: dict[str, str] = field(default_factory=dict)      # contracts/links file -> message
    # Who a client with an error is (its name and the links its entry gave, as far as they read):
    # the hub keeps knowing it, so that it is held, never re-created from the PSA under a new id.
    error_links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    not_billed: frozenset[str] = frozenset()                       # device classes declared not billed
    # A node class device_classes.toml does not name: "not_billed" (summarised once per class on the
    # plan) or "error" (holds the client's invoice, for an MSP that lists every class).
    unlisted: str = "not_billed"
    time: TimeTerms = field(default_factory=TimeTerms)             # defaults every contract starts from
    blocks: dict[str, BlockSize] = field(default_factory=dict)
    # Each contract option -> (its global default, the file that set it or None): defaults.toml, time.toml.
    defaults: dict[str, tuple[Any, str | None]] = field(default_factory=dict)
    agreement_types_file: str = "agreement_types.toml"
    agreement_types: dict[str, dict[str, Any]] = field(default_factory=dict)  # PSA type name -> contract terms
    # catalog item -> what it counts: the string form as written ("workstation", "backup/server"),
    # or an AdditionProduct (table form); ``addition_product`` reads both.
    addition_products: dict[str, "str | AdditionProduct"] = field(default_factory=dict)
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # client id -> (name, links)
    alert_rules: Any = None                                        # hub.alerting.AlertRules
    vat_rates: dict[str, str] = field(default_factory=dict)        # PSA catalog item -> VAT percent ([vat_rates])

    def client_for(self, system: str, external_id: str) -> str | None:
        """The hub client id linked to ``external_id`` in ``system``, if a contract names it."""
        return self._by_link().get((system, external_id))

    def _by_link(self) -> dict[tuple[str, str], str]:
        cache = self.__dict__.get("_link_cache")
        if cache is None:
            cache = {(s, x): c.client_id for c in self.contracts.values() for s, x in c.links.items()}
            self.__dict__["_link_cache"] = cache
        return cache


# --- schemas of the files ---------------------------------------------------------------------

Minutes = Annotated[int, Field(ge=1, le=60)]
TimeLines = Literal["entry", "ticket", "work_type"]
TIME_LINES = ("entry", "ticket", "work_type")
Kind = Literal["managed", "block", "time_and_materials"]
KINDS = ("managed", "block", "time_and_materials")
ContractTax = Literal["standard", "reverse_charge", "exempt"]


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value):
        raise fail(f"must be an ISO 4217 currency code, got {value!r}", "write currency = \"EUR\"")
    return value.upper()


class TierSchema(Schema):
    name: str | None = None
    includes: str | None = None
    services: list[str] = []
    prices: Annotated[dict[str, Money], Field(min_length=1)]


class AddonSchema(Schema):
    name: str | None = None
    service: str | None = None
    price: Money | None = None
    prices: Annotated[dict[str, Money], Field(min_length=1)] | None = None
    classes: list[str] | None = None
    vat_rate: VatRate | None = None


class TiersFile(Schema):
    currency: Annotated[str, PlainValidator(_currency)] = "EUR"
    tiers: Annotated[dict[str, TierSchema], Field(min_length=1)]
    addons: dict[str, AddonSchema] = {}
    vat_rates: dict[str, VatRate] = {}      # PSA catalog item (a product line) -> VAT percent


class TimeDefaults(Schema):
    increment_minutes: Minutes = 15
    onsite_minimum_hours: Hours = Fraction(1)
    warning_hours: Hours = Fraction(2)
    beyond_balance: Literal["overage", "carry"] = "overage"
    default_rate: Money | None = None


class WorkTypeSchema(Schema):
    rate: Money | None = None
    onsite: bool = False
    service: str | None = None
    flat_rate: Money | None = None
    vat_rate: VatRate | None = None


class BlockSchema(Schema):
    hours: Hours
    price: Money

    @field_validator("hours")
    @classmethod
    def _positive(cls, v: Fraction) -> Fraction:
        if v <= 0:
            raise fail("must be more than 0", "write hours = 10")
        return v


class TimeFile(Schema):
    defaults: TimeDefaults = TimeDefaults()
    work_types: dict[str, WorkTypeSchema] = {}
    blocks: dict[str, BlockSchema] = {}


class DefaultsFile(Schema):
    """``defaults.toml``: the global default of each contract option; a key left out is BILLING.md's."""

    proration: bool | None = None
    minimum: Money | None = None
    increment_minutes: Minutes | None = None
    onsite_minimum_hours: Hours | None = None
    warning_hours: Hours | None = None
    beyond_balance: Literal["overage", "carry"] | None = None
    default_rate: Money | None = None
    time_lines: TimeLines | None = None
    vat_rate: VatRate | None = None
    tax: ContractTax | None = None
    tax_mention: str | None = None


# Each contract option and BILLING.md's rule for it: the value a contract has when no file sets it.
RULE_DEFAULTS: dict[str, Any] = {
    "proration": False, "minimum": 0, "increment_minutes": 15, "onsite_minimum_hours": Fraction(1),
    "warning_hours": Fraction(2), "beyond_balance": "overage", "default_rate": None, "time_lines": "entry",
    "vat_rate": None, "tax": None, "tax_mention": None,
}
DEFAULTS_FILE = "defaults.toml"


class TermsSchema(Schema):
    """Contract terms: a ``[types."<agreement type>"]`` table, and the core of a contract."""

    kind: Kind = "managed"
    tier: str | None = None
    addons: list[str] = []
    minimum: Money | None = None          # None: the global default (defaults.toml), else 0
    proration: bool | None = None         # None: the global default (defaults.toml), else off
    block: str | None = None
    renewal: str | None = None
    beyond_balance: Literal["overage", "carry"] | None = None
    overage_rate: Money | None = None
    warning_hours: Hours | None = None
    increment_minutes: Minutes | None = None
    onsite_minimum_hours: Hours | None = None
    default_rate: Money | None = None
    time_lines: TimeLines | None = None
    vat_rate: VatRate | None = None       # None: the global default (defaults.toml), else [billing.tax]
    tax: ContractTax | None = None        # None: decided from the client's country and VAT number
    tax_mention: str | None = None        # an exempt invoice's legal mention (None: [billing.tax])


def _email(value: Any) -> str:
    from hub.clientdetails import is_email
    if not is_email(value):
        raise fail(f"must be an e-mail address, got {value!r}", "write email = \"billing@client.fr\"")
    return value.strip()


def _vat_number(value: Any) -> str:
    from hub.clientdetails import clean_vat, vat_problem
    if not isinstance(value, str):
        raise fail(f"must be a VAT number as a string, got {value!r}", "write vat_number = \"FR40303265045\"")
    number = clean_vat(value)
    why = vat_problem(number)
    if why:
        raise fail(f"{value!r} {why}", "write the client's intra-community VAT number with its country prefix, "
                                       "e.g. vat_number = \"FR40303265045\" (Greece: EL...)")
    return number


def _locale(value: Any) -> str:
    from hub.clientdetails import is_locale
    if not is_locale(value):
        raise fail(f"must be a locale tag such as \"fr-FR\", got {value!r}", "write locale = \"fr-FR\" (or \"en-GB\")")
    return value


def _country(value: Any) -> str:
    from hub.clientdetails import country_code
    code = country_code(value) if isinstance(value, str) and len(value.strip()) == 2 else None
    if code is None or code != value.strip().upper().replace("EL", "GR"):
        named = country_code(value)
        hint = f"write country = \"{named}\"" if named else "write the ISO 3166-1 alpha-2 code, e.g. country = \"FR\""
        raise fail(f"must be an ISO 3166-1 alpha-2 country code, got {value!r}", hint)
    return code


class AddressSchema(Schema):
    """``[clients.<id>.address]``: the client's postal address on its invoices."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: Annotated[str, PlainValidator(_country)]


class ContractSchema(TermsSchema):
    """A ``[clients.<id>]`` table of contracts.toml."""

    name: str | None = None
    currency: Annotated[str, PlainValidator(_currency)] | None = None
    links: dict[str, Ident] = {}
    agreement: Ident | None = None
    # The client's billing details, over its PSA company's (hub.clientdetails).
    email: Annotated[str, PlainValidator(_email)] | None = None
    vat_number: Annotated[str, PlainValidator(_vat_number)] | None = None
    locale: Annotated[str, PlainValidator(_locale)] | None = None
    address: AddressSchema | None = None

    def details(self) -> dict[str, Any]:
        """The billing details this table sets (``Contract.details``)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("email", "vat_number", "locale") if getattr(self, k)}
        if self.address is not None:
            out["address"] = {k: v for k, v in self.address.model_dump().items() if v}
        return out


CONTRACT_KEYS = set(ContractSchema.model_fields)


class AdditionSchema(Schema):
    """A table of ``[additions]``: ``addon`` or ``tier`` (or neither), and the classes it counts."""

    addon: str | None = None
    tier: str | None = None
    classes: list[str] | None = None


class AgreementTypesFile(Schema):
    types: dict[str, dict[str, Any]] = {}
    additions: dict[str, Any] = {}          # a string or a table each (checked by _load_agreement_types)


class ContractsFile(Schema):
    clients: dict[str, Any] = {}


class LinksFile(Schema):
    clients: dict[str, Any] = {}


_LINK = TypeAdapter(dict[str, Ident])
_CLASSES = TypeAdapter(dict[str, dict[str, str]])
_NAMES = TypeAdapter(list[str])
_UNLISTED = TypeAdapter(Literal["not_billed", "error"])


def _adapt(adapter: TypeAdapter, raw: Any, *, file: str, text: str | None, prefix: tuple) -> Any:
    try:
        return adapter.validate_python(raw, strict=True)
    except ValidationError as exc:
        raise schema_error(exc, Schema, file=file, text=text, prefix=prefix) from None


def _read(path: Path) -> tuple[dict[str, Any], str]:
    return read_toml(path, missing_fix="create it (msp-hub init DIR writes a starting set)")


_HEADER = re.compile(r'^\s*\[\s*clients\s*\.\s*(?:"([^"]+)"|\'([^\']+)\'|([A-Za-z0-9_-]+))')


def _clients_in_text(text: str) -> dict[str, int]:
    """``[clients.<id>]`` headers of a TOML text that may not parse: client id -> line."""
    found: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            found.setdefault(next(g for g in m.groups() if g), n)
    return found


def _read_per_client(path: Path, m: "Mappings") -> tuple[dict[str, Any], str] | None:
    """A contracts or links file; when it is not valid TOML, each client it names is held (or,
    none found, the file is in ``file_errors``) and None is returned."""
    text = path.read_text()
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        clients = _clients_in_text(text)
        for cid, line in clients.items():
            m.contract_errors[cid] = str(config_error(
                f"the file is not valid TOML ({exc}), so this client's entry cannot be read", file=str(path),
                key=f"clients.{cid}", fix="correct the syntax at that line", line=line))
        if not clients:
            m.file_errors[str(path)] = str(ConfigError(
                f"not valid TOML: {exc}; no [clients.<id>] header found, so every client may be concerned",
                file=str(path), fix="correct the syntax at that line"))
        return None


# --- loaders ------------------------------------------------------------------------------------


def load_catalog(path: Path) -> tuple[str, dict[str, Tier], dict[str, Addon]]:
    """Read ``tiers.toml``: (currency, tiers, addons), tiers with their cumulative services."""
    raw, text = _read(path)
    file = str(path)
    cur = raw.get("currency", "EUR")
    currency = cur.upper() if isinstance(cur, str) else "EUR"
    checked: TiersFile = validate(TiersFile, raw, file=file, text=text, context={"currency": currency})
    currency = checked.currency
    tiers: dict[str, Tier] = {}

    def build(tid: str, seen: tuple[str, ...]) -> Tier:
        if tid in tiers:
            return tiers[tid]
        if tid in seen:
            raise config_error(f"tiers include each other in a loop: {' -> '.join(seen + (tid,))}",
                               file=file, key=f"tiers.{tid}.includes", fix="remove one of the includes",
                               line=line_of(text, ("tiers", tid, "includes")))
        t = checked.tiers[tid]
        services = set(t.services)
        if t.includes is not None:
            if t.includes not in checked.tiers:
                raise config_error(f"includes unknown tier {t.includes!r}", file=file, key=f"tiers.{tid}.includes",
                                   fix=known_keys_fix(t.includes, checked.tiers),
                                   line=line_of(text, ("tiers", tid, "includes")))
            services |= build(t.includes, seen + (tid,)).services
        tier = Tier(tid, t.name or tid, dict(t.prices), frozenset(services), t.includes)
        tiers[tid] = tier
        return tier

    for tid in checked.tiers:
        build(tid, ())
    addons: dict[str, Addon] = {}
    for aid, a in checked.addons.items():
        if (a.price is None) == (a.prices is None):
            raise config_error("needs either price or prices", file=file, key=f"addons.{aid}",
                               fix="write price = \"10.00\" or prices = { workstation = \"10.00\" }, not both",
                               line=line_of(text, ("addons", aid)))
        prices = dict(a.prices) if a.prices is not None else {"*": a.price}
        addons[aid] = Addon(aid, a.name or aid, prices, a.service,
                            frozenset(a.classes) if a.classes is not None else None, a.vat_rate)
    return currency, tiers, addons


def load_vat_rates(path: Path) -> dict[str, str]:
    """``[vat_rates]`` of ``tiers.toml``: PSA catalog item -> VAT percent of its product lines."""
    raw, text = _read(path)
    cur = raw.get("currency", "EUR")
    checked: TiersFile = validate(TiersFile, raw, file=str(path), text=text,
                                  context={"currency": cur.upper() if isinstance(cur, str) else "EUR"})
    return dict(checked.vat_rates)


def priced_classes(tiers: dict[str, Tier], addons: dict[str, Addon]) -> set[str]:
    """The device classes some tier or add-on prices."""
    out = {c for t in tiers.values() for c in t.prices}
    for a in addons.values():
        out |= {c for c in a.prices if c != "*"} | set(a.classes or ())
    return out


def load_device_classes(path: Path, priced: set[str] | None = None) -> tuple[dict[str, dict[str, str]], frozenset[str]]:
    """Read ``device_classes.toml``: (source -> node class -> device class, classes not billed).

    With ``priced`` (the classes tiers price), every device class must be priced or declared in
    ``not_billed``: a typo such as "sever" is an error, not a device silently left out.
    """
    classes, not_billed, _ = load_device_class_file(path, priced)
    return classes, not_billed


def load_device_class_file(path: Path, priced: set[str] | None = None
                           ) -> tuple[dict[str, dict[str, str]], frozenset[str], str]:
    """``load_device_classes`` and the ``unlisted`` option: what a node class no section names is,
    "not_billed" (the default) or "error"."""
    raw, text = _read(path)
    file = str(path)
    raw = dict(raw)
    not_billed = frozenset(_adapt(_NAMES, raw.pop("not_billed", []), file=file, text=text, prefix=("not_billed",)))
    unlisted = _adapt(_UNLISTED, raw.pop("unlisted", "not_billed"), file=file, text=text, prefix=("unlisted",))
    classes = _adapt(_CLASSES, raw, file=file, text=text, prefix=())
    if priced is not None:
        known = set(priced) | not_billed
        for source, table in classes.items():
            for node_class, dclass in table.items():
                if dclass not in known:
                    close = known_keys_fix(dclass, known).split(" (did you mean ")
                    hint = f"did you mean {close[1][:-2]}? " if len(close) > 1 else ""
                    raise config_error(
                        f"node class {node_class} maps to device class {dclass!r}, which no tier prices and "
                        f"not_billed does not list", file=file, key=f"{source}.{node_class}",
                        fix=f"{hint}use a priced class ({', '.join(sorted(priced))}), or add \"{dclass}\" to "
                            f"not_billed = [...] at the top of device_classes.toml",
                        line=line_of(text, (source, node_class)))
    return classes, not_billed, unlisted


def _where_loc(where: str) -> tuple[str, ...]:
    return tuple(where.split(".", 1))


def contract_terms(raw: dict[str, Any], m: "Mappings", *, file: str, where: str, tiers: dict[str, Tier],
                   addons: dict[str, Addon], text: str | None = None,
                   schema: type[TermsSchema] = TermsSchema) -> dict[str, Any]:
    """Check the contract terms of a ``[clients.<id>]`` or ``[types."<agreement type>"]`` table.

    Returns the keyword arguments of ``Contract`` they define (kind, tier, addons, time terms...).
    """
    loc = _where_loc(where)

    def err(message: str, key: str, fix: str) -> ConfigError:
        return config_error(message, file=file, key=f"{where}.{key}", fix=fix, line=line_of(text, loc + (key,)))

    t: TermsSchema = validate(schema, raw, file=file, text=text, prefix=loc, context={"currency": m.currency})
    if t.kind == "managed" and t.tier is None:
        raise err("missing", "tier", f"set tier to one of {', '.join(sorted(tiers))}")
    if t.tier is not None and t.tier not in tiers:
        raise err(f"unknown tier {t.tier!r}", "tier",
                  f"{known_keys_fix(t.tier, tiers)}, or add [tiers.{t.tier}] to tiers.toml")
    for a in t.addons:
        if a not in addons:
            raise err(f"unknown add-on {a!r}", "addons",
                      f"use one of {', '.join(sorted(addons)) or '(none defined)'}, or add [addons.{a}] to tiers.toml")
    base = m.time
    sizes = {}
    for key in ("block", "renewal"):
        name = getattr(t, key)
        if name is not None:
            if name not in m.blocks:
                raise err(f"unknown block size {name!r}", key,
                          f"use one of {', '.join(sorted(m.blocks)) or '(none)'} from [blocks] in time.toml")
            sizes[key] = m.blocks[name]
    if t.kind == "block" and "block" not in sizes:
        raise err("missing", "block",
                  f"name the block size, one of {', '.join(sorted(m.blocks)) or '(define [blocks] in time.toml)'}")

    # Each option: this table's value, else the global default (defaults.toml, time.toml's
    # [defaults]), else BILLING.md's rule; ``sources`` says where each one set in a file came from.
    defaults = contract_defaults(m)
    label = table_label(file, loc)
    sources: dict[str, str] = {}

    def pick(key: str) -> Any:
        value = getattr(t, key)
        if value is not None:
            sources[key] = label
            return value
        value, source = defaults[key]
        if source is not None:
            sources[key] = source
        return value

    included = tiers[t.tier].services if (t.kind == "managed" and t.tier) else frozenset()
    time = TimeTerms(
        work_types=base.work_types,
        default_rate=pick("default_rate"),
        increment_minutes=pick("increment_minutes"),
        onsite_minimum=pick("onsite_minimum_hours"),
        included_services=included,
        block=sizes.get("block"), renewal=sizes.get("renewal"),
        warning_hours=pick("warning_hours"),
        beyond_balance=pick("beyond_balance"),
        overage_rate=base.overage_rate if t.overage_rate is None else t.overage_rate,
        time_lines=pick("time_lines"),
    )
    proration, minimum = pick("proration"), pick("minimum")
    vat_rate, tax, tax_mention = pick("vat_rate"), pick("tax"), pick("tax_mention")
    time = replace(time, sources=sources)
    return {"tier": t.tier, "addons": tuple(t.addons), "proration": proration, "kind": t.kind, "time": time,
            "minimum": minimum, "vat_rate": vat_rate, "tax": tax, "tax_mention": tax_mention}


def parse_contract(client_id: str, raw: Any, m: "Mappings", *, file: str, text: str | None = None) -> Contract:
    """One ``[clients.<id>]`` table -> Contract; ConfigError naming the key and the fix."""
    where = f"clients.{client_id}"
    if not isinstance(raw, dict):
        raise config_error("must be a table", file=file, key=where, fix=f"write [{where}]",
                           line=line_of(text, ("clients", client_id)))
    cur = raw.get("currency", m.currency)
    if isinstance(cur, str) and cur.upper() != m.currency:
        raise config_error(f"currency {cur.upper()} differs from the tiers' currency {m.currency}", file=file,
                           key=f"{where}.currency", fix="price this client's tier in its currency in tiers.toml",
                           line=line_of(text, ("clients", client_id, "currency")))
    terms = contract_terms(raw, m, file=file, where=where, tiers=m.tiers, addons=m.addons, text=text,
                           schema=ContractSchema)
    c: ContractSchema = ContractSchema.model_validate(raw, context={"currency": m.currency})
    return Contract(client_id, c.name or client_id, currency=m.currency, links=dict(c.links), file=file,
                    agreement=c.agreement, details=c.details(), **terms)


def contract_from_agreement(client_id: str, name: str, links: dict[str, str], agreement, m: "Mappings",
                            additions: Iterable = (), on: str | None = None) -> Contract:
    """The hub contract a PSA agreement stands for, by its type (``agreement_types.toml``), with
    what its additions active on the day ``on`` (ISO date; None: not cancelled) change: an add-on
    they switch on, a tier they name for classes (``addition_terms``).

    Raises MappingError naming the agreement, its type and the fix when the type is not mapped, or
    naming the additions when they cannot be applied (two tiers for one class...).
    """
    from hub.errors import MappingError
    raw = m.agreement_types.get(agreement.type_name)
    if raw is None:
        raise MappingError(f"{agreement.source} agreement {agreement.name!r} (id {agreement.source_id}) of client "
                           f"{name!r} has type {agreement.type_name!r}, which agreement_types.toml does not map; "
                           f"add [types.\"{agreement.type_name}\"] with kind = \"managed\" | \"block\" | "
                           f"\"time_and_materials\"")
    file = str(m.agreement_types_file)
    terms = contract_terms(raw, m, file=file, where=f"types.{agreement.type_name}", tiers=m.tiers, addons=m.addons)
    time = terms["time"]
    if terms["kind"] == "block" and agreement.application_limit and time.block is not None:
        # The PSA's own block (applicationLimit hours) is the first block: priced as the block size
        # of those hours in time.toml, else at the mapped size's hourly rate. Renewals use the mapping.
        hours = Fraction(agreement.application_limit)
        if hours > 0 and hours != time.block.hours:
            from dataclasses import replace as _replace
            same = next((b for b in m.blocks.values() if b.hours == hours), None)
            first = same or BlockSize(f"{format(float(hours), 'g')}h", hours,
                                      round(time.block.price * hours / time.block.hours))
            terms["time"] = _replace(time, renewal=time.renewal or time.block, block=first)
    origin = f"{agreement.source} agreement {agreement.source_id} ({agreement.type_name})"
    mine = [a for a in additions if a.agreement_source_id == agreement.source_id]
    terms.update(addition_terms(origin, name, terms, mine, m, on))
    return Contract(client_id, name, currency=m.currency, links=dict(links),
                    file=file, agreement=agreement.source_id, origin=origin,
                    start=agreement.start_date or None, end=agreement.end_date or None, **terms)


def addition_active(addition, on: str | None) -> bool:
    """Whether an agreement addition bills on the day ``on`` (ISO date; None: any day it is not
    cancelled): billed to the customer, effective by then, not cancelled on or before it."""
    from hub.records import BILLABLE
    if addition.bill_customer != BILLABLE:
        return False
    if on is None:
        return not addition.cancelled_date
    if addition.effective_date and addition.effective_date[:10] > on:
        return False
    return not (addition.cancelled_date and addition.cancelled_date[:10] <= on)


def addition_terms(origin: str, client_name: str, terms: dict[str, Any], additions: Iterable, m: "Mappings",
                   on: str | None) -> dict[str, Any]:
    """What the active mapped additions of one agreement change in its contract's ``terms``:
    ``addons`` (the type's own, then those additions switch on), ``addon_classes``, ``class_tiers``
    and ``from_additions`` (what each did, in words). An addition of an add-on or naming a tier on
    an agreement that bills no devices, or two naming different tiers for one class, is a
    MappingError (the client is held: its devices would be billed wrong)."""
    from hub.errors import MappingError
    addons = list(terms["addons"])
    addon_classes: dict[str, frozenset[str] | None] = {}
    class_tiers: dict[str, tuple[str, str]] = {}
    said: list[str] = []
    for add in sorted(additions, key=lambda a: (str(a.product), str(a.source_id))):
        spec = m.addition_products.get(add.product)
        if spec is None or not addition_active(add, on):
            continue
        spec = addition_product(add.product, spec)
        if spec.addon is None and spec.tier is None:
            continue
        what = f"addition {add.product} (id {add.source_id}) of {origin}"
        if terms["kind"] != "managed" or not terms["tier"]:
            raise MappingError(
                f"{what} of client {client_name!r} "
                + (f"switches add-on {spec.addon!r} on" if spec.addon else f"names tier {spec.tier!r}")
                + f", but that agreement is {terms['kind'].replace('_', ' ')} and bills no devices; move the addition "
                  f"to the client's managed agreement, cancel it, or map its type to kind = \"managed\" with a tier")
        classes = ", ".join(sorted(spec.classes)) if spec.classes else None
        if spec.addon is not None:
            if spec.addon in terms["addons"]:
                continue          # the type's own add-on, counted by its rule: the addition is only reconciled
            if spec.addon not in addons:
                addons.append(spec.addon)
                addon_classes[spec.addon] = spec.classes
            elif addon_classes.get(spec.addon) is not None:
                addon_classes[spec.addon] = None if spec.classes is None else addon_classes[spec.addon] | spec.classes
            said.append(f"{what}: switches add-on {spec.addon} on"
                        + (f", counting the {classes} devices" if classes else ""))
            continue
        tier = m.tiers.get(spec.tier)
        for dclass in sorted(spec.classes if spec.classes is not None else (tier.prices if tier else ())):
            got = class_tiers.get(dclass)
            if got is not None and got[0] != spec.tier:
                raise MappingError(
                    f"additions {got[1]} and {add.product} of {origin} (client {client_name!r}) bill class "
                    f"{dclass!r} at two tiers ({got[0]} and {spec.tier}); cancel one of them in the PSA, or map "
                    f"them in agreement_types.toml [additions] to different classes")
            class_tiers[dclass] = (spec.tier, add.product)
        said.append(f"{what}: bills the {classes or 'devices'} at tier {spec.tier}")
    return {"addons": tuple(addons), "addon_classes": addon_classes, "class_tiers": class_tiers,
            "from_additions": tuple(said)}


def load_time(path: Path, currency: str) -> tuple[TimeTerms, dict[str, BlockSize]]:
    """Read ``time.toml``: defaults, work types, block sizes. Absent file: defaults of BILLING.md."""
    if not path.exists():
        return TimeTerms(), {}
    raw, text = _read(path)
    t: TimeFile = validate(TimeFile, raw, file=str(path), text=text, context={"currency": currency})
    work_types = {name: WorkType(name, w.rate, w.onsite, w.service, w.flat_rate, w.vat_rate)
                  for name, w in t.work_types.items()}
    blocks = {bid: BlockSize(bid, b.hours, b.price) for bid, b in t.blocks.items()}
    d = t.defaults
    terms = TimeTerms(work_types=work_types, default_rate=d.default_rate, increment_minutes=d.increment_minutes,
                      onsite_minimum=d.onsite_minimum_hours, warning_hours=d.warning_hours,
                      beyond_balance=d.beyond_balance)
    return terms, blocks


GLOBAL_SOURCES = (DEFAULTS_FILE, "time.toml [defaults]")


def contract_defaults(m: "Mappings") -> dict[str, tuple[Any, str | None]]:
    """The global default of each contract option: option -> (value, where it was set; None for
    BILLING.md's rule). Read by ``load_defaults``; a Mappings built by hand starts from its
    ``time`` terms and the rules."""
    if m.defaults:
        return m.defaults
    base = m.time
    values = dict(RULE_DEFAULTS, increment_minutes=base.increment_minutes, onsite_minimum_hours=base.onsite_minimum,
                  warning_hours=base.warning_hours, beyond_balance=base.beyond_balance,
                  default_rate=base.default_rate, time_lines=base.time_lines)
    return {key: (value, base.sources.get(key)) for key, value in values.items()}


def load_defaults(directory: Path, m: "Mappings") -> None:
    """Read the global default of each contract option (BILLING.md, "Defaults"): ``defaults.toml``
    (every option: proration, minimum, increment_minutes, onsite_minimum_hours, warning_hours,
    beyond_balance, default_rate, time_lines), and ``time.toml``'s ``[defaults]``, still read for
    its time options. A key set in both is a ConfigError naming both places. An agreement type
    (``[types."<name>"]``) or a contract (``[clients.<id>]``) overrides any of them."""
    d = Path(directory)
    found: dict[str, tuple[Any, str]] = {}
    time_toml_line: dict[str, int | None] = {}
    time_path = d / "time.toml"
    if time_path.exists():
        raw, text = _read(time_path)
        table = raw.get("defaults", {})
        checked_time: TimeDefaults = validate(TimeDefaults, table, file=str(time_path), text=text,
                                              prefix=("defaults",), context={"currency": m.currency})
        for key in sorted(checked_time.model_fields_set):
            found[key] = (getattr(checked_time, key), "time.toml [defaults]")
            time_toml_line[key] = line_of(text, ("defaults", key))
    path = d / DEFAULTS_FILE
    if path.exists():
        raw, text = _read(path)
        checked: DefaultsFile = validate(DefaultsFile, raw, file=str(path), text=text,
                                         context={"currency": m.currency})
        for key in sorted(checked.model_fields_set):
            if key in found:
                at = f", line {time_toml_line[key]}" if time_toml_line.get(key) else ""
                raise config_error(
                    f"{key} is set both here and in {time_path} [defaults]{at}: an option has one global default",
                    file=str(path), key=key, line=line_of(text, (key,)),
                    fix=f"delete {key} from one of the two files (defaults.toml holds every contract option; "
                        f"time.toml's [defaults] is still read for its time options)")
            found[key] = (getattr(checked, key), DEFAULTS_FILE)
    defaults = {key: found.get(key, (rule, None)) for key, rule in RULE_DEFAULTS.items()}
    m.defaults = defaults

    def value(key: str) -> Any:
        return defaults[key][0]

    m.time = replace(m.time, increment_minutes=value("increment_minutes"),
                     onsite_minimum=value("onsite_minimum_hours"), warning_hours=value("warning_hours"),
                     beyond_balance=value("beyond_balance"), default_rate=value("default_rate"),
                     time_lines=value("time_lines"), sources={k: src for k, (_, src) in defaults.items() if src})


def _shown(key: str, value: Any, currency: str) -> str:
    if key == "proration":
        return "on" if value else "off"
    if key in ("minimum", "default_rate"):
        return "none" if value is None else format_minor(value, currency)
    if key in ("onsite_minimum_hours", "warning_hours"):
        return f"{format_quantity(Fraction(value))} h"
    if key == "increment_minutes":
        return f"{value} min"
    if key == "time_lines":
        return f"one line per {str(value).replace('_', ' ')}"
    if key == "vat_rate":
        return f"{value} %"
    return str(value)


def options_note(contract: Contract) -> str | None:
    """The contract's options set in a file, each with where it came from (for the plan), leaving
    out a global default equal to BILLING.md's rule: ``contract options: proration: on
    (defaults.toml); time_lines: one line per ticket (contracts.toml [clients.acme])``."""
    t = contract.time
    values = {"proration": contract.proration, "minimum": contract.minimum, "increment_minutes": t.increment_minutes,
              "onsite_minimum_hours": t.onsite_minimum, "warning_hours": t.warning_hours,
              "beyond_balance": t.beyond_balance, "default_rate": t.default_rate, "time_lines": t.time_lines,
              "vat_rate": contract.vat_rate, "tax": contract.tax, "tax_mention": contract.tax_mention}
    parts = []
    for key, value in values.items():
        source = t.sources.get(key)
        if source is None or (source in GLOBAL_SOURCES and value == RULE_DEFAULTS[key]):
            continue
        parts.append(f"{key}: {_shown(key, value, contract.currency)} ({source})")
    return f"contract options: {'; '.join(parts)}" if parts else None


def _load_agreement_types(path: Path, m: Mappings, classes: set[str]) -> None:
    raw, text = _read(path)
    file = str(path)
    checked: AgreementTypesFile = validate(AgreementTypesFile, raw, file=file, text=text)
    m.agreement_types_file = file
    m.agreement_types = dict(checked.types)
    for name, table in m.agreement_types.items():
        contract_terms(table, m, file=file, where=f"types.{name}", tiers=m.tiers, addons=m.addons, text=text)
    products: dict[str, str | AdditionProduct] = {}
    for product, spec in checked.additions.items():
        if isinstance(spec, str):
            _check_addition_string(product, spec, m, classes, file=file, text=text)
            products[product] = spec
        elif not isinstance(spec, dict):
            raise config_error(f"must be a string or a table, got {spec!r}", file=file,
                               key=key_path(("additions", product)), line=line_of(text, ("additions", product)),
                               fix=f"write \"{product}\" = \"workstation\" (a class, or \"<add-on>/<class>\"), or a "
                                   f"table [additions.\"{product}\"] with addon or tier and classes")
        else:
            products[product] = _addition_table(product, spec, m, classes, file=file, text=text)
    m.addition_products = products


def _check_addition_string(product: str, counts: str, m: Mappings, classes: set[str], *, file: str,
                           text: str | None) -> None:
    """The string form: ``"<class>"`` or ``"<add-on>/<class>"``."""
    addon, _, dclass = counts.rpartition("/")
    problem = None
    if addon and addon not in m.addons:
        problem = (f"names add-on {addon!r}, which tiers.toml does not define",
                   f"use \"<add-on>/<class>\" with an add-on of {', '.join(sorted(m.addons)) or '(none)'}")
    elif dclass not in classes:
        problem = (f"counts device class {dclass!r}, which no tier or add-on prices",
                   f"use one of {', '.join(sorted(classes))}, or \"<add-on>/<class>\"")
    if problem:
        raise config_error(problem[0], file=file, key=f"additions.{product}", fix=problem[1],
                           line=line_of(text, ("additions", product)))


def _addition_table(product: str, raw: dict[str, Any], m: Mappings, classes: set[str], *, file: str,
                    text: str | None) -> AdditionProduct:
    """The table form: ``addon = "backup"`` or ``tier = "silver"`` (or neither), ``classes = [...]``."""
    loc = ("additions", product)
    a: AdditionSchema = validate(AdditionSchema, raw, file=file, text=text, prefix=loc)

    def err(message: str, key: str | None, fix: str) -> ConfigError:
        where = loc + ((key,) if key else ())
        return config_error(message, file=file, key=key_path(where), fix=fix, line=line_of(text, where))

    if a.addon is not None and a.tier is not None:
        raise err(f"names both add-on {a.addon!r} and tier {a.tier!r}; an addition either switches an add-on on "
                  f"or bills its classes at a tier", None,
                  "keep addon or tier, and map the other product to the other one")
    if a.addon is not None and a.addon not in m.addons:
        raise err(f"unknown add-on {a.addon!r}", "addon",
                  f"{known_keys_fix(a.addon, m.addons)}, or add [addons.{a.addon}] to tiers.toml")
    if a.tier is not None and a.tier not in m.tiers:
        raise err(f"unknown tier {a.tier!r}", "tier", f"{known_keys_fix(a.tier, m.tiers)}, or add [tiers.{a.tier}] "
                                                      f"to tiers.toml")
    if a.classes is not None:
        if not a.classes:
            raise err("is empty, so the addition would count no device", "classes",
                      "name at least one class, e.g. classes = [\"workstation\"], or leave classes out to count every "
                      "device billed under the tier")
        for dclass in a.classes:
            if dclass not in classes:
                raise err(f"names device class {dclass!r}, which no tier or add-on prices", "classes",
                          f"{known_keys_fix(dclass, classes)}; the classes are those of device_classes.toml")
            if a.addon is not None and m.addons[a.addon].price_for(dclass) is None:
                raise err(f"names device class {dclass!r}, which add-on {a.addon!r} does not price", "classes",
                          f"add {dclass} = \"0.00\" (or a price) to [addons.{a.addon}].prices in tiers.toml, or remove "
                          f"it from classes")
            if a.tier is not None and dclass not in m.tiers[a.tier].prices:
                raise err(f"names device class {dclass!r}, which tier {a.tier!r} does not price", "classes",
                          f"add {dclass} to [tiers.{a.tier}].prices in tiers.toml, or remove it from classes")
    return AdditionProduct(product, a.addon, a.tier, None if a.classes is None else frozenset(a.classes))


def _load_links(path: Path, m: Mappings) -> None:
    read = _read_per_client(path, m)
    if read is None:
        return
    raw, text = read
    file = str(path)
    try:
        checked: LinksFile = validate(LinksFile, raw, file=file, text=text)
    except ConfigError as exc:
        m.file_errors[file] = str(exc)
        return
    for cid, table in checked.clients.items():
        try:
            if not isinstance(table, dict):
                raise config_error("must be a table", file=file, key=f"clients.{cid}",
                                   fix=f"write [clients.{cid}] with ninjaone = \"...\", connectwise = \"...\"",
                                   line=line_of(text, ("clients", cid)))
            table = dict(table)
            name = table.pop("name", cid)
            if not isinstance(name, str):
                raise config_error(f"must be a string, got {name!r}", file=file, key=f"clients.{cid}.name",
                                   fix="write it in quotes", line=line_of(text, ("clients", cid, "name")))
            links = _adapt(_LINK, table, file=file, text=text, prefix=("clients", cid))
        except ConfigError as exc:
            m.contract_errors[cid] = str(exc)
            continue
        m.links[cid] = (name, links)


def _load_contracts(files: list[Path], m: Mappings) -> None:
    owner: dict[str, str] = {}
    for f in files:
        read = _read_per_client(f, m)
        if read is None:
            continue
        raw, text = read
        file = str(f)
        try:
            checked: ContractsFile = validate(ContractsFile, raw, file=file, text=text)
        except ConfigError as exc:
            m.file_errors[file] = str(exc)
            continue
        for cid, table in checked.clients.items():
            if cid in owner:
                m.contract_errors[cid] = str(config_error(
                    f"client {cid!r} is already defined in {owner[cid]}", file=file, key=f"clients.{cid}",
                    fix="keep one contract per client", line=line_of(text, ("clients", cid))))
                continue
            owner[cid] = file
            try:
                m.contracts[cid] = parse_contract(cid, table, m, file=file, text=text)
            except ConfigError as exc:
                m.contract_errors[cid] = str(exc)
    for cid in m.contract_errors:
        gone = m.contracts.pop(cid, None)
        raw = next((c for c in (_raw_contract(f, cid) for f in files) if c), None) if gone is None else None
        links = gone.links if gone else {str(k): str(v) for k, v in ((raw or {}).get("links") or {}).items()
                                          if isinstance(v, (str, int)) and not isinstance(v, bool)}
        name = gone.name if gone else str((raw or {}).get("name", cid))
        m.error_links.setdefault(cid, (name, links))


def _raw_contract(path: Path, cid: str) -> dict | None:
    """A client's table as written, when its file is valid TOML (for the links of a bad contract)."""
    try:
        table = (tomllib.loads(path.read_text()).get("clients") or {}).get(cid)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return table if isinstance(table, dict) and isinstance(table.get("links", {}), dict) else None


def load_mappings(directory: str | Path) -> Mappings:
    """Load ``mappings/``. Shared files must be right; contract errors are collected per client."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError("mappings folder not found", file=str(d), key="mappings",
                          fix="set mappings = \"path/to/mappings\" in the config, or write a starting set with: "
                              "msp-hub init DIR")
    currency, tiers, addons = load_catalog(d / "tiers.toml")
    priced = priced_classes(tiers, addons)
    classes, not_billed, unlisted = load_device_class_file(d / "device_classes.toml", priced)
    m = Mappings(currency, tiers, addons, classes, {}, not_billed=not_billed, unlisted=unlisted,
                 vat_rates=load_vat_rates(d / "tiers.toml"))
    m.time, m.blocks = load_time(d / "time.toml", currency)
    load_defaults(d, m)
    from hub.alerting import load_alert_rules
    m.alert_rules = load_alert_rules(d / "alert_rules.toml")
    if (d / "agreement_types.toml").exists():
        _load_agreement_types(d / "agreement_types.toml", m, priced)
    if (d / "links.toml").exists():
        _load_links(d / "links.toml", m)
    files = ([d / "contracts.toml"] if (d / "contracts.toml").exists() else []) + sorted((d / "contracts").glob("*.toml"))
    _load_contracts(files, m)
    return m
