"""The Clients page in a real browser against the simulators: the links and how each was made, a
suggested link (a NinjaOne organization whose name nearly matches a PSA company) accepted into
mappings/links.toml, another rejected (recorded in the store, not suggested again, as `msp-hub
clients` shows too), the unmapped clients and the discrepancies, and a POST without CSRF refused."""

from __future__ import annotations

import contextlib
import json
import shutil
import tomllib

import pytest
from click.testing import CliRunner
from playwright.sync_api import expect

from tests.console import conftest
from tests.console.conftest import NAME, ConsoleWorld, csrf, post


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The console's world on a copy of mappings/ (accepting a link writes its links.toml), with two
    NinjaOne organizations named nearly as two PSA companies that have none: two suggestions."""
    checkout = tmp_path / "checkout"
    shutil.copytree(conftest.ROOT / "mappings", checkout / "mappings")
    monkeypatch.setattr(conftest, "ROOT", checkout)
    with contextlib.ExitStack() as stack:
        w = ConsoleWorld(tmp_path, stack)
        w.grove_company = w.cw.add_company("Grove Architects")
        w.grove_org = w.ninja.add_organization("Grove Architecture")
        w.ninja.add_device(w.grove_org, "WINDOWS_WORKSTATION")
        w.harbor_company = w.cw.add_company("Harbor Insurance")
        w.harbor_org = w.ninja.add_organization("Harbour Insurance")
        w.service.trigger({"connectors": ["ninjaone", "connectwise"]})
        w.service.join()
        w.links_toml = checkout / "mappings" / "links.toml"
        yield w


def suggestion(page, org: int):
    return page.locator(f'article.suggestion[data-source="ninjaone:{org}"]')


def test_accept_a_suggested_link_writes_links_toml_and_the_client_is_linked(signed_in, world):
    page = signed_in
    before = world.links_toml.read_text()
    page.get_by_role("link", name="Clients").click()
    grove = f"connectwise-{world.grove_company}"
    card = suggestion(page, world.grove_org)
    expect(card).to_contain_text("Grove Architecture")
    expect(card).to_contain_text(f"Grove Architects ({grove})")
    confidence = float(card.locator(".confidence").inner_text())
    assert 0.75 <= confidence < 1
    # Where it will be written, said before the click.
    expect(page.locator("#links-file")).to_have_text(str(world.links_toml))
    expect(card).to_contain_text(f"writes to {world.links_toml}")
    expect(page.locator("#unmapped")).to_contain_text("Grove Architecture")
    card.locator("form.accept-form").get_by_placeholder("Why").fill("same firm, renamed")
    card.get_by_role("button", name=f"Accept ninjaone {world.grove_org} → {grove}").click()
    expect(page.get_by_role("status").first).to_contain_text(
        f"linked ninjaone 'Grove Architecture' (id {world.grove_org}) to {grove} in {world.links_toml}")
    written = tomllib.loads(world.links_toml.read_text())["clients"][grove]
    assert written == {"name": "Grove Architects", "connectwise": str(world.grove_company),
                       "ninjaone": str(world.grove_org)}
    assert world.links_toml.read_text().startswith(before.rstrip("\n"))    # the file's comments kept
    assert f"accepted by {NAME} (console): same firm, renamed" in world.links_toml.read_text()
    # The daemon reloads the mappings: the client is linked, as written in mappings, with its device.
    page.reload()
    row = page.locator(f'#client-links tr[data-client="{grove}"]')
    expect(row).to_contain_text(f"ninjaone {world.grove_org} (written in mappings) · 1 device(s)")
    expect(suggestion(page, world.grove_org)).to_have_count(0)
    expect(page.locator("#unmapped")).not_to_contain_text("Grove Architecture")
    # The plan bills from it: the organization is no longer reported as linked to no client.
    page.goto("/console/plan")
    expect(page.locator("body")).not_to_contain_text(f"ninjaone client 'Grove Architecture' (id {world.grove_org})")


def test_reject_a_suggestion_is_remembered_in_the_store_and_not_suggested_again(signed_in, world):
    page = signed_in
    page.goto("/console/clients")
    harbor = f"connectwise-{world.harbor_company}"
    card = suggestion(page, world.harbor_org)
    expect(card).to_contain_text("recorded in the store")
    card.locator("form.reject-form").get_by_placeholder("Why").fill("a different company")
    card.get_by_role("button", name=f"Reject ninjaone {world.harbor_org} → {harbor}").click()
    expect(page.get_by_role("status").first).to_contain_text("recorded in the store")
    approvals = world.read(lambda s: s.approvals(f"link-rejected:ninjaone:{world.harbor_org}:{harbor}"))
    assert [(a["who"], a["why"]) for a in approvals] == [(f"{NAME} (console)", "a different company")]
    expect(suggestion(page, world.harbor_org)).to_have_count(0)
    expect(page.locator("#rejected")).to_contain_text("Harbour Insurance")
    expect(page.locator("#unmapped")).to_contain_text("Harbour Insurance")     # still unmapped, still reported
    # The CLI says the same (one code path): no longer suggested, listed as rejected.
    from hub.cli import main
    result = CliRunner().invoke(main, ["clients", "--config", str(world.config), "--json"], env=dict(
        conftest.ENV, C_NINJA=world.ninja.client_secret, C_CW=world.cw.private_key, C_STRIPE=world.stripe.api_key))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [s["source_id"] for s in shown["suggestions"]] == [str(world.grove_org)]
    assert [(s["source_id"], s["rejected_by"]) for s in shown["rejected"]] == [(str(world.harbor_org), f"{NAME} (console)")]
    # Accepting it now is refused, naming why.
    answer = post(page, "/console/clients/accept", {"system": "ninjaone", "source_id": str(world.harbor_org),
                                                    "client_id": harbor, "csrf_token": csrf(page)})
    assert answer.status == 303
    page.goto("/console/clients")
    expect(page.get_by_role("status").first).to_contain_text("was rejected")
    assert "Harbour" not in world.links_toml.read_text()


def test_the_page_shows_how_each_link_was_made_and_the_discrepancies(signed_in, world):
    page = signed_in
    page.goto("/console/clients")
    expect(page.locator('#client-links tr[data-client="acme"]')).to_contain_text("ninjaone 1 (written in mappings)")
    fairview = page.locator("#client-links tr", has_text="Fairview Schools")
    expect(fairview).to_contain_text("(client master)")
    expect(fairview).to_contain_text("(same name)")
    expect(page.locator("#discrepancies")).to_contain_text("Revenue found")
    expect(page.locator("#discrepancies")).to_contain_text("Contract conflict")


def test_accept_and_reject_refuse_a_post_without_csrf(signed_in, world):
    page = signed_in
    before = world.links_toml.read_text()
    form = {"system": "ninjaone", "source_id": str(world.grove_org), "client_id": f"connectwise-{world.grove_company}"}
    for verb in ("accept", "reject"):
        assert post(page, f"/console/clients/{verb}", form).status == 403
        assert post(page, f"/console/clients/{verb}", dict(form, csrf_token="wrong")).status == 403
    assert world.links_toml.read_text() == before
    assert not [a for a in world.read(lambda s: s.approvals()) if a["target"].startswith("link-rejected:")]


def test_the_cli_accepts_and_refuses_as_the_console_does(world):
    """`msp-hub clients --accept` goes through the same hub.clientlinks.accept_link as the page."""
    from hub.cli import main
    env = dict(conftest.ENV, C_NINJA=world.ninja.client_secret, C_CW=world.cw.private_key, C_STRIPE=world.stripe.api_key)
    harbor = f"connectwise-{world.harbor_company}"
    wrong = CliRunner().invoke(main, ["clients", "--config", str(world.config), "--accept", "ninjaone-8"], env=env)
    assert wrong.exit_code == 2 and "write SYSTEM:ID:CLIENT" in wrong.output
    nothing = CliRunner().invoke(main, ["clients", "--config", str(world.config), "--accept",
                                        f"ninjaone:{world.harbor_org}:acme"], env=env)
    assert nothing.exit_code == 2 and f"no suggestion links ninjaone client {world.harbor_org} to acme" in nothing.output
    ok = CliRunner().invoke(main, ["clients", "--config", str(world.config), "--accept",
                                   f"ninjaone:{world.harbor_org}:{harbor}", "--why", "same insurer"], env=env)
    assert ok.exit_code == 0, ok.output
    assert f"linked ninjaone 'Harbour Insurance' (id {world.harbor_org}) to {harbor}" in ok.output
    assert tomllib.loads(world.links_toml.read_text())["clients"][harbor]["ninjaone"] == str(world.harbor_org)
    shown = json.loads(CliRunner().invoke(main, ["clients", "--config", str(world.config), "--json"], env=env).output)
    linked = next(c for c in shown["clients"] if c["id"] == harbor)
    assert linked["links"]["ninjaone"] == str(world.harbor_org) and linked["how"]["ninjaone"] == "explicit"
