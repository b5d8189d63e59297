"""``mappings/scorecard.toml``: the weights of the scorecard's rows, the patch rows' method and
buckets, which alert conditions are "availability" and "performance", the ticket targets per
priority, the firewall's manual answers. A missing file is the defaults (the shipped file writes
them all down). An unknown key or a wrong value is a ConfigError naming the file, the line, the
key and the fix (hub.config's schema helpers, as for the other mappings files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from hub.config import Schema, fail, read_toml, validate

FILE = "scorecard.toml"

# The rows of the reference scorecard, in order: (key, area).
ROWS = (
    ("managed_devices", "assets"), ("server_warranty", "assets"), ("workstation_warranty", "assets"),
    ("antivirus", "security"), ("os_patches", "security"), ("software_patches", "security"),
    ("firewall", "security"), ("data_protection", "security"),
    ("service_availability", "availability"), ("network_reliability", "availability"),
    ("performance", "availability"),
    ("tickets", "tickets"),
)
AREAS = ("assets", "security", "availability", "tickets")

Weight = Annotated[float, Field(ge=0, le=100)]
Score = Annotated[float, Field(ge=0, le=100)]


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Row(Schema):
    """``[rows.<row>]``: the row's weight in the overall score (0 disables the row)."""

    weight: Weight = 1.0

    @field_validator("weight", mode="before")
    @classmethod
    def _w(cls, v: Any) -> Any:
        return _number(v)


class Bucket(Schema):
    up_to: Annotated[int, Field(ge=0)]
    score: Score

    @field_validator("score", mode="before")
    @classmethod
    def _s(cls, v: Any) -> Any:
        return _number(v)


DEFAULT_BUCKETS = (Bucket(up_to=0, score=100.0), Bucket(up_to=2, score=75.0), Bucket(up_to=5, score=50.0))


class PatchRow(Row):
    """``[rows.os_patches]`` / ``[rows.software_patches]``: ``method`` "installed_over_approved"
    (patches installed in the quarter ÷ those approved: installed, failed, or approved and waiting)
    or "buckets" (each device scored by its missing patches, the row the mean)."""

    method: Literal["installed_over_approved", "buckets"] = "installed_over_approved"
    buckets: list[Bucket] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))
    more: Score = 25.0

    @field_validator("more", mode="before")
    @classmethod
    def _m(cls, v: Any) -> Any:
        return _number(v)

    @field_validator("buckets")
    @classmethod
    def _ordered(cls, v: list[Bucket]) -> list[Bucket]:
        if not v:
            raise fail("must list at least one bucket", "write buckets = [{ up_to = 0, score = 100 }]")
        ups = [b.up_to for b in v]
        if ups != sorted(set(ups)):
            raise fail(f"the buckets' up_to must increase ({ups})",
                       "order the buckets by up_to, each up_to once, e.g. 0, 2, 5")
        return v


class Rows(Schema):
    managed_devices: Row = Row()
    server_warranty: Row = Row()
    workstation_warranty: Row = Row()
    antivirus: Row = Row()
    os_patches: PatchRow = PatchRow()
    software_patches: PatchRow = PatchRow()
    firewall: Row = Row()
    data_protection: Row = Row()
    service_availability: Row = Row()
    network_reliability: Row = Row()
    performance: Row = Row()
    tickets: Row = Row()


class Classes(Schema):
    """Which hub device classes (mappings/device_classes.toml) each group of rows reads."""

    servers: list[str] = ["server"]
    network: list[str] = ["network"]
    workstations: list[str] = ["workstation", "mobile"]
    protected: list[str] = ["server", "workstation"]
    performance: list[str] = ["server", "workstation"]
    # PSA configuration type -> hub device class, for configurations no RMM device stands for.
    psa_types: dict[str, str] = Field(default_factory=lambda: {
        "Server": "server", "Firewall": "network", "Switch": "network", "Router": "network",
        "Workstation": "workstation", "Laptop": "workstation", "Mobile": "mobile"})


class Conditions(Schema):
    """Alert series counted by a row: those whose source type or condition matches one of the
    glob patterns (fnmatch, case-sensitive), at one of ``severities`` (empty: any)."""

    source_types: list[str] = []
    conditions: list[str] = []
    severities: list[str] = []


class Alerts(Schema):
    availability: Conditions = Conditions(
        source_types=["AGENT_OFFLINE", "CONDITION_WINDOWS_SERVICE_STATE_CHANGED", "CONDITION_LINUX_DAEMON*",
                      "CONDITION_PING*", "NMS_*OFFLINE*"],
        severities=["CRITICAL", "MAJOR"])
    performance: Conditions = Conditions(
        source_types=["CONDITION_AGENT_CPU*", "CONDITION_AGENT_MEMORY*", "CONDITION_AGENT_DISK_*"])


class Antivirus(Schema):
    """The vendor's words (upper-cased before comparing) of a product that protects."""

    active_states: list[str] = ["ON", "ENABLED", "ACTIVE", "RUNNING"]
    up_to_date: list[str] = ["UP_TO_DATE", "CURRENT", "UPTODATE"]


class Tickets(Schema):
    """``target_hours``: PSA priority name -> hours within which a ticket should be resolved."""

    target_hours: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: {
        "Priority 1 - Emergency Response": 4.0, "Priority 2 - Quick Response": 8.0,
        "Priority 3 - Normal Response": 24.0, "Priority 4 - Schedule Maintenance": 72.0})

    @field_validator("target_hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> Any:
        return {k: _number(x) for k, x in v.items()} if isinstance(v, dict) else v


class Firewall(Schema):
    """Firewalls: RMM devices of ``node_classes``, PSA configurations of ``psa_types``; or the
    manual answer per hub client id (true: has a healthy firewall, false: has none)."""

    node_classes: list[str] = ["NMS_FIREWALL"]
    psa_types: list[str] = ["Firewall"]
    manual: dict[str, bool] = Field(default_factory=dict)


class Backup(Schema):
    """The tier or add-on services (tiers.toml) that mean a device should be backed up."""

    services: list[str] = ["backup"]
    add_ons: list[str] = []


class ScorecardSettings(Schema):
    rows: Rows = Rows()
    classes: Classes = Classes()
    alerts: Alerts = Alerts()
    antivirus: Antivirus = Antivirus()
    tickets: Tickets = Tickets()
    firewall: Firewall = Firewall()
    backup: Backup = Backup()
    trend_quarters: Annotated[int, Field(ge=1, le=12)] = 4

    def weight(self, row: str) -> float:
        return getattr(self.rows, row).weight


def load_settings(mappings_dir: str | Path | None) -> ScorecardSettings:
    """The settings of ``<mappings>/scorecard.toml``; the defaults when the file is missing."""
    if mappings_dir is None:
        return ScorecardSettings()
    path = Path(mappings_dir) / FILE
    if not path.exists():
        return ScorecardSettings()
    raw, text = read_toml(path, missing_fix="")
    return validate(ScorecardSettings, raw, file=str(path), text=text)
