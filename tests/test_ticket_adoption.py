"""Alert tickets the hub did not make are adopted, end to end: NinjaOne alerts -> ConnectWise.

A ticket NinjaOne's own PSA integration made (the alert's ``psaTicketId``), one another
integration wrote a known external reference on (``adopt_external_ref``), or one a person opened
by hand and NinjaOne links: the hub never makes a second ticket for the alert, and follows that
ticket from then on (re-trigger: note; reset: close unless touched; all by the ticket's id).
"""

from datetime import timedelta

import pytest

from hub.alerting import load_alert_rules
from hub.engine import sync_once
from hub.errors import ConfigError, MappingError
from hub.store import SENDING, Store
from plugins.ninjaone.plugin import to_alert
from tests.test_alert_tickets import RULES, AlertEnv, trigger

INTEGRATION = "ninjaone-integration"     # the API member NinjaOne's own ConnectWise integration writes as
TEMPLATE_RULES = RULES.replace("[settings]\n", '[settings]\nadopt_external_ref = "NinjaOne-{alert_uid}"\n', 1)


@pytest.fixture
def env(tmp_path):
    return AlertEnv(tmp_path, RULES)


def outside_ticket(env, company="acme", ref=None, member=INTEGRATION, board="Alerts", summary="CPU high (NinjaOne)"):
    """A ticket made outside the hub: by another integration (with its reference) or by a person."""
    return env.cw.add_ticket(summary, env.co[company], board, ref, member=member)


def notes_of(env, ticket_id):
    return [n for n in (env.cw.record("notes", i) for i in env.cw.ids("notes")) if n["ticketId"] == ticket_id]


def adoption_notes(env, ticket_id):
    return [n for n in notes_of(env, ticket_id) if "Linked to msp-hub" in (n.get("text") or "")]


def action(env, key):
    return env.hub().store.get_action(key)


def test_a_ticket_ninjaone_made_is_adopted_noted_on_retrigger_and_closed_on_reset(env):
    uid = trigger(env)
    ticket = outside_ticket(env, ref="NINJA-TICKET-77")
    env.ninja.link_psa_ticket(uid, ticket)
    before = len(env.tickets())

    first = env.sync()
    assert f"ticket:ninjaone:{uid}" in {p["key"] for p in first.pushed}
    assert len(env.tickets()) == before and env.hub_tickets() == []          # no second ticket
    stored = action(env, f"ticket:ninjaone:{uid}")
    assert stored["vendor_id"] == str(ticket)
    assert stored["details"]["adopted"] is True and stored["details"]["found_by"] == f"psaTicketId {ticket}"
    assert stored["details"]["created"] is False
    [note] = adoption_notes(env, ticket)
    assert uid in note["text"] and note["internalAnalysisFlag"] is True
    assert env.cw.record("tickets", ticket)["externalXRef"] == "NINJA-TICKET-77"   # its maker's reference kept

    env.ninja.reset_alert(uid)
    again = trigger(env)                                     # same device and condition, a new alert
    second = env.sync()
    assert f"ticket_note:ninjaone:{again}" in {p["key"] for p in second.pushed}
    assert action(env, f"ticket_note:ninjaone:{again}")["payload"]["ticket_id"] == str(ticket)
    assert any(again in (n.get("text") or "") for n in notes_of(env, ticket))
    assert len(env.tickets()) == before

    env.ninja.reset_alert(again)
    third = env.sync()
    close = next(p for p in third.pushed if p["key"].startswith("ticket_close:"))
    assert close["vendor_id"] == str(ticket)
    assert env.cw.record("tickets", ticket)["closedFlag"] is True
    assert not env.sync().pushed
    assert len(adoption_notes(env, ticket)) == 1 and len(env.tickets()) == before


def test_a_ticket_with_the_template_reference_is_adopted_and_closed_on_reset(tmp_path):
    env = AlertEnv(tmp_path, TEMPLATE_RULES)
    uid = trigger(env)
    ticket = outside_ticket(env, ref=f"NinjaOne-{uid}")
    outside_ticket(env, ref="NinjaOne-someone-else")                          # another alert's: left alone
    before = len(env.tickets())

    env.sync()
    stored = action(env, f"ticket:ninjaone:{uid}")
    assert stored["vendor_id"] == str(ticket) and stored["details"]["found_by"] == f"externalXRef 'NinjaOne-{uid}'"
    assert stored["payload"]["adopt_refs"] == [f"NinjaOne-{uid}"]
    assert len(env.tickets()) == before and env.hub_tickets() == []
    assert len(adoption_notes(env, ticket)) == 1

    env.ninja.reset_alert(uid)
    report = env.sync()
    assert any(p["key"].startswith("ticket_close:") and p["vendor_id"] == str(ticket) for p in report.pushed)
    assert env.cw.record("tickets", ticket)["closedFlag"] is True


