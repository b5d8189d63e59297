"""Alert tickets a technician can act on, as ConnectWise receives them: the trigger time in the
MSP's time zone, client and organization, the device as NinjaOne reports it, the full message, the
console link; and the ticket associated with the device's ConnectWise configuration."""

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from hub.config import HubConfig
from hub.store import Store
from hub.testing import make_hub, mock_client
from plugins.ninjaone.plugin import NinjaOneConnector, NinjaOneSettings
from tests.conftest import ConnectorPlugin, fast_retry
from tests.test_alert_tickets import RULES, AlertEnv

UTC = timezone.utc


class TextEnv(AlertEnv):
    """The alert environment with NinjaOne's detailed device records and the MSP in Paris."""

    def __init__(self, tmp_path, rules=RULES, tz="Europe/Paris", details=True):
        super().__init__(tmp_path, rules)
        self.tz, self.details = tz, details

    def connectors(self):
        ninja, *rest = super().connectors()
        detailed = NinjaOneConnector(
            NinjaOneSettings(client_id=self.ninja.client_id, client_secret=ninja.settings.client_secret,
                             base_url="https://eu.ninjarmm.test", device_details=self.details),
            http=mock_client(self.ninja.handler, "https://eu.ninjarmm.test"), retrying=fast_retry)
        return (detailed, *rest)

    def hub(self, *plugins, clock=None):
        return make_hub(ConnectorPlugin(*self.connectors()), *plugins, mappings=self.mappings,
                        config=HubConfig(database=":memory:", timezone=self.tz), store=Store(self.db),
                        clock=lambda: clock)

    def description(self, uid):
        return self.cw.initial_description(self.ticket_for(uid)["id"])


@pytest.fixture
def env(tmp_path):
    return TextEnv(tmp_path)


PARIS = ZoneInfo("Europe/Paris")


