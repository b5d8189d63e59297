"""A stateful, deterministic fake of the NinjaOne API v2 endpoints the client uses, with faults."""

from __future__ import annotations

import bisect
import calendar
import collections
import json
import random
import threading
import time
import uuid
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import httpx

TOKEN_PATH = "/ws/oauth/token"
# A fixed "now" keeps generated timestamps deterministic: 2025-06-01T00:00:00Z.
DEFAULT_NOW = 1_748_736_000.0
DAY = 86_400.0

# (nodeClass, weight, name prefix): mostly workstations and Macs, some servers and network gear.
NODE_CLASSES = (
    ("WINDOWS_WORKSTATION", 55, "WS"), ("MAC", 15, "MAC"), ("WINDOWS_SERVER", 9, "SRV"),
    ("LINUX_SERVER", 4, "LNX"), ("NMS_PRINTER", 6, "PRN"), ("NMS_SWITCH", 5, "SW"),
    ("NMS_FIREWALL", 2, "FW"), ("VMWARE_VM_GUEST", 3, "VM"), ("LINUX_WORKSTATION", 1, "LWS"),
)
APPROVALS = (("APPROVED", 92), ("PENDING", 8))
ORG_NAMES = ("Acme Dental", "Birchwood Legal", "Cobalt Logistics", "Driftwood Cafe", "Elm Street Clinic",
             "Fairview Schools", "Granite Builders", "Harbor Insurance", "Ironclad Security",
             "Juniper Accounting", "Kestrel Aviation", "Lumen Architects")
API_SCOPES = {"monitoring", "management", "control", "offline_access"}
# Conditions the seeded alerts come from: (sourceType, conditionName, severity, priority).
CONDITIONS = (
    ("CONDITION_AGENT_CPU", "CPU above 90% for 15 minutes", "MAJOR", "HIGH"),
    ("CONDITION_AGENT_DISK_FREE_SPACE", "Disk C: below 10% free", "CRITICAL", "HIGH"),
    ("CONDITION_AGENT_MEMORY", "Memory above 95% for 30 minutes", "MODERATE", "MEDIUM"),
    ("CONDITION_WINDOWS_SERVICE_STATE_CHANGED", "Print Spooler stopped", "MINOR", "LOW"),
    ("AGENT_OFFLINE", "Device offline", "MAJOR", "MEDIUM"),
)
ACTIVITY_CLASSES = ("SYSTEM", "DEVICE", "USER", "ALL")
# The operating system a generated device of each class reports in /v2/devices-detailed (network
# devices report none: NinjaOne monitors them by SNMP, without an agent).
OS_NAMES = {"WINDOWS_WORKSTATION": "Windows 11 Pro", "WINDOWS_SERVER": "Windows Server 2022 Standard",
            "MAC": "macOS 14.5 Sonoma", "LINUX_SERVER": "Ubuntu 22.04.4 LTS",
            "LINUX_WORKSTATION": "Ubuntu 24.04 LTS", "VMWARE_VM_GUEST": "Windows Server 2019 Standard"}

# The reports served (``/v2/queries/*`` and ``/v2/backup/jobs``), paged by cursor.
REPORT_PATHS = ("/v2/queries/antivirus-status", "/v2/queries/device-health", "/v2/queries/os-patches",
                "/v2/queries/software-patches", "/v2/queries/os-patch-installs",
                "/v2/queries/software-patch-installs", "/v2/backup/jobs")
# Report cursors expire this long after they were made (on the simulator's clock), unless
# ``expire_cursors`` ends them sooner.
CURSOR_TTL = 300.0
ANTIVIRUS_PRODUCTS = {"MAC": "Bitdefender Endpoint Security Tools", "LINUX_SERVER": "ClamAV",
                      "LINUX_WORKSTATION": "ClamAV"}
SOFTWARE_TITLES = ("Google Chrome", "Mozilla Firefox", "Adobe Acrobat Reader", "7-Zip", "Zoom Workplace",
                   "Notepad++", "VLC media player")
_REPORT_NS = uuid.UUID("0b7f3c1e-94a2-4d55-8e6f-1c2d3e4f5a6b")

# How the simulator reads the readings of /v2/activities the spec leaves open (see the class).
STATUS_FILTERS = ("statusCode", "ignored", "status")
ACTIVITY_CURSORS = ("as_named", "reversed", "ignored")
# Activity ids are account-wide in NinjaOne; a tenant's first one is far from 1.
FIRST_ACTIVITY_ID = 7_000_000
# Condition config uids are stable per condition, as a policy's condition is.
_CONDITION_NS = uuid.UUID("6c5e9a52-1f0b-4d7e-9a3c-2b8f4e1d0a77")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json", **(headers or {})})