def test_a_template_reference_on_another_company_ticket_is_not_adopted(tmp_path):
    env = AlertEnv(tmp_path, TEMPLATE_RULES)
    uid = trigger(env)
    theirs = outside_ticket(env, company="birchwood", ref=f"NinjaOne-{uid}")
    env.sync()
    mine = env.ticket_for(uid)                                                 # made as today
    assert mine["company"]["id"] == env.co["acme"] and mine["id"] != theirs
    stored = action(env, f"ticket:ninjaone:{uid}")
    assert stored["details"]["created"] is True and "adopted" not in stored["details"]
    assert any(f"ticket {theirs}" in why and "not of company" in why for why in stored["details"]["not_adopted"])
    assert adoption_notes(env, theirs) == []


def test_a_ticket_a_person_opened_is_adopted_and_only_noted_on_reset(env):
    uid = trigger(env)
    ticket = outside_ticket(env, member="jsmith", summary="PC slow, user called")   # no external reference
    env.ninja.link_psa_ticket(uid, str(ticket))                                     # NinjaOne gives it as text
    env.sync()
    assert action(env, f"ticket:ninjaone:{uid}")["details"]["adopted"] is True

    env.ninja.reset_alert(uid)
    report = env.sync()
    close = next(p for p in report.pushed if p["key"].startswith("ticket_close:"))
    assert "left open (opened by hand by jsmith)" in close["summary"]
    assert env.cw.record("tickets", ticket)["closedFlag"] is False
    assert any("technician" in (n.get("text") or "") for n in notes_of(env, ticket))
    assert env.hub_tickets() == []


@pytest.mark.parametrize("where, said", [
    ("missing", "no such ticket in ConnectWise"),
    ("other company", "is a ticket of company"),
    ("not an id", "is not a ConnectWise ticket id"),
])
def test_a_psa_ticket_id_that_is_not_the_alerts_ticket_creates_one_as_today_and_says_why(env, where, said):
    uid = trigger(env)
    other = outside_ticket(env, company="birchwood", ref="NINJA-TICKET-9")
    env.ninja.link_psa_ticket(uid, {"missing": 987654, "other company": other, "not an id": "SR-12"}[where])
    report = env.sync()
    made = env.ticket_for(uid)
    assert made["company"]["id"] == env.co["acme"] and made["id"] != other
    stored = action(env, f"ticket:ninjaone:{uid}")
    assert stored["details"]["created"] is True and "adopted" not in stored["details"]
    assert any(said in why for why in stored["details"]["not_adopted"])
    pushed = next(p for p in report.pushed if p["key"] == f"ticket:ninjaone:{uid}")
    assert said in pushed["summary"]
    assert adoption_notes(env, other) == [] and env.cw.record("tickets", other)["closedFlag"] is False


class Crash(Exception):
    pass


def test_a_crash_between_adoption_and_recording_adopts_the_same_ticket_once(env, monkeypatch):
    uid = trigger(env)
    ticket = outside_ticket(env, ref="NINJA-TICKET-77")
    env.ninja.link_psa_ticket(uid, ticket)
    before = len(env.tickets())
    key = f"ticket:ninjaone:{uid}"
    real = Store.mark_sent

    def crash(self, action_key, *args, **kw):
        if action_key == key:
            raise Crash("the process died before the result was recorded")
        return real(self, action_key, *args, **kw)

    monkeypatch.setattr(Store, "mark_sent", crash)
    with pytest.raises(Crash):
        env.sync()
    assert action(env, key)["status"] == SENDING and len(adoption_notes(env, ticket)) == 1
    monkeypatch.setattr(Store, "mark_sent", real)

    report = env.sync()
    assert key in {p["key"] for p in report.pushed}
    stored = action(env, key)
    assert stored["vendor_id"] == str(ticket) and stored["details"]["note_created"] is False
    assert len(adoption_notes(env, ticket)) == 1 and len(env.tickets()) == before


