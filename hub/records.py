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
    # The billing details the system holds for it, as read (None where it has none): the postal
    # address, ``country`` as an ISO 3166-1 alpha-2 code (or the system's name for a country the
    # hub cannot code), the tax (VAT) number, the billing e-mail and where it was found
    # (``email_from``: ``invoiceToEmailAddress``, ``billing contact 12``, ``default contact 7``).
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    vat_number: str | None = None
    email: str | None = None
    email_from: str | None = None


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
    # What a technician needs to find the device, where the RMM reports it (None otherwise):
    # the operating system's name, the IP addresses (comma-separated), the serial number, and
    # the device's page in the RMM's console.
    os_name: str | None = None
    ip_addresses: str | None = None
    serial_number: str | None = None
    console_url: str | None = None
    # The manufacturer's warranty, where the RMM knows it: ISO dates (None: unknown).
    warranty_start: str | None = None
    warranty_end: str | None = None


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


# Billable options of time, products and additions, in hub vocabulary.
BILLABLE, DO_NOT_BILL, NO_CHARGE, NO_DEFAULT = "billable", "do_not_bill", "no_charge", "no_default"
BILLABLE_OPTIONS = (BILLABLE, DO_NOT_BILL, NO_CHARGE, NO_DEFAULT)


@dataclass(frozen=True)
class Agreement:
    """A contract as the PSA holds it (a ConnectWise agreement).

    ``type_name`` is what ``mappings/agreement_types.toml`` maps to a hub contract (e.g.
    ``"Managed Gold"``). ``status``: ``active``, ``cancelled``, ``expired`` or ``inactive``.
    ``application_units``/``application_limit``: for a block of hours, ``"hours"`` and the hours.
    """

    source: str
    source_id: str
    client_source_id: str
    name: str
    type_name: str
    status: str
    start_date: str | None = None       # ISO date
    end_date: str | None = None         # ISO date, None when open-ended
    billing_cycle: str | None = None
    application_units: str | None = None
    application_limit: str | None = None  # decimal string
    updated_at: datetime | None = None


@dataclass(frozen=True)
class AgreementAddition:
    """A recurring line of an agreement (e.g. per-device quantity of a managed-service product).

    ``product`` is the catalog item's identifier; ``quantity`` a decimal string; ``unit_price`` in
    minor units of ``currency``; ``bill_customer`` one of BILLABLE_OPTIONS.
    """

    source: str
    source_id: str
    agreement_source_id: str
    client_source_id: str
    product: str
    description: str
    quantity: str
    unit_price: int
    currency: str
    bill_customer: str
    effective_date: str | None = None
    cancelled_date: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class TimeEntry:
    """Time a technician logged against a client.

    ``hours`` is the actual hours as a decimal string; ``billable`` one of BILLABLE_OPTIONS;
    ``ticket_id`` the service ticket it is charged to (None for other charge types);
    ``agreement_source_id`` the agreement it is charged to, if any; ``hourly_rate`` in minor
    units when the PSA gives one; ``invoiced`` True once the PSA billed it on its own invoice.
    """

    source: str
    source_id: str
    client_source_id: str
    member: str
    started_at: datetime
    ended_at: datetime | None
    hours: str
    billable: str
    work_type: str
    work_role: str
    ticket_id: str | None = None
    agreement_source_id: str | None = None
    hourly_rate: int | None = None
    invoiced: bool = False
    notes: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ProductLine:
    """A part or product sold to a client (on a ticket or an agreement), at ``unit_price`` each."""

    source: str
    source_id: str
    client_source_id: str
    catalog_item: str
    description: str
    quantity: str
    unit_price: int
    currency: str
    billable: str
    ticket_id: str | None = None
    agreement_source_id: str | None = None
    invoiced: bool = False
    sold_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Alert:
    """An alert the RMM reports as active now (NinjaOne ``/v2/alerts``), keyed by its ``uid``.

    ``condition`` identifies what fired on the device (the condition's config uid, else its name),
    so that one (device, condition) pair has at most one open ticket. ``severity`` is the vendor's
    (NONE, MINOR, MODERATE, MAJOR, CRITICAL); ``device_class`` the RMM's node class.
    ``psa_ticket_id`` is the PSA ticket the RMM's own PSA integration made for the alert (NinjaOne's
    ``psaTicketId``), None when it made none: the hub adopts that ticket instead of making one.
    """

    source: str
    source_id: str
    client_source_id: str
    device_source_id: str
    device_name: str
    device_class: str
    source_type: str
    condition: str
    severity: str
    priority: str
    message: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    psa_ticket_id: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    """A TRIGGERED or RESET entry of the RMM's activity log for an alert series.

    ``series_uid`` is the alert's ``uid``; ``status`` is ``triggered`` or ``reset``. A reset is
    seen here even when the alert already left the active list.
    """

    source: str
    source_id: str
    series_uid: str
    device_source_id: str
    status: str
    occurred_at: datetime
    severity: str = ""
    message: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Ticket:
    """A PSA service ticket the hub made (found by its external reference), as the PSA has it now.
    (A ticket the hub adopted keeps the reference its maker gave it: it is known from the create
    action's result, by its id, and not read by the stream.)

    ``closed`` is the PSA's closed flag; ``touched`` is True once a person worked on it (time
    logged, or a status change that the hub did not make): such a ticket is never auto-closed.
    """

    source: str
    source_id: str
    client_source_id: str
    external_ref: str
    summary: str
    board: str
    status: str
    closed: bool
    touched: bool
    closed_at: datetime | None = None
    updated_at: datetime | None = None


