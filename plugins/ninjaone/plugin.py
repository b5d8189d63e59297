"""NinjaOne in hub vocabulary: mapping functions, settings, the connector and its hookimpl."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import partial
from typing import Any, Callable, Iterator

import httpx
import structlog
import tenacity

from hub import Client, ConfigError, Device, MappingError, Page, Stream, hookimpl, map_records
from hub.config import HubConfig, Secret
from hub.ratelimit import RateLimiter, account_key, limiter_for, read_rate
from hub.records import (
    APPROVAL_STATES,
    OS_PATCH,
    PATCH_APPROVED,
    PATCH_FAILED,
    PATCH_INSTALLED,
    PATCH_MANUAL,
    PATCH_PENDING,
    PATCH_REJECTED,
    SOFTWARE_PATCH,
    Alert,
    AlertEvent,
    AntivirusStatus,
    BackupJob,
    DeviceHealth,
    Patch,
)

from plugins.ninjaone.client import MAX_PAGE_SIZE, NinjaOneClient

SOURCE = "ninjaone"
DEFAULT_BASE_URL = "https://app.ninjarmm.com"
SCOPES = ("monitoring", "management", "control")
SETTINGS_KEYS = ("base_url", "client_id", "client_secret_env", "client_secret_file", "scope", "page_size",
                 "console_url", "device_details", "rate_limit", "report_streams", "report_interval")
# The streams the quarterly reports read (opt-in: ``report_streams``), in the order they run.
REPORT_STREAMS = ("antivirus", "device_health", "os_patches", "software_patches", "os_patch_installs",
                  "software_patch_installs", "backup_jobs")
# How often the report streams read again by default, in hours: reports are quarterly, syncs
# run every few minutes, and a report stream reads a whole set.
DEFAULT_REPORT_INTERVAL = 12.0
# The installation history a first pass reads back: two quarters, this one and the one before.
INSTALL_LOOKBACK = timedelta(days=190)
# Later passes read installations again from this long before the last pass: an agent reports an
# installation late, and ``installedAfter`` is a date whose bound (inclusive or not) is unwritten.
INSTALL_OVERLAP = timedelta(days=2)

log = structlog.get_logger()

_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
# The vendor's upper-case values to hub states; odd spellings fall back to lower().
_APPROVAL = {state.upper(): state for state in APPROVAL_STATES}
# The statusCodes of an alert series that become AlertEvents, and their hub status.
_EVENT_STATUS = {"TRIGGERED": "triggered", "RESET": "reset"}
# The vendor's patch statuses in hub words: in the lists of waiting patches (os-patches,
# software-patches: "pending, failed and rejected") and in the installation histories.
_WAITING_STATUS = {"PENDING": PATCH_PENDING, "APPROVED": PATCH_APPROVED, "REJECTED": PATCH_REJECTED,
                   "MANUAL": PATCH_MANUAL, "FAILED": PATCH_FAILED}
_INSTALL_STATUS = {"INSTALLED": PATCH_INSTALLED, "FAILED": PATCH_FAILED}
_HEALTH = {"UNKNOWN": "unknown", "HEALTHY": "healthy", "NEEDS_ATTENTION": "needs_attention", "UNHEALTHY": "unhealthy"}
# Backup job statuses (the spec gives no list) in hub words; another word is kept lower-cased.
_BACKUP_STATUS = {"COMPLETED": "completed", "SUCCESS": "completed", "SUCCEEDED": "completed",
                  "FAILED": "failed", "ERROR": "failed", "RUNNING": "running", "IN_PROGRESS": "running",
                  "PROCESSING": "running", "STARTED": "running", "CANCELLED": "cancelled", "CANCELED": "cancelled",
                  "ABORTED": "cancelled"}


# --- mapping -----------------------------------------------------------------------------------
# These run once per record on sweeps of 100,000 devices, so they avoid needless work.

def to_client(raw: dict[str, Any]) -> Client:
    """A NinjaOne organization as a hub Client (organizations carry no timestamps)."""
    org_id = str(raw["id"])
    return Client(source=SOURCE, source_id=org_id, name=raw.get("name") or org_id)


def to_device(raw: dict[str, Any], console: str | None = None) -> Device:
    """A NinjaOne device (``GET /v2/devices`` or ``/v2/devices-detailed``) as a hub Device.

    ``console`` is the NinjaOne console's address (``https://eu.ninjarmm.com``): the device's
    page there is ``<console>/#/deviceDashboard/<id>/overview``. A detailed record adds the
    operating system (``os.name``), the IP addresses (``ipAddresses``) and the serial number
    (``system.serialNumber``, else ``system.biosSerialNumber``); a basic record, or a detailed one
    without them, leaves them None (never a made-up value).

    Timestamps are epoch seconds as floats in NinjaOne; they become aware UTC datetimes. The spec
    marks no field required, so a device without ``id`` or ``organizationId`` (null or absent) is
    a MappingError: it could not be stored or billed to a client, so it is set aside. A device
    without ``nodeClass`` is kept with an empty node class: its client is known, and the billing
    rules hold that client's invoice, naming the device, rather than bill it without the device.
    """
    get = raw.get
    raw_id = get("id")
    if raw_id is None:
        label = get("displayName") or get("systemName") or get("dnsName") or get("uid") or "no name"
        raise MappingError(f"ninjaone device without an id ({label}, organization {get('organizationId')}) "
                           f"cannot be stored: it is set aside (fix: check the device in NinjaOne; the next "
                           f"sweep maps it once the API sends its id)")
    device_id = str(raw_id)
    name = get("displayName") or get("systemName") or get("dnsName") or device_id
    if get("organizationId") is None:
        raise MappingError(f"ninjaone device {device_id} ({name}) has no organizationId, so it cannot be billed "
                           f"right; it is set aside (fix: assign the device to an organization in NinjaOne)")
    node_class = get("nodeClass") or ""
    if not isinstance(node_class, str):
        raise MappingError(f"ninjaone device {device_id} ({name}) has nodeClass {node_class!r}, not a "
                           f"node class name; it is set aside (fix: check the device's role in NinjaOne)")
    approval = get("approvalStatus")
    status = _APPROVAL.get(approval) if isinstance(approval, str) else None
    if status is None:
        status = approval.lower() if isinstance(approval, str) else None
        if status not in APPROVAL_STATES:
            raise MappingError(f"ninjaone device {device_id} ({name}) has approvalStatus {approval!r}, "
                               f"not one of {', '.join(_APPROVAL)}")
    created, last_contact, updated = get("created"), get("lastContact"), get("lastUpdate")
    os_name = ip_addresses = serial = None
    details = get("os"), get("system"), get("ipAddresses")
    if details != (None, None, None):
        os_name, ip_addresses, serial = _details(*details)
    warranty_start = warranty_end = None
    references = get("references")
    if (isinstance(references, dict) and references.get("warranty")) or "warrantyStartDate" in raw \
            or "warrantyEndDate" in raw:
        warranty_start, warranty_end = _warranty(device_id, raw)
    try:
        return Device(SOURCE, device_id, str(raw["organizationId"]), name, node_class, status,
                      None if created is None else _fromtimestamp(created, _UTC),
                      None if last_contact is None else _fromtimestamp(last_contact, _UTC),
                      None if updated is None else _fromtimestamp(updated, _UTC),
                      os_name, ip_addresses, serial,
                      None if console is None else f"{console}/#/deviceDashboard/{device_id}/overview",
                      warranty_start, warranty_end)
    except KeyError as exc:
        raise MappingError(f"ninjaone device {device_id} ({name}) has no {exc.args[0]}") from None
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MappingError(f"ninjaone device {device_id} ({name}) has a timestamp that is not "
                           f"epoch seconds: {exc}") from None


def _text(value: Any) -> str | None:
    """A non-empty string, stripped; anything else (null, a number, "") is None."""
    return value.strip() or None if isinstance(value, str) else None


def _details(os: Any, system: Any, ips: Any) -> tuple[str | None, str | None, str | None]:
    """(OS name, IP addresses comma-separated, serial number) of a detailed device record."""
    os_name = _text(os.get("name")) if isinstance(os, dict) else None
    serial = None
    if isinstance(system, dict):
        serial = _text(system.get("serialNumber")) or _text(system.get("biosSerialNumber"))
    addresses = [a.strip() for a in ips if isinstance(a, str) and a.strip()] if isinstance(ips, list) else []
    return os_name, ", ".join(dict.fromkeys(addresses)) or None, serial


def _warranty(device_id: str, raw: dict[str, Any]) -> tuple[str | None, str | None]:
    """A device's warranty (start, end) as ISO dates, from ``references.warranty`` (``startDate``,
    ``endDate``: epoch seconds, in ``/v2/devices-detailed``) or ``warrantyStartDate`` /
    ``warrantyEndDate`` (the device's own fields, epoch seconds). Absent, null or 0 is unknown
    (None). A value that is not epoch seconds is unknown too, and logged with the device: the
    device is still billed (a warranty date bills nothing), its warranty counts as unknown."""
    references = raw.get("references")
    warranty = references.get("warranty") if isinstance(references, dict) else None
    warranty = warranty if isinstance(warranty, dict) else {}
    out = []
    for nested, flat in (("startDate", "warrantyStartDate"), ("endDate", "warrantyEndDate")):
        value = warranty.get(nested)
        if value is None:
            value = raw.get(flat)
        if value is None or value == 0:
            out.append(None)
            continue
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{value!r} is not a number")
            out.append(_fromtimestamp(value, _UTC).date().isoformat())
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            log.warning("ninjaone.warranty_unreadable", device=device_id, field=flat, value=repr(value)[:40],
                        error=str(exc), fix="correct the warranty dates of the device in NinjaOne")
            out.append(None)
    return out[0], out[1]


def _when(value: Any) -> datetime | None:
    """Epoch seconds (a float in NinjaOne) as an aware UTC datetime; None stays None."""
    return None if value is None else _fromtimestamp(value, _UTC)


def to_alert(raw: dict[str, Any]) -> Alert:
    """A NinjaOne active alert (``GET /v2/alerts``, with its embedded ``device``) as a hub Alert.

    The client is the device's organization (empty when the alert carries no device). The
    condition is the condition's config uid, else its name, else the source's name, else the
    source type (an offline device, say), so that it names what fired on the device.
    ``psaTicketId`` (the ticket NinjaOne's own PSA integration made; the spec types it only as an
    object) is kept as text: a number, a numeric string or ``{"id": ...}``; absent, null, 0 or ""
    is None, anything else a MappingError (the hub must not guess which ticket is the alert's).
    """
    get = raw.get
    try:
        uid = raw["uid"]
    except KeyError:
        raise MappingError(f"ninjaone alert without uid: {raw.get('subject') or raw.get('message')!r}") from None
    psa_ticket_id = _psa_ticket_id(uid, get("psaTicketId"))
    device = get("device") or {}
    device_id = get("deviceId")
    if device_id is None:
        device_id = device.get("id")
    device_source_id = "" if device_id is None else str(device_id)
    org_id = device.get("organizationId")
    source_type = get("sourceType") or ""
    try:
        return Alert(
            SOURCE, str(uid), "" if org_id is None else str(org_id), device_source_id,
            device.get("displayName") or device.get("systemName") or device.get("dnsName") or device_source_id,
            device.get("nodeClass") or "", source_type,
            get("sourceConfigUid") or get("conditionName") or get("sourceName") or source_type,
            get("severity") or "", get("priority") or "", get("message") or get("subject") or "",
            _when(get("createTime")), _when(get("updateTime")), psa_ticket_id)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MappingError(f"ninjaone alert {uid} has a timestamp that is not epoch seconds: {exc}") from None


def _psa_ticket_id(uid: Any, value: Any) -> str | None:
    """An alert's ``psaTicketId`` as text, None when NinjaOne made no ticket for it."""
    if isinstance(value, dict):
        value = value.get("id")
    if value is None or value == "" or (value == 0 and not isinstance(value, bool)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip() and value.strip() != "0":
        return value.strip()
    if isinstance(value, str):
        return None
    raise MappingError(f"ninjaone alert {uid} has psaTicketId {value!r}, not a ticket id; the hub cannot tell "
                       f"which ticket is the alert's: check the alert in NinjaOne (Activities) and its PSA "
                       f"integration")


def to_alert_event(raw: dict[str, Any]) -> AlertEvent | None:
    """A NinjaOne activity as a hub AlertEvent, or None unless it is a TRIGGERED or RESET of an alert.

    An alert's series is the activity's ``seriesUid`` (the alert's ``uid``); the activity id is
    the event's id.
    """
    get = raw.get
    status = _EVENT_STATUS.get(get("statusCode"))
    series_uid = get("seriesUid")
    if status is None or not series_uid:
        return None
    activity_id, device_id, moment = get("id"), get("deviceId"), get("activityTime")
    if activity_id is None or moment is None:
        raise MappingError(f"ninjaone activity {activity_id} of alert {series_uid} has no "
                           f"{'id' if activity_id is None else 'activityTime'}")
    try:
        occurred_at = _fromtimestamp(moment, _UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MappingError(f"ninjaone activity {activity_id} has an activityTime that is not epoch seconds: "
                           f"{exc}") from None
    return AlertEvent(SOURCE, str(activity_id), str(series_uid), "" if device_id is None else str(device_id),
                      status, occurred_at, get("severity") or "", get("message") or get("subject") or "")


# --- report records ----------------------------------------------------------------------------
# The reports (/v2/queries/*) name a device, not its organization: ``orgs`` maps the device ids
# read in this run to their organization ids. A record of a device not among them (added since,
# or set aside by the device sweep) is a MappingError: set aside, and read again next pass.

def _device_of(what: str, raw: dict[str, Any], orgs: dict[str, str]) -> tuple[str, str]:
    """(device id, organization id) of a report record."""
    device_id = raw.get("deviceId")
    if device_id is None or isinstance(device_id, bool):
        raise MappingError(f"ninjaone {what} without a deviceId cannot be told to a client; it is set aside "
                           f"(fix: none in the hub; NinjaOne sends every report record with its device)")
    device_id = str(device_id)
    org = orgs.get(device_id)
    if org is None:
        raise MappingError(f"ninjaone {what} of device {device_id}: the device is not among the devices read in "
                           f"this run (added since, or set aside by the device sweep), so its client is unknown; "
                           f"it is set aside (fix: none if the device is new, the next pass reads it; else see "
                           f"why the devices stream set the device aside)")
    return device_id, org


def _count(what: str, raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError(f"ninjaone {what} has {key} {value!r}, not a count; it is set aside")
    return value


def _moment(what: str, raw: dict[str, Any], key: str) -> datetime | None:
    try:
        return _when(raw.get(key))
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MappingError(f"ninjaone {what} has a {key} that is not epoch seconds: {exc}") from None


def to_antivirus(raw: dict[str, Any], orgs: dict[str, str]) -> AntivirusStatus:
    """An antivirus product of a device (``/v2/queries/antivirus-status``) as an AntivirusStatus.

    Keyed ``<device id>:<product name>``; ``productState`` and ``definitionStatus`` are kept as the
    vendor words them (e.g. ``ON``, ``UP_TO_DATE``), "" when absent. A record without a product
    name cannot be keyed and is set aside.
    """
    device_id, org = _device_of("antivirus status", raw, orgs)
    product = _text(raw.get("productName"))
    if product is None:
        raise MappingError(f"ninjaone antivirus status of device {device_id} names no product (productName "
                           f"{raw.get('productName')!r}); it is set aside")
    what = f"antivirus status of device {device_id} ({product})"
    return AntivirusStatus(SOURCE, f"{device_id}:{product}", org, device_id, product,
                           _text(raw.get("productState")) or "", _text(raw.get("definitionStatus")) or "",
                           _moment(what, raw, "timestamp"))


def to_patch(raw: dict[str, Any], orgs: dict[str, str], kind: str, installs: bool) -> Patch:
    """An OS or software patch of a device as a Patch: waiting (``os-patches``, ``software-patches``)
    or an installation attempt (``os-patch-installs``, ``software-patch-installs``).

    A waiting patch is keyed ``<kind>:<device>:<patch>``, an installation
    ``<kind>:<device>:<patch>:<installedAt>`` (each attempt is one row). ``patch_id`` is an OS
    patch's KB number where it has one, else the vendor's id; ``name`` the OS patch's ``name`` or
    the software patch's ``title``; ``severity`` the OS patch's ``severity`` or the software
    patch's ``impact``. Statuses: PENDING, APPROVED, REJECTED, MANUAL and FAILED (a patch whose
    installation failed and is still missing) for waiting patches, INSTALLED and FAILED for
    installations; any other word, or an installation without ``installedAt``, is set aside.
    """
    label = f"{kind} patch"
    device_id, org = _device_of(label, raw, orgs)
    vendor_id = _text(raw.get("id"))
    kb = _text(raw.get("kbNumber")) if kind == OS_PATCH else None
    key = vendor_id or kb
    if key is None:
        raise MappingError(f"ninjaone {label} of device {device_id} has neither id nor kbNumber "
                           f"({raw.get('name') or raw.get('title')!r}); it cannot be keyed and is set aside")
    what = f"{label} {key} of device {device_id}"
    status_word = raw.get("status")
    status = (_INSTALL_STATUS if installs else _WAITING_STATUS).get(
        status_word.upper() if isinstance(status_word, str) else status_word)
    if status is None:
        known = ", ".join(_INSTALL_STATUS if installs else _WAITING_STATUS)
        raise MappingError(f"ninjaone {what} has status {status_word!r}, not one of {known}; it is set aside "
                           f"(fix: a new status of NinjaOne's needs a hub word in plugins/ninjaone/plugin.py)")
    installed_at = _moment(what, raw, "installedAt")
    if installs and installed_at is None:
        raise MappingError(f"ninjaone {what} is an installation without installedAt; it is set aside")
    name = _text(raw.get("name" if kind == OS_PATCH else "title")) or key
    severity = _text(raw.get("severity" if kind == OS_PATCH else "impact")) or ""
    source_id = f"{kind}:{device_id}:{key}" + (f":{installed_at.isoformat()}" if installs else "")
    return Patch(SOURCE, source_id, org, device_id, kind, kb or key, name, severity, status,
                 installed_at if installs else None, _moment(what, raw, "timestamp"))


def to_device_health(raw: dict[str, Any], orgs: dict[str, str]) -> DeviceHealth:
    """A device's health summary (``/v2/queries/device-health``) as a DeviceHealth, keyed by device.

    ``healthStatus`` UNKNOWN, HEALTHY, NEEDS_ATTENTION, UNHEALTHY becomes ``unknown``, ``healthy``,
    ``needs_attention``, ``unhealthy`` (absent: ``unknown``, as NinjaOne says when it does not
    know); another word sets the record aside. ``pending_reboot`` is whether a
    ``pendingRebootReason`` is given.
    """
    device_id, org = _device_of("health summary", raw, orgs)
    what = f"health summary of device {device_id}"
    word = raw.get("healthStatus")
    health = "unknown" if word is None else _HEALTH.get(word.upper() if isinstance(word, str) else word)
    if health is None:
        raise MappingError(f"ninjaone {what} has healthStatus {word!r}, not one of {', '.join(_HEALTH)}; "
                           f"it is set aside")
    offline = raw.get("offline")
    if offline is not None and not isinstance(offline, bool):
        raise MappingError(f"ninjaone {what} has offline {offline!r}, not true or false; it is set aside")
    return DeviceHealth(SOURCE, device_id, org, device_id, health, bool(offline),
                        _count(what, raw, "activeThreatsCount"), _count(what, raw, "failedOSPatchesCount"),
                        _count(what, raw, "pendingOSPatchesCount"), bool(_text(raw.get("pendingRebootReason"))))


def to_backup_job(raw: dict[str, Any]) -> BackupJob:
    """A backup job run (``/v2/backup/jobs``) as a BackupJob, keyed by ``jobId``.

    The job names its organization and device. ``jobStatus`` becomes ``completed``, ``failed``,
    ``running`` or ``cancelled`` (the spec lists no values: COMPLETED/SUCCESS, FAILED/ERROR,
    RUNNING/IN_PROGRESS/PROCESSING/STARTED, CANCELLED/CANCELED/ABORTED), another word is kept
    lower-cased; a job without ``jobStatus``, ``jobId``, ``deviceId`` or ``organizationId`` is set
    aside.
    """
    job_id = _text(raw.get("jobId"))
    device_id, org = raw.get("deviceId"), raw.get("organizationId")
    if job_id is None or device_id is None or org is None:
        missing = [k for k, v in (("jobId", job_id), ("deviceId", device_id), ("organizationId", org)) if v is None]
        raise MappingError(f"ninjaone backup job {job_id or raw.get('planName') or ''} of device {device_id} has no "
                           f"{' or '.join(missing)}; it is set aside")
    what = f"backup job {job_id} of device {device_id}"
    word = _text(raw.get("jobStatus"))
    if word is None:
        raise MappingError(f"ninjaone {what} has no jobStatus; it is set aside")
    return BackupJob(SOURCE, job_id, str(org), str(device_id), _text(raw.get("planType")) or "",
                     _BACKUP_STATUS.get(word.upper(), word.lower()), _moment(what, raw, "jobStartTime"),
                     _moment(what, raw, "jobEndTime"))


def _report_key(raw: Any) -> str:
    """What names a report record that could not be mapped, in ``rejected_records``."""
    if not isinstance(raw, dict):
        return repr(raw)[:60]
    parts = [str(raw[k]) for k in ("deviceId", "jobId", "id", "kbNumber", "productName", "installedAt")
             if raw.get(k) is not None]
    return ":".join(parts) or "(no device, no id)"


def _map_report(raws: list[dict], to_record: Callable[[dict], Any]) -> tuple[list, list[tuple[str, str]]]:
    """Map a page of report records; one that cannot be mapped is set aside with its reason."""
    records, rejected = [], []
    for raw in raws:
        try:
            records.append(to_record(raw))
        except Exception as exc:  # noqa: BLE001 - a record set aside, never the page
            why = str(exc) if isinstance(exc, MappingError) else f"cannot be mapped: {exc.__class__.__name__} {exc}"
            rejected.append((_report_key(raw), why))
    return records, rejected


# --- settings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NinjaOneSettings:
    """The ``[connectors.ninjaone]`` section, validated."""

    client_id: str
    client_secret: Secret
    base_url: str = DEFAULT_BASE_URL
    scope: str = "monitoring"
    page_size: int = MAX_PAGE_SIZE
    console_url: str | None = None     # the console's address for device links; None: base_url
    device_details: bool = True        # sweep /v2/devices-detailed (OS, IP addresses, serial number)
    # Requests a second (0 = none). NinjaOne publishes no rate limit (its API answers 429 with
    # Retry-After when it must, and the client waits as told), so none is the default.
    rate_limit: float = 0.0
    # The streams the quarterly reports read (antivirus, patches, backups, health): none by
    # default, so that a hub that makes no reports sends no more requests; and how often they
    # read again, in hours (0: every sync).
    report_streams: tuple[str, ...] = ()
    report_interval: float = DEFAULT_REPORT_INTERVAL

    @property
    def console(self) -> str:
        """The NinjaOne console's address, where a device's page is ``#/deviceDashboard/<id>/overview``."""
        return self.console_url or self.base_url

    @classmethod
    def from_config(cls, config: HubConfig) -> NinjaOneSettings:
        """Read and check the section; a ConfigError names the key and the fix."""
        section = config.connector_settings(SOURCE, SETTINGS_KEYS, secrets=("client_secret",))

        def fail(key: str, message: str, fix: str) -> ConfigError:
            return ConfigError(message, file=config.file, key=f"connectors.{SOURCE}.{key}", fix=fix)

        client_id = section.get("client_id")
        if not isinstance(client_id, str) or not client_id.strip():
            raise fail("client_id", "missing" if client_id is None else "must be a non-empty string",
                       "copy the Client ID of your NinjaOne API app (Administration > Apps > API)")

        base_url = section.get("base_url", DEFAULT_BASE_URL)
        if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://")):
            raise fail("base_url", f"must be an http(s) URL, got {base_url!r}",
                       f"use your instance host, e.g. \"{DEFAULT_BASE_URL}\" or \"https://eu.ninjarmm.com\"")
        base_url = base_url.rstrip("/")
        if base_url.endswith(("/v2", "/api/v2", "/ws")):
            raise fail("base_url", f"must be the host only, got {base_url!r}",
                       "drop the path; the client adds /v2 and /ws/oauth/token itself")

        scope = section.get("scope", "monitoring")
        words = scope.split() if isinstance(scope, str) else []
        if "monitoring" not in words or any(w not in SCOPES for w in words):
            raise fail("scope", f"must list 'monitoring' and only {', '.join(SCOPES)}, got {scope!r}",
                       "use scope = \"monitoring\"")

        page_size = section.get("page_size", MAX_PAGE_SIZE)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise fail("page_size", f"must be an integer from 1 to {MAX_PAGE_SIZE}, got {page_size!r}",
                       f"use page_size = {MAX_PAGE_SIZE} or leave it out")

        console_url = section.get("console_url")
        if console_url is not None:
            if not isinstance(console_url, str) or not console_url.startswith(("https://", "http://")):
                raise fail("console_url", f"must be an http(s) URL, got {console_url!r}",
                           "use the address you open NinjaOne at, e.g. \"https://eu.ninjarmm.com\", or leave "
                           "it out to use base_url")
            console_url = console_url.strip().rstrip("/")
            if "#" in console_url or console_url.count("/") > 2:
                raise fail("console_url", f"must be the console's address only, got {console_url!r}",
                           f"drop the path: console_url = \"{'/'.join(console_url.split('#')[0].split('/')[:3])}\"")

        device_details = section.get("device_details", True)
        if not isinstance(device_details, bool):
            raise fail("device_details", f"must be true or false, got {device_details!r}",
                       "write device_details = true to read OS, IP addresses and serial numbers")

        reports = section.get("report_streams", False)
        if reports is True:
            reports = list(REPORT_STREAMS)
        elif reports is False:
            reports = []
        if not isinstance(reports, list) or not all(isinstance(r, str) for r in reports):
            raise fail("report_streams", f"must be true, false or a list of stream names, got {reports!r}",
                       "write report_streams = true to read every report stream (quarterly scorecards), "
                       f"or a list of some of {', '.join(REPORT_STREAMS)}")
        unknown = [r for r in reports if r not in REPORT_STREAMS]
        if unknown:
            raise fail("report_streams", f"unknown stream {unknown[0]!r}", f"use some of {', '.join(REPORT_STREAMS)}")
        interval = section.get("report_interval", DEFAULT_REPORT_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= 24 * 31:
            raise fail("report_interval", f"must be a number of hours from 0 to 744, got {interval!r}",
                       f"use report_interval = {DEFAULT_REPORT_INTERVAL:g} (hours between two reads of the report "
                       f"streams; 0 reads them at every sync) or leave it out")

        rate = read_rate(section, config=config, connector=SOURCE, default=0.0,
                         why="NinjaOne publishes no limit; set one to pace the hub below what your instance allows")
        secret = config.secret(SOURCE, "client_secret")
        return cls(client_id=client_id.strip(), client_secret=secret, base_url=base_url,
                   scope=" ".join(words), page_size=page_size, console_url=console_url,
                   device_details=device_details, rate_limit=rate,
                   report_streams=tuple(r for r in REPORT_STREAMS if r in reports),
                   report_interval=float(interval))


# --- the connector -----------------------------------------------------------------------------

# Each report stream's table.
REPORT_TABLES = {"antivirus": "antivirus", "device_health": "device_health", "os_patches": "patches",
                 "software_patches": "patches", "os_patch_installs": "patches", "software_patch_installs": "patches",
                 "backup_jobs": "backups"}

class NinjaOneConnector:
    """NinjaOne as the engine sees it: four streams (and the report streams, when asked), nothing to push.

    ``clients`` and ``devices`` are full keyset sweeps, since the API has no updated-since
    filter. Their cursor is ``{"after": <last id>, "read": <records read so far>}`` while a sweep
    is under way (so a failed run resumes there, still counting) and ``{"swept_at": <run start>}``
    once a sweep finished (so the next run sweeps again). The page that ends a sweep carries
    ``sweep_count``, every record the sweep read (those set aside included), for the engine to
    compare with the last sweep; a sweep resumed from a cursor without ``read`` gives none. A sweep
    ends only on an empty page (see ``NinjaOneClient``). ``swept_at`` and ``listed_at`` are the
    hub's clock on purpose: they filter nothing (the next sweep reads everything again), they only
    say when the hub read the set; no NinjaOne read depends on the hub's clock.

    ``alerts`` is the active list, read whole each run (the API does not page it) as one page
    marked complete, so alerts gone from it become inactive; cursor ``{"listed_at": <run start>}``.

    ``alert_events`` follows the activity log (TRIGGERED and RESET of alert series, class DEVICE)
    by activity id: cursor ``{"newer_than": <last activity id committed>}``, one page per page of
    activities, oldest first. A reset is seen there even when the alert came and went between two
    runs. The first run reads back the newest 1000 such activities (one request at the default
    page size), not a time window: it needs no clock agreement with the tenant, and what happened
    before it is history the active list already sums up. When there is nothing to read back, the
    cursor starts at the account's ``lastActivityId``. The client checks every page against the
    readings the spec leaves open (the status filter, the direction of newerThan/olderThan) and
    falls back or fails the pass naming the one that broke (see ``NinjaOneClient``); the pages may
    then hold other statuses, which ``to_alert_event`` leaves out while the cursor still moves to
    the last activity read.

    The report streams (``report_streams``, none by default) feed the quarterly reports only: their
    tables bill nothing and gate no ticket, so a failed pass holds no invoice. Each reads a report
    (``NinjaOneClient.iter_report``), at most once per ``report_interval`` hours (cursor
    ``read_at``, the hub's clock; a pass within the interval asks nothing and changes nothing).
    The reports name devices, not organizations: the client of a record is its device's
    organization, from the devices sweep of the same run when it ran whole, else from one sweep of
    ``/v2/devices`` shared by the report streams of the run; a record of a device not found there
    is set aside with the reason. ``antivirus`` and ``device_health`` read the whole current set
    and store it as one page marked complete (a product or device gone from the report becomes
    inactive). ``os_patches`` and ``software_patches`` read the patches waiting now; they share the
    ``patches`` table with the installations, which a complete page would mark inactive, so their
    pages are not marked complete: a patch that leaves the waiting list keeps its last row.
    ``os_patch_installs`` and ``software_patch_installs`` read the installation history from
    ``installedAfter``: two quarters back on a first pass (``INSTALL_LOOKBACK``), then from two days
    before the previous pass started (``INSTALL_OVERLAP``: installations reported late, a tenant's
    clock, and a date bound whose inclusiveness the spec does not say); cursor
    ``{"installed_after": <date>, "read_at": ...}``, saved once the pass read everything.
    ``backup_jobs`` reads every job (``/v2/backup/jobs``), which name their organization: the
    ``stf`` start-time filter has no documented syntax, and a wrong guess would lose jobs without
    a sound.
    """

    name = SOURCE
    action_kinds: frozenset[str] = frozenset()

    def __init__(self, settings: NinjaOneSettings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None, limiter: RateLimiter | None = None):
        self.settings = settings
        # (run start, device id -> organization id) of the latest whole device sweep, for the reports.
        self._orgs: tuple[datetime, dict[str, str]] | None = None
        if limiter is None:   # this process only; register_connectors shares it through the store
            limiter = RateLimiter(account_key(SOURCE, *rate_account(settings)), settings.rate_limit)
        self.client = NinjaOneClient(settings.base_url, settings.client_id, settings.client_secret,
                                     scope=settings.scope, http=http, retrying=retrying,
                                     page_size=settings.page_size, limiter=limiter)

    def streams(self) -> list[Stream]:
        return [
            Stream(SOURCE, "clients", "clients", self._sweep(self.client.iter_organizations, to_client)),
            Stream(SOURCE, "devices", "devices", self._noting_organizations(self._sweep(
                partial(self.client.iter_devices, detailed=self.settings.device_details),
                partial(to_device, console=self.settings.console)))),
            Stream(SOURCE, "alerts", "alerts", self._alerts),
            Stream(SOURCE, "alert_events", "alert_events", self._alert_events),
        ] + [Stream(SOURCE, name, REPORT_TABLES[name], self._report(name)) for name in self.settings.report_streams]

    def _alerts(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        alerts = {}
        for raw in self.client.list_alerts():
            alert = to_alert(raw)
            alerts[alert.source_id] = alert  # one record per uid, should the list repeat one
        yield Page(list(alerts.values()), {"listed_at": run_started_at.isoformat()}, complete=True)

    def _alert_events(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        newer_than = (cursor or {}).get("newer_than")
        pages = 0
        for raw in self.client.iter_activities(newer_than):
            pages += 1
            events = [e for e in map(to_alert_event, raw) if e is not None]
            yield Page(events, {"newer_than": raw[-1]["id"]})
        if not pages and newer_than is None and self.client.last_activity_id is not None:
            # Nothing to read back: start after the account's newest activity, not from a lookback again.
            yield Page([], {"newer_than": self.client.last_activity_id})

    @staticmethod
    def _sweep(fetch: Callable[[int | None], Iterator[list[dict]]], to_record: Callable[[dict], Any]):
        def iter_pages(cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
            cursor = cursor or {}
            after = cursor.get("after")
            # A sweep resumed from a cursor that kept no count cannot tell how many it read.
            read = cursor.get("read", 0) if after is None or isinstance(cursor.get("read"), int) else None
            held: list[dict] | None = None
            # Hold each page until the next one arrives, so the last one can carry "swept_at".
            for raw in fetch(after):
                if held is not None:
                    records, rejected = map_records(held, to_record)
                    if read is not None:
                        read += len(held)
                    yield Page(records, {"after": held[-1]["id"], **({} if read is None else {"read": read})},
                               rejected=rejected)
                held = raw
            records, rejected = map_records(held, to_record) if held else ([], ())
            if read is not None and held:
                read += len(held)
            yield Page(records, {"swept_at": run_started_at.isoformat()}, rejected=rejected, sweep_count=read)
        return iter_pages

    # --- report streams ------------------------------------------------------------------------

    def _noting_organizations(self, iter_pages):
        """The devices sweep, noting each device's organization once a whole sweep ran in this run
        (the report streams then need no sweep of their own)."""
        def pages(cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
            whole = not (cursor or {}).get("after")
            seen: dict[str, str] = {}
            for page in iter_pages(cursor, run_started_at):
                for device in page.records:
                    seen[device.source_id] = device.client_source_id
                yield page
            if whole:
                self._orgs = (run_started_at, seen)
        return pages

    def _organizations(self, run_started_at: datetime) -> dict[str, str]:
        """Device id -> organization id of every device, read in this run: the devices stream's
        sweep when it ran whole in this run, else a sweep of ``/v2/devices`` (basic records, one
        request per ``page_size`` devices) made once for every report stream of the run."""
        orgs = self._orgs
        if orgs is None or orgs[0] != run_started_at:
            seen = {}
            for page in self.client.iter_devices():
                for raw in page:
                    if raw.get("id") is not None and raw.get("organizationId") is not None:
                        seen[str(raw["id"])] = str(raw["organizationId"])
            self._orgs = orgs = (run_started_at, seen)
        return orgs[1]

    def _report(self, name: str):
        """The pass of one report stream (see the class docstring)."""
        def iter_pages(cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
            cursor = cursor or {}
            read_at = cursor.get("read_at")
            if read_at and self.settings.report_interval and datetime.fromisoformat(read_at) + timedelta(
                    hours=self.settings.report_interval) > run_started_at:
                return   # read recently enough: nothing is asked, nothing changes
            done = {**cursor, "read_at": run_started_at.isoformat()}
            if name == "backup_jobs":
                yield from self._pages(self.client.iter_report("/v2/backup/jobs"), to_backup_job, cursor, done)
                return
            orgs = self._organizations(run_started_at)
            if name == "antivirus":
                yield self._snapshot(self.client.iter_report("/v2/queries/antivirus-status"),
                                     partial(to_antivirus, orgs=orgs), done)
            elif name == "device_health":
                yield self._snapshot(self.client.iter_report("/v2/queries/device-health"),
                                     partial(to_device_health, orgs=orgs), done)
            else:
                kind = OS_PATCH if name.startswith("os") else SOFTWARE_PATCH
                installs = name.endswith("_installs")
                path = f"/v2/queries/{'os' if kind == OS_PATCH else 'software'}-patch{'-installs' if installs else 'es'}"
                to_record = partial(to_patch, orgs=orgs, kind=kind, installs=installs)
                if not installs:
                    # The waiting patches are a whole current set within the table, which also
                    # holds the installations: a patch no longer waiting becomes inactive.
                    yield self._snapshot(self.client.iter_report(path), to_record, done,
                                         scope={"kind": kind, "installed_at": None})
                    return
                after = cursor.get("installed_after")
                start = date.fromisoformat(after) if after else (run_started_at - INSTALL_LOOKBACK).date()
                # The next pass reads from a little before this one started (on the hub's clock,
                # with a margin for a tenant's clock and for installations reported late).
                done["installed_after"] = max(start, (run_started_at - INSTALL_OVERLAP).date()).isoformat()
                yield from self._pages(self.client.iter_report(path, {"installedAfter": start.isoformat()}),
                                       to_record, cursor, done)
        return iter_pages

    @staticmethod
    def _snapshot(fetch: Iterator[list[dict]], to_record: Callable[[dict], Any], done: dict[str, Any],
                  scope: dict[str, Any] | None = None) -> Page:
        """The whole current set (of ``scope``'s part of the table) as one page marked complete:
        what it no longer holds becomes inactive."""
        records: dict[str, Any] = {}
        rejected: list[tuple[str, str]] = []
        for raw in fetch:
            mapped, aside = _map_report(raw, to_record)
            rejected += aside
            for record in mapped:
                records[record.source_id] = record   # one record per key, should the report repeat one
        return Page(list(records.values()), done, complete=True, rejected=tuple(rejected), scope=scope)

    @staticmethod
    def _pages(fetch: Iterator[list[dict]], to_record: Callable[[dict], Any], cursor: dict[str, Any],
               done: dict[str, Any]) -> Iterator[Page]:
        """One page per vendor page with the cursor the pass started from, then the pass's cursor.
        A record a page repeats from an earlier page of the pass is stored once."""
        seen: set[str] = set()
        for raw in fetch:
            mapped, rejected = _map_report(raw, to_record)
            fresh = [r for r in mapped if r.source_id not in seen]
            seen.update(r.source_id for r in fresh)
            yield Page(fresh, cursor or None, rejected=tuple(rejected))
        yield Page([], done)

    def check(self) -> str:
        """One cheap authenticated request, tried once: a token, then GET /v2/organizations?pageSize=1.
        Returns what it did; raises the VendorError of the first failure (hub.check names the fix)."""
        self.client._attempt("GET", "/v2/organizations", {"pageSize": 1}, None, list)
        return "GET /v2/organizations?pageSize=1 (OAuth token accepted)"

    def push(self, action, context):
        raise NotImplementedError("the ninjaone connector pushes nothing")

    def close(self) -> None:
        self.client.close()


@hookimpl
def register_connectors(config):
    """The NinjaOne connector when ``[connectors.ninjaone]`` is configured."""
    if config.connector_section(SOURCE) is None:
        return []
    settings = NinjaOneSettings.from_config(config)
    return [NinjaOneConnector(settings, limiter=limiter_for(config, SOURCE, rate_account(settings),
                                                            settings.rate_limit))]


def rate_account(settings: NinjaOneSettings) -> tuple[str, str]:
    """What names the NinjaOne account of a rate limit (hashed into its key): instance and API app."""
    return settings.base_url, settings.client_id