def _present(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its None fields, in nested objects too."""
    return {k: _present(v) if isinstance(v, dict) else v for k, v in record.items() if v is not None}


class NinjaOneSimulator:
    """Organizations, devices, alerts and activities served like the NinjaOne API v2.

    Endpoints: ``/ws/oauth/token``, ``/v2/organizations``, ``/v2/devices``, ``/v2/devices-detailed``
    (the same devices, paged the same way, each with ``ipAddresses``, ``macAddresses``, ``publicIP``
    and, for agent devices, ``os`` and ``system``; see ``set_device_details``), ``/v2/alerts``,
    ``/v2/activities``, ``POST /v2/alert/{uid}/reset`` and ``DELETE /v2/alert/{uid}`` (these two
    need the ``management`` scope), and the reports ``/v2/queries/antivirus-status``,
    ``device-health``, ``os-patches``, ``software-patches``, ``os-patch-installs``,
    ``software-patch-installs`` and ``/v2/backup/jobs`` (see "report data"): each answers
    ``{cursor: {name, offset, count, expires}, results}``, the first request making a cursor over
    what its filters select (``df`` as ``org``/``id`` ``=``/``in``, ``status``, ``installedAfter``/
    ``installedBefore`` as YYYY-MM-DD, ``health``, ``productState``, ``sf``, ``ptf``) and
    ``cursor=<name>`` answering the next page, then an empty one; ``expire_cursors`` ends them.
    Mount with ``httpx.MockTransport(sim.handler)`` or serve over HTTP with ``hub.testing.serve``.
    Data comes from ``random.Random(seed)``; ids are increasing with gaps, as in a real tenant.
    ``requests`` counts requests served and ``requests_by_path`` counts them per path;
    ``log`` keeps the last 1000 as ``(method, path, query dict)``.

    Alerts: none by default, so that a tenant is quiet until a test makes a condition fire.
    ``alerts=n`` seeds n active alerts (triggered over the 6 hours before ``now``), two more that
    were triggered and reset, and two activities that are not alerts (a script run, a login).
    ``trigger_alert``, ``reset_alert``, ``flap_alert`` and ``alert_storm`` add more.
    The activity log answers like the real one: newest first, ``olderThan=X`` the activities just
    below X, ``newerThan=X`` the activities just above X (``newer_than_takes="newest"`` makes it
    answer the newest ones above X instead, to test a client against that reading).
    The readings the spec leaves open can be turned the other way, to prove a client checks
    them: ``status_filter="ignored"`` answers every status whatever ``status`` asks, and
    ``status_filter="status"`` matches ``status`` against the free-text ``status`` field
    (``Triggered``) instead of ``statusCode`` (``TRIGGERED``), so it selects nothing;
    ``activity_cursors="reversed"`` reads ``newerThan`` as ``olderThan`` and the reverse (as the
    spec's descriptions say), ``activity_cursors="ignored"`` ignores both. Each is an attribute
    too, to change between requests.

    Fields without a value are left out of every record, as the real API does; ``nulls=True``
    sends them as explicit nulls instead.

    ``now`` (epoch seconds) is the clock for generated data, alerts and activities, and the ``Date``
    header of every answer; it stands still unless ``clock_offset`` is given: then it is the real
    time plus that many seconds (negative: behind), as a tenant whose clock differs from the
    hub's; setting ``now`` stops it again.

    Paging of ``/v2/organizations`` and ``/v2/devices``: ``max_page_size`` caps every page below
    the ``pageSize`` asked for (the spec sets no maximum, so a server may); ``short_page_next``
    cuts pages short. Either way the records left out come on the next page (``after`` the last
    id served), and only an empty page says there are no more.
    """

    def __init__(self, seed: int = 0, organizations: int = 3, devices: int = 40, *, alerts: int = 0,
                 client_id: str = "sim-client-id", client_secret: str = "sim-client-secret",
                 token_ttl: float = 3600.0, now: float = DEFAULT_NOW, newer_than_takes: str = "next",
                 max_page_size: int | None = None, clock_offset: float | None = None,
                 status_filter: str = "statusCode", activity_cursors: str = "as_named", nulls: bool = False):
        if newer_than_takes not in ("next", "newest"):
            raise ValueError("newer_than_takes must be 'next' or 'newest'")
        if status_filter not in STATUS_FILTERS:
            raise ValueError(f"status_filter must be one of {', '.join(STATUS_FILTERS)}")
        if activity_cursors not in ACTIVITY_CURSORS:
            raise ValueError(f"activity_cursors must be one of {', '.join(ACTIVITY_CURSORS)}")
        self.status_filter, self.activity_cursors, self.nulls = status_filter, activity_cursors, nulls
        if max_page_size is not None and max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        self.max_page_size = max_page_size
        self._short_pages: list[dict[str, Any]] = []
        self.newer_than_takes = newer_than_takes
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl, self.now = token_ttl, now
        self.clock_offset = clock_offset
        self.rng = random.Random(seed)
        self.requests = 0
        self.requests_by_path: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[tuple[str, str, dict[str, str]]] = collections.deque(maxlen=1000)
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, frozenset[str]]] = {}
        self._token_count = 0
        self._faults: list[dict[str, Any]] = []
        self._orgs: dict[int, dict[str, Any]] = {}
        self._org_ids: list[int] = []
        self._devices: dict[int, dict[str, Any]] = {}
        self._device_ids: list[int] = []
        self._device_json: dict[int, bytes] = {}  # serialised once: pages of 1000 stay cheap
        self._device_details: dict[int, dict[str, Any]] = {}   # what /v2/devices-detailed adds
        self._detailed_json: dict[int, bytes] = {}              # serialised when first served
        # Active alerts by uid, serialised once without their closing brace (the device is
        # spliced in when served, so that it is the device as it is now).
        self._alerts: dict[str, dict[str, Any]] = {}
        self._alert_json: dict[str, bytes] = {}
        # The activity log, oldest first: ids, records, their JSON, and (class, statusCode, type).
        self._activity_ids: list[int] = []
        self._activities: list[dict[str, Any]] = []
        self._activity_json: list[bytes] = []
        self._activity_keys: list[tuple[str, str, str]] = []
        self._alert_rng = random.Random(seed * 7919 + 104_729)  # alerts never disturb device data
        # Report data, made per device when first asked for (from the seed and the device id, so
        # that it disturbs nothing else): see ``_report_data``. Tests change it through the
        # methods of "report data".
        self._seed = seed
        self._reported: set[int] = set()
        self._antivirus: dict[int, list[dict[str, Any]]] = {}
        self._health: dict[int, dict[str, Any]] = {}
        self._waiting: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._installs: dict[str, list[dict[str, Any]]] = {"os": [], "software": []}
        self._backups: list[dict[str, Any]] = []
        self._cursors: dict[str, dict[str, Any]] = {}
        self._cursor_count = 0
        self._warranties: dict[int, dict[str, Any] | None] = {}
        self._storm_next = 0
        for i in range(organizations):
            base = ORG_NAMES[i % len(ORG_NAMES)]
            self.add_organization(base if i < len(ORG_NAMES) else f"{base} {i // len(ORG_NAMES) + 1}")
        self._generate_devices(devices)
        if self._device_ids and alerts > 0:
            self._seed_alerts(alerts)

    @property
    def now(self) -> float:
        """The simulator's clock: fixed, or the real time plus ``clock_offset``."""
        return self._now if self.clock_offset is None else time.time() + self.clock_offset

    @now.setter
    def now(self, value: float) -> None:
        self._now, self.clock_offset = value, None

    # --- shaping data ---------------------------------------------------------------------------

    def add_organization(self, name: str, id: int | None = None) -> int:  # noqa: A002 - vendor's name
        """Add an organization; return its id (the next free one unless given)."""
        with self._lock:
            org_id = id if id is not None else (self._org_ids[-1] + 1 if self._org_ids else 1)
            if org_id in self._orgs:
                raise ValueError(f"organization {org_id} exists")
            self._orgs[org_id] = {"id": org_id, "name": name, "description": "",
                                  "nodeApprovalMode": "AUTOMATIC", "userData": {}}
            bisect.insort(self._org_ids, org_id)
            return org_id

    def add_device(self, org_id: int, node_class: str = "WINDOWS_WORKSTATION", approval: str = "APPROVED",
                   created: float | None = None, last_contact: float | None = None,
                   name: str | None = None, id: int | None = None) -> int:  # noqa: A002
        """Add a device to an organization; return its id (the next free one unless given)."""
        if org_id not in self._orgs:
            raise ValueError(f"no organization {org_id}")
        with self._lock:
            device_id = id if id is not None else (self._device_ids[-1] + 1 if self._device_ids else 1)
            if device_id in self._devices:
                raise ValueError(f"device {device_id} exists")
            created = self.now - 30 * DAY if created is None else created
            last_contact = self.now if last_contact is None else last_contact
            self._put_device(self._device(device_id, org_id, node_class, approval, created, last_contact,
                                          name or f"DEV-{device_id}"))
            bisect.insort(self._device_ids, device_id)
            return device_id

    def remove_device(self, id: int) -> None:  # noqa: A002
        """Delete a device, as when it is removed in NinjaOne."""
        with self._lock:
            del self._devices[id]
            del self._device_json[id]
            self._device_details.pop(id, None)
            self._detailed_json.pop(id, None)
            self._device_ids.pop(bisect.bisect_left(self._device_ids, id))

    def set_approval(self, id: int, status: str) -> None:  # noqa: A002
        """Set a device's approvalStatus (PENDING, STAGED, APPROVED, DECOMMISSIONED or any string)."""
        with self._lock:
            self._devices[id]["approvalStatus"] = status
            self._put_device(self._devices[id])

    def strip_device_fields(self, id: int, *fields: str) -> None:  # noqa: A002
        """Serve a device without ``fields`` (``"id"``, ``"organizationId"``, ``"nodeClass"``...), as a
        record the API sends incomplete; it keeps its place in id order."""
        with self._lock:
            device = {k: v for k, v in self._devices[id].items() if k not in fields}
            self._device_json[id] = self._encode(device)
            self._detailed_json.pop(id, None)

    def device(self, id: int, detailed: bool = False) -> dict[str, Any]:  # noqa: A002
        """The device's record as the API serves it (a copy), from ``/v2/devices-detailed`` if ``detailed``."""
        return json.loads(self._detailed_bytes(id) if detailed else self._device_json[id])

    def set_device_details(self, id: int, **details: Any) -> None:  # noqa: A002
        """Replace what ``/v2/devices-detailed`` adds to a device: ``os``, ``system``, ``ipAddresses``,
        ``macAddresses``, ``publicIP``... A value of None leaves that field out, as the API does
        for what it does not know; a field not named keeps its value."""
        with self._lock:
            current = self._device_details.setdefault(id, self._generated_details(self._devices[id]))
            for key, value in details.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self._detailed_json.pop(id, None)

    # --- alerts and the activity log -----------------------------------------------------------

    def trigger_alert(self, device_id: int, condition: str = "CPU above 90% for 15 minutes",
                      source_type: str = "CONDITION_AGENT_CPU", severity: str = "MAJOR",
                      message: str | None = None, uid: str | None = None, *, priority: str = "HIGH",
                      at: float | None = None) -> str:
        """Make a condition fire on a device: an active alert and a TRIGGERED activity; return its uid.

        ``condition`` is the conditionName (its sourceConfigUid is derived from it, the same for
        every device); ``at`` the epoch time (default ``now``); ``uid`` defaults to a new one.
        """
        with self._lock:
            return self._trigger(device_id, condition, source_type, severity, priority, message, uid, at)

    def reset_alert(self, uid: str, data: dict[str, Any] | None = None, at: float | None = None, *,
                    log_activity: bool = True) -> None:
        """Reset an active alert: it leaves the active list and a RESET activity is logged.

        ``log_activity=False`` logs no RESET, as when a reader misses it (the log was purged, a
        filter hid it): the alert only vanishes from the active list.
        """
        with self._lock:
            self._reset(uid, data, at, log_activity=log_activity)

    def link_psa_ticket(self, uid: str, ticket_id: Any) -> None:
        """NinjaOne's own PSA integration made a ticket for an active alert: its ``psaTicketId``
        becomes ``ticket_id`` (as the integration writes it: a number, else as given)."""
        with self._lock:
            alert = self._alerts.get(uid)
            if alert is None:
                raise KeyError(f"no active alert {uid}")
            alert["psaTicketId"] = ticket_id
            self._alert_json[uid] = self._encode(alert)[:-1]

    def flap_alert(self, device_id: int, condition: str = "CPU above 90% for 15 minutes",
                   source_type: str = "CONDITION_AGENT_CPU", severity: str = "MAJOR", *,
                   at: float | None = None) -> str:
        """Trigger and reset an alert at once, before any reader can see it active; return its uid."""
        with self._lock:
            uid = self._trigger(device_id, condition, source_type, severity, "HIGH", None, None, at)
            self._reset(uid, None, at)
            return uid

    def alert_storm(self, count: int, source_type: str = "AGENT_OFFLINE", condition: str = "Device offline",
                    severity: str = "MAJOR", at: float | None = None) -> list[str]:
        """Trigger ``count`` alerts on devices taken in turn (so across every organization); return uids."""
        if not self._device_ids:
            raise ValueError("an alert storm needs devices")
        with self._lock:
            ids, uids = self._device_ids, []
            for _ in range(count):
                device_id = ids[self._storm_next % len(ids)]
                self._storm_next += 1
                uids.append(self._trigger(device_id, condition, source_type, severity, "HIGH", None, None, at))
            return uids

    def add_activity(self, device_id: int | None = None, status_code: str = "COMPLETED",
                     activity_type: str = "SCRIPTING", message: str = "Script finished",
                     at: float | None = None, activity_class: str | None = None) -> int:
        """Log an activity that is not an alert (a script run, a login...); return its id."""
        with self._lock:
            cls = activity_class or ("SYSTEM" if device_id is None else "DEVICE")
            return self._log_activity(cls, {
                "activityTime": self.now if at is None else at, "deviceId": device_id, "severity": "NONE",
                "priority": "NONE", "activityType": activity_type, "statusCode": status_code,
                "status": status_code.replace("_", " ").title(), "activityResult": "SUCCESS",
                "subject": message, "message": message, "type": activity_type.title(), "data": {}})

    @property
    def alert_uids(self) -> list[str]:
        """The uids of the active alerts, oldest first."""
        return list(self._alerts)

    def alert(self, uid: str) -> dict[str, Any]:
        """The active alert as ``GET /v2/alerts`` serves it (a copy, with its device)."""
        with self._lock:
            return json.loads(self._alert_bytes(uid))

    @property
    def activities(self) -> list[dict[str, Any]]:
        """The whole activity log, oldest first (copies)."""
        return [json.loads(b) for b in self._activity_json]

    @property
    def organization_ids(self) -> list[int]:
        return list(self._org_ids)

    @property
    def device_ids(self) -> list[int]:
        return list(self._device_ids)

    # --- report data ----------------------------------------------------------------------------
    # Made per device when a report is first read, from the seed and the device id: agent devices
    # (not NMS_*) mostly have an antivirus (about one in eight has none, some are off or out of
    # date), Windows devices have OS patches waiting and installed (some failed), agent devices
    # third-party patches, servers and some workstations backup jobs over the last 60 days (some
    # failed; one device in ten only fails), and every device a health summary (some unhealthy).
    # Agent devices report a warranty in /v2/devices-detailed (``references.warranty``), some
    # expired, some unknown.

    def antivirus(self, device_id: int) -> list[dict[str, Any]]:
        """The device's antivirus statuses as the report serves them (copies)."""
        with self._lock:
            self._report_data(device_id)
            return json.loads(json.dumps(self._antivirus.get(device_id, [])))

    def set_antivirus(self, device_id: int, *products: dict[str, Any]) -> None:
        """Replace the device's antivirus statuses: each a dict of productName, productState,
        definitionStatus (and any other field); none: the device has no antivirus."""
        with self._lock:
            self._report_data(device_id)
            self._antivirus[device_id] = [{"deviceId": device_id, "timestamp": self.now, **p} for p in products]

    def health(self, device_id: int) -> dict[str, Any]:
        """The device's health summary as the report serves it (a copy)."""
        with self._lock:
            self._report_data(device_id)
            return dict(self._health[device_id])

    def set_health(self, device_id: int, **fields: Any) -> None:
        """Change fields of the device's health summary (``healthStatus="UNHEALTHY"``...); None removes one."""
        with self._lock:
            self._report_data(device_id)
            record = self._health[device_id]
            for key, value in fields.items():
                if value is None:
                    record.pop(key, None)
                else:
                    record[key] = value

    def waiting_patches(self, device_id: int, kind: str = "os") -> list[dict[str, Any]]:
        """The device's waiting patches of ``kind`` (os, software) as the report serves them (copies)."""
        with self._lock:
            self._report_data(device_id)
            return [dict(p) for p in self._waiting.get((kind, device_id), [])]

    def set_waiting_patches(self, device_id: int, kind: str = "os", *patches: dict[str, Any]) -> None:
        """Replace the device's waiting patches of ``kind``: each a dict of the report's fields."""
        with self._lock:
            self._report_data(device_id)
            self._waiting[(kind, device_id)] = [{"deviceId": device_id, "timestamp": self.now, **p} for p in patches]

    def patch_installs(self, kind: str = "os") -> list[dict[str, Any]]:
        """Every installation attempt of ``kind`` of the current devices, by device and time (copies)."""
        with self._lock:
            for device_id in self._device_ids:
                self._report_data(device_id)
            return [dict(p) for p in self._installs[kind] if p["deviceId"] in self._devices]

    def add_patch_install(self, device_id: int, kind: str = "os", status: str = "INSTALLED",
                          at: float | None = None, **fields: Any) -> dict[str, Any]:
        """Log an installation attempt (INSTALLED, FAILED) of a patch on a device at ``at`` (default
        now); return it as the report serves it."""
        with self._lock:
            self._report_data(device_id)
            record = self._patch(kind, device_id, len(self._installs[kind]) + 10_000, status,
                                 self.now if at is None else at)
            record.update(fields)
            self._installs[kind].append(record)
            return dict(record)

    def backup_jobs(self, device_id: int | None = None) -> list[dict[str, Any]]:
        """The backup jobs of a device (or of every current device) as the report serves them (copies)."""
        with self._lock:
            for i in (self._device_ids if device_id is None else [device_id]):
                self._report_data(i)
            return [dict(j) for j in self._backups if j["deviceId"] in self._devices
                    and (device_id is None or j["deviceId"] == device_id)]

    def add_backup_job(self, device_id: int, status: str = "COMPLETED", start: float | None = None,
                       **fields: Any) -> dict[str, Any]:
        """Log a backup job run of a device started at ``start`` (default now); return it."""
        with self._lock:
            self._report_data(device_id)
            job = self._backup_job(self._devices[device_id], len(self._backups), status,
                                   self.now if start is None else start)
            job.update(fields)
            self._backups.append(job)
            return dict(job)

    def set_warranty(self, device_id: int, start: float | None, end: float | None) -> None:
        """The warranty /v2/devices-detailed reports for the device (epoch seconds); both None: none."""
        with self._lock:
            self._warranties[device_id] = None if start is None and end is None else _present(
                {"startDate": start, "endDate": end})
            self._detailed_json.pop(device_id, None)

    def expire_cursors(self) -> None:
        """End every report cursor made so far, as the vendor does when one is not used in time."""
        with self._lock:
            self._cursors.clear()

    # --- faults ---------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None,
                  path: str | None = None) -> None:
        """Answer the next ``times`` requests (to ``path``, or any) with ``status``, e.g. 429 or 503."""
        self._faults.append({"kind": "status", "status": status, "times": times,
                             "retry_after": retry_after, "path": path})

    def garbage_next(self, times: int = 1, path: str | None = None) -> None:
        """Answer the next ``times`` requests with a 200 whose body is truncated JSON."""
        self._faults.append({"kind": "garbage", "times": times, "path": path})

    def timeout_next(self, times: int = 1, path: str | None = None) -> None:
        """Raise httpx.ReadTimeout for the next ``times`` requests (a 500 when served over HTTP)."""
        self._faults.append({"kind": "timeout", "times": times, "path": path})

    def short_page_next(self, path: str = "/v2/devices", drop: int = 1, times: int = 1) -> None:
        """Serve the next ``times`` non-empty pages of ``path`` with their last ``drop`` records left
        out (at least one record stays), as a server that cuts a page short."""
        self._short_pages.append({"path": path, "drop": drop, "times": times})

    def expire_tokens(self) -> None:
        """Expire every token issued so far, as the server may do before the announced expiry."""
        with self._lock:
            self._tokens.clear()

    # --- the API --------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Serve one request like the NinjaOne API, with a ``Date`` header on the simulator's clock."""
        response = self._handle(request)
        response.headers["Date"] = formatdate(self.now, usegmt=True)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        with self._lock:
            self.requests += 1
            self.requests_by_path[path] += 1
            query = dict(request.url.params)
            self.log.append((request.method, path, query))
            fault = self._take_fault(path)
        if fault is not None:
            kind = fault["kind"]
            if kind == "timeout":
                raise httpx.ReadTimeout("simulated timeout", request=request)
            if kind == "garbage":
                return httpx.Response(200, content=b'[{"id": 1, "displayName": "trunc',
                                      headers={"Content-Type": "application/json"})
            headers = {} if fault["retry_after"] is None else {"Retry-After": f"{fault['retry_after']:g}"}
            code = "TOO_MANY_REQUESTS" if fault["status"] == 429 else "FAILURE"
            return _json(fault["status"], {"resultCode": code, "errorMessage": "simulated fault",
                                           "incidentId": f"sim-{self.requests}"}, headers)
        if path == TOKEN_PATH:
            return self._token(request) if request.method == "POST" else _json(405, {"resultCode": "FAILURE"})
        if path in ("/v2/organizations", "/v2/devices", "/v2/devices-detailed"):
            if request.method != "GET":
                return _json(405, {"resultCode": "FAILURE", "errorMessage": "Method not allowed"})
            denied = self._check_token(request)
            if denied is not None:
                return denied
            if path == "/v2/organizations":
                return self._list(path, query, self._org_ids, lambda i: self._encode(self._orgs[i]))
            if path == "/v2/devices-detailed":
                return self._list(path, query, self._device_ids, self._detailed_bytes)
            return self._list(path, query, self._device_ids, self._device_json.__getitem__)
        if path in ("/v2/alerts", "/v2/activities"):
            if request.method != "GET":
                return _json(405, {"resultCode": "FAILURE", "errorMessage": "Method not allowed"})
            denied = self._check_token(request)
            if denied is not None:
                return denied
            return self._list_alerts(query) if path == "/v2/alerts" else self._list_activities(query)
        if path in REPORT_PATHS:
            if request.method != "GET":
                return _json(405, {"resultCode": "FAILURE", "errorMessage": "Method not allowed"})
            denied = self._check_token(request)
            if denied is not None:
                return denied
            return self._report(path, query)
        if path.startswith("/v2/alert/"):
            parts = path[len("/v2/alert/"):].split("/")
            reset = (request.method == "POST" and len(parts) == 2 and parts[1] == "reset") or \
                    (request.method == "DELETE" and len(parts) == 1)
            if not reset or not parts[0]:
                return _json(405, {"resultCode": "FAILURE", "errorMessage": "Method not allowed"})
            denied = self._check_token(request, scope="management")
            if denied is not None:
                return denied
            return self._reset_request(parts[0], request)
        return _json(404, {"resultCode": "FAILURE", "errorMessage": f"No resource at {path}"})

    def _take_fault(self, path: str) -> dict[str, Any] | None:
        for fault in self._faults:
            if fault["path"] is None or fault["path"] == path:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id:
            return _json(401, {"resultCode": "Client app not exist"})
        if form.get("client_secret") != self.client_secret:
            return _json(401, {"error": "invalid_client", "error_description": "Bad client credentials"})
        scopes = frozenset(form.get("scope", "").split())
        if not scopes or not scopes <= API_SCOPES:
            return _json(400, {"error": "invalid_scope"})
        with self._lock:
            self._token_count += 1
            token = f"sim-{self._token_count:06d}-{self.rng.getrandbits(64):016x}"
            self._tokens[token] = (time.monotonic() + self.token_ttl, scopes)
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl),
                           "scope": " ".join(sorted(scopes))})

    def _check_token(self, request: httpx.Request, scope: str = "monitoring") -> httpx.Response | None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        entry = self._tokens.get(token)
        if entry is None or entry[0] <= time.monotonic():
            self._tokens.pop(token, None)
            return _json(401, {"resultCode": "FAILURE", "errorMessage": "Invalid or expired token"})
        if scope not in entry[1]:
            return _json(403, {"resultCode": "FAILURE", "errorMessage": "Insufficient scope"})
        return None

    def _list(self, path: str, query: dict[str, str], ids: list[int], encode) -> httpx.Response:
        try:
            size = int(query["pageSize"]) if "pageSize" in query else None
            after = int(query["after"]) if "after" in query else None
        except ValueError:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": "Invalid pageSize or after"})
        with self._lock:
            start = 0 if after is None else bisect.bisect_right(ids, after)
            if self.max_page_size is not None:
                size = self.max_page_size if size is None else min(size, self.max_page_size)
            chosen = ids[start:] if size is None else ids[start:start + max(size, 0)]
            cut = next((c for c in self._short_pages if c["path"] == path), None)
            if cut is not None and len(chosen) > 1:
                chosen = chosen[:max(1, len(chosen) - cut["drop"])]
                cut["times"] -= 1
                if cut["times"] <= 0:
                    self._short_pages.remove(cut)
            body = b"[" + b",".join([encode(i) for i in chosen]) + b"]"
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    def _list_alerts(self, query: dict[str, str]) -> httpx.Response:
        source_type = query.get("sourceType")
        with self._lock:
            chosen = [u for u, a in self._alerts.items() if source_type is None or a["sourceType"] == source_type]
            body = b"[" + b",".join([self._alert_bytes(u) for u in chosen]) + b"]"
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    def _list_activities(self, query: dict[str, str]) -> httpx.Response:
        """Newest first: the activities just below olderThan, else just above newerThan, else the newest."""
        try:
            size = int(query.get("pageSize", 200))
            older = int(query["olderThan"]) if "olderThan" in query else None
            newer = int(query["newerThan"]) if "newerThan" in query else None
        except ValueError:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": "Invalid pageSize, olderThan or newerThan"})
        if not 10 <= size <= 1000:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": "pageSize must be from 10 to 1000"})
        cls = query.get("class", "ALL").upper()
        if cls not in ACTIVITY_CLASSES:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": f"Invalid class {cls}"})
        statuses = {v for v in query.get("status", "").split(",") if v} or None
        if self.status_filter == "ignored":
            statuses = None
        free_text = self.status_filter == "status"
        if self.activity_cursors == "reversed":
            older, newer = newer, older
        elif self.activity_cursors == "ignored":
            older = newer = None
        kind = query.get("type") or None
        series = query.get("seriesUid") or None

        def wanted(i: int) -> bool:
            a_cls, a_status, a_type = self._activity_keys[i]
            if free_text:
                a_status = self._activities[i].get("status", "")
            return ((cls == "ALL" or a_cls == cls) and (statuses is None or a_status in statuses)
                    and (kind is None or a_type == kind)
                    and (series is None or self._activities[i].get("seriesUid") == series))

        with self._lock:
            ids = self._activity_ids
            low = 0 if newer is None else bisect.bisect_right(ids, newer)
            high = len(ids) if older is None else bisect.bisect_left(ids, older)
            chosen: list[int] = []
            if newer is not None and older is None and self.newer_than_takes == "next":
                i = low
                while i < high and len(chosen) < size:
                    if wanted(i):
                        chosen.append(i)
                    i += 1
                chosen.reverse()
            else:
                i = high - 1
                while i >= low and len(chosen) < size:
                    if wanted(i):
                        chosen.append(i)
                    i -= 1
            last = ids[-1] if ids else FIRST_ACTIVITY_ID
            body = (b'{"lastActivityId": %d, "activities": [' % last
                    + b",".join([self._activity_json[i] for i in chosen]) + b"]}")
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    def _reset_request(self, uid: str, request: httpx.Request) -> httpx.Response:
        data = None
        if request.content:
            try:
                data = json.loads(request.content)
            except ValueError:
                return _json(400, {"resultCode": "FAILURE", "errorMessage": "Body must be a JSON object"})
            if not isinstance(data, dict):
                return _json(400, {"resultCode": "FAILURE", "errorMessage": "Body must be a JSON object"})
        with self._lock:
            if uid not in self._alerts:
                return _json(404, {"resultCode": "FAILURE", "errorMessage": f"No active alert {uid}"})
            self._reset(uid, data, None)
        return httpx.Response(204)

    # --- alerts (callers hold the lock) ---------------------------------------------------------

    def _trigger(self, device_id: int, condition: str, source_type: str, severity: str, priority: str,
                 message: str | None, uid: str | None, at: float | None) -> str:
        device = self._devices.get(device_id)
        if device is None:
            raise ValueError(f"no device {device_id}")
        if uid is None:
            uid = str(uuid.UUID(int=self._alert_rng.getrandbits(128), version=4))
        elif uid in self._alerts:
            raise ValueError(f"alert {uid} is active")
        when = self.now if at is None else at
        config_uid = str(uuid.uuid5(_CONDITION_NS, f"{source_type}:{condition}"))
        subject = f"{condition} on {device['displayName']}"
        alert = {
            "uid": uid, "deviceId": device_id, "message": message or subject, "createTime": when,
            "updateTime": when, "sourceType": source_type, "sourceConfigUid": config_uid,
            "sourceName": condition, "subject": subject, "psaTicketId": None, "ticketTemplateId": None,
            "data": {}, "priority": priority, "severity": severity, "conditionName": condition,
            "conditionHealthStatus": "UNHEALTHY" if severity == "CRITICAL" else "NEEDS_ATTENTION",
        }
        self._alerts[uid] = alert
        self._alert_json[uid] = self._encode(alert)[:-1]
        self._log_activity("DEVICE", {
            "activityTime": when, "deviceId": device_id, "severity": severity, "priority": priority,
            "seriesUid": uid, "activityType": "CONDITION", "statusCode": "TRIGGERED", "status": "Triggered",
            "activityResult": "SUCCESS", "sourceConfigUid": config_uid, "sourceName": condition,
            "subject": subject, "message": alert["message"], "type": "Condition", "data": {}})
        return uid

    def _reset(self, uid: str, data: dict[str, Any] | None, at: float | None, log_activity: bool = True) -> None:
        alert = self._alerts.pop(uid, None)
        if alert is None:
            raise KeyError(f"no active alert {uid}")
        del self._alert_json[uid]
        if not log_activity:
            return
        self._log_activity("DEVICE", {
            "activityTime": self.now if at is None else at, "deviceId": alert["deviceId"],
            "severity": alert["severity"], "priority": alert["priority"], "seriesUid": uid,
            "activityType": "CONDITION", "statusCode": "RESET", "status": "Reset", "activityResult": "SUCCESS",
            "sourceConfigUid": alert["sourceConfigUid"], "sourceName": alert["sourceName"],
            "subject": alert["subject"], "message": f"Reset: {alert['subject']}", "type": "Condition",
            "data": data or {}})

    def _log_activity(self, cls: str, fields: dict[str, Any]) -> int:
        ids = self._activity_ids
        # Ids are account-wide, so a tenant sees them increase with gaps.
        activity_id = (ids[-1] if ids else FIRST_ACTIVITY_ID) + 1 + len(ids) % 3
        activity = {"id": activity_id, **fields}
        ids.append(activity_id)
        self._activities.append(activity)
        self._activity_json.append(self._encode(activity))
        self._activity_keys.append((cls, fields.get("statusCode", ""), fields.get("activityType", "")))
        return activity_id

    def _encode(self, record: dict[str, Any]) -> bytes:
        """A record as the API sends it: fields without a value left out (unless ``nulls``)."""
        return json.dumps(record if self.nulls else _present(record)).encode()

    def _alert_bytes(self, uid: str) -> bytes:
        device = self._device_json.get(self._alerts[uid]["deviceId"])
        head = self._alert_json[uid]
        return head + b', "device": ' + device + b"}" if device is not None else head + b"}"

    def _seed_alerts(self, count: int) -> None:
        """``count`` active alerts, two reset ones and two other activities, over the last 6 hours."""
        rng = self._alert_rng
        total = count + 2
        start = self.now - 6 * 3600
        step = 6 * 3600 / (total + 3)
        with self._lock:
            at = start
            self._log_activity("USER", {
                "activityTime": round(at, 3), "severity": "NONE", "priority": "NONE", "activityType": "SYSTEM",
                "statusCode": "USER_LOGGED_IN", "status": "User logged in", "subject": "Technician logged in",
                "message": "Technician logged in", "type": "System", "userId": 1, "data": {}})
            uids = []
            for i in range(total):
                at += step
                source_type, condition, severity, priority = rng.choice(CONDITIONS)
                device_id = rng.choice(self._device_ids)
                uids.append(self._trigger(device_id, condition, source_type, severity, priority, None, None,
                                          round(at, 3)))
                if i == 0:
                    self._log_activity("DEVICE", {
                        "activityTime": round(at + 1, 3), "deviceId": device_id, "severity": "NONE",
                        "priority": "NONE", "activityType": "SCRIPTING", "statusCode": "COMPLETED",
                        "status": "Completed", "activityResult": "SUCCESS", "subject": "Clear temp files",
                        "message": "Script 'Clear temp files' completed", "type": "Scripting", "data": {}})
            for uid in uids[:2]:
                at += step
                self._reset(uid, None, round(at, 3))

    # --- generated data -------------------------------------------------------------------------

    def _device(self, device_id: int, org_id: int, node_class: str, approval: str, created: float,
                last_contact: float, name: str) -> dict[str, Any]:
        nms = node_class.startswith("NMS_")
        return {
            "id": device_id, "uid": f"{device_id:08x}-5e1a-4c0d-9a6b-{org_id:012x}",
            "organizationId": org_id, "locationId": org_id * 10 + 1, "nodeClass": node_class,
            "nodeRoleId": 1, "rolePolicyId": 1, "approvalStatus": approval,
            "offline": last_contact < self.now - DAY,
            "displayName": name, "systemName": None if nms else name, "dnsName": f"{name.lower()}.corp.local",
            "netbiosName": None if nms else name[:15], "created": created, "lastContact": last_contact,
            "lastUpdate": last_contact, "tags": [],
            "references": {"organization": {"id": org_id, "name": self._orgs[org_id]["name"]}},
        }

    def _put_device(self, device: dict[str, Any]) -> None:
        self._devices[device["id"]] = device
        self._device_json[device["id"]] = self._encode(device)
        self._detailed_json.pop(device["id"], None)

    def _generated_details(self, device: dict[str, Any]) -> dict[str, Any]:
        """What /v2/devices-detailed adds, derived from the id (the seeded data stays as it was)."""
        device_id, org_id = device["id"], device["organizationId"]
        details: dict[str, Any] = {
            "ipAddresses": [f"10.{org_id % 256}.{device_id // 256 % 256}.{device_id % 256}"],
            "macAddresses": [f"00:50:56:{device_id >> 16 & 255:02x}:{device_id >> 8 & 255:02x}:{device_id & 255:02x}"],
            "publicIP": f"203.0.113.{org_id % 256}"}
        os_name = OS_NAMES.get(device.get("nodeClass"))
        if os_name is not None:
            details["os"] = {"manufacturer": "Apple Inc." if os_name.startswith("macOS") else "Microsoft Corporation"
                             if os_name.startswith("Windows") else "Canonical", "name": os_name,
                             "architecture": "64-bit", "needsReboot": False}
            details["system"] = {"name": device.get("systemName"), "manufacturer": "Dell Inc.",
                                 "model": "OptiPlex 7010", "serialNumber": f"SN{device_id:08d}",
                                 "biosSerialNumber": f"SN{device_id:08d}", "domain": "corp.local"}
        return details

    def _detailed_bytes(self, device_id: int) -> bytes:
        """The device as /v2/devices-detailed serves it (callers hold the lock)."""
        cached = self._detailed_json.get(device_id)
        if cached is None:
            record = json.loads(self._device_json[device_id])
            device = self._devices.get(device_id)
            if device is not None:
                details = self._device_details.get(device_id) or self._generated_details(device)
                record.update(details)
                warranty = self._warranty(device)
                if warranty is not None and "references" not in details:
                    record["references"] = {**record.get("references", {}), "warranty": warranty}
            cached = self._detailed_json[device_id] = self._encode(record)
        return cached

    def _generate_devices(self, count: int) -> None:
        if count and not self._org_ids:
            raise ValueError("devices need at least one organization")
        rng = self.rng
        classes = rng.choices(NODE_CLASSES, weights=[w for _, w, _ in NODE_CLASSES], k=count)
        approvals = rng.choices([a for a, _ in APPROVALS], weights=[w for _, w in APPROVALS], k=count)
        orgs = rng.choices(self._org_ids, k=count)
        device_id = 1000
        for (node_class, _, prefix), approval, org_id in zip(classes, approvals, orgs):
            device_id += rng.randint(1, 3)  # ids increase with gaps, as deleted devices leave them
            created = self.now - rng.uniform(DAY, 3 * 365 * DAY)
            # Most devices checked in within the day; some are stale.
            age = rng.uniform(0, DAY) if rng.random() < 0.85 else rng.uniform(DAY, 90 * DAY)
            last_contact = max(created, self.now - age)
            device = self._device(device_id, org_id, node_class, approval, round(created, 3),
                                  round(last_contact, 3), f"{prefix}-{org_id:02d}-{device_id:06d}")
            self._put_device(device)
            self._device_ids.append(device_id)


    # --- reports (callers hold the lock) --------------------------------------------------------

    def _report_data(self, device_id: int) -> None:
        """Make the device's report data, once (from the seed and the device id only)."""
        if device_id in self._reported or device_id not in self._devices:
            return
        self._reported.add(device_id)
        device = self._devices[device_id]
        node_class = device["nodeClass"]
        agent = not node_class.startswith("NMS_")
        windows = node_class.startswith("WINDOWS") or node_class == "VMWARE_VM_GUEST"
        server = "SERVER" in node_class or node_class == "VMWARE_VM_GUEST"
        rng = random.Random(f"ninjaone-reports:{self._seed}:{device_id}")
        now = self.now
        products = []
        if agent and rng.random() >= 0.125:
            products.append({
                "productName": ANTIVIRUS_PRODUCTS.get(node_class, "Windows Defender"),
                "productState": "ON" if rng.random() < 0.9 else "OFF",
                "definitionStatus": "UP_TO_DATE" if rng.random() < 0.85 else "OUT_OF_DATE",
                "version": f"4.18.{rng.randint(2000, 2500)}.{rng.randint(1, 9)}", "deviceId": device_id,
                "timestamp": round(now - rng.uniform(0, DAY), 3)})
        self._antivirus[device_id] = products
        for kind, eligible, waiting_max, installs_max in (("os", windows, 5, 6), ("software", agent, 3, 4)):
            if not eligible:
                continue
            statuses = ("PENDING", "PENDING", "APPROVED", "APPROVED", "REJECTED", "FAILED", "MANUAL")
            self._waiting[(kind, device_id)] = [
                self._patch(kind, device_id, n, rng.choice(statuses), None, round(now - rng.uniform(0, DAY), 3))
                for n in range(rng.randint(0, waiting_max))]
            for n in range(rng.randint(1, installs_max)):
                self._installs[kind].append(self._patch(
                    kind, device_id, 100 + n, "INSTALLED" if rng.random() < 0.9 else "FAILED",
                    round(now - rng.uniform(DAY, 120 * DAY), 3)))
        if server or (agent and rng.random() < 0.3):
            failing = rng.random() < 0.1
            start = now - 60 * DAY + rng.uniform(0, 7 * DAY)
            while start < now - DAY:
                status = "FAILED" if failing or rng.random() < 0.08 else "COMPLETED"
                self._backups.append(self._backup_job(device, len(self._backups), status, round(start, 3)))
                start += 7 * DAY
        pending, failed = len(self._waiting.get(("os", device_id), [])), rng.randint(0, 1)
        threats = 1 if rng.random() < 0.05 else 0
        health = "UNHEALTHY" if threats or rng.random() < 0.08 else "NEEDS_ATTENTION" if pending > 3 else "HEALTHY"
        self._health[device_id] = {
            "deviceId": device_id, "healthStatus": health, "offline": device["offline"],
            "activeThreatsCount": threats, "quarantinedThreatsCount": 0, "blockedThreatsCount": 0,
            "failedOSPatchesCount": failed if windows else 0, "pendingOSPatchesCount": pending,
            "failedSoftwarePatchesCount": 0,
            "pendingSoftwarePatchesCount": len(self._waiting.get(("software", device_id), [])),
            "alertCount": 0, "activeJobCount": 0, "installationIssuesCount": 0}
        if rng.random() < 0.1:
            self._health[device_id]["pendingRebootReason"] = "Windows updates installed"

    def _patch(self, kind: str, device_id: int, n: int, status: str, installed_at: float | None,
               timestamp: float | None = None) -> dict[str, Any]:
        patch_uid = str(uuid.uuid5(_REPORT_NS, f"{kind}:{device_id}:{n}"))
        stamp = installed_at if timestamp is None else timestamp
        if kind == "os":
            kb = f"KB50{(device_id * 31 + n * 7) % 10000:04d}"
            return {"id": patch_uid, "name": f"{kb} Cumulative Update for Windows", "kbNumber": kb,
                    "severity": ("CRITICAL", "IMPORTANT", "MODERATE", "LOW")[n % 4], "status": status,
                    "type": "SECURITY_UPDATES", "installedAt": installed_at, "deviceId": device_id, "timestamp": stamp}
        title = SOFTWARE_TITLES[(device_id + n) % len(SOFTWARE_TITLES)]
        return {"id": patch_uid, "productIdentifier": str(uuid.uuid5(_REPORT_NS, title)),
                "title": f"{title} {100 + n}.0", "impact": ("CRITICAL", "RECOMMENDED", "OPTIONAL")[n % 3],
                "status": status, "type": "PATCH", "installedAt": installed_at, "deviceId": device_id,
                "timestamp": stamp}

    def _backup_job(self, device: dict[str, Any], n: int, status: str, start: float) -> dict[str, Any]:
        server = "SERVER" in device["nodeClass"]
        return {"jobId": str(uuid.uuid5(_REPORT_NS, f"backup:{device['id']}:{n}:{start}")),
                "jobStartTime": start, "jobEndTime": None if status == "RUNNING" else start + 1800,
                "jobStatus": status, "destination": "CLOUD",
                "planGuid": str(uuid.uuid5(_REPORT_NS, f"plan:{device['id']}")),
                "planName": "Nightly image" if server else "Documents", "planType": "IMAGE" if server else "FILE_FOLDER",
                "totalActualStorageBytes": 50_000_000_000 if server else 2_000_000_000,
                "organizationId": device["organizationId"], "locationId": device["locationId"],
                "deviceId": device["id"]}

    def _warranty(self, device: dict[str, Any]) -> dict[str, Any] | None:
        """The warranty /v2/devices-detailed reports for a device, or None."""
        device_id = device["id"]
        if device_id in self._warranties:
            return self._warranties[device_id]
        if device.get("nodeClass", "").startswith("NMS_") and device.get("nodeClass") != "NMS_FIREWALL":
            return None
        rng = random.Random(f"ninjaone-warranty:{self._seed}:{device_id}")
        if rng.random() < 0.2:
            return None
        start = float(int((device.get("created") or self.now) // DAY * DAY))
        return {"startDate": start, "endDate": start + 3 * 365 * DAY}

    def _report(self, path: str, query: dict[str, str]) -> httpx.Response:
        """A report page: a new cursor over the records the filters select, or the next page of one."""
        maximum = 10_000 if path == "/v2/backup/jobs" else 1000
        try:
            size = int(query.get("pageSize", maximum))
        except ValueError:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": "Invalid pageSize"})
        if not 1 <= size <= maximum:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": f"pageSize must be from 1 to {maximum}"})
        with self._lock:
            name = query.get("cursor")
            if name:
                cursor = self._cursors.get(name)
                if cursor is None or cursor["expires"] < self.now:
                    self._cursors.pop(name, None)
                    return _json(400, {"resultCode": "FAILURE", "errorMessage": f"Cursor {name} expired or unknown"})
            else:
                try:
                    records = self._report_records(path, query)
                except ValueError as exc:
                    return _json(400, {"resultCode": "FAILURE", "errorMessage": str(exc)})
                self._cursor_count += 1
                name = str(uuid.uuid5(_REPORT_NS, f"cursor:{self._cursor_count}"))
                cursor = self._cursors[name] = {"records": records, "offset": 0, "expires": self.now + CURSOR_TTL}
            offset = cursor["offset"]
            chosen = cursor["records"][offset:offset + size]
            cut = next((c for c in self._short_pages if c["path"] == path), None)
            if cut is not None and len(chosen) > 1:
                chosen = chosen[:max(1, len(chosen) - cut["drop"])]
                cut["times"] -= 1
                if cut["times"] <= 0:
                    self._short_pages.remove(cut)
            cursor["offset"] = offset + len(chosen)
            body = {"cursor": {"name": name, "offset": offset, "count": len(chosen), "expires": cursor["expires"]},
                    "results": [self._encode_report(r) for r in chosen]}
        return _json(200, body)

    def _encode_report(self, record: dict[str, Any]) -> dict[str, Any]:
        return record if self.nulls else _present(record)

    def _report_records(self, path: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """The records of a report the filters select, by device (raises ValueError for a bad filter)."""
        devices = _device_filter(query.get("df"), self._devices)
        for device_id in devices:
            self._report_data(device_id)
        statuses = {v.strip().upper() for v in query.get("status", "").split(",") if v.strip()}
        if path == "/v2/queries/antivirus-status":
            records = [p for i in devices for p in self._antivirus.get(i, [])]
            state = query.get("productState")
            return [r for r in records if not state or r.get("productState") == state]
        if path == "/v2/queries/device-health":
            health = query.get("health")
            return [self._health[i] for i in devices if not health or self._health[i].get("healthStatus") == health]
        if path == "/v2/backup/jobs":
            status, plan = query.get("sf"), query.get("ptf")
            return sorted((j for j in self._backups if j["deviceId"] in devices
                           and (not status or j["jobStatus"] == status) and (not plan or j["planType"] == plan)),
                          key=lambda j: (j["jobStartTime"], j["jobId"]))
        kind = "os" if "/os-" in path else "software"
        if path.endswith("-installs"):
            after, before = (_report_date(query.get(k), k) for k in ("installedAfter", "installedBefore"))
            records = sorted((p for p in self._installs[kind] if p["deviceId"] in devices
                              and (after is None or p["installedAt"] >= after)
                              and (before is None or p["installedAt"] < before)),
                             key=lambda p: (p["deviceId"], p["installedAt"], p["id"]))
        else:
            records = [p for i in devices for p in self._waiting.get((kind, i), [])]
        return [r for r in records if not statuses or r["status"] in statuses]


def _report_date(value: str | None, name: str) -> float | None:
    """``installedAfter``/``installedBefore``: a date (YYYY-MM-DD, from its midnight UTC) as epoch seconds."""
    if not value:
        return None
    try:
        day = time.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"Invalid {name} {value!r}: expected a date YYYY-MM-DD") from None
    return float(calendar.timegm(day))


def _device_filter(df: str | None, devices: dict[int, dict[str, Any]]) -> list[int]:
    """The ids of the devices a device filter selects, in id order: none, ``org = N``,
    ``org in (N, M)``, ``id = N``, ``id in (N, M)`` (``organization`` for ``org``), joined by AND."""
    chosen = sorted(devices)
    if not df:
        return chosen
    for clause in df.split(" AND "):
        words = clause.replace("(", " ( ").replace(")", " ) ").replace(",", " ").replace("=", " = ").split()
        if len(words) < 3 or words[0] not in ("org", "organization", "id") or words[1] not in ("=", "eq", "in"):
            raise ValueError(f"Invalid device filter {df!r}")
        try:
            values = {int(w) for w in words[2:] if w not in ("(", ")")}
        except ValueError:
            raise ValueError(f"Invalid device filter {df!r}") from None
        field = "id" if words[0] == "id" else "organizationId"
        chosen = [i for i in chosen if devices[i][field] in values]
    return chosen
