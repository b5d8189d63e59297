"""NinjaOne in hub vocabulary: mapping functions, settings, the connector and its hookimpl."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import httpx
import tenacity

from hub import Client, ConfigError, Device, MappingError, Page, Stream, hookimpl
from hub.config import HubConfig, Secret
from hub.records import APPROVAL_STATES

from plugins.ninjaone.client import MAX_PAGE_SIZE, NinjaOneClient

SOURCE = "ninjaone"
DEFAULT_BASE_URL = "https://app.ninjarmm.com"
SCOPES = ("monitoring", "management", "control")
SETTINGS_KEYS = ("base_url", "client_id", "client_secret_env", "client_secret_file", "scope", "page_size")

_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
# The vendor's upper-case values to hub states; odd spellings fall back to lower().
_APPROVAL = {state.upper(): state for state in APPROVAL_STATES}


# --- mapping -----------------------------------------------------------------------------------
# These run once per record on sweeps of 100,000 devices, so they avoid needless work.

def to_client(raw: dict[str, Any]) -> Client:
    """A NinjaOne organization as a hub Client (organizations carry no timestamps)."""
    org_id = str(raw["id"])
    return Client(source=SOURCE, source_id=org_id, name=raw.get("name") or org_id)


def to_device(raw: dict[str, Any]) -> Device:
    """A NinjaOne device (basic record of ``GET /v2/devices``) as a hub Device.

    Timestamps are epoch seconds as floats in NinjaOne; they become aware UTC datetimes.
    """
    get = raw.get
    device_id = str(raw["id"])
    name = get("displayName") or get("systemName") or get("dnsName") or device_id
    approval = get("approvalStatus")
    status = _APPROVAL.get(approval) if isinstance(approval, str) else None
    if status is None:
        status = approval.lower() if isinstance(approval, str) else None
        if status not in APPROVAL_STATES:
            raise MappingError(f"ninjaone device {device_id} ({name}) has approvalStatus {approval!r}, "
                               f"not one of {', '.join(_APPROVAL)}")
    created, last_contact, updated = get("created"), get("lastContact"), get("lastUpdate")
    try:
        return Device(SOURCE, device_id, str(raw["organizationId"]), name, raw["nodeClass"], status,
                      None if created is None else _fromtimestamp(created, _UTC),
                      None if last_contact is None else _fromtimestamp(last_contact, _UTC),
                      None if updated is None else _fromtimestamp(updated, _UTC))
    except KeyError as exc:
        raise MappingError(f"ninjaone device {device_id} ({name}) has no {exc.args[0]}") from None
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MappingError(f"ninjaone device {device_id} ({name}) has a timestamp that is not "
                           f"epoch seconds: {exc}") from None


# --- settings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NinjaOneSettings:
    """The ``[connectors.ninjaone]`` section, validated."""

    client_id: str
    client_secret: Secret
    base_url: str = DEFAULT_BASE_URL
    scope: str = "monitoring"
    page_size: int = MAX_PAGE_SIZE

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

        secret = config.secret(SOURCE, "client_secret")
        return cls(client_id=client_id.strip(), client_secret=secret, base_url=base_url,
                   scope=" ".join(words), page_size=page_size)


# --- the connector -----------------------------------------------------------------------------

class NinjaOneConnector:
    """NinjaOne as the engine sees it: two streams (clients, devices), nothing to push.

    Each stream is a full keyset sweep, since the API has no updated-since filter. Its cursor is
    ``{"after": <last id>}`` while a sweep is under way (so a failed run resumes there) and
    ``{"swept_at": <run start>}`` once a sweep finished (so the next run sweeps again).
    """

    name = SOURCE
    action_kinds: frozenset[str] = frozenset()

    def __init__(self, settings: NinjaOneSettings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None):
        self.settings = settings
        self.client = NinjaOneClient(settings.base_url, settings.client_id, settings.client_secret,
                                     scope=settings.scope, http=http, retrying=retrying,
                                     page_size=settings.page_size)

    def streams(self) -> list[Stream]:
        return [
            Stream(SOURCE, "clients", "clients", self._sweep(self.client.iter_organizations, to_client)),
            Stream(SOURCE, "devices", "devices", self._sweep(self.client.iter_devices, to_device)),
        ]

    @staticmethod
    def _sweep(fetch: Callable[[int | None], Iterator[list[dict]]], to_record: Callable[[dict], Any]):
        def iter_pages(cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
            after = (cursor or {}).get("after")
            held: list[dict] | None = None
            # Hold each page until the next one arrives, so the last one can carry "swept_at".
            for raw in fetch(after):
                if held is not None:
                    yield Page([to_record(r) for r in held], {"after": held[-1]["id"]})
                held = raw
            records = [to_record(r) for r in held] if held else []
            yield Page(records, {"swept_at": run_started_at.isoformat()})
        return iter_pages

    def push(self, action, context):
        raise NotImplementedError("the ninjaone connector pushes nothing")

    def close(self) -> None:
        self.client.close()


@hookimpl
def register_connectors(config):
    """The NinjaOne connector when ``[connectors.ninjaone]`` is configured."""
    if config.connector_section(SOURCE) is None:
        return []
    return [NinjaOneConnector(NinjaOneSettings.from_config(config))]
