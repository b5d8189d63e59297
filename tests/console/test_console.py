"""The console in a real browser against the simulators: sign-in, the overview (a failing stream,
a resync and its progress to the end), the runs, the outbox (retry a failed action and see it
sent, approve a held one and see who), and the refusals: no session (page, fragment, POST), no
CSRF token, a wrong token, sign-out, expiry."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.console.conftest import NAME, ROOT, TOKEN, csrf, post, sign_in

SCREENSHOT = ROOT / "docs" / "console-overview.png"


def test_sign_in_shows_the_overview_with_the_outbox_counts_and_every_stream(signed_in, world):
    page = signed_in
    expect(page.locator("#admin-name")).to_have_text(NAME)
    failed = len(world.read(lambda s: s.actions(status="failed")))
    held = len(world.read(lambda s: s.actions(status="held")))
    assert failed == 1 and held == 3      # the fixture's sync: acme's invoice failed, 3 quantities held
    expect(page.locator("#count-failed strong")).to_have_text(str(failed))
    expect(page.locator("#count-held strong")).to_have_text(str(held))
    for connector, stream in (("ninjaone", "devices"), ("connectwise", "agreements")):
        expect(page.locator(f"#stream-{connector}-{stream} .state")).to_have_text("healthy")
    expect(page.locator("#jobs")).to_contain_text("invoices")       # the next scheduled jobs
    expect(page.locator("#jobs")).to_contain_text("psa")
    # The token is in no page, no cookie and no URL.
    assert TOKEN not in page.content() and TOKEN not in page.url
    assert all(TOKEN not in c["value"] for c in page.context.cookies())
    cookie = next(c for c in page.context.cookies() if c["name"] == "msp_hub_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"


def test_a_failing_stream_shows_on_the_overview_and_a_resync_runs_to_the_end(signed_in, world):
    page = signed_in
    world.ninja.fail_next(403, times=1, path="/v2/devices-detailed")   # not retried: the pass fails
    page.get_by_role("button", name="Resync ninjaone.devices").click()
    progress = page.locator(".progress")
    expect(progress).to_have_attribute("data-ended", "yes")
    expect(progress.locator(".run-status")).to_contain_text("failed")
    page.reload()
    row = page.locator("#stream-ninjaone-devices")
    expect(row.locator(".state")).to_have_text("failing")
    expect(row.locator(".err")).to_contain_text("403")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    # A resync of the same stream now passes; the progress fragment polls until the run ends.
    row.get_by_role("button", name="Resync ninjaone.devices").click()
    expect(progress).to_have_attribute("data-ended", "yes")
    expect(progress.locator(".run-status")).to_contain_text("ok")
    page.reload()
    expect(page.locator("#stream-ninjaone-devices .state")).to_have_text("healthy")
    runs = world.read(lambda s: s.runs(limit=10))
    assert [r["trigger"] for r in runs[:2]] == ["console", "console"]


def test_a_resync_refused_while_a_run_holds_the_lock_says_who_holds_it(signed_in, world):
    page = signed_in
    assert world.read(lambda s: s.acquire_lock("sync", "cli:sync")) is None   # another run holds the lock
    before = len(world.read(lambda s: s.runs(limit=50)))
    page.locator("#resync-all").click()
    expect(page.locator("#resync-progress .error")).to_contain_text("a run is in progress (cli:sync")
    assert len(world.read(lambda s: s.runs(limit=50))) == before


def test_a_run_shows_what_it_pulled_pushed_and_held(signed_in, world):
    page = signed_in
    run_id = world.read(lambda s: s.runs(limit=1))[0]["id"]
    page.get_by_role("link", name="Runs").click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    page.get_by_role("link", name=run_id).click()
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("#pulled")).to_contain_text("ninjaone.devices: 24")
    expect(page.locator("#held")).to_contain_text("agreement_quantity:")
    expect(page.locator("#held")).to_contain_text("more than the limit")
    expect(page.locator("#run-actions")).to_contain_text(f"invoice:birchwood:{world.period}")
    # Filters that match nothing say so.
    page.goto("/console/runs?trigger=cli")
    expect(page.get_by_text("No run matches.")).to_be_visible()


def test_retry_a_failed_action_and_see_it_sent_then_approve_a_held_one(signed_in, world):
    page = signed_in
    key = f"invoice:acme:{world.period}"
    page.get_by_role("link", name="Outbox").click()
    row = page.locator(f'tr[data-key="{key}"]')
    expect(row.locator(".status")).to_have_text("failed")
    row.get_by_role("button", name=f"Retry {key}").click()
    expect(page.get_by_role("status").first).to_contain_text(f"{key} is now pending")
    assert world.action(key)["status"] == "pending"
    page.get_by_role("link", name="Overview").click()
    page.locator("#resync-all").click()
    expect(page.locator(".progress")).to_have_attribute("data-ended", "yes")
    page.goto("/console/outbox?status=sent")
    expect(page.locator(f'tr[data-key="{key}"] .status')).to_have_text("sent")
    assert world.action(key)["vendor_id"]
    # Approve a held quantity: recorded with the signed-in admin's name.
    page.goto("/console/outbox?status=held")
    held = page.locator("tr.action.held").first
    held_key = held.get_attribute("data-key")
    held.get_by_placeholder("Why").fill("the client cancelled")
    held.get_by_role("button", name=f"Approve {held_key}").click()
    approvals = world.read(lambda s: s.approvals(held_key))
    assert [(a["who"], a["why"]) for a in approvals] == [(f"{NAME} (console)", "the client cancelled")]
    assert world.action(held_key)["status"] == "pending"


def test_without_a_session_pages_redirect_and_fragments_and_posts_are_refused(page, world):
    page.goto("/console/outbox?status=held")
    expect(page).to_have_url(re.compile(r"/console/signin\?next=/console/outbox"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/signin"))
    fragment = page.request.get("/console/runs/x/progress")
    assert fragment.status == 401
    key = f"invoice:acme:{world.period}"
    for path, data in (("/console/outbox/retry", {"key": key}), ("/console/resync", {"all": "1"})):
        assert post(page, path, data).status == 401
    assert world.action(key)["status"] == "failed"
    # The JSON API keeps its bearer token.
    assert page.request.get("/runs").status == 401
    assert page.request.get("/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    # After sign-in, the page asked first opens.
    page.goto("/console/outbox?status=held")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_label("Your name").fill(NAME)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/outbox\?status=held$"))


def test_a_post_without_the_csrf_token_is_refused(signed_in, world):
    page = signed_in
    key = f"invoice:acme:{world.period}"
    before = len(world.read(lambda s: s.runs(limit=50)))
    assert post(page, "/console/outbox/retry", {"key": key}).status == 403
    assert post(page, "/console/outbox/retry", {"key": key, "csrf_token": "forged"}).status == 403
    assert post(page, "/console/resync", {"all": "1"}, headers={"X-CSRF-Token": "forged"}).status == 403
    assert world.action(key)["status"] == "failed"
    assert len(world.read(lambda s: s.runs(limit=50))) == before
    # With the session's token (a form field, or the header htmx sends), it goes through.
    assert post(page, "/console/outbox/retry", {"key": key, "csrf_token": csrf(page)}).status == 303
    assert world.action(key)["status"] == "pending"


def test_a_wrong_token_does_not_sign_in_and_sign_out_ends_the_session(page, world):
    sign_in(page, token=TOKEN[:-1] + "x")
    expect(page.locator("#signin-error")).to_contain_text("opens nothing")
    assert not any(c["name"] == "msp_hub_console" for c in page.context.cookies())
    sign_in(page)
    page.wait_for_url("**/console/")
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "msp_hub_console")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/signin$"))
    assert len(world.sessions) == 0
    # The old cookie opens nothing any more.
    page.context.add_cookies([{"name": "msp_hub_console", "value": cookie, "url": world.url + "/console/"}])
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/signin"))


def test_a_session_expires_when_idle_and_after_its_maximum(page, world):
    sign_in(page)
    page.wait_for_url("**/console/")
    world.clock.advance(world.sessions.settings.idle - 60)       # used within the idle time: still open
    page.goto("/console/runs")
    expect(page).to_have_url(re.compile(r"/console/runs$"))
    world.clock.advance(world.sessions.settings.idle + 1)        # then left idle too long
    page.goto("/console/runs")
    expect(page).to_have_url(re.compile(r"/console/signin"))
    assert page.request.get("/console/runs/x/progress").status == 401
    sign_in(page)                                               # kept busy, it still ends at its maximum
    page.wait_for_url("**/console/")
    step = world.sessions.settings.idle - 60
    for _ in range(world.sessions.settings.absolute // step):   # never idle long enough to end
        world.clock.advance(step)
        assert page.request.get("/console/runs", max_redirects=0).status == 200
    world.clock.advance(step)
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/signin"))
