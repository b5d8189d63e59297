"""The readings of /v2/activities the spec leaves open, checked on every page, against a simulator
that answers by them and one that answers the other way: the status filter (statusCode, or
ignored, or read as the free-text status) and the direction of newerThan / olderThan."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
import structlog

from hub.config import Secret, config_from_dict
from hub.engine import RunReport, pull
from hub.errors import IncompleteError
from hub.http import retry_policy
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.ninjaone.client import NinjaOneClient
from plugins.ninjaone.plugin import NinjaOneConnector, NinjaOneSettings, to_alert, to_alert_event, to_client, to_device
from plugins.ninjaone.simulator import NinjaOneSimulator

UTC = timezone.utc
RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALERT_CODES = {"TRIGGERED": "triggered", "RESET": "reset"}
STATUS_LOG, DIRECTION_LOG = "ninjaone.status_filter_not_applied", "ninjaone.activity_cursors_reversed"


def connector_for(sim: NinjaOneSimulator, page_size: int = 10) -> NinjaOneConnector:
    config = config_from_dict({"connectors": {"ninjaone": {
        "client_id": sim.client_id, "client_secret_env": "NINJA_SECRET", "base_url": "https://eu.ninjarmm.com",
        "page_size": page_size}}}, environ={"NINJA_SECRET": sim.client_secret})
    return NinjaOneConnector(NinjaOneSettings.from_config(config), http=mock_client(sim.handler),
                             retrying=lambda: retry_policy(sleep=lambda s: None))


def activity_queries(sim: NinjaOneSimulator) -> list[dict]:
    return [q for _, path, q in sim.log if path == "/v2/activities"]


def stored_events(hub) -> list[tuple[str, str, str]]:
    rows = hub.store.db["alert_events"].rows
    return sorted((r["source_id"], r["series_uid"], r["status"]) for r in rows)


def expected_events(sim: NinjaOneSimulator, above: int | None = None) -> list[tuple[str, str, str]]:
    return sorted((str(a["id"]), a["seriesUid"], ALERT_CODES[a["statusCode"]]) for a in sim.activities
                  if a.get("statusCode") in ALERT_CODES and (above is None or a["id"] > above))


def busy_hour(sim: NinjaOneSimulator) -> None:
    """Between two runs: triggers, a reset, a flap, a storm, script runs and a login between them,
    and a script run last (so the log's newest DEVICE activity is not an alert)."""
    devices = sim.device_ids
    first = sim.trigger_alert(devices[0])
    sim.add_activity(devices[1])
    sim.add_activity(None, "USER_LOGGED_IN", "SYSTEM", "Technician logged in", activity_class="USER")
    sim.trigger_alert(devices[2], "Disk C: below 10%", "CONDITION_DISK_FREE_SPACE", severity="MAJOR")
    sim.reset_alert(first)
    sim.flap_alert(devices[3])
    for device in devices[4:9]:
        sim.add_activity(device, message="Patch scan finished")
    sim.alert_storm(23)
    sim.add_activity(devices[9], message="Clear temp files")


def run(hub, name: str = "r") -> RunReport:
    report = RunReport(name, "sync", RUN_START)
    pull(hub, report, streams=["alert_events"])
    return report


def quiet_start(sim: NinjaOneSimulator):
    """A hub whose alert_events cursor starts at the quiet tenant's newest activity."""
    connector = connector_for(sim)
    hub = make_hub(ConnectorPlugin(connector))
    assert not run(hub, "first").errors
    cursor = hub.store.get_cursor("ninjaone", "alert_events")["newer_than"]
    assert cursor == sim.activities[-1]["id"]
    return hub, connector, cursor


def last_device_activity(sim: NinjaOneSimulator) -> int:
    return max(a["id"] for a in sim.activities if a.get("deviceId") is not None)


def last_alert_activity(sim: NinjaOneSimulator) -> int:
    return max(a["id"] for a in sim.activities if a.get("statusCode") in ALERT_CODES)


# --- the readings hold: no fallback --------------------------------------------------------------

@pytest.mark.parametrize("takes", ["next", "newest"])
def test_when_the_readings_hold_every_page_is_checked_and_nothing_falls_back(takes):
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, newer_than_takes=takes)
    sim.add_activity(sim.device_ids[0])
    hub, connector, cursor = quiet_start(sim)
    busy_hour(sim)
    before = len(activity_queries(sim))
    with structlog.testing.capture_logs() as logs:
        report = run(hub)
    assert not report.errors
    assert stored_events(hub) == expected_events(sim, cursor) and len(stored_events(hub)) == 28
    # Only alert activities were asked for and read: the cursor is the newest of them.
    assert hub.store.get_cursor("ninjaone", "alert_events") == {"newer_than": last_alert_activity(sim)}
    asked = activity_queries(sim)[before:]
    assert all(q.get("status") == "TRIGGERED,RESET" for q in asked)
    assert asked[0]["newerThan"] == str(cursor) and "olderThan" not in asked[0]
    assert not [e for e in logs if e["event"] in (STATUS_LOG, DIRECTION_LOG)]
    assert connector.client.status_filter
    hub.close()


