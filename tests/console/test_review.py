"""The Plan and review page in a real browser against the simulators: the plan explained line by
line, a held invoice (a guardrail: 12 more devices) beside the client's previous invoice, approved
with who and why and pushed after the resync the page offers (the Stripe simulator holds it),
the agreement quantities as three counts approved in bulk, and the refusals (no CSRF token, a
sent action)."""

from __future__ import annotations

from playwright.sync_api import expect

from hub.periods import parse_period
from tests.console.conftest import NAME, ROOT, csrf, post

SCREENSHOT = ROOT / "docs" / "console-held-invoice.png"
COBALT_ORG = 3     # the NinjaOne organization of Cobalt Logistics (mappings/contracts.toml)


def hold_an_invoice(world) -> tuple[str, str]:
    """Cobalt gets 12 more devices and the current period is invoiced (forced): its invoice moves
    by more than the guardrail's 30 % and is held. Returns (period, the invoice's key)."""
    period = parse_period(world.period).next().name
    for _ in range(12):
        world.ninja.add_device(COBALT_ORG, "WINDOWS_WORKSTATION")
    world.service.trigger({"period": period})
    world.service.join()
    key = f"invoice:cobalt:{period}"
    row = world.action(key)
    assert row is not None and row["status"] == "held", row
    return period, key


def test_the_plan_explains_each_line_and_the_held_quantities_show_their_three_counts(signed_in, world):
    page = signed_in
    page.get_by_role("link", name="Plan").click()
    expect(page.get_by_role("heading", name="Plan and review")).to_be_visible()
    page.get_by_label("Period").fill(world.period)
    page.get_by_role("button", name="Show").click()
    cobalt = page.locator("#client-cobalt")
    cobalt.locator("summary").click()
    # A line: what it counts (the devices by name), its rule and its price, as `plan --details`.
    expect(cobalt.locator("table.lines").first).to_contain_text("rule:")
    expect(cobalt.locator(".counted").first).to_contain_text("counts (")
    expect(cobalt.locator("table.lines .total").first).to_contain_text(" EUR")
    # The fixture's held agreement quantities: PSA quantity, RMM count, reconciled, each approvable.
    held = world.read(lambda s: [a["key"] for a in s.actions(status="held")])
    assert held and all(k.startswith("agreement_quantity:") for k in held)
    rows = page.locator("#quantities tr.quantity.held")
    expect(rows).to_have_count(len(held))
    first = rows.first
    expect(first.locator("td").nth(2)).not_to_be_empty()
    expect(first.get_by_role("button", name=f"Approve {first.get_attribute('data-key')}")).to_be_visible()


def test_a_held_invoice_beside_the_previous_one_is_approved_then_pushed_by_the_resync(signed_in, world):
    period, key = hold_an_invoice(world)
    previous = world.read(lambda s: s.previous_invoice("cobalt", period))
    assert previous is not None and previous[0] == world.period
    page = signed_in
    page.goto(f"/console/plan?period={period}")
    card = page.locator(f'article.held-card[data-key="{key}"]')
    # Why: the plan (made from the data pulled, for a period not ended: the gate asks for fresh data)
    # and the guardrail the last sync held it for.
    expect(card.locator(".cause")).to_contain_text("Completeness gate")
    expect(card.locator(".reasons")).to_contain_text(f"billed devices rose from 4 ({world.period})")
    expect(card.locator(".held-by")).to_contain_text("more than the limit of 30 %")
    expect(card.locator(".previous-invoice h4")).to_contain_text(world.period)
    from hub.money import format_minor
    sent_total = format_minor(sum(int(l["amount"]) for l in previous[1]), "EUR")
    expect(card.locator(".previous-invoice .total")).to_have_text(sent_total)
    expect(card.locator(".this-invoice h4")).to_contain_text(period)
    expect(card.locator(".this-invoice .total")).not_to_have_text(sent_total)
    expect(card.locator(".outbox-status")).to_have_text("held")
    card.scroll_into_view_if_needed()
    card.screenshot(path=str(SCREENSHOT))
    # Approve it, with why: recorded as the signed-in admin, as `msp-hub approve KEY --why` does.
    card.get_by_placeholder("Why").fill("twelve new workstations, ordered in November")
    card.get_by_role("button", name=f"Approve {key}").click()
    expect(page.get_by_role("status").first).to_contain_text(f"approved by {NAME} (console): {key}")
    approvals = world.read(lambda s: s.approvals(key))
    assert [(a["who"], a["why"]) for a in approvals] == [(f"{NAME} (console)", "twelve new workstations, ordered in November")]
    assert world.action(key)["status"] == "pending"
    # The page says when it goes (the next scheduled job) and offers the resync.
    expect(page.locator("#after-approve")).to_contain_text("pushed by the next sync")
    expect(page.locator("#next-sync")).to_contain_text("invoices")   # the unscoped job: "psa" pulls only
    assert not [i for i in world.stripe.list_objects("invoice") if (i.get("metadata") or {}).get("msp_hub_action_key") == key]
    page.locator("#resync-approved").click()
    expect(page.locator("#resync-progress .progress")).to_have_attribute("data-ended", "yes", timeout=30_000)
    row = world.action(key)
    assert row["status"] == "sent" and row["vendor_id"]
    assert row["vendor_id"] in {i["id"] for i in world.stripe.list_objects("invoice")}
    page.goto(f"/console/plan?period={period}")
    expect(page.locator(f'article.held-card[data-key="{key}"]')).to_have_count(0)