# ---- What the quarterly reports read (never billed): protection, patches, backups, health, the
# PSA's configurations and every service ticket of a client. Each is keyed by (source, source_id)
# like the records above and carries the owning client's id in its source.

@dataclass(frozen=True)
class AntivirusStatus:
    """One antivirus product on one device as the RMM last reported it (NinjaOne
    ``/v2/queries/antivirus-status``). ``source_id`` is ``<device id>:<product name>``.
    ``product_state`` and ``definition_status`` are the vendor's words (e.g. ``ON``, ``UP_TO_DATE``)."""

    source: str
    source_id: str
    client_source_id: str
    device_source_id: str
    product_name: str
    product_state: str
    definition_status: str
    reported_at: datetime | None = None
    updated_at: datetime | None = None


# Patch kinds and statuses, in hub vocabulary. A patch the RMM lists as waiting (os-patches,
# software-patches) is PATCH_PENDING/APPROVED/REJECTED/MANUAL; an installation (os-patch-installs,
# software-patch-installs) is PATCH_INSTALLED or PATCH_FAILED with its time.
OS_PATCH, SOFTWARE_PATCH = "os", "software"
PATCH_PENDING, PATCH_APPROVED, PATCH_REJECTED, PATCH_MANUAL, PATCH_INSTALLED, PATCH_FAILED = (
    "pending", "approved", "rejected", "manual", "installed", "failed")


@dataclass(frozen=True)
class Patch:
    """One patch of one device: waiting (with its approval status) or an installation attempt.
    ``source_id`` is unique per kind, device, patch and (for installations) time."""

    source: str
    source_id: str
    client_source_id: str
    device_source_id: str
    kind: str
    patch_id: str
    name: str
    severity: str
    status: str
    installed_at: datetime | None = None
    reported_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class BackupJob:
    """One backup job run of one device (NinjaOne ``/v2/backup/jobs``): ``status`` in hub words,
    ``completed``, ``failed``, ``running``, ``cancelled`` or the vendor's word lower-cased."""

    source: str
    source_id: str
    client_source_id: str
    device_source_id: str
    plan_type: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class DeviceHealth:
    """A device's health summary as the RMM last reported it (NinjaOne ``/v2/queries/device-health``);
    ``source_id`` is the device id. ``health``: ``healthy``, ``needs_attention``, ``unhealthy`` or
    ``unknown``; counts are what the summary reports (0 when it says nothing)."""

    source: str
    source_id: str
    client_source_id: str
    device_source_id: str
    health: str
    offline: bool = False
    active_threats: int = 0
    failed_os_patches: int = 0
    pending_os_patches: int = 0
    pending_reboot: bool = False
    reported_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Configuration:
    """A configuration (managed asset) of a PSA company (ConnectWise ``/company/configurations``):
    ``type_name`` is the configuration type (e.g. ``Server``, ``Firewall``), ``warranty_end`` an ISO
    date or None, ``device_identifier`` the RMM's id where the PSA holds it."""

    source: str
    source_id: str
    client_source_id: str
    name: str
    type_name: str
    status: str
    active: bool = True
    serial_number: str | None = None
    device_identifier: str | None = None
    warranty_end: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ServiceTicket:
    """Any service ticket of a PSA company, whoever opened it (the reports' ticket summary; the
    hub's own alert tickets are also in ``tickets``). ``priority`` is the PSA's priority name;
    ``closed_at`` the time it was closed (None while open); ``external_ref`` the ticket's external
    reference (the hub's ``msp-hub:`` tickets carry one)."""

    source: str
    source_id: str
    client_source_id: str
    summary: str
    board: str
    status: str
    priority: str
    closed: bool
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    external_ref: str | None = None
    updated_at: datetime | None = None