def test_a_lost_answer_to_the_adoption_note_adds_it_once(env):
    uid = trigger(env)
    ticket = outside_ticket(env, ref="NINJA-TICKET-77")
    env.ninja.link_psa_ticket(uid, ticket)
    before = len(env.tickets())
    env.cw.fail_next(503, times=50, path=f"/service/tickets/{ticket}/notes", after_apply=True)
    first = env.sync()
    assert f"ticket:ninjaone:{uid}" in {f["key"] for f in first.failed}
    env.cw._faults.clear()   # the outage ends
    env.sync()
    assert action(env, f"ticket:ninjaone:{uid}")["vendor_id"] == str(ticket)
    assert len(adoption_notes(env, ticket)) == 1 and len(env.tickets()) == before


def test_a_close_planned_before_the_adoption_was_recorded_finds_the_adopted_ticket(env):
    uid = trigger(env)
    ticket = outside_ticket(env, ref="NINJA-TICKET-77")
    env.ninja.link_psa_ticket(uid, ticket)
    env.cw.fail_next(503, times=50, path=f"/service/tickets/{ticket}", method="GET")   # the adoption fails
    first = env.sync()
    assert f"ticket:ninjaone:{uid}" in {f["key"] for f in first.failed}
    env.cw._faults.clear()
    env.ninja.reset_alert(uid)
    report = env.sync()                     # the create (adopts) and the close in the same run
    close = next(p for p in report.pushed if p["key"].startswith("ticket_close:"))
    assert close["vendor_id"] == str(ticket) and env.cw.record("tickets", ticket)["closedFlag"] is True
    payload = action(env, close["key"])["payload"]
    assert "ticket_id" not in payload and payload["adopt"]["psa_ticket_id"] == str(ticket)   # found as the create did
    assert env.hub_tickets() == []


def test_an_alert_with_a_psa_ticket_is_adopted_not_folded_into_a_storm(env):
    devices = [d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] == 5]
    uids = [env.ninja.trigger_alert(devices[i % len(devices)], condition=f"svc-{i}",
                                    source_type="CONDITION_WINDOWS_SERVICE_STATE_CHANGED", severity="MODERATE",
                                    message=f"service {i} stopped") for i in range(25)]
    ticket = outside_ticket(env, company="elm", ref="NINJA-TICKET-5")
    env.ninja.link_psa_ticket(uids[3], ticket)
    report = env.sync()
    storm = next(p for p in report.plan if p.action and p.action.key.startswith("ticket:storm:"))
    assert uids[3] not in storm.action.payload["uids"] and len(storm.action.payload["uids"]) == 24
    assert action(env, f"ticket:ninjaone:{uids[3]}")["vendor_id"] == str(ticket)
    assert len(env.hub_tickets()) == 1


def test_the_alert_keeps_its_psa_ticket_id_in_the_store(env):
    uid = trigger(env)
    other = trigger(env, condition="disk", source_type="CONDITION_AGENT_DISK_FREE_SPACE", message="disk full")
    env.ninja.link_psa_ticket(uid, 4242)
    env.sync()
    stored = {a.source_id: a for a in env.hub().store.iter_records("alerts", "ninjaone")}
    assert stored[uid].psa_ticket_id == "4242" and stored[other].psa_ticket_id is None


# --- NinjaOne's psaTicketId ---------------------------------------------------------------------

ALERT = {"uid": "u-1", "deviceId": 7, "device": {"id": 7, "organizationId": 1, "displayName": "PC-1"},
         "sourceType": "CONDITION_AGENT_CPU", "severity": "MAJOR", "createTime": 1.7e9}


@pytest.mark.parametrize("value, expected", [
    ("absent", None), (None, None), (0, None), ("", None), ("0", None), (123, "123"), (123.0, "123"),
    ("456", "456"), (" SR-9 ", "SR-9"), ({"id": 77}, "77"), ({"id": None}, None),
])
def test_psa_ticket_id_from_ninjaone(value, expected):
    raw = dict(ALERT) if value == "absent" else {**ALERT, "psaTicketId": value}
    assert to_alert(raw).psa_ticket_id == expected


@pytest.mark.parametrize("value", [True, -4, 1.5, ["12"]])
def test_a_psa_ticket_id_that_names_no_ticket_is_a_mapping_error(value):
    with pytest.raises(MappingError, match=r"ninjaone alert u-1 has psaTicketId .* not a ticket id"):
        to_alert({**ALERT, "psaTicketId": value})


# --- adopt_external_ref ---------------------------------------------------------------------------

def rules_file(tmp_path, setting):
    path = tmp_path / "alert_rules.toml"
    path.write_text(f'[settings]\n{setting}\n\n[[rule]]\nname = "catch-all"\n')
    return path