def test_a_quiet_run_with_other_activities_costs_one_probe_and_keeps_the_cursor():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    sim.add_activity(sim.device_ids[0])
    hub, connector, cursor = quiet_start(sim)
    for device in sim.device_ids[:3]:
        sim.add_activity(device)                 # newer activities, none of them an alert
    before = len(activity_queries(sim))
    assert not run(hub).errors
    asked = activity_queries(sim)[before:]
    assert [("status" in q, q.get("newerThan"), q["pageSize"]) for q in asked] == [
        (True, str(cursor), "10"), (False, None, "50")]      # the empty answer, and the probe of the newest
    assert hub.store.get_cursor("ninjaone", "alert_events") == {"newer_than": cursor}
    assert connector.client.status_filter
    hub.close()


# --- the status filter ----------------------------------------------------------------------------

@pytest.mark.parametrize("takes", ["next", "newest"])
@pytest.mark.parametrize("reading", ["ignored", "status"])
def test_a_status_filter_not_applied_to_statuscode_falls_back_to_filtering_in_the_hub(reading, takes):
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, newer_than_takes=takes, status_filter=reading)
    sim.add_activity(sim.device_ids[0])
    with structlog.testing.capture_logs() as logs:
        hub, connector, cursor = quiet_start(sim)
        busy_hour(sim)
        report = run(hub)
    assert not report.errors
    assert stored_events(hub) == expected_events(sim, cursor)           # no trigger or reset lost
    # The pages held every status: the cursor is the newest activity read, a script run.
    assert hub.store.get_cursor("ninjaone", "alert_events") == {"newer_than": last_device_activity(sim)}
    [warning] = [e for e in logs if e["event"] == STATUS_LOG]            # said once
    assert warning["log_level"] == "warning" and "statusCode" in warning["assumption"]
    assert not connector.client.status_filter
    assert "status" not in activity_queries(sim)[-1]
    # The next run reads on without the filter, and still loses nothing.
    uid = sim.trigger_alert(sim.device_ids[5])
    sim.reset_alert(uid)
    assert not run(hub, "next").errors
    assert stored_events(hub) == expected_events(sim, cursor)
    assert hub.store.get_cursor("ninjaone", "alert_events") == {"newer_than": last_alert_activity(sim)}
    hub.close()


def test_a_status_filter_that_selects_nothing_does_not_make_the_first_run_skip_the_lookback():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, alerts=4, status_filter="status")
    connector = connector_for(sim)
    hub = make_hub(ConnectorPlugin(connector))
    assert not run(hub).errors
    assert stored_events(hub) == expected_events(sim) and len(stored_events(hub)) == 8
    assert hub.store.get_cursor("ninjaone", "alert_events") == {"newer_than": last_device_activity(sim)}
    assert not connector.client.status_filter
    hub.close()


