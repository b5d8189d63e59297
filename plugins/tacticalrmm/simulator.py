"""A Tactical RMM API simulator for tests and the demo, on ``hub.testing.Simulator``.

It answers as the server of github.com/amidaware/tacticalrmm does (read at commit 2195c3b3; the
files are cited in client.py), with the same routes, JSON shapes and lack of paging:

* ``GET /clients/``: a JSON array of clients ordered by name (``ClientSerializer``: ``id``,
  ``name``, ``server_policy``, ``workstation_policy``, ``alert_template``,
  ``block_policy_inheritance``, ``sites``, ``custom_fields``, ``agent_count``,
  ``maintenance_mode``, ``failing_checks``), each site a ``SiteSerializer``.
* ``GET /agents/`` (``?client=ID`` or ``?site=ID`` to filter, ``?monitoring_type=`` checked as the
  view does): a JSON array of ``AgentTableSerializer`` fields (``agent_id``, ``hostname``,
  ``site_name``, ``client_name``, ``monitoring_type``, ``plat``, ``status``, ``last_seen``,
  ``operating_system``...).
* ``PATCH /alerts/``: with a falsy ``resolvedFilter`` the unresolved alerts, with no filter key
  every alert (as ``GetAddAlerts.patch``); each an ``AlertSerializer`` (``id``, ``agent``,
  ``agent_id``, ``hostname``, ``client``, ``site``, ``alert_type``, ``assigned_check``,
  ``assigned_task``, ``severity``, ``message``, ``alert_time``, ``resolved``, ``resolved_on``,
  ``snoozed``, ``hidden``...).

Authentication: the ``X-API-KEY`` header, else a 401 ``{"detail": ...}`` (DRF). Faults come from
the base class: ``fail_next(status, times, retry_after)``, ``timeout_next``, ``garbage_next``,
``clear_faults``; ``add_unmappable(table)`` serves a record the connector cannot map.
"""

from __future__ import annotations

import json
import random
import string
from datetime import datetime, timezone
from typing import Any

from hub.testing import Simulator

API_KEY = "test-key"
KINDS = (("windows", "workstation"), ("windows", "workstation"), ("darwin", "workstation"),
         ("windows", "server"), ("linux", "server"))
OS_NAMES = {"windows": "Microsoft Windows 11 Pro, 64 bit (build 22631)", "linux": "Ubuntu 24.04 LTS",
            "darwin": "macOS 14.5 arm64"}