def paris(epoch):
    """An epoch as the ticket text shows it in Paris, UTC beside it (with its date if the day differs)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    local = moment.astimezone(PARIS)
    beside = f"{moment:%H:%M}" if local.date() == moment.date() else f"{moment:%Y-%m-%d %H:%M}"
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({beside} UTC)"


def trigger(env, device, message="CPU above 90 % for 15 minutes", **kw):
    return env.ninja.trigger_alert(device, condition=kw.pop("condition", "CPU above 90% for 15 minutes"),
                                   source_type=kw.pop("source_type", "CONDITION_AGENT_CPU"),
                                   severity=kw.pop("severity", "MAJOR"), message=message, **kw)


def action(env, uid):
    return env.hub().store.get_action(f"ticket:ninjaone:{uid}")


def test_the_description_gives_every_fact_in_the_msps_time_zone_and_the_whole_message(env):
    device = env.ninja.device(env.device[1], detailed=True)
    message = "CPU above 90 % for 15 minutes; top process sqlservr.exe (87 %), " + " ".join(["then svchost.exe"] * 12)
    uid = trigger(env, env.device[1], message=message)
    env.sync()
    alert = env.ninja.alert(uid)
    lines = env.description(uid).split("\n")
    assert lines == [
        f"MAJOR alert on {device['displayName']}",
        f"Triggered: {paris(alert['createTime'])}",
        "Client: Acme Dental (acme)",
        "NinjaOne organization: Acme Dental (id 1)",
        f"Device: {device['displayName']} (WINDOWS_WORKSTATION)",
        "OS: Windows 11 Pro",
        f"Last contact: {paris(device['lastContact'])}",
        f"IP addresses: {device['ipAddresses'][0]}",
        f"Serial number: {device['system']['serialNumber']}",
        f"Open in NinjaOne: https://eu.ninjarmm.test/#/deviceDashboard/{device['id']}/overview",
        "", "Alert message:", message, "",
        "Source: CONDITION_AGENT_CPU", "Severity: MAJOR, priority HIGH", f"Alert id: {uid}", "Rule: cpu"]
    assert re.search(r" CE(S)?T \(\d\d:\d\d UTC\)$", lines[1])                 # Paris, UTC beside it
    summary = env.ticket_for(uid)["summary"]
    assert len(summary) <= 100 and summary.startswith(f"{device['displayName']}: CPU above 90 %")
    assert summary.endswith("…") and not summary[:-1].endswith(" ")        # cut at a word, said so


def test_an_msp_in_utc_reads_utc_alone(tmp_path):
    env = TextEnv(tmp_path, tz="UTC")
    uid = trigger(env, env.device[1])
    env.sync()
    created = datetime.fromtimestamp(env.ninja.alert(uid)["createTime"], UTC)
    assert f"Triggered: {created:%Y-%m-%d %H:%M} UTC\n" in env.description(uid)


@pytest.mark.parametrize("how", ["basic records", "detailed record without them"])
def test_what_the_rmm_does_not_report_is_left_out_never_none(tmp_path, how):
    env = TextEnv(tmp_path, details=how != "basic records")
    if how != "basic records":
        env.ninja.set_device_details(env.device[1], os=None, system=None, ipAddresses=[])
    uid = trigger(env, env.device[1])
    env.sync()
    text = env.description(uid)
    assert "None" not in text and "null" not in text
    for absent in ("OS:", "IP addresses:", "Serial number:"):
        assert absent not in text
    assert f"Last contact: {paris(env.ninja.device(env.device[1])['lastContact'])}" in text   # basic records have it
    assert "Open in NinjaOne: https://eu.ninjarmm.test/#/deviceDashboard/" in text
    assert action(env, uid)["payload"]["configuration"] == {"name": env.ninja.device(env.device[1])["displayName"]}


def test_a_storm_ticket_lists_each_device_in_a_compact_block(env):
    devices = [d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] == 5][:25]
    uids = [trigger(env, d, message=f"service {i} stopped", condition=f"svc-{i}", severity="MODERATE",
                    source_type="CONDITION_WINDOWS_SERVICE_STATE_CHANGED") for i, d in enumerate(devices)]
    env.sync()
    (parent,) = env.hub_tickets()
    text = env.cw.initial_description(parent["id"])
    assert text.startswith(f"25 alerts within 10 min from {paris(env.ninja.alert(uids[0])['createTime'])}\n"
                           f"Client: Elm Street Clinic (connectwise-{env.co['elm']})\n\n- ")
    for i, (uid, device_id) in enumerate(zip(uids, devices)):
        d = env.ninja.device(device_id, detailed=True)
        about = [d["nodeClass"]] + ([d["os"]["name"]] if "os" in d else []) + \
            [f"last contact {paris(d['lastContact'])}", f"IP {d['ipAddresses'][0]}"]
        block = (f"- {d['displayName']} ({'; '.join(about)})\n  service {i} stopped (MODERATE, alert {uid})\n"
                 f"  https://eu.ninjarmm.test/#/deviceDashboard/{device_id}/overview")
        assert block in text
    assert "None" not in text


# --- the device's ConnectWise configuration ---


def notes_of(env, ticket_id):
    """The ticket's internal notes (its first note is the description the ticket was created with)."""
    return [n for n in (env.cw.record("notes", i) for i in env.cw.ids("notes"))
            if n.get("ticketId") == ticket_id and n.get("internalAnalysisFlag")]


def test_the_ticket_is_associated_with_the_configuration_of_the_same_serial_number(env):
    device = env.ninja.device(env.device[1], detailed=True)
    serial = device["system"]["serialNumber"]
    env.cw.add_configuration(env.co["birchwood"], device["displayName"], serial_number=serial)  # another company
    env.cw.add_configuration(env.co["acme"], device["displayName"], serial_number="OTHER-0001")  # same name
    wanted = env.cw.add_configuration(env.co["acme"], "Reception PC", serial_number=serial)
    uid = trigger(env, env.device[1])
    env.sync()
    ticket = env.ticket_for(uid)
    assert env.cw.ticket_configurations(ticket["id"]) == [wanted]
    (note,) = notes_of(env, ticket["id"])
    assert note["internalAnalysisFlag"] is True
    assert note["text"].startswith(f"Associated with configuration Reception PC (id {wanted}), matched by serial "
                                   f"number {serial}.")
    details = action(env, uid)["details"]
    assert details["configuration"] == str(wanted)
    assert details["configuration_match"] == f"Reception PC (id {wanted}), matched by serial number {serial}"


