"""NinjaOne in hub vocabulary: mapping functions, settings, the connector and its hookimpl."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Iterator

import httpx
import tenacity

from hub import Client, ConfigError, Device, MappingError, Page, Stream, hookimpl, map_records
from hub.config import HubConfig, Secret
from hub.ratelimit import RateLimiter, account_key, limiter_for, read_rate
from hub.records import APPROVAL_STATES, Alert, AlertEvent

from plugins.ninjaone.client import MAX_PAGE_SIZE, NinjaOneClient

SOURCE = "ninjaone"
DEFAULT_BASE_URL = "https://app.ninjarmm.com"
SCOPES = ("monitoring", "management", "control")
SETTINGS_KEYS = ("base_url", "client_id", "client_secret_env", "client_secret_file", "scope", "page_size",
                 "console_url", "device_details", "rate_limit")

_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
# The vendor's upper-case values to hub states; odd spellings fall back to lower().
_APPROVAL = {state.upper(): state for state in APPROVAL_STATES}
# The statusCodes of an alert series that become AlertEvents, and their hub status.
_EVENT_STATUS = {"TRIGGERED": "triggered", "RESET": "reset"}


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
    try:
        return Device(SOURCE, device_id, str(raw["organizationId"]), name, node_class, status,
                      None if created is None else _fromtimestamp(created, _UTC),
                      None if last_contact is None else _fromtimestamp(last_contact, _UTC),
                      None if updated is None else _fromtimestamp(updated, _UTC),
                      os_name, ip_addresses, serial,
                      None if console is None else f"{console}/#/deviceDashboard/{device_id}/overview")
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

        rate = read_rate(section, config=config, connector=SOURCE, default=0.0,
                         why="NinjaOne publishes no limit; set one to pace the hub below what your instance allows")
        secret = config.secret(SOURCE, "client_secret")
        return cls(client_id=client_id.strip(), client_secret=secret, base_url=base_url,
                   scope=" ".join(words), page_size=page_size, console_url=console_url,
                   device_details=device_details, rate_limit=rate)


# --- the connector -----------------------------------------------------------------------------

class NinjaOneConnector:
    """NinjaOne as the engine sees it: four streams, nothing to push.

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
    """

    name = SOURCE
    action_kinds: frozenset[str] = frozenset()

    def __init__(self, settings: NinjaOneSettings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None, limiter: RateLimiter | None = None):
        self.settings = settings
        if limiter is None:   # this process only; register_connectors shares it through the store
            limiter = RateLimiter(account_key(SOURCE, *rate_account(settings)), settings.rate_limit)
        self.client = NinjaOneClient(settings.base_url, settings.client_id, settings.client_secret,
                                     scope=settings.scope, http=http, retrying=retrying,
                                     page_size=settings.page_size, limiter=limiter)

    def streams(self) -> list[Stream]:
        return [
            Stream(SOURCE, "clients", "clients", self._sweep(self.client.iter_organizations, to_client)),
            Stream(SOURCE, "devices", "devices", self._sweep(
                partial(self.client.iter_devices, detailed=self.settings.device_details),
                partial(to_device, console=self.settings.console))),
            Stream(SOURCE, "alerts", "alerts", self._alerts),
            Stream(SOURCE, "alert_events", "alert_events", self._alert_events),
        ]

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
