"""Canonical records shared by every plugin: hub vocabulary, keyed by (source, source_id).

Timestamps are timezone-aware UTC datetimes; money is integer minor units plus an ISO currency
code (never a float). Vendor vocabulary stops in each plugin's ``plugin.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Device approval states, in hub vocabulary. Only APPROVED devices are ever billed.
APPROVED, PENDING, REJECTED, STAGED, DECOMMISSIONED = (
    "approved", "pending", "rejected", "staged", "decommissioned")
APPROVAL_STATES = (APPROVED, PENDING, REJECTED, STAGED, DECOMMISSIONED)


@dataclass(frozen=True)
class Client:
    """A customer of the MSP as one system knows it (a NinjaOne organization, a PSA company...)."""

    source: str
    source_id: str
    name: str
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Device:
    """A managed device as the RMM reports it.

    ``node_class`` is the vendor's class name unchanged (e.g. ``WINDOWS_SERVER``); ``mappings/``
    turns it into a billable class. ``client_source_id`` is the owning client's id in ``source``.
    """

    source: str
    source_id: str
    client_source_id: str
    name: str
    node_class: str
    approval_status: str
    created_at: datetime | None = None
    last_contact: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class BillingLine:
    """One line of an invoice, with everything needed to explain it.

    ``quantity`` is a decimal string (a prorated quantity keeps its fraction); ``amount`` is
    quantity × ``unit_amount`` rounded once, half up, in minor units of ``currency``.
    ``explanation`` names the rule, the devices counted (ids and names) and the period.
    """

    client_id: str
    period: str
    code: str
    description: str
    quantity: str
    unit_amount: int
    amount: int
    currency: str
    rule: str
    items: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Action:
    """Something to push to a vendor, exactly once.

    ``key`` is deterministic (``invoice:<client>:<period>``): the same intent always has the same
    key, which is recorded in the store before anything is sent and used as the vendor's
    idempotency key. ``payload`` is JSON-serialisable.
    """

    key: str
    kind: str
    connector: str
    client_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    period: str | None = None
