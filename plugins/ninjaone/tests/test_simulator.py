"""The NinjaOne simulator's alerts and activity log: what the tests and the benchmarks lean on."""

from __future__ import annotations

import time

import httpx
import pytest

from hub.testing import mock_client
from plugins.ninjaone.simulator import FIRST_ACTIVITY_ID, TOKEN_PATH, NinjaOneSimulator


def api(sim: NinjaOneSimulator, scope: str = "monitoring management") -> httpx.Client:
    http = mock_client(sim.handler, "https://eu.ninjarmm.com")
    token = http.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": sim.client_id,
                                        "client_secret": sim.client_secret, "scope": scope}).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


@pytest.fixture
def sim() -> NinjaOneSimulator:
    return NinjaOneSimulator(seed=2, organizations=3, devices=20)


def test_a_tenant_is_quiet_until_told_otherwise(sim):
    assert sim.alert_uids == [] and sim.activities == []
    body = api(sim).get("/v2/activities").json()
    assert body == {"lastActivityId": FIRST_ACTIVITY_ID, "activities": []}


def test_seeded_alerts_are_deterministic():
    a, b = (NinjaOneSimulator(seed=4, organizations=3, devices=20, alerts=3) for _ in range(2))
    assert a.alert_uids == b.alert_uids and a.activities == b.activities and len(a.alert_uids) == 3
    assert [x["statusCode"] for x in a.activities].count("RESET") == 2
    # Seeding alerts leaves the devices as they were without them.
    assert a.device_ids == NinjaOneSimulator(seed=4, organizations=3, devices=20).device_ids


def test_trigger_makes_an_active_alert_and_a_triggered_activity(sim):
    device = sim.device_ids[0]
    uid = sim.trigger_alert(device, condition="Disk C: below 10% free", source_type="CONDITION_AGENT_DISK_FREE_SPACE",
                            severity="CRITICAL", message="C: has 4% free", at=sim.now - 60)
    alert = sim.alert(uid)
    assert (alert["deviceId"], alert["sourceType"], alert["severity"], alert["message"], alert["createTime"]) == (
        device, "CONDITION_AGENT_DISK_FREE_SPACE", "CRITICAL", "C: has 4% free", sim.now - 60)
    assert alert["device"] == sim.device(device) and alert["conditionName"] == "Disk C: below 10% free"
    [activity] = sim.activities
    assert (activity["statusCode"], activity["seriesUid"], activity["deviceId"], activity["activityTime"]) == (
        "TRIGGERED", uid, device, sim.now - 60)
    # The same condition on another device has the same config uid, and a new alert uid.
    other = sim.trigger_alert(sim.device_ids[1], condition="Disk C: below 10% free",
                              source_type="CONDITION_AGENT_DISK_FREE_SPACE")
    assert other != uid and sim.alert(other)["sourceConfigUid"] == alert["sourceConfigUid"]


def test_a_uid_can_be_chosen_but_not_twice_while_active(sim):
    uid = sim.trigger_alert(sim.device_ids[0], uid="00000000-0000-4000-8000-000000000001")
    with pytest.raises(ValueError, match="is active"):
        sim.trigger_alert(sim.device_ids[1], uid=uid)
    with pytest.raises(ValueError, match="no device"):
        sim.trigger_alert(99_999_999)


def test_reset_by_post_and_by_delete(sim):
    first, second = sim.trigger_alert(sim.device_ids[0]), sim.trigger_alert(sim.device_ids[1])
    http = api(sim)
    assert http.post(f"/v2/alert/{first}/reset", json={"by": "test"}).status_code == 204
    assert http.delete(f"/v2/alert/{second}").status_code == 204
    assert sim.alert_uids == [] and http.get("/v2/alerts").json() == []
    resets = [a for a in sim.activities if a["statusCode"] == "RESET"]
    assert [(a["seriesUid"], a["data"]) for a in resets] == [(first, {"by": "test"}), (second, {})]
    assert http.delete(f"/v2/alert/{second}").status_code == 404


def test_resetting_needs_the_management_scope(sim):
    uid = sim.trigger_alert(sim.device_ids[0])
    assert api(sim, scope="monitoring").delete(f"/v2/alert/{uid}").status_code == 403
    assert sim.alert_uids == [uid]


def test_a_flapping_alert_is_never_active_but_is_in_the_log(sim):
    uid = sim.flap_alert(sim.device_ids[0])
    assert sim.alert_uids == []
    assert [(a["statusCode"], a["seriesUid"]) for a in sim.activities] == [("TRIGGERED", uid), ("RESET", uid)]


def test_a_reset_can_go_unlogged(sim):
    uid = sim.trigger_alert(sim.device_ids[0])
    sim.reset_alert(uid, log_activity=False)
    assert sim.alert_uids == [] and [a["statusCode"] for a in sim.activities] == ["TRIGGERED"]


def test_an_alert_of_a_removed_device_is_served_without_its_device(sim):
    device = sim.device_ids[0]
    uid = sim.trigger_alert(device)
    sim.remove_device(device)
    [alert] = api(sim).get("/v2/alerts").json()
    assert alert["uid"] == uid and "device" not in alert


def test_activity_filters(sim):
    sim.trigger_alert(sim.device_ids[0])
    sim.add_activity(sim.device_ids[0], "COMPLETED", "SCRIPTING")
    sim.add_activity(None, "USER_LOGGED_IN", "SYSTEM", activity_class="USER")
    uid = sim.flap_alert(sim.device_ids[1])
    http = api(sim)

    def get(**query) -> list[str]:
        return [a["statusCode"] for a in http.get("/v2/activities", params=query).json()["activities"]]

    assert get() == ["RESET", "TRIGGERED", "USER_LOGGED_IN", "COMPLETED", "TRIGGERED"]
    assert get(**{"class": "DEVICE"}) == ["RESET", "TRIGGERED", "COMPLETED", "TRIGGERED"]
    assert get(status="TRIGGERED,RESET") == ["RESET", "TRIGGERED", "TRIGGERED"]
    assert get(type="SCRIPTING") == ["COMPLETED"]
    assert get(seriesUid=uid) == ["RESET", "TRIGGERED"]


@pytest.mark.parametrize("query", [{"pageSize": "5"}, {"pageSize": "1001"}, {"olderThan": "x"}, {"class": "NONE"}])
def test_bad_activity_queries_are_refused(sim, query):
    assert api(sim).get("/v2/activities", params=query).status_code == 400


def test_faults_apply_to_alerts(sim):
    sim.fail_next(503, path="/v2/alerts")
    http = api(sim)
    assert http.get("/v2/alerts").status_code == 503
    assert http.get("/v2/alerts").status_code == 200


def test_an_alert_storm_of_ten_thousand_across_five_hundred_organizations_is_quick():
    started = time.perf_counter()
    sim = NinjaOneSimulator(seed=1, organizations=500, devices=1000)
    uids = sim.alert_storm(10_000)
    http = api(sim)
    alerts = http.get("/v2/alerts").json()
    newest = http.get("/v2/activities", params={"pageSize": 1000, "class": "DEVICE"}).json()["activities"]
    elapsed = time.perf_counter() - started
    assert len(alerts) == len(set(uids)) == 10_000 and len(newest) == 1000
    assert len({a["device"]["organizationId"] for a in alerts}) == len({sim.device(d)["organizationId"]
                                                                       for d in sim.device_ids})
    assert elapsed < 3.0, f"an alert storm took {elapsed:.2f} s"
