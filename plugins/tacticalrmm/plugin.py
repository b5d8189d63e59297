"""The Tactical RMM connector: clients, agents and unresolved alerts as hub records.

Configure it in msp-hub.toml::

    [connectors.tacticalrmm]
    base_url = "https://api.example.com"       # the API host of the Tactical RMM server
    api_key_env = "TACTICALRMM_API_KEY"        # or api_key_file = "/run/secrets/tacticalrmm"

What Tactical RMM's API gives (see client.py for the source files) and how it is read:

* **clients**: ``GET /clients/`` answers the whole list (no paging), so the stream is one page that
  ends the sweep (cursor None, ``sweep_count`` the clients read). Sites belong to their client: the
  hub bills clients, and an agent of any site of a client is that client's device.
* **devices**: one request per client (``GET /agents/?client=ID``, the whole list of that client's
  agents), clients in increasing id. Each page is one client's agents; its cursor is that client's
  id (``after``) and the agents read so far, so a pass that failed resumes at the next client; the
  last page ends the sweep. Each agent must name the client it was asked for (``client_name``),
  else it is set aside with a message. The node class is ``PLAT_MONITORINGTYPE`` (``windows_server``,
  ``linux_workstation``, ``darwin_workstation``...): ``monitoring_type`` is ``server`` or
  ``workstation``, ``plat`` the OS. **Tactical RMM has no approval step** (an agent exists once
  installed with the server's installer): every agent is ``approved``, so every agent listed is
  billed by its class.
* **alerts**: ``PATCH /alerts/`` with ``{"resolvedFilter": false}`` answers every unresolved alert
  (snoozed ones included): a snapshot, one page with ``complete=True``, so an alert resolved since
  the last pass leaves the active set and its ticket can close. An alert names its client by name
  (unique in Tactical RMM) and its agent by ``agent_id``: the stream reads the clients and the
  agents (for the device's class) first. An alert the answer marks ``resolved`` is not active (an
  older server that ignored the filter): it is left out, as resolved. The condition is what fired:
  ``check <id>`` (``assigned_check``), ``task <id>`` (``assigned_task``), else the alert type
  (``availability``, ``custom``). The API keeps ``resolved_on`` but lists no reset events: a reset is
  seen as the alert leaving the unresolved list, so there is no ``alert_events`` stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import httpx
import tenacity

from hub.config import HubConfig
from hub.connectors import Page, PushResult, Stream, map_records
from hub.errors import ConfigError, IncompleteError, MappingError, VendorError
from hub.hookspecs import hookimpl
from hub.records import APPROVED, Alert, Client as HubClient, Device

from plugins.tacticalrmm.client import VENDOR, Client

SOURCE = VENDOR
MONITORING_TYPES = ("server", "workstation")
# Tactical RMM's three severities (tacticalrmm/constants.py AlertSeverity) in the hub's vocabulary.
SEVERITIES = {"info": "MINOR", "warning": "MODERATE", "error": "MAJOR"}


@dataclass(frozen=True)
class Settings:
    """The ``[connectors.tacticalrmm]`` section, checked."""

    base_url: str
    api_key: str

    @classmethod
    def from_config(cls, config: HubConfig) -> "Settings":
        section = config.connector_settings(SOURCE, known=("base_url", "api_key_env", "api_key_file"),
                                            secrets=("api_key",))
        base_url = section.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("missing or not a URL", file=config.file, key=f"connectors.{SOURCE}.base_url",
                              fix='set base_url = "https://api.example.com" (the API host of your Tactical RMM)')
        return cls(base_url, config.secret(SOURCE, "api_key").reveal())


# --- vendor dicts -> hub records -----------------------------------------------------------------

def _required(raw: dict[str, Any], key: str, what: str, rid: str = "id") -> Any:
    value = raw.get(key)
    if value in (None, ""):
        raise MappingError(f"{what} {raw.get(rid)} has no {key!r}")
    return value


def _moment(raw: dict[str, Any], key: str, what: str, rid: str = "id") -> datetime | None:
    """An ISO timestamp of the API (Django's, with its offset) as an aware UTC datetime."""
    value = raw.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(f"{what} {raw.get(rid)} has {key} {value!r}, not an ISO timestamp") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def to_client(raw: dict[str, Any]) -> HubClient:
    if not isinstance(raw.get("id"), int):
        raise MappingError(f"client {raw.get('name')!r} has id {raw.get('id')!r}, not a number")
    return HubClient(source=SOURCE, source_id=str(raw["id"]), name=_required(raw, "name", "client"))


def node_class(raw: dict[str, Any]) -> str:
    """``PLAT_MONITORINGTYPE`` of an agent: ``windows_server``, ``linux_workstation``..."""
    kind = raw.get("monitoring_type")
    if kind not in MONITORING_TYPES:
        raise MappingError(f"agent {raw.get('agent_id')} has monitoring_type {kind!r} "
                           f"(known: {', '.join(MONITORING_TYPES)})")
    return f"{_required(raw, 'plat', 'agent', 'agent_id')}_{kind}"


def to_device(raw: dict[str, Any], client: dict[str, Any]) -> Device:
    """An agent listed for ``client`` (``GET /agents/?client=ID``)."""
    agent_id = _required(raw, "agent_id", "agent", "hostname")
    if raw.get("client_name") != client["name"]:
        raise MappingError(f"agent {agent_id} was listed for client {client['id']} ({client['name']!r}) "
                           f"but names client {raw.get('client_name')!r}")
    return Device(source=SOURCE, source_id=str(agent_id), client_source_id=str(client["id"]),
                  name=_required(raw, "hostname", "agent", "agent_id"), node_class=node_class(raw),
                  approval_status=APPROVED, last_contact=_moment(raw, "last_seen", "agent", "agent_id"))


def condition(raw: dict[str, Any]) -> str:
    """What fired: ``check <id>``, ``task <id>``, else the alert's type."""
    kind = _required(raw, "alert_type", "alert")
    if kind == "check" and raw.get("assigned_check") is not None:
        return f"check {raw['assigned_check']}"
    if kind == "task" and raw.get("assigned_task") is not None:
        return f"task {raw['assigned_task']}"
    return str(kind)


def to_alert(raw: dict[str, Any], client_ids: dict[str, int], classes: dict[str, str]) -> Alert:
    """An unresolved alert; ``client_ids`` by client name, ``classes`` (node classes) by agent_id."""
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise MappingError(f"alert {raw.get('id')} has an unknown severity {severity!r} "
                           f"(known: {', '.join(SEVERITIES)})")
    agent_id = _required(raw, "agent_id", "alert")
    client_name = _required(raw, "client", "alert")
    if client_name not in client_ids:
        raise MappingError(f"alert {raw.get('id')} names client {client_name!r}, which GET /clients/ did not list")
    return Alert(source=SOURCE, source_id=str(_required(raw, "id", "alert")),
                 client_source_id=str(client_ids[client_name]), device_source_id=str(agent_id),
                 device_name=_required(raw, "hostname", "alert"), device_class=classes.get(agent_id, ""),
                 source_type=raw["alert_type"], condition=condition(raw),
                 severity=SEVERITIES[severity], priority=SEVERITIES[severity],
                 message=raw.get("message") or "", created_at=_moment(raw, "alert_time", "alert"))


# --- the connector -------------------------------------------------------------------------------

class Connector:
    """Tactical RMM as the engine sees it: three streams, nothing to push."""

    name = SOURCE
    action_kinds: frozenset[str] = frozenset()

    def __init__(self, settings: Settings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None):
        self.settings = settings
        self.client = Client(settings.base_url, settings.api_key, http=http, retrying=retrying)

    def streams(self) -> list[Stream]:
        return [Stream(SOURCE, "clients", "clients", self._clients),
                Stream(SOURCE, "devices", "devices", self._devices),
                Stream(SOURCE, "alerts", "alerts", self._alerts)]

    def _clients(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        raws = self.client.list_clients()
        records, rejected = map_records(raws, to_client)
        yield Page(records, None, rejected=rejected, sweep_count=len(raws))

    def _devices(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        after, read = (cursor or {}).get("after"), (cursor or {}).get("read", 0)
        clients = self.client.list_clients()
        for client in clients:   # a client's agents are asked for by its id: without one they cannot be
            if not isinstance(client.get("id"), int):
                raise IncompleteError(f"tacticalrmm devices: GET /clients/ listed client {client.get('name')!r} "
                                      f"with id {client.get('id')!r}, not a number: its agents cannot be listed, "
                                      "so the devices of this pass are incomplete; check the server's version")
        clients = sorted(clients, key=lambda c: c["id"])
        rest = [c for c in clients if after is None or c["id"] > after]
        if not rest:   # no client (left): the sweep ends with what it read
            yield Page([], None, sweep_count=read)
            return
        for n, client in enumerate(rest):
            raws = self.client.list_agents(client["id"])
            # An agent's id is its agent_id (the table serializer has no "id"): rejected ones are named by it.
            records, rejected = map_records([dict(raw, id=raw.get("agent_id")) for raw in raws],
                                            lambda raw: to_device(raw, client))
            read += len(raws)
            if n == len(rest) - 1:   # the sweep is over: the next pass starts from the first client
                yield Page(records, None, rejected=rejected, sweep_count=read)
            else:
                yield Page(records, {"after": client["id"], "read": read}, rejected=rejected)

    def _alerts(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        client_ids = {c["name"]: c["id"] for c in self.client.list_clients() if c.get("name") and "id" in c}
        classes = {}
        for agent in self.client.list_agents():
            try:
                classes[agent.get("agent_id")] = node_class(agent)
            except MappingError:
                pass   # the devices stream reports that agent; its alerts go without a class
        raws = [a for a in self.client.list_unresolved_alerts() if a.get("resolved") is not True]
        records, rejected = map_records(raws, lambda raw: to_alert(raw, client_ids, classes))
        # The whole current set: the store marks this source's other alerts inactive.
        yield Page(records, {"listed_at": run_started_at.isoformat()}, complete=True, rejected=rejected)

    def push(self, action, context) -> PushResult:
        raise VendorError(SOURCE, None, "PUSH", action.kind, f"{SOURCE} pushes nothing (action {action.key})")

    def check(self) -> str:
        return self.client.check()

    def close(self) -> None:
        self.client.close()


@hookimpl
def register_connectors(config):
    """The connector when ``[connectors.tacticalrmm]`` is configured, else nothing."""
    if config.connector_section(SOURCE) is None:
        return []
    return [Connector(Settings.from_config(config))]
