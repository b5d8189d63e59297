"""An alert storm end to end (NinjaOne alerts -> the engine -> ConnectWise tickets), counting the
requests: the ticket and configuration lookups of a run are batched, so a ticket costs about one
request (its POST), and a ticket made before a crash is found, not made again."""

from datetime import timedelta

from hub.store import SENDING
from tests.test_alert_tickets import AlertEnv

RULES = """
[settings]
storm_threshold = 1000
fallback_board = "Alerts"

[[rule]]
name = "everything"
board = "Alerts"
auto_close = false
"""


def hub_tickets(env):
    return [t for t in env.tickets() if str(t.get("externalXRef") or "").startswith("msp-hub:ticket:")]


def posts(env):
    return sum(1 for m, p, _ in env.cw.log if m == "POST" and p == "/service/tickets")


def test_an_alert_storm_costs_about_one_request_a_ticket(tmp_path):
    env = AlertEnv(tmp_path, RULES)
    devices = [d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] in (1, 2, 3, 4, 5, 6)][:60]
    for n, device in enumerate(devices):
        env.ninja.trigger_alert(device, condition=f"cond-{n}", severity="MAJOR", message=f"alert {n}")
    env.cw.requests_by_path.clear()
    report = env.sync()
    tickets = hub_tickets(env)
    assert len(tickets) == len(devices) and not report.failed
    assert len({t["externalXRef"] for t in tickets}) == len(tickets)
    by_path = env.cw.requests_by_path
    pushing = by_path["/service/tickets"] + by_path["/company/configurations"]
    # One POST a ticket; a handful of batched lookups (and the empty pages ending those that
    # found something) instead of one ticket lookup and one configuration lookup a ticket.
    assert posts(env) == len(devices)
    assert pushing - posts(env) <= 12
    assert env.cw.requests / len(tickets) < 1.5


def test_a_crash_after_the_create_finds_the_ticket_again_in_the_next_batch(tmp_path):
    env = AlertEnv(tmp_path, RULES)
    devices = [d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] in (1, 4, 5)][:6]
    for n, device in enumerate(devices):
        env.ninja.trigger_alert(device, condition=f"cond-{n}", severity="MAJOR", message=f"alert {n}")
    env.sync()
    made = {t["externalXRef"]: t["id"] for t in hub_tickets(env)}
    assert len(made) == 6
    # The run died between the POSTs and recording them: every ticket action is "sending" again.
    store = env.hub().store
    keys = [r["key"] for r in store.actions(kind="ticket")]
    for key in keys:
        store.db["actions"].update(key, {"status": SENDING})
    before = posts(env)
    report = env.sync(advance=timedelta(minutes=1))
    assert posts(env) == before                                   # nothing made twice
    assert {t["externalXRef"]: t["id"] for t in hub_tickets(env)} == made
    again = {p["key"]: p for p in report.pushed}
    assert all("found by externalXRef" in again[k]["summary"] for k in keys)
    asked = [q["conditions"] for m, p, q in env.cw.log if m == "GET" and p == "/service/tickets"
             and q.get("conditions", "").startswith(("externalXRef =", "externalXRef in")) and "pageId" not in q]
    assert len(asked) == 2 and asked[0] == asked[1]               # one batch a run, for all six