def test_a_status_filter_ignored_on_a_walk_back_page_is_caught_there_too():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, newer_than_takes="newest")
    sim.add_activity(sim.device_ids[0])
    cursor = sim.activities[-1]["id"]
    sim.alert_storm(12)
    for device in sim.device_ids[:4]:
        sim.add_activity(device)
    sim.alert_storm(13)
    client = NinjaOneClient("https://eu.ninjarmm.com", sim.client_id, Secret(sim.client_secret, "test"),
                            http=mock_client(sim.handler), retrying=lambda: retry_policy(sleep=lambda s: None))
    answer = sim.handler
    asked = []

    def ignoring_later(request: httpx.Request) -> httpx.Response:
        # The filter is applied to the first answer, then ignored (the walk back below it).
        if request.url.path == "/v2/activities":
            asked.append(dict(request.url.params))
            sim.status_filter = "statusCode" if len(asked) == 1 else "ignored"
        return answer(request)

    client._http = mock_client(ignoring_later, "https://eu.ninjarmm.com")
    got = [a for page in client.iter_activities(cursor, page_size=10) for a in page]
    assert [a["id"] for a in got] == [a["id"] for a in sim.activities if a["id"] > cursor
                                      and a.get("deviceId") is not None]
    assert "olderThan" in asked[1] and "status" in asked[1] and "status" not in asked[2]
    assert asked[2]["olderThan"] == asked[1]["olderThan"]         # the same page asked again, unfiltered


# --- the direction of newerThan / olderThan -------------------------------------------------------

@pytest.mark.parametrize("takes", ["next", "newest"])
def test_reversed_cursor_parameters_are_swapped_once_proven_and_nothing_is_lost(takes):
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, alerts=3, newer_than_takes=takes,
                            activity_cursors="reversed")
    connector = connector_for(sim)
    hub = make_hub(ConnectorPlugin(connector))
    with structlog.testing.capture_logs() as logs:
        assert not run(hub, "first").errors     # the lookback's walk back already shows olderThan reversed
        cursor = hub.store.get_cursor("ninjaone", "alert_events")["newer_than"]
        assert cursor == last_alert_activity(sim)
        busy_hour(sim)
        report = run(hub)
    assert not report.errors
    assert stored_events(hub) == expected_events(sim)
    assert hub.store.get_cursor("ninjaone", "alert_events") == {"newer_than": last_alert_activity(sim)}
    [warning] = [e for e in logs if e["event"] == DIRECTION_LOG]
    assert "newerThan=X answers activities with ids above X" in warning["assumption"]
    assert "olderThan now pages forward" in warning["fallback"]
    assert "olderThan" in activity_queries(sim)[-1]
    assert list(connector.client.iter_activities(hub.store.get_cursor("ninjaone", "alert_events")["newer_than"])) == []
    hub.close()


def test_reversed_cursor_parameters_are_found_when_nothing_lies_below_the_cursor():
    """A quiet tenant with no alert history: newerThan (read as olderThan) answers nothing, so the
    probe of the newest activities finds the alerts above the cursor, and the direction is
    checked before the status filter is blamed."""
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, activity_cursors="reversed")
    sim.add_activity(sim.device_ids[0])
    hub, connector, cursor = quiet_start(sim)
    busy_hour(sim)
    with structlog.testing.capture_logs() as logs:
        assert not run(hub).errors
    assert stored_events(hub) == expected_events(sim, cursor)
    assert [e["event"] for e in logs if e["event"] in (STATUS_LOG, DIRECTION_LOG)] == [DIRECTION_LOG]
    assert connector.client.status_filter
    hub.close()


def test_cursor_parameters_that_page_neither_way_fail_the_stream_naming_the_assumption():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, alerts=3)
    connector = connector_for(sim)
    hub = make_hub(ConnectorPlugin(connector))
    assert not run(hub, "first").errors
    cursor = hub.store.get_cursor("ninjaone", "alert_events")
    busy_hour(sim)
    sim.activity_cursors = "ignored"                        # both answer the newest activities
    report = run(hub)
    [error] = report.errors
    assert "assumption broken: newerThan=X answers activities with ids above X" in error
    assert "newerThan=" in error and "olderThan=" in error and "neither parameter reads" in error
    assert "The activity stream stops with its cursor where it is" in error
    assert report.passes["ninjaone.alert_events"]["status"] == "failed"
    assert hub.store.get_cursor("ninjaone", "alert_events") == cursor     # not moved past unread events
    assert len(stored_events(hub)) == 7                                   # the first run's only
    sim.activity_cursors = "as_named"                       # once the API pages as named again
    assert not run(hub, "again").errors
    assert stored_events(hub) == expected_events(sim)
    hub.close()


