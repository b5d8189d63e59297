"""Alert-to-ticket rules as pure functions: match order, windows, dedup, reopen, storms, resets."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from hub import alerting
from hub.alerting import (AlertRule, AlertRules, HubTicket, Window, external_ref, load_alert_rules,
                          plan_alert_tickets)
from hub.errors import ConfigError
from hub.records import Alert, AlertEvent

UTC = timezone.utc
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RULES = AlertRules((AlertRule("servers", {"device_class": ("WINDOWS_SERVER",), "severity": ("CRITICAL", "MAJOR")},
                              board="Alerts", priority="P1"),
                    AlertRule("noise", {"message": ("^heartbeat",)}, action="ignore"),
                    AlertRule("catch-all", board="Help Desk", auto_close=False)),
                   severity_priority={"MINOR": "P4"}, storm_threshold=5, storm_window=timedelta(minutes=10))


def alert(uid, device="10", condition="cpu", cls="WINDOWS_WORKSTATION", severity="MINOR", message="CPU high",
          org="1", at=NOW - timedelta(minutes=5)):
    return Alert("ninjaone", uid, org, device, f"PC-{device}", cls, "CONDITION_AGENT_CPU", condition, severity, "",
                 message, at, at)


def event(uid, status, at=NOW - timedelta(minutes=1), eid=None):
    return AlertEvent("ninjaone", eid or f"{uid}-{status}", uid, "10", status, at)


def plan(alerts=(), events=(), tickets=(), rules=RULES, client="acme", company="250", **kw):
    return plan_alert_tickets(alerts, events, tickets, rules, lambda a: client if a.client_source_id else None,
                              lambda c: company if c else None, NOW, **kw)


def test_first_matching_rule_sets_board_and_priority():
    p = plan([alert("a1", cls="WINDOWS_SERVER", severity="CRITICAL"), alert("a2", device="11")])
    by_key = {i.key: i for i in p.intents}
    assert by_key["ticket:ninjaone:a1"].payload["board"] == "Alerts"
    assert by_key["ticket:ninjaone:a1"].payload["priority"] == "P1" and by_key["ticket:ninjaone:a1"].rule == "servers"
    assert by_key["ticket:ninjaone:a2"].payload["board"] == "Help Desk"
    assert by_key["ticket:ninjaone:a2"].payload["priority"] == "P4"          # severity -> priority map
    assert by_key["ticket:ninjaone:a2"].payload["external_ref"] == "msp-hub:ticket:ninjaone:a2"
    assert by_key["ticket:ninjaone:a1"].payload["company_id"] == "250"


def test_an_ignore_rule_and_a_maintenance_window_make_nothing_but_are_logged():
    rules = AlertRules(RULES.rules, (Window(NOW - timedelta(hours=1), NOW + timedelta(hours=1), client="acme"),))
    p = plan([alert("a1")], rules=rules)
    assert p.intents == [] and "maintenance window" in p.log[0]["what"]
    p = plan([alert("a2", message="heartbeat missed")])
    assert p.intents == [] and "ignored by rule noise" in p.log[0]["what"]
    device_window = AlertRules(RULES.rules, (Window(NOW - timedelta(hours=1), NOW, device="ninjaone:10"),))
    assert plan([alert("a3")], rules=device_window).intents == []
    assert plan([alert("a4", device="11")], rules=device_window).intents


def test_a_plugin_decision_wins_over_the_rules():
    p = plan([alert("a1")], decide=lambda a, c: AlertRule("site", board="NOC"))
    assert p.intents[0].payload["board"] == "NOC" and p.intents[0].rule == "site"


def test_a_retrigger_on_an_open_ticket_adds_a_note():
    open_t = HubTicket("ticket:ninjaone:a1", external_ref("ticket:ninjaone:a1"), "ninjaone:10", "cpu", "acme", {"a1"})
    p = plan([alert("a1"), alert("a2")], tickets=[open_t], known_uids=frozenset({"a1"}))
    (note,) = p.intents
    assert note.kind == "ticket_note" and note.key == "ticket_note:ninjaone:a2"
    assert note.payload["ticket_external_ref"] == "msp-hub:ticket:ninjaone:a1"


@pytest.mark.parametrize("closed_ago, kind", [(timedelta(days=2), "ticket_reopen"), (timedelta(days=5), "ticket")])
def test_a_trigger_soon_after_a_close_reopens_later_creates(closed_ago, kind):
    closed = HubTicket("ticket:ninjaone:a1", external_ref("ticket:ninjaone:a1"), "ninjaone:10", "cpu", "acme", {"a1"},
                       closed=True, closed_at=NOW - closed_ago)
    p = plan([alert("a2")], tickets=[closed], known_uids=frozenset({"a1"}))
    assert [i.kind for i in p.intents] == [kind]


def test_a_storm_becomes_one_parent_ticket_listing_the_alerts():
    storm = [alert(f"s{i}", device=str(100 + i), at=NOW - timedelta(minutes=5, seconds=i)) for i in range(8)]
    p = plan(storm)
    (parent,) = p.intents
    assert parent.key.startswith("ticket:storm:acme:") and len(parent.payload["uids"]) == 8
    assert all(f"s{i}" in parent.payload["initial_description"] for i in range(8))
    below = plan(storm[:5]).intents                                              # at the threshold: one each
    assert sorted(i.key for i in below) == [f"ticket:ninjaone:s{i}" for i in range(5)]


def test_reset_closes_an_auto_close_ticket_and_notes_one_that_is_not():
    auto = HubTicket("ticket:ninjaone:a1", "msp-hub:ticket:ninjaone:a1", "ninjaone:10", "cpu", "acme", {"a1"})
    manual = HubTicket("ticket:ninjaone:b1", "msp-hub:ticket:ninjaone:b1", "ninjaone:11", "cpu", "acme", {"b1"},
                       auto_close=False)
    p = plan([], [event("a1", "reset"), event("b1", "reset")], [auto, manual], known_uids=frozenset({"a1", "b1"}))
    kinds = {i.key: i.kind for i in p.intents}
    assert kinds == {"ticket_close:ticket:ninjaone:a1:a1": "ticket_close",
                     "ticket_note:cleared:ticket:ninjaone:b1:b1": "ticket_note"}


def test_the_backstop_closes_a_ticket_whose_alert_vanished_without_a_reset_event():
    t = HubTicket("ticket:ninjaone:a1", "msp-hub:ticket:ninjaone:a1", "ninjaone:10", "cpu", "acme", {"a1"})
    (close,) = plan([], [], [t], known_uids=frozenset({"a1"})).intents
    assert close.kind == "ticket_close" and "backstop" in close.reason
    assert plan([alert("a1")], [], [t], known_uids=frozenset({"a1"})).intents == []     # still active


def test_a_ticket_with_several_alerts_closes_when_all_are_reset():
    t = HubTicket("ticket:ninjaone:a1", "msp-hub:ticket:ninjaone:a1", "ninjaone:10", "cpu", "acme", {"a1", "a2"})
    assert plan([alert("a2")], [event("a1", "reset")], [t], known_uids=frozenset({"a1", "a2"})).intents == []


def test_an_alert_triggered_and_reset_before_the_hub_saw_it_is_recorded_without_ticket():
    p = plan([], [event("x1", "triggered", eid="1"), event("x1", "reset", eid="2")])
    assert p.intents == [] and "before the hub saw it" in p.log[0]["what"]


def test_unmapped_alerts_go_to_the_fallback_board_or_are_logged():
    fallback = AlertRules(RULES.rules, fallback_board="Alerts", fallback_company="999")
    (t,) = plan([alert("u1", org="")], rules=fallback).intents
    assert t.payload["board"] == "Alerts" and t.payload["company_id"] == "999" and "linked to no hub client" in t.reason
    p = plan([alert("u2", org="")])
    assert p.intents == [] and "no fallback board" in p.log[0]["what"]


def test_known_alerts_are_not_planned_twice():
    assert plan([alert("a1")], known_uids=frozenset({"a1"})).intents == []


@pytest.mark.parametrize("body, fragment", [
    ('[[rule]]\nname = "x"\nmatch = { colour = ["red"] }\n', "cannot match on 'colour'"),
    ('[[rule]]\nname = "x"\nmatch = { severity = ["MAJOR"] }\n', "catch-all"),
    ('[[rule]]\nname = "x"\nmatch = { message = ["(("] }\n[[rule]]\nname = "all"\n', "bad pattern"),
    ('[[rule]]\nname = "all"\n[[maintenance]]\nclient = "a"\nstart = "2026-11-01"\nend = "x"\n', "ISO datetimes"),
])
def test_rule_file_errors_name_the_key(tmp_path, body, fragment):
    f = tmp_path / "alert_rules.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load_alert_rules(f)


# --- keys, payloads and limits at their edges ---


def storm_of(n, at=NOW - timedelta(minutes=5)):
    return [alert(f"s{i}", device=str(100 + i), at=at - timedelta(seconds=i)) for i in range(n)]


def test_storm_key_is_client_and_window_start_in_utc_minutes():
    (parent,) = plan(storm_of(6)).intents                        # 11:54:55-11:55:00 UTC: window 11:50
    assert parent.key == "ticket:storm:acme:20261122T1150"
    assert parent.payload["external_ref"] == "msp-hub:ticket:storm:acme:20261122T1150"
    assert parent.payload["initial_description"].startswith("6 alerts within 10 min from 2026-11-22 11:50 UTC\n"
                                                            "Client: acme\n\n- PC-105 (WINDOWS_WORKSTATION)\n")
    paris = timezone(timedelta(hours=1))
    (same,) = plan([replace(a, created_at=a.created_at.astimezone(paris)) for a in storm_of(6)]).intents
    assert same.key == parent.key                              # an offset never changes the key


def test_storm_is_more_than_the_threshold_in_one_window():
    assert [i.kind for i in plan(storm_of(6)).intents] == ["ticket"]                    # 6 > 5: one parent
    assert len(plan(storm_of(5)).intents) == 5                                          # 5: one each
    split = storm_of(3, at=NOW - timedelta(minutes=10, seconds=-2)) + storm_of(3, at=NOW - timedelta(minutes=10, seconds=1))
    split = [alert(f"x{i}", device=str(200 + i), at=a.created_at) for i, a in enumerate(split)]
    assert len(plan(split).intents) == 6                       # 11:50:00-11:50:02 and 11:49:57-11:49:59: two windows


def test_ticket_payload_is_exact_and_carries_the_rules_type():
    rules = AlertRules((AlertRule("typed", board="NOC", ticket_type="Incident", priority="P2", auto_close=False),))
    (t,) = plan([alert("a1", severity="MAJOR")], rules=rules).intents
    assert t.payload == {
        "external_ref": "msp-hub:ticket:ninjaone:a1", "summary": "PC-10: CPU high", "board": "NOC",
        "initial_description": "MAJOR alert on PC-10\nTriggered: 2026-11-22 11:55 UTC\nClient: acme\n"
                               "NinjaOne organization: 1\nDevice: PC-10 (WINDOWS_WORKSTATION)\n\nAlert message:\n"
                               "CPU high\n\nSource: CONDITION_AGENT_CPU, condition cpu\nSeverity: MAJOR\n"
                               "Alert id: a1\nRule: typed",
        "company_id": "250", "uids": ["a1"], "device": "ninjaone:10", "condition": "cpu", "auto_close": False,
        "rule": "typed", "priority": "P2", "type": "Incident", "configuration": {"name": "PC-10"}}
    (untyped,) = plan([alert("a2")]).intents
    assert "type" not in untyped.payload


def test_a_note_carries_the_uid_of_the_alert_that_triggered_again():
    open_t = HubTicket("ticket:ninjaone:a1", external_ref("ticket:ninjaone:a1"), "ninjaone:10", "cpu", "acme", {"a1"})
    (note,) = plan([alert("a1"), alert("a2", message="CPU very high")], tickets=[open_t],
                   known_uids=frozenset({"a1"})).intents
    assert note.payload == {"ticket_external_ref": "msp-hub:ticket:ninjaone:a1", "uid": "a2",
                            "parent": "ticket:ninjaone:a1", "internal": False,
                            "text": "Alert triggered again on PC-10: CPU very high (severity MINOR, alert a2)"}
    assert open_t.uids == {"a1", "a2"}


@pytest.mark.parametrize("closed_ago, kind", [
    (timedelta(days=3), "ticket_reopen"),                      # exactly reopen_within: reopened
    (timedelta(days=3, seconds=1), "ticket"),                  # just after: a new ticket
])
def test_reopen_window_edge(closed_ago, kind):
    moment = NOW - timedelta(minutes=5)
    closed = HubTicket("ticket:ninjaone:a1", external_ref("ticket:ninjaone:a1"), "ninjaone:10", "cpu", "acme", {"a1"},
                       closed=True, closed_at=moment - closed_ago)
    (intent,) = plan([alert("a2", at=moment)], tickets=[closed], known_uids=frozenset({"a1"})).intents
    assert intent.kind == kind
    if kind == "ticket_reopen":
        assert intent.payload["uid"] == "a2" and intent.key == "ticket_reopen:ninjaone:a2"


@pytest.mark.parametrize("start, end, covered", [
    (NOW - timedelta(minutes=5), NOW, True),                   # the alert's moment is the window's start
    (NOW - timedelta(hours=1), NOW - timedelta(minutes=5), False),   # ... or its end (exclusive)
    (NOW - timedelta(hours=1), NOW - timedelta(minutes=5) + timedelta(microseconds=1), True),
])
def test_maintenance_window_covers_its_start_not_its_end(start, end, covered):
    rules = AlertRules(RULES.rules, (Window(start, end, client="acme"),))
    assert (plan([alert("a1")], rules=rules).intents == []) is covered


def test_an_alert_no_rule_matches_is_logged_not_an_exception():
    rules = AlertRules((AlertRule("servers", {"device_class": ("WINDOWS_SERVER",)}),))
    p = plan([alert("a1"), alert("a2", device="11", cls="WINDOWS_SERVER")], rules=rules)
    assert [i.key for i in p.intents] == ["ticket:ninjaone:a2"]
    assert p.log == [{"uid": "a1", "client": "acme", "what": "no rule of alert_rules.toml matches it: no ticket; end "
                                                             "the rules with a catch-all [[rule]] (no match table)"}]


def test_an_alert_with_a_naive_time_is_logged_and_the_others_planned():
    naive = alert("a1", at=datetime(2026, 11, 22, 11, 55))
    p = plan([naive, alert("a2", device="11")])
    assert [i.key for i in p.intents] == ["ticket:ninjaone:a2"]
    assert p.log == [{"uid": "a1", "client": None,
                      "what": "ninjaone alert a1 on PC-10 has time datetime.datetime(2026, 11, 22, 11, 55) with no "
                              "time zone, so its window, storm and reopen cannot be decided: no ticket; correct its "
                              "mapping in the ninjaone plugin"}]


# --- exact intents and log entries: who gets what, with which uid ---

AUTO = HubTicket("ticket:ninjaone:a1", "msp-hub:ticket:ninjaone:a1", "ninjaone:10", "cpu", "acme", {"a1"})


def test_a_reset_closes_with_an_exact_intent():
    (close,) = plan([], [event("a1", "reset")], [HubTicket(**{**AUTO.__dict__, "uids": {"a1"}})],
                    known_uids=frozenset({"a1"})).intents
    reason = "every alert of the ticket was reset"
    assert close == alerting.TicketIntent("ticket_close", "ticket_close:ticket:ninjaone:a1:a1", "acme", {
        "external_ref": "msp-hub:ticket:ninjaone:a1", "uid": "a1",
        "note": f"The alert cleared in the RMM; closed by msp-hub ({reason}).",
        "touched_note": f"The alert cleared in the RMM ({reason}); the ticket stays open because a technician worked "
                        f"on it."}, "", reason)


def test_a_reset_of_a_ticket_not_auto_closed_is_an_exact_note():
    manual = HubTicket("ticket:ninjaone:b1", "msp-hub:ticket:ninjaone:b1", "ninjaone:11", "cpu", "beta", {"b1"},
                       auto_close=False)
    (note,) = plan([], [], [manual], known_uids=frozenset({"b1"})).intents
    reason = "every alert of the ticket was reset (not seen in the activity log: caught by the backstop)"
    assert note == alerting.TicketIntent("ticket_note", "ticket_note:cleared:ticket:ninjaone:b1:b1", "beta", {
        "ticket_external_ref": "msp-hub:ticket:ninjaone:b1", "uid": "b1",
        "text": f"The alert cleared in the RMM ({reason}); the rule does not auto-close this ticket.",
        "internal": False}, "", reason)


def test_a_reopen_is_exact_and_a_second_alert_then_notes_the_reopened_ticket():
    closed = HubTicket("ticket:ninjaone:a1", "msp-hub:ticket:ninjaone:a1", "ninjaone:10", "cpu", "acme", {"a1"},
                       closed=True, closed_at=NOW - timedelta(days=1))
    p = plan([alert("a2", at=NOW - timedelta(minutes=6)), alert("a3", message="CPU still high")], tickets=[closed],
             known_uids=frozenset({"a1"}))
    reopen, note = p.intents
    assert reopen == alerting.TicketIntent("ticket_reopen", "ticket_reopen:ninjaone:a2", "acme", {
        "external_ref": "msp-hub:ticket:ninjaone:a1", "uid": "a2", "parent": "ticket:ninjaone:a1",
        "note": "Alert triggered again on PC-10: CPU high (alert a2); reopened"}, "catch-all",
        "triggered within 3 day(s) of the close")
    assert (note.kind, note.key, note.client_id, note.payload["uid"]) == ("ticket_note", "ticket_note:ninjaone:a3",
                                                                         "acme", "a3")
    assert note.rule == "catch-all" and note.reason == "re-triggered while its ticket is open"
    assert closed.uids == {"a1", "a2", "a3"} and not closed.closed


@pytest.mark.parametrize("open_key", ["ticket:ninjaone:a1", "ticket:ninjaone:0"])   # sorted after or before
def test_a_retrigger_notes_the_open_ticket_of_the_pair_not_a_closed_one(open_key):
    old = HubTicket("ticket:ninjaone:a0", "msp-hub:ticket:ninjaone:a0", "ninjaone:10", "cpu", "acme", {"a0"},
                    closed=True, closed_at=NOW - timedelta(days=30))
    current = HubTicket(open_key, "msp-hub:ticket:ninjaone:a1", "ninjaone:10", "cpu", "acme", {"a1"})
    for tickets in ([old, current], [current, old]):
        current.uids = {"a1"}
        (note,) = plan([alert("a1"), alert("a2")], tickets=tickets, known_uids=frozenset({"a0", "a1"})).intents
        assert note.payload["ticket_external_ref"] == "msp-hub:ticket:ninjaone:a1"


def test_an_alert_already_on_a_ticket_is_not_planned_again_even_if_not_known():
    assert plan([alert("a1")], tickets=[HubTicket(**{**AUTO.__dict__, "uids": {"a1"}})]).intents == []


def test_only_reset_events_suppress_an_active_alert():
    assert [i.key for i in plan([alert("a1")], [event("a1", "triggered")]).intents] == ["ticket:ninjaone:a1"]
    assert plan([alert("a1")], [event("a1", "reset")]).intents == []
    assert plan([], [event("x1", "reset")]).log == []             # a reset alone is nobody's business


def test_log_entries_are_exact():
    window = Window(NOW - timedelta(hours=1), NOW + timedelta(hours=1), client="acme")
    p = plan([alert("a1")], rules=AlertRules(RULES.rules, (window,)))
    assert p.log == [{"uid": "a1", "client": "acme", "what": "in a maintenance window",
                      "window": "2026-11-22T11:00:00+00:00 - 2026-11-22T13:00:00+00:00"}]
    assert plan([alert("a2", message="Heartbeat missed")]).log == [
        {"uid": "a2", "client": "acme", "what": "ignored by rule noise"}]
    assert plan([], [event("x1", "triggered", eid="1"), event("x1", "reset", eid="2")]).log == [
        {"uid": "x1", "client": None, "what": "triggered and reset before the hub saw it: recorded, no ticket"}]
    assert plan([alert("u2", org="")]).log == [
        {"uid": "u2", "client": None, "what": "ninjaone device PC-10 (org ?) belongs to no client linked to the PSA, "
                                              "and alert_rules.toml sets no fallback board: no ticket"}]


def test_fallback_reasons_say_why_and_where():
    fallback = AlertRules(RULES.rules, fallback_board="Alerts", fallback_company="999")
    (t,) = plan([alert("u1", org="7")], rules=fallback, client=None).intents
    assert (t.client_id, t.reason) == (None, "the client of device PC-10 (ninjaone org 7) is linked to no hub client: "
                                             "fallback board Alerts")
    (t,) = plan([alert("u2", org="7")], rules=fallback, company=None).intents
    assert (t.client_id, t.payload["company_id"], t.payload["board"]) == ("acme", "999", "Alerts")
    assert t.reason == "the client of device PC-10 (ninjaone org 7) (acme) has no PSA company: fallback board Alerts"
    half = AlertRules(RULES.rules, fallback_board="Alerts")
    assert plan([alert("u3", org="7")], rules=half, client=None).intents == []


def test_a_storm_parent_is_exact_and_priced_by_its_worst_alert():
    storm = storm_of(5) + [alert("boom", device="99", cls="WINDOWS_SERVER", severity="CRITICAL", message="Down",
                                 at=NOW - timedelta(minutes=5, seconds=30)),
                           alert("odd", device="98", severity="WEIRD", at=NOW - timedelta(minutes=5, seconds=40))]
    (parent,) = plan(storm, company="250").intents
    assert (parent.kind, parent.client_id, parent.rule) == ("ticket", "acme", "servers")
    assert parent.reason == "7 alerts within 10 min: one parent ticket"
    p = parent.payload
    assert (p["summary"], p["board"], p["priority"], p["company_id"]) == ("Alert storm: 7 alerts in 10 min", "Alerts",
                                                                          "P1", "250")
    assert p["uids"] == ["odd", "boom", "s4", "s3", "s2", "s1", "s0"]
    assert p["initial_description"].split("\n")[3:7] == [
        "- PC-98 (WINDOWS_WORKSTATION)", "  CPU high (WEIRD, alert odd)",
        "- PC-99 (WINDOWS_SERVER)", "  Down (CRITICAL, alert boom)"]
    (weird_first,) = plan([alert("odd", device="98", severity="WEIRD")] + storm_of(5)).intents
    assert weird_first.payload["priority"] == "P4"             # an unknown severity is never the worst


def test_summary_and_reference_are_cut_at_a_hundred_characters():
    (t,) = plan([alert("a" * 120, message="x" * 200)]).intents
    assert len(t.payload["summary"]) == 100 and t.payload["summary"] == ("PC-10: " + "x" * 200)[:100]
    assert t.payload["external_ref"] == ("msp-hub:ticket:ninjaone:" + "a" * 120)[:100]


def test_an_alert_without_a_creation_time_is_placed_by_its_update_then_now():
    window = Window(NOW - timedelta(hours=2), NOW - timedelta(hours=1), client="acme")
    rules = AlertRules(RULES.rules, (window,))
    updated_in = replace(alert("a1"), created_at=None, updated_at=NOW - timedelta(minutes=90))
    assert plan([updated_in], rules=rules).log[0]["what"] == "in a maintenance window"
    created_out = replace(alert("a2"), updated_at=NOW - timedelta(minutes=90))
    assert [i.key for i in plan([created_out], rules=rules).intents] == ["ticket:ninjaone:a2"]
    undated = replace(alert("a3"), created_at=None, updated_at=None)
    assert [i.key for i in plan([undated], rules=AlertRules(RULES.rules, (Window(NOW, NOW + timedelta(1),
                                                                               client="acme"),))).intents] == []


def test_rules_match_the_client_and_messages_without_case():
    rules = AlertRules((AlertRule("vip", {"client": ("acme",)}, board="VIP"),
                        AlertRule("quiet", {"message": ("^heartbeat",)}, action="ignore"), AlertRule("all")))
    assert plan([alert("a1")], rules=rules).intents[0].payload["board"] == "VIP"
    assert plan([alert("a2", message="HEARTBEAT lost")], rules=rules, client="beta").intents == []
    assert plan([replace(alert("a3"), message=None)], rules=rules, client="beta").intents[0].rule == "all"


def test_a_window_of_another_client_covers_nothing():
    rules = AlertRules(RULES.rules, (Window(NOW - timedelta(hours=1), NOW + timedelta(hours=1), client="beta"),))
    assert [i.key for i in plan([alert("a1")], rules=rules).intents] == ["ticket:ninjaone:a1"]


def test_a_site_plugin_decides_with_the_alert_and_its_client():
    seen = []
    plan([alert("a1")], decide=lambda a, c: seen.append((a.source_id, c)))
    assert seen == [("a1", "acme")]
