"""A stateful, deterministic fake of the NinjaOne API v2 endpoints the client uses, with faults."""

from __future__ import annotations

import bisect
import collections
import json
import random
import threading
import time
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


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json", **(headers or {})})


class NinjaOneSimulator:
    """Organizations and devices served like ``/ws/oauth/token``, ``/v2/organizations``, ``/v2/devices``.

    Mount with ``httpx.MockTransport(sim.handler)`` or serve over HTTP with ``hub.testing.serve``.
    Data comes from ``random.Random(seed)``; ids are increasing with gaps, as in a real tenant.
    ``requests`` counts requests served and ``requests_by_path`` counts them per path;
    ``log`` keeps the last 1000 as ``(method, path, query dict)``.
    """

    def __init__(self, seed: int = 0, organizations: int = 3, devices: int = 40, *,
                 client_id: str = "sim-client-id", client_secret: str = "sim-client-secret",
                 token_ttl: float = 3600.0, now: float = DEFAULT_NOW):
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl, self.now = token_ttl, now
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
        for i in range(organizations):
            base = ORG_NAMES[i % len(ORG_NAMES)]
            self.add_organization(base if i < len(ORG_NAMES) else f"{base} {i // len(ORG_NAMES) + 1}")
        self._generate_devices(devices)

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
            self._device_ids.pop(bisect.bisect_left(self._device_ids, id))

    def set_approval(self, id: int, status: str) -> None:  # noqa: A002
        """Set a device's approvalStatus (PENDING, STAGED, APPROVED, DECOMMISSIONED or any string)."""
        with self._lock:
            self._devices[id]["approvalStatus"] = status
            self._put_device(self._devices[id])

    def device(self, id: int) -> dict[str, Any]:  # noqa: A002
        """The device's record as the API serves it (a copy)."""
        return json.loads(self._device_json[id])

    @property
    def organization_ids(self) -> list[int]:
        return list(self._org_ids)

    @property
    def device_ids(self) -> list[int]:
        return list(self._device_ids)

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

    def expire_tokens(self) -> None:
        """Expire every token issued so far, as the server may do before the announced expiry."""
        with self._lock:
            self._tokens.clear()

    # --- the API --------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Serve one request like the NinjaOne API."""
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
        if path in ("/v2/organizations", "/v2/devices"):
            if request.method != "GET":
                return _json(405, {"resultCode": "FAILURE", "errorMessage": "Method not allowed"})
            denied = self._check_token(request)
            if denied is not None:
                return denied
            if path == "/v2/organizations":
                return self._list(query, self._org_ids, lambda i: json.dumps(self._orgs[i]).encode())
            return self._list(query, self._device_ids, self._device_json.__getitem__)
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

    def _check_token(self, request: httpx.Request) -> httpx.Response | None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        entry = self._tokens.get(token)
        if entry is None or entry[0] <= time.monotonic():
            self._tokens.pop(token, None)
            return _json(401, {"resultCode": "FAILURE", "errorMessage": "Invalid or expired token"})
        if "monitoring" not in entry[1]:
            return _json(403, {"resultCode": "FAILURE", "errorMessage": "Insufficient scope"})
        return None

    def _list(self, query: dict[str, str], ids: list[int], encode) -> httpx.Response:
        try:
            size = int(query["pageSize"]) if "pageSize" in query else None
            after = int(query["after"]) if "after" in query else None
        except ValueError:
            return _json(400, {"resultCode": "FAILURE", "errorMessage": "Invalid pageSize or after"})
        with self._lock:
            start = 0 if after is None else bisect.bisect_right(ids, after)
            chosen = ids[start:] if size is None else ids[start:start + max(size, 0)]
            body = b"[" + b",".join([encode(i) for i in chosen]) + b"]"
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

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
        self._device_json[device["id"]] = json.dumps(device).encode()

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