def test_a_walk_back_that_answers_newer_ids_fails_rather_than_skip_the_gap():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20, newer_than_takes="newest")
    sim.add_activity(sim.device_ids[0])
    cursor = sim.activities[-1]["id"]
    sim.alert_storm(25)
    answer = sim.handler

    def older_than_ignored(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/activities" and "olderThan" in request.url.params:
            request = httpx.Request("GET", request.url.copy_remove_param("olderThan"), headers=request.headers)
        return answer(request)

    client = NinjaOneClient("https://eu.ninjarmm.com", sim.client_id, Secret(sim.client_secret, "test"),
                            http=mock_client(older_than_ignored), retrying=lambda: retry_policy(sleep=lambda s: None))
    with pytest.raises(IncompleteError, match="assumption broken: newerThan=X") as info:
        list(client.iter_activities(cursor, page_size=10))
    assert "olderThan=" in str(info.value) and "The activity stream stops with its cursor where it is" in str(info.value)


# --- nulls: the API leaves fields out; every mapping takes both -----------------------------------

def test_the_simulator_leaves_out_fields_without_a_value_unless_asked_for_nulls():
    for nulls in (False, True):
        sim = NinjaOneSimulator(seed=4, organizations=1, devices=0, nulls=nulls)
        org = sim.organization_ids[0]
        nms = sim.add_device(org, "NMS_SWITCH")
        uid = sim.trigger_alert(nms)
        sim.add_activity(None, "USER_LOGGED_IN", "SYSTEM", "Technician logged in")
        device, alert, activity = sim.device(nms), sim.alert(uid), sim.activities[-1]
        if nulls:
            assert device["systemName"] is None and alert["psaTicketId"] is None and activity["deviceId"] is None
        else:
            assert "systemName" not in device and "psaTicketId" not in alert and "deviceId" not in activity
            assert "systemName" not in alert["device"]
            assert all(v is not None for record in (device, alert, activity) for v in record.values())


@pytest.mark.parametrize("nulls", [False, True])
def test_every_mapping_takes_a_field_left_out_or_null_alike(nulls):
    sim = NinjaOneSimulator(seed=4, organizations=1, devices=0, nulls=nulls)
    org = sim.organization_ids[0]
    nms = sim.add_device(org, "NMS_SWITCH")
    uid = sim.trigger_alert(nms)
    raw_alert = sim.alert(uid)
    sim.reset_alert(uid)

    def without(record: dict, *keys: str) -> dict:
        """The record with ``keys`` left out, or null (as the other API reading would send them)."""
        kept = {k: v for k, v in record.items() if k not in keys}
        return {**kept, **{k: None for k in keys}} if nulls else kept

    device = to_device(without(sim.device(nms), "displayName", "systemName", "dnsName", "netbiosName",
                               "created", "lastContact", "lastUpdate"))
    assert (device.name, device.created_at, device.last_contact, device.updated_at) == (str(nms), None, None, None)
    assert to_client(without({"id": org, "name": "x"}, "name")).name == str(org)
    trigger, reset = [a for a in sim.activities if a.get("seriesUid") == uid]
    assert to_alert_event(trigger).status == "triggered" and to_alert_event(reset).status == "reset"
    event = to_alert_event(without(reset, "deviceId", "severity", "message", "subject"))
    assert (event.device_source_id, event.severity, event.message) == ("", "", "")
    assert to_alert_event(without(reset, "seriesUid")) is None and to_alert_event(without(reset, "statusCode")) is None
    alert = to_alert(without(raw_alert, "conditionName", "sourceConfigUid", "message", "severity", "priority",
                             "updateTime", "psaTicketId"))
    assert alert.source_id == uid and alert.message == raw_alert["subject"]
    assert (alert.severity, alert.priority, alert.updated_at) == ("", "", None)
    assert alert.condition == raw_alert["sourceName"]
    assert to_alert(without(raw_alert, "device", "deviceId")).device_source_id == ""
