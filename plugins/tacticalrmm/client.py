"""Tactical RMM's HTTP API (the Django REST server of github.com/amidaware/tacticalrmm, read at
commit 2195c3b3): one method per endpoint, each answer checked.

Routes (``api/tacticalrmm/tacticalrmm/urls.py`` mounts ``clients/``, ``agents/`` and ``alerts/``
at the root of the API's host, e.g. ``https://api.example.com``):

* ``GET /clients/`` (``clients/views.py`` ``GetAddClients.get``): every client, ordered by name,
  as a JSON array of ``ClientSerializer`` (``clients/serializers.py``): ``id``, ``name`` (unique,
  ``clients/models.py``), ``sites`` (``SiteSerializer``: ``id``, ``name``, ``client``...),
  ``agent_count``... **No pagination**: the whole list in one answer.
* ``GET /agents/?client=ID`` (``agents/views.py`` ``GetAgents.get``): the agents of one client's
  sites, a JSON array of ``AgentTableSerializer`` (``agents/serializers.py``): ``agent_id`` (the
  agent's unique text id; the table serializer has no numeric ``id``), ``hostname``,
  ``client_name``, ``site_name``, ``monitoring_type`` (``server`` or ``workstation``,
  ``tacticalrmm/constants.py`` ``AgentMonType``), ``plat`` (``windows``, ``linux``, ``darwin``),
  ``status`` (``online``, ``offline``, ``overdue``: computed from ``last_seen``), ``last_seen``...
  **No pagination** either; an agent names its client by name only, hence one request per client.
* ``PATCH /alerts/`` with ``{"resolvedFilter": false}`` (``alerts/views.py`` ``GetAddAlerts.patch``:
  a falsy ``resolvedFilter`` filters ``resolved=False``; there is no GET list): every unresolved
  alert, a JSON array of ``AlertSerializer`` (``alerts/serializers.py``, all the model's fields,
  ``alerts/models.py``): ``id``, ``agent`` (pk), ``agent_id``, ``hostname``, ``client`` (the
  client's name), ``site``, ``alert_type`` (``availability``, ``check``, ``task``, ``custom``),
  ``assigned_check``, ``assigned_task``, ``severity`` (``info``, ``warning``, ``error``),
  ``message``, ``alert_time``, ``resolved``, ``resolved_on``, ``snoozed``... **No pagination**.

Authentication: the ``X-API-KEY`` header (``tacticalrmm/auth.py`` ``APIAuthentication``); a
missing or wrong key is a 401/403 with DRF's ``{"detail": ...}``.
"""

from __future__ import annotations

from typing import Any, Callable

import httpx
import tenacity

from hub.errors import MalformedResponseError
from hub.sdk import VendorClient

VENDOR = "tacticalrmm"
CREDENTIALS_FIX = ("check api_key_env (or api_key_file) in [connectors.tacticalrmm]: an API key of "
                   "Settings > Global Settings > API Keys, of a user allowed to list clients, agents and alerts")


class Client:
    """The API of one Tactical RMM server, authenticated by its ``X-API-KEY`` header."""

    def __init__(self, base_url: str, api_key: str, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None):
        self.api = VendorClient(VENDOR, base_url, headers={"X-API-KEY": api_key}, http=http,
                                retrying=retrying, credentials_fix=CREDENTIALS_FIX)

    def list_clients(self) -> list[dict[str, Any]]:
        """Every client with its sites (one answer: the endpoint does not page)."""
        return _objects(self.api.get("/clients/", expect=list), "GET", "/clients/")

    def list_agents(self, client_id: int | None = None) -> list[dict[str, Any]]:
        """The agents of one client (all its sites), or of every client, in one answer."""
        params = None if client_id is None else {"client": client_id}
        return _objects(self.api.get("/agents/", params=params, expect=list), "GET", "/agents/")

    def list_unresolved_alerts(self) -> list[dict[str, Any]]:
        """Every alert not resolved (snoozed ones included), in one answer."""
        body = self.api.request("PATCH", "/alerts/", json_body={"resolvedFilter": False}, expect=list)
        return _objects(body, "PATCH", "/alerts/")

    def check(self) -> str:
        """One authenticated request (for ``msp-hub check``)."""
        self.list_clients()
        return "GET /clients/"

    def close(self) -> None:
        self.api.close()


def _objects(body: list[Any], method: str, path: str) -> list[dict[str, Any]]:
    """The answer's records; an array holding anything but objects is malformed (retried, then an error)."""
    if not all(isinstance(item, dict) for item in body):
        raise MalformedResponseError(VENDOR, 200, method, path, "the array holds something other than objects")
    return body
