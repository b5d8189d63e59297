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
    work type; ``default_rate`` for a work type not listed (None: such time is an error).
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


def parse_contract(client_id: str, raw: Any, *, currency: str, tiers: dict[str, Tier],
                   addons: dict[str, Addon], file: str) -> Contract:
    """One ``[clients.<id>]`` table -> Contract; ConfigError naming the key and the fix."""
    where = f"clients.{client_id}"
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, key=where, fix=f"write [{where}]")
    known = {"name", "tier", "currency", "links", "addons", "minimum", "proration"}
    for k in raw:
        if k not in known:
            raise ConfigError(f"unknown key {k!r}", file=file, key=f"{where}.{k}",
                              fix=f"use one of {', '.join(sorted(known))}")
    tier = raw.get("tier")
    if tier is None:
        raise ConfigError("missing", file=file, key=f"{where}.tier", fix=f"set tier to one of {', '.join(sorted(tiers))}")
    if tier not in tiers:
        raise ConfigError(f"unknown tier {tier!r}", file=file, key=f"{where}.tier",
                          fix=f"use one of {', '.join(sorted(tiers))}, or add [tiers.{tier}] to tiers.toml")
    cur = str(raw.get("currency", currency)).upper()
    if cur != currency:
        raise ConfigError(f"currency {cur} differs from the tiers' currency {currency}", file=file,
                          key=f"{where}.currency", fix="price this client's tier in its currency in tiers.toml")
    contract_addons = raw.get("addons", [])
    if not isinstance(contract_addons, list):
        raise ConfigError("must be a list", file=file, key=f"{where}.addons", fix="write addons = [\"backup\"]")
    for a in contract_addons:
        if a not in addons:
            raise ConfigError(f"unknown add-on {a!r}", file=file, key=f"{where}.addons",
                              fix=f"use one of {', '.join(sorted(addons)) or '(none defined)'}, or add [addons.{a}] to tiers.toml")
    links = raw.get("links", {})
    if not isinstance(links, dict):
        raise ConfigError("must be a table", file=file, key=f"{where}.links", fix="write links = { ninjaone = \"12\" }")
    proration = raw.get("proration", False)
    if not isinstance(proration, bool):
        raise ConfigError("must be true or false", file=file, key=f"{where}.proration", fix="write proration = true")
    minimum = _money(raw.get("minimum", 0), cur, file=file, key=f"{where}.minimum")
    return Contract(client_id, str(raw.get("name", client_id)), tier, cur,
                    {str(k): str(v) for k, v in links.items()}, tuple(contract_addons), minimum, proration, file)


def load_mappings(directory: str | Path) -> Mappings:
    """Load ``mappings/``. Shared files must be right; contract errors are collected per client."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError("mappings folder not found", file=str(d), key="mappings",
                          fix="set mappings = \"path/to/mappings\" in the config")
    currency, tiers, addons = load_catalog(d / "tiers.toml")
    classes = load_device_classes(d / "device_classes.toml")
    m = Mappings(currency, tiers, addons, classes, {})
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
                m.contracts[cid] = parse_contract(cid, table, currency=currency, tiers=tiers, addons=addons, file=str(f))
            except ConfigError as exc:
                m.contract_errors[cid] = str(exc)
    return m