def test_without_a_serial_match_the_configuration_of_the_same_name_is_associated(env):
    device = env.ninja.device(env.device[1], detailed=True)
    env.cw.add_configuration(env.co["acme"], device["displayName"], serial_number="RETIRED-1", active=False,
                             id=3100)
    wanted = env.cw.add_configuration(env.co["acme"], device["displayName"])
    uid = trigger(env, env.device[1])
    env.sync()
    ticket = env.ticket_for(uid)
    assert env.cw.ticket_configurations(ticket["id"]) == [wanted]          # the active one of that name
    assert f"matched by name {device['displayName']}." in notes_of(env, ticket["id"])[0]["text"]


def test_no_matching_configuration_associates_nothing_and_says_so(env):
    env.cw.add_configuration(env.co["acme"], "Somebody else's PC", serial_number="SN99999999")
    uid = trigger(env, env.device[1])
    env.sync()
    ticket = env.ticket_for(uid)
    assert env.cw.ticket_configurations(ticket["id"]) == [] and notes_of(env, ticket["id"]) == []
    device = env.ninja.device(env.device[1], detailed=True)
    details = action(env, uid)["details"]
    assert details["configuration"] is None
    assert details["configuration_match"] == (
        f"no configuration of company {env.co['acme']} has serial number {device['system']['serialNumber']!r} or "
        f"name {device['displayName']!r}: none associated")


def test_two_configurations_of_one_name_associate_neither(env):
    device = env.ninja.device(env.device[1], detailed=True)
    env.ninja.set_device_details(env.device[1], system={"serialNumber": "To be filled by O.E.M."})
    first = env.cw.add_configuration(env.co["acme"], device["displayName"], serial_number="To be filled by O.E.M.")
    second = env.cw.add_configuration(env.co["acme"], device["displayName"])
    uid = trigger(env, env.device[1])
    env.sync()
    assert env.cw.ticket_configurations(env.ticket_for(uid)["id"]) == []
    match = action(env, uid)["details"]["configuration_match"]
    assert f"({first}, {second}): none associated" in match and "make the name unique" in match


def test_a_retry_after_a_lost_answer_does_not_associate_twice(env):
    device = env.ninja.device(env.device[1], detailed=True)
    wanted = env.cw.add_configuration(env.co["acme"], "Reception PC",
                                      serial_number=device["system"]["serialNumber"])
    ticket_id = env.cw.tickets.next_id(5000)
    # The association is made, its answer lost: every try of this push, then the next run.
    env.cw.fail_next(502, times=3, path=f"/service/tickets/{ticket_id}/configurations", method="POST",
                     after_apply=True)
    uid = trigger(env, env.device[1])
    first = env.sync()
    assert env.ticket_for(uid)["id"] == ticket_id
    assert env.cw.ticket_configurations(ticket_id) == [wanted]
    second = env.sync() if action(env, uid)["status"] != "sent" else first
    assert action(env, uid)["status"] == "sent" and len(env.hub_tickets()) == 1
    assert env.cw.ticket_configurations(ticket_id) == [wanted]                 # once
    assert len([n for n in notes_of(env, ticket_id) if "Associated with configuration" in n["text"]]) == 1
    posts = [q for m, path, q in env.cw.log if m == "POST" and path == f"/service/tickets/{ticket_id}/configurations"]
    assert len(posts) == 1                                                      # never sent again
    env.sync()
    assert env.cw.ticket_configurations(ticket_id) == [wanted] and len(notes_of(env, ticket_id)) == 1
