"""What an MSP edits by hand in ``mappings/`` (TOML): tiers, add-ons, device classes, contracts.

Files:
  ``tiers.toml``           currency, ``[tiers.<id>]`` (name, includes, services, prices per class),
                           ``[addons.<id>]`` (name, service, price or prices per class, classes)
  ``device_classes.toml``  ``[<source>]`` vendor node class -> hub device class
  ``contracts.toml`` and/or ``contracts/*.toml``   ``[clients.<client id>]`` one contract each

Tiers and device classes are shared by every client: an error there stops the load (ConfigError).
A contract's error only concerns that client: it is collected in ``Mappings.contract_errors`` and
the other clients are still billed. A malformed file under ``contracts/`` loses only its clients.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from hub.errors import ConfigError
from hub.money import to_minor


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


@dataclass
class Mappings:
    """Everything loaded from ``mappings/``."""

    currency: str
    tiers: dict[str, Tier]
    addons: dict[str, Addon]
    device_classes: dict[str, dict[str, str]]      # source -> node class -> device class
    contracts: dict[str, Contract]
    contract_errors: dict[str, str] = field(default_factory=dict)  # client id or file -> message
    time: TimeTerms = field(default_factory=TimeTerms)             # defaults every contract starts from
    blocks: dict[str, BlockSize] = field(default_factory=dict)
    agreement_types: dict[str, dict[str, Any]] = field(default_factory=dict)  # PSA type name -> contract terms
    addition_products: dict[str, str] = field(default_factory=dict)  # catalog item -> what it counts
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # client id -> (name, links)
    alert_rules: Any = None                                        # hub.alerting.AlertRules

    def client_for(self, system: str, external_id: str) -> str | None:
        """The hub client id linked to ``external_id`` in ``system``, if a contract names it."""
        return self._by_link().get((system, external_id))

    def _by_link(self) -> dict[tuple[str, str], str]:
        cache = self.__dict__.get("_link_cache")
        if cache is None:
            cache = {(s, x): c.client_id for c in self.contracts.values() for s, x in c.links.items()}
            self.__dict__["_link_cache"] = cache
        return cache


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path), fix="create it (see mappings/ in the repository)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path), fix="correct the syntax at that line") from None


def _money(value: Any, currency: str, *, file: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"must be an amount, got {type(value).__name__}", file=file, key=key,
                          fix="write it as a string such as \"120.00\"")
    try:
        minor = to_minor(value, currency)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, key=key, fix="write it as a string such as \"120.00\"") from None
    if minor < 0:
        raise ConfigError("must not be negative", file=file, key=key, fix="use 0 or more")
    return minor


def _prices(raw: Any, currency: str, *, file: str, key: str) -> dict[str, int]:
    if isinstance(raw, dict):
        if not raw:
            raise ConfigError("prices nothing", file=file, key=key, fix="give at least one class, e.g. workstation = \"100.00\"")
        return {str(k): _money(v, currency, file=file, key=f"{key}.{k}") for k, v in raw.items()}
    return {"*": _money(raw, currency, file=file, key=key)}


def load_catalog(path: Path) -> tuple[str, dict[str, Tier], dict[str, Addon]]:
    """Read ``tiers.toml``: (currency, tiers, addons), tiers with their cumulative services."""
    raw = _read(path)
    file = str(path)
    currency = str(raw.get("currency", "EUR")).upper()
    raw_tiers = raw.get("tiers", {})
    if not isinstance(raw_tiers, dict) or not raw_tiers:
        raise ConfigError("no tiers defined", file=file, key="tiers", fix="add a [tiers.<id>] table")
    tiers: dict[str, Tier] = {}

    def build(tid: str, seen: tuple[str, ...]) -> Tier:
        if tid in tiers:
            return tiers[tid]
        if tid in seen:
            raise ConfigError(f"tiers include each other in a loop: {' -> '.join(seen + (tid,))}",
                              file=file, key=f"tiers.{tid}.includes", fix="remove one of the includes")
        t = raw_tiers[tid]
        if not isinstance(t, dict):
            raise ConfigError("must be a table", file=file, key=f"tiers.{tid}", fix=f"write [tiers.{tid}]")
        includes = t.get("includes")
        services = set(map(str, t.get("services", [])))
        if includes is not None:
            if includes not in raw_tiers:
                raise ConfigError(f"includes unknown tier {includes!r}", file=file, key=f"tiers.{tid}.includes",
                                  fix=f"use one of {', '.join(sorted(raw_tiers))}")
            services |= build(includes, seen + (tid,)).services
        if "prices" not in t:
            raise ConfigError("missing", file=file, key=f"tiers.{tid}.prices",
                              fix="add prices = { workstation = \"100.00\", server = \"200.00\" }")
        tier = Tier(tid, str(t.get("name", tid)), _prices(t["prices"], currency, file=file, key=f"tiers.{tid}.prices"),
                    frozenset(services), includes)
        tiers[tid] = tier
        return tier

    for tid in raw_tiers:
        build(tid, ())
    addons: dict[str, Addon] = {}
    for aid, a in (raw.get("addons") or {}).items():
        if not isinstance(a, dict):
            raise ConfigError("must be a table", file=file, key=f"addons.{aid}", fix=f"write [addons.{aid}]")
        price_raw = a.get("prices", a.get("price"))
        if price_raw is None:
            raise ConfigError("missing", file=file, key=f"addons.{aid}.price",
                              fix="add price = \"10.00\" or prices = { workstation = \"10.00\" }")
        classes = a.get("classes")
        addons[aid] = Addon(aid, str(a.get("name", aid)), _prices(price_raw, currency, file=file, key=f"addons.{aid}.price"),
                            str(a["service"]) if "service" in a else None,
                            frozenset(map(str, classes)) if classes is not None else None)
    return currency, tiers, addons


def load_device_classes(path: Path) -> dict[str, dict[str, str]]:
    """Read ``device_classes.toml``: source -> vendor node class -> hub device class."""
    raw = _read(path)
    out: dict[str, dict[str, str]] = {}
    for source, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError("must be a table", file=str(path), key=source, fix=f"write [{source}]")
        out[source] = {str(k): str(v) for k, v in table.items()}
    return out


CONTRACT_KEYS = {"name", "tier", "currency", "links", "addons", "minimum", "proration", "kind", "block",
                 "renewal", "beyond_balance", "overage_rate", "warning_hours", "increment_minutes",
                 "onsite_minimum_hours", "default_rate", "agreement"}
KINDS = ("managed", "block", "time_and_materials")


def _hours(value: Any, *, file: str, key: str) -> Fraction:
    try:
        h = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"must be a number of hours, got {value!r}", file=file, key=key,
                          fix="write it like \"2\" or \"0.5\"") from None
    if h < 0:
        raise ConfigError("must not be negative", file=file, key=key, fix="use 0 or more")
    return h


def contract_terms(raw: dict[str, Any], m: "Mappings", *, file: str, where: str, tiers: dict[str, Tier],
                   addons: dict[str, Addon]) -> dict[str, Any]:
    """Check the contract terms of a ``[clients.<id>]`` or ``[types."<agreement type>"]`` table.

    Returns the keyword arguments of ``Contract`` they define (kind, tier, addons, time terms...).
    """
    for k in raw:
        if k not in CONTRACT_KEYS:
            raise ConfigError(f"unknown key {k!r}", file=file, key=f"{where}.{k}",
                              fix=f"use one of {', '.join(sorted(CONTRACT_KEYS))}")
    kind = raw.get("kind", "managed")
    if kind not in KINDS:
        raise ConfigError(f"unknown contract kind {kind!r}", file=file, key=f"{where}.kind",
                          fix=f"use one of {', '.join(KINDS)}")
    tier = raw.get("tier")
    if kind == "managed" and tier is None:
        raise ConfigError("missing", file=file, key=f"{where}.tier", fix=f"set tier to one of {', '.join(sorted(tiers))}")
    if tier is not None and tier not in tiers:
        raise ConfigError(f"unknown tier {tier!r}", file=file, key=f"{where}.tier",
                          fix=f"use one of {', '.join(sorted(tiers))}, or add [tiers.{tier}] to tiers.toml")
    cur = m.currency
    contract_addons = raw.get("addons", [])
    if not isinstance(contract_addons, list):
        raise ConfigError("must be a list", file=file, key=f"{where}.addons", fix="write addons = [\"backup\"]")
    for a in contract_addons:
        if a not in addons:
            raise ConfigError(f"unknown add-on {a!r}", file=file, key=f"{where}.addons",
                              fix=f"use one of {', '.join(sorted(addons)) or '(none defined)'}, or add [addons.{a}] to tiers.toml")
    proration = raw.get("proration", False)
    if not isinstance(proration, bool):
        raise ConfigError("must be true or false", file=file, key=f"{where}.proration", fix="write proration = true")
    base = m.time
    block = renewal = None
    for key in ("block", "renewal"):
        if key in raw:
            if raw[key] not in m.blocks:
                raise ConfigError(f"unknown block size {raw[key]!r}", file=file, key=f"{where}.{key}",
                                  fix=f"use one of {', '.join(sorted(m.blocks)) or '(none)'} from [blocks] in time.toml")
            if key == "block":
                block = m.blocks[raw[key]]
            else:
                renewal = m.blocks[raw[key]]
    if kind == "block" and block is None:
        raise ConfigError("missing", file=file, key=f"{where}.block",
                          fix=f"name the block size, one of {', '.join(sorted(m.blocks)) or '(define [blocks] in time.toml)'}")
    beyond = raw.get("beyond_balance", base.beyond_balance)
    if beyond not in ("overage", "carry"):
        raise ConfigError(f"must be \"overage\" or \"carry\", got {beyond!r}", file=file,
                          key=f"{where}.beyond_balance", fix="write beyond_balance = \"overage\"")
    increment = raw.get("increment_minutes", base.increment_minutes)
    if isinstance(increment, bool) or not isinstance(increment, int) or not 1 <= increment <= 60:
        raise ConfigError(f"must be whole minutes from 1 to 60, got {increment!r}", file=file,
                          key=f"{where}.increment_minutes", fix="write increment_minutes = 15")
    included = tiers[tier].services if (kind == "managed" and tier) else frozenset()
    time = TimeTerms(
        work_types=base.work_types,
        default_rate=_money(raw["default_rate"], cur, file=file, key=f"{where}.default_rate") if "default_rate" in raw else base.default_rate,
        increment_minutes=increment,
        onsite_minimum=_hours(raw["onsite_minimum_hours"], file=file, key=f"{where}.onsite_minimum_hours")
        if "onsite_minimum_hours" in raw else base.onsite_minimum,
        included_services=included,
        block=block, renewal=renewal,
        warning_hours=_hours(raw["warning_hours"], file=file, key=f"{where}.warning_hours") if "warning_hours" in raw else base.warning_hours,
        beyond_balance=beyond,
        overage_rate=_money(raw["overage_rate"], cur, file=file, key=f"{where}.overage_rate") if "overage_rate" in raw else base.overage_rate,
    )
    return {"tier": tier, "addons": tuple(contract_addons), "proration": proration, "kind": kind, "time": time,
            "minimum": _money(raw.get("minimum", 0), cur, file=file, key=f"{where}.minimum")}


def parse_contract(client_id: str, raw: Any, m: "Mappings", *, file: str) -> Contract:
    """One ``[clients.<id>]`` table -> Contract; ConfigError naming the key and the fix."""
    where = f"clients.{client_id}"
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, key=where, fix=f"write [{where}]")
    cur = str(raw.get("currency", m.currency)).upper()
    if cur != m.currency:
        raise ConfigError(f"currency {cur} differs from the tiers' currency {m.currency}", file=file,
                          key=f"{where}.currency", fix="price this client's tier in its currency in tiers.toml")
    links = raw.get("links", {})
    if not isinstance(links, dict):
        raise ConfigError("must be a table", file=file, key=f"{where}.links", fix="write links = { ninjaone = \"12\" }")
    terms = contract_terms(raw, m, file=file, where=where, tiers=m.tiers, addons=m.addons)
    agreement = raw.get("agreement")
    return Contract(client_id, str(raw.get("name", client_id)), currency=cur,
                    links={str(k): str(v) for k, v in links.items()}, file=file,
                    agreement=str(agreement) if agreement is not None else None, **terms)


def contract_from_agreement(client_id: str, name: str, links: dict[str, str], agreement, m: "Mappings") -> Contract:
    """The hub contract a PSA agreement stands for, by its type (``agreement_types.toml``).

    Raises MappingError naming the agreement, its type and the fix when the type is not mapped.
    """
    from hub.errors import MappingError
    raw = m.agreement_types.get(agreement.type_name)
    if raw is None:
        raise MappingError(f"{agreement.source} agreement {agreement.name!r} (id {agreement.source_id}) of client "
                           f"{name!r} has type {agreement.type_name!r}, which agreement_types.toml does not map; "
                           f"add [types.\"{agreement.type_name}\"] with kind = \"managed\" | \"block\" | "
                           f"\"time_and_materials\"")
    file = str(m.__dict__.get("_agreement_types_file", "agreement_types.toml"))
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
    return Contract(client_id, name, currency=m.currency, links=dict(links),
                    file=file, agreement=agreement.source_id,
                    origin=f"{agreement.source} agreement {agreement.source_id} ({agreement.type_name})", **terms)


def load_time(path: Path, currency: str) -> tuple[TimeTerms, dict[str, BlockSize]]:
    """Read ``time.toml``: defaults, work types, block sizes. Absent file: defaults of BILLING.md."""
    if not path.exists():
        return TimeTerms(), {}
    raw, file = _read(path), str(path)
    d = raw.get("defaults", {})
    work_types = {}
    for name, w in (raw.get("work_types") or {}).items():
        where = f"work_types.{name}"
        if not isinstance(w, dict):
            raise ConfigError("must be a table", file=file, key=where, fix=f"write [work_types.\"{name}\"]")
        work_types[name] = WorkType(
            name, _money(w["rate"], currency, file=file, key=f"{where}.rate") if "rate" in w else None,
            bool(w.get("onsite", False)), str(w["service"]) if "service" in w else None,
            _money(w["flat_rate"], currency, file=file, key=f"{where}.flat_rate") if "flat_rate" in w else None)
    blocks = {}
    for bid, b in (raw.get("blocks") or {}).items():
        where = f"blocks.{bid}"
        if not isinstance(b, dict) or "hours" not in b or "price" not in b:
            raise ConfigError("needs hours and price", file=file, key=where,
                              fix=f"write [blocks.\"{bid}\"] hours = 20, price = \"1800.00\"")
        hours = _hours(b["hours"], file=file, key=f"{where}.hours")
        if hours <= 0:
            raise ConfigError("must be more than 0", file=file, key=f"{where}.hours", fix="write hours = 10")
        blocks[bid] = BlockSize(bid, hours, _money(b["price"], currency, file=file, key=f"{where}.price"))
    terms = TimeTerms(
        work_types=work_types,
        default_rate=_money(d["default_rate"], currency, file=file, key="defaults.default_rate") if "default_rate" in d else None,
        increment_minutes=int(d.get("increment_minutes", 15)),
        onsite_minimum=_hours(d.get("onsite_minimum_hours", 1), file=file, key="defaults.onsite_minimum_hours"),
        warning_hours=_hours(d.get("warning_hours", 2), file=file, key="defaults.warning_hours"),
        beyond_balance=str(d.get("beyond_balance", "overage")),
    )
    return terms, blocks


def load_mappings(directory: str | Path) -> Mappings:
    """Load ``mappings/``. Shared files must be right; contract errors are collected per client."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError("mappings folder not found", file=str(d), key="mappings",
                          fix="set mappings = \"path/to/mappings\" in the config")
    currency, tiers, addons = load_catalog(d / "tiers.toml")
    classes = load_device_classes(d / "device_classes.toml")
    m = Mappings(currency, tiers, addons, classes, {})
    m.time, m.blocks = load_time(d / "time.toml", currency)
    from hub.alerting import load_alert_rules
    m.alert_rules = load_alert_rules(d / "alert_rules.toml")
    at_file = d / "agreement_types.toml"
    if at_file.exists():
        raw = _read(at_file)
        m.__dict__["_agreement_types_file"] = str(at_file)
        m.agreement_types = dict(raw.get("types") or {})
        for name, table in m.agreement_types.items():
            contract_terms(table, m, file=str(at_file), where=f"types.{name}", tiers=tiers, addons=addons)
        m.addition_products = {str(k): str(v) for k, v in (raw.get("additions") or {}).items()}
    links_file = d / "links.toml"
    if links_file.exists():
        for cid, table in (_read(links_file).get("clients") or {}).items():
            if not isinstance(table, dict):
                raise ConfigError("must be a table", file=str(links_file), key=f"clients.{cid}",
                                  fix=f"write [clients.{cid}] with ninjaone = \"...\", connectwise = \"...\"")
            m.links[cid] = (str(table.get("name", cid)), {str(k): str(v) for k, v in table.items() if k != "name"})
    files = ([d / "contracts.toml"] if (d / "contracts.toml").exists() else []) + sorted((d / "contracts").glob("*.toml"))
    owner: dict[str, str] = {}
    for f in files:
        try:
            raw = _read(f)
        except ConfigError as exc:
            m.contract_errors[str(f)] = str(exc)
            continue
        for cid, table in (raw.get("clients") or {}).items():
            if cid in owner:
                m.contract_errors[cid] = str(ConfigError(f"client {cid!r} is already defined in {owner[cid]}",
                                                         file=str(f), key=f"clients.{cid}", fix="keep one contract per client"))
                m.contracts.pop(cid, None)
                continue
            owner[cid] = str(f)
            try:
                m.contracts[cid] = parse_contract(cid, table, m, file=str(f))
            except ConfigError as exc:
                m.contract_errors[cid] = str(exc)
    return m