def test_bulk_approve_lets_every_ticked_quantity_through_with_one_why(signed_in, world):
    page = signed_in
    held = sorted(world.read(lambda s: [a["key"] for a in s.actions(status="held")]))
    assert len(held) >= 2
    page.goto(f"/console/plan?period={world.period}")
    for key in held[:2]:
        page.get_by_label(f"Select {key}").check()
    page.locator("#bulk-why").fill("counted on site")
    page.locator("#approve-selected").click()
    expect(page.get_by_role("status").first).to_contain_text(", ".join(held[:2]))
    for key in held[:2]:
        assert world.action(key)["status"] == "pending"
        assert [(a["who"], a["why"]) for a in world.read(lambda s: s.approvals(key))] == \
            [(f"{NAME} (console)", "counted on site")]
    for key in held[2:]:
        assert world.action(key)["status"] == "held"
    expect(page.locator("#resync-approved")).to_be_visible()


def test_approve_refuses_a_post_without_csrf_and_says_why_for_a_sent_action(signed_in, world):
    page = signed_in
    page.goto("/console/plan")
    held = world.read(lambda s: [a["key"] for a in s.actions(status="held")])[0]
    refused = post(page, "/console/plan/approve", {"key": held, "why": "x"})
    assert refused.status == 403
    assert world.action(held)["status"] == "held" and not world.read(lambda s: s.approvals(held))
    sent = world.read(lambda s: [a["key"] for a in s.actions(status="sent") if a["key"].startswith("invoice:")])[0]
    answer = post(page, "/console/plan/approve", {"key": sent, "csrf_token": csrf(page)})
    assert answer.status == 303
    page.goto("/console/plan")
    expect(page.get_by_role("status").first).to_contain_text(f"action {sent!r} was already sent")
    assert not world.read(lambda s: s.approvals(sent))


def test_the_plan_and_clients_pages_speak_french_when_the_msp_does(signed_in, world):
    page = signed_in
    world.config.write_text(world.config.read_text() + '\n[reports]\nlanguage = "fr"\n')   # reloaded by the daemon
    page.goto(f"/console/plan?period={world.period}")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("heading", name="Plan et validation")).to_be_visible()
    expect(page.locator("#quantities")).to_contain_text("Quantité PSA")
    expect(page.locator("#approve-selected")).to_have_text("Approuver la sélection")
    page.goto("/console/clients")
    expect(page.get_by_role("heading", name="Liens suggérés (0)")).to_be_visible()
    expect(page.locator("#discrepancies")).to_contain_text("Revenu trouvé")


def test_a_wrong_period_is_refused_naming_the_format_and_no_plan_is_shown(signed_in, world):
    page = signed_in
    answer = page.goto("/console/plan?period=2026-13")
    assert answer.status == 400
    expect(page.get_by_role("alert")).to_contain_text("period:")
    expect(page.get_by_role("alert")).to_contain_text("YYYY-MM")
    expect(page.locator("#quantities")).to_have_count(0)
    expect(page.locator(".client-plan")).to_have_count(0)
    # A plan viewed in the console is recorded as the console's dry run, as GET /plan records its own.
    page.goto(f"/console/plan?period={world.period}")
    latest = world.read(lambda s: s.runs(limit=1))[0]
    assert latest["trigger"] == "console" and '"period": "' + world.period in (latest["scope"] or "")