def _iso(epoch: float) -> str:
    """A timestamp as Django REST framework writes one (ISO 8601, UTC as Z)."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


class TacticalRMMSimulator(Simulator):
    """Tactical RMM with ``clients`` clients (one site each) and ``agents`` agents over them (seeded)."""

    def __init__(self, *, clients: int = 3, agents: int = 12, alerts: int = 2, seed: int = 0,
                 api_key: str = API_KEY, now: float | None = None, client_names: list[str] | None = None):
        super().__init__(auth_header="X-API-KEY", auth_value=api_key, now=now)
        self.clients: list[dict[str, Any]] = []
        self.agents: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        names = client_names or [f"Client {n + 1}" for n in range(clients)]
        for name in names:
            self.add_client(name)
        for _ in range(agents if self.clients else 0):
            plat, kind = self._rng.choice(KINDS)
            self.add_agent(self._rng.choice(self.clients)["id"], plat=plat, monitoring_type=kind)
        for n in range(alerts if self.agents else 0):
            self.add_alert(self.agents[n % len(self.agents)]["agent_id"],
                           severity=self._rng.choice(("warning", "error")))
        self.route("GET", "/clients/", self._clients)
        self.route("GET", "/agents/", self._agents)
        self.route("PATCH", "/alerts/", self._alerts)

    # --- the routes --------------------------------------------------------------------------------

    def _clients(self, request):
        clients = sorted(self.clients, key=lambda c: c["name"] or "")
        return self.json(200, [dict(c, agent_count=sum(1 for a in self.agents if a["client_name"] == c["name"]),
                                    sites=[dict(s, agent_count=sum(1 for a in self.agents if a["_site"] == s["id"]))
                                           for s in c["sites"]]) for c in clients])

    def _agents(self, request):
        params = request.url.params
        kind = params.get("monitoring_type")
        if kind and kind not in ("server", "workstation"):
            return httpx_text(self, 400, "monitoring type does not exist")
        agents = self.agents
        if "site" in params:
            agents = [a for a in agents if str(a["_site"]) == params["site"]]
        elif "client" in params:
            agents = [a for a in agents if str(a["_client"]) == params["client"]]
        if kind:
            agents = [a for a in agents if a["monitoring_type"] == kind]
        return self.json(200, [{k: v for k, v in a.items() if not k.startswith("_")} for a in agents])

    def _alerts(self, request):
        body = json.loads(request.content or b"{}")
        alerts = self.alerts
        if "resolvedFilter" in body and not body["resolvedFilter"]:
            alerts = [a for a in alerts if not a["resolved"]]
        return self.json(200, alerts)

    # --- the data ----------------------------------------------------------------------------------

    def add_client(self, name: str, *, sites: tuple[str, ...] = ("Main Office",)) -> dict[str, Any]:
        """Add a client with its sites; return it."""
        with self._lock:
            cid = len(self.clients) + 1
            client = {"id": cid, "name": name, "server_policy": None, "workstation_policy": None,
                      "alert_template": None, "block_policy_inheritance": False, "sites": [],
                      "custom_fields": [], "maintenance_mode": False, "failing_checks": {"error": False, "warning": False}}
            for site in sites:
                sid = sum(len(c["sites"]) for c in self.clients) + len(client["sites"]) + 1
                client["sites"].append({"id": sid, "name": site, "server_policy": None, "workstation_policy": None,
                                        "alert_template": None, "client_name": name, "client": cid,
                                        "custom_fields": [], "block_policy_inheritance": False,
                                        "maintenance_mode": False, "failing_checks": {"error": False, "warning": False}})
            self.clients.append(client)
            return client

    def add_agent(self, client_id: int, *, plat: str = "windows", monitoring_type: str = "workstation",
                  **fields: Any) -> dict[str, Any]:
        """Add an agent in the first site of a client; return it (``agent_id`` is its id)."""
        with self._lock:
            client = next(c for c in self.clients if c["id"] == client_id)
            site = client["sites"][0]
            number = len(self.agents) + 1
            agent = {"agent_id": "".join(self._rng.choice(string.ascii_letters) for _ in range(40)),
                     "alert_template": None, "hostname": f"{client['name'].split()[0].upper()}-{number:03d}",
                     "site_name": site["name"], "client_name": client["name"], "monitoring_type": monitoring_type,
                     "description": "", "needs_reboot": False, "pending_actions_count": 0, "status": "online",
                     "overdue_text_alert": False, "overdue_email_alert": False, "overdue_dashboard_alert": False,
                     "last_seen": _iso(self.now - 60), "boot_time": self.now - 86_400,
                     "checks": {"total": 0, "passing": 0, "failing": 0, "warning": 0, "info": 0,
                                "has_failing_checks": False},
                     "maintenance_mode": False, "logged_username": "-", "italic": False, "policy": None,
                     "block_policy_inheritance": False, "plat": plat, "goarch": "amd64",
                     "has_patches_pending": False, "version": "2.8.0",
                     "operating_system": OS_NAMES.get(plat, plat), "public_ip": "203.0.113.10",
                     "cpu_model": ["Intel(R) Core(TM) i5"], "graphics": "", "local_ips": "10.0.0.10",
                     "make_model": "", "physical_disks": [], "custom_fields": [], "serial_number": "",
                     "_client": client_id, "_site": site["id"], "_pk": number}
            agent.update(fields)
            self.agents.append(agent)
            return agent

    def add_alert(self, agent_id: str, *, alert_type: str = "check", severity: str = "error",
                  message: str = "Disk space check: C: has less than 10% free", **fields: Any) -> dict[str, Any]:
        """Raise an alert on an agent (``severity``: info, warning, error); return it."""
        with self._lock:
            agent = next(a for a in self.agents if a["agent_id"] == agent_id)
            number = len(self.alerts) + 1
            alert = {"id": number, "hostname": agent["hostname"], "agent_id": agent_id,
                     "client": agent["client_name"], "site": agent["site_name"], "alert_time": _iso(self.now),
                     "alert_type": alert_type, "message": message, "snoozed": False, "snooze_until": None,
                     "resolved": False, "resolved_on": None, "severity": severity, "email_sent": None,
                     "resolved_email_sent": None, "sms_sent": None, "resolved_sms_sent": None, "hidden": False,
                     "action_run": None, "action_stdout": None, "action_stderr": None, "action_retcode": None,
                     "action_execution_time": None, "resolved_action_run": None, "resolved_action_stdout": None,
                     "resolved_action_stderr": None, "resolved_action_retcode": None,
                     "resolved_action_execution_time": None, "agent": agent["_pk"],
                     "assigned_check": number if alert_type == "check" else None,
                     "assigned_task": number if alert_type == "task" else None}
            alert.update(fields)
            self.alerts.append(alert)
            return alert

    def resolve_alert(self, alert_id: int) -> None:
        """Resolve an alert (``resolved`` true, ``resolved_on`` now): it leaves the unresolved list."""
        with self._lock:
            alert = next(a for a in self.alerts if a["id"] == alert_id)
            alert.update(resolved=True, resolved_on=_iso(self.now))

    def add_unmappable(self, table: str) -> str | None:
        """Serve a record the connector cannot map in ``table``; return its vendor id (None: no such table)."""
        if table == "devices":
            return str(self.add_agent(self.clients[0]["id"], monitoring_type="appliance")["agent_id"])
        if table == "alerts":
            return str(self.add_alert(self.agents[0]["agent_id"], severity="critical")["id"])
        if table == "clients":
            with self._lock:
                self.clients.append({"id": len(self.clients) + 1, "name": None, "sites": []})
                return str(len(self.clients))
        return None


def httpx_text(sim: Simulator, status: int, message: str):
    """An error as Tactical's ``notify_error`` answers it: a JSON string, not an object."""
    return sim.json(status, message)