def test_adopt_external_ref_takes_one_template_or_several(tmp_path):
    rules = load_alert_rules(rules_file(tmp_path, 'adopt_external_ref = ["NinjaOne-{alert_uid}", '
                                                  '"ninja:{organization_id}/{device_id}/{alert_uid}"]'))
    alert = to_alert({**ALERT, "sourceConfigUid": "cpu"})
    assert rules.adopt_refs(alert) == ["NinjaOne-u-1", "ninja:1/7/u-1"]
    assert load_alert_rules(rules_file(tmp_path, "")).adopt_refs(alert) == []


@pytest.mark.parametrize("setting, said, fix", [
    ('adopt_external_ref = "NinjaOne-{alert_id}"', "unknown placeholder {alert_id}",
     "use only {alert_uid}, {device_id}, {organization_id}, {source_type}, {condition}"),
    ('adopt_external_ref = "NinjaOne-{alert_uid:>8}"', "unknown placeholder {alert_uid:>8}", "no format or conversion"),
    ('adopt_external_ref = "NinjaOne-{device_id}"', "does not name {alert_uid}", "put {alert_uid} in it"),
    ('adopt_external_ref = "NinjaOne-{alert_uid"', "is not valid", "placeholders: {alert_uid}"),
    ("adopt_external_ref = 12", "must be a string or a list of strings", "NinjaOne-{alert_uid}"),
])
def test_a_bad_adopt_template_is_a_config_error_naming_the_key_and_the_placeholders(tmp_path, setting, said, fix):
    with pytest.raises(ConfigError) as err:
        load_alert_rules(rules_file(tmp_path, setting))
    text = str(err.value)
    assert "alert_rules.toml" in text and "line 2" in text and "settings.adopt_external_ref" in text
    assert said in text and fix in text


def test_the_plan_says_which_ticket_a_create_would_adopt(tmp_path):
    env = AlertEnv(tmp_path, TEMPLATE_RULES)
    uid = trigger(env)
    env.ninja.link_psa_ticket(uid, 77)
    report = sync_once(env.hub(clock=env.now), dry_run=True)
    item = next(p for p in report.plan if p.action and p.action.key == f"ticket:ninjaone:{uid}")
    assert any(f"adopts the ticket ninjaone says its PSA integration made (77) or a ticket with externalXRef "
               f"'NinjaOne-{uid}' if the PSA has it for the same company, else creates one" in r for r in item.reasons)


def test_a_ticket_adopted_closed_is_reopened_by_a_trigger_within_the_window(env):
    uid = trigger(env)
    ticket = outside_ticket(env, ref="NINJA-TICKET-77")
    env.cw.technician_sets_status(ticket, "Closed")                # a person closed it, the alert is still active
    env.ninja.link_psa_ticket(uid, ticket)
    first = env.sync()
    adopted = next(p for p in first.pushed if p["key"] == f"ticket:ninjaone:{uid}")
    assert "adopted" in adopted["summary"] and ", closed)" in adopted["summary"]

    env.ninja.reset_alert(uid)
    assert not [p for p in env.sync().pushed if p["key"].startswith("ticket_close:")]   # nothing to close
    again = trigger(env)
    report = env.sync(advance=timedelta(hours=2))
    assert f"ticket_reopen:ninjaone:{again}" in {p["key"] for p in report.pushed}
    assert env.cw.record("tickets", ticket)["closedFlag"] is False and env.hub_tickets() == []


def test_a_person_closing_an_adopted_ticket_is_seen_and_a_new_trigger_reopens_it(env):
    uid = trigger(env)
    ticket = outside_ticket(env, ref="NINJA-TICKET-78")
    env.ninja.link_psa_ticket(uid, ticket)
    env.sync()
    assert action(env, f"ticket:ninjaone:{uid}")["details"]["adopted"] is True

    env.cw.technician_sets_status(ticket, "Closed")          # a technician closes it in ConnectWise
    report = env.sync()
    assert report.passes["connectwise.adopted_tickets"]["records"] == 1   # read by id: no hub reference
    [seen] = [t for t in env.hub().store.iter_records("tickets", "connectwise") if t.source_id == str(ticket)]
    assert seen.closed is True

    env.ninja.reset_alert(uid)
    again = trigger(env)                                      # same device and condition, soon after
    report = env.sync(advance=timedelta(days=1))
    keys = {p["key"] for p in report.pushed}
    assert f"ticket_reopen:ninjaone:{again}" in keys and f"ticket_note:ninjaone:{again}" not in keys
    assert env.cw.record("tickets", ticket)["closedFlag"] is False
    assert env.hub_tickets() == []                            # still no ticket of the hub's own
