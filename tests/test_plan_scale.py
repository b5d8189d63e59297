"""The plan at scale: ``msp-hub plan --json`` written as the plan is made, and the set-based reads
the planner uses, against a store seeded as benchmarks/plan_scale.py seeds it (PSA contracts of
every kind, devices, a year of time entries, products and alerts), small."""

import importlib.util
import json
import re
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from hub import planner
from hub.cli import _run, main
from hub.config import load_config
from hub.engine import Hub, dumps, sync_once
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("plan_scale", ROOT / "benchmarks" / "plan_scale.py")
plan_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan_scale)


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    """A config and a store of 6 clients (10 devices, 60 time entries, 4 alerts each), its first
    sync pushed (to connectors that record nothing): what ``plan`` reads afterwards."""
    import shutil
    for name, value in plan_scale.SECRETS.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(ROOT / "examples" / "psa-driven" / "mappings", tmp_path / "mappings")
    config_path = tmp_path / "msp-hub.toml"
    config_path.write_text(plan_scale.CONFIG.format(db=(tmp_path / "hub.db").as_posix()))
    config = load_config(config_path)
    real = Hub(config)
    s = plan_scale.Seeded(6, 10, 60, 4, datetime.now(timezone.utc))
    pages = {"connectwise": {"clients": s.pages(s.cw_clients, True), "agreements": s.pages(s.agreements, False),
                             "additions": s.pages(s.additions, False), "time_entries": s.pages(s.time_entries, False),
                             "products": s.pages(s.products, False)},
             "ninjaone": {"clients": s.pages(s.orgs, True), "devices": s.pages(s.rmm_devices, True),
                          "alerts": s.pages(s.rmm_alerts, False)}}
    connectors = [plan_scale.Bench(c, pages.get(name, {})) for name, c in sorted(real.connectors.items())]
    hub = make_hub(ConnectorPlugin(*connectors), config=config, mappings=real.mappings,
                   store=Store(str(tmp_path / "hub.db")))
    real.store.close()
    first = sync_once(hub)
    assert first.pushed and not first.errors, first.errors
    hub.close()
    return config_path


def _without_run(text: str) -> str:
    """The JSON text without what differs from one run to the next (its id, start and duration)."""
    return re.sub(r'\n  "(run_id|started_at|seconds)": [^\n]*', "", text)


def test_plan_json_is_written_as_made_and_says_what_the_plan_says(seeded):
    result = CliRunner().invoke(main, ["plan", "--config", str(seeded), "--json"])
    assert result.exit_code == 0, result.output
    kept = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    assert len(kept.plan) > 10 and {p.kind for p in kept.plan} >= {"invoice", "agreement_quantity"}
    assert _without_run(result.stdout) == _without_run(dumps(kept.to_json()) + "\n")
    streamed = json.loads(result.stdout)
    assert [p["key"] for p in streamed["plan"]] == [p.action.key if p.action else None for p in kept.plan]


def test_plan_json_of_an_empty_plan_is_the_same_text(seeded):
    result = CliRunner().invoke(main, ["plan", "--config", str(seeded), "--json", "--period", "2019-01"])
    kept = _run(str(seeded), dict(period="2019-01"), read_only=True, dry_run=True, pull_first=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plan"] == [p.to_json() for p in kept.plan]
    assert _without_run(result.stdout) == _without_run(dumps(kept.to_json()) + "\n")


def test_a_plan_sink_receives_every_item_and_the_report_keeps_none(seeded):
    kept = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    got = []
    streamed = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False,
                    plan_sink=got.append)
    assert streamed.plan == [] and [p.to_json() for p in got] == [p.to_json() for p in kept.plan]
    assert streamed.held == kept.held


def test_plan_items_keep_what_a_held_item_says_whether_kept_or_sunk():
    from hub.records import Action
    held = planner.PlanItem("invoice", "acme", "Acme", "2026-10", "held",
                            Action("invoice:acme:2026-10", "invoice", "stripe", "acme", {"total": 5, "currency": "EUR"}),
                            reasons=("why",), cause="guardrail")
    fine = planner.PlanItem("invoice", "birch", "Birch", "2026-10", "unchanged", None)
    kept, sunk = planner.PlanItems(), planner.PlanItems(sink=(out := []).append)
    for items in (kept, sunk):
        items.extend([held, fine])
    assert list(kept) == [held, fine] and list(sunk) == [] and out == [held, fine]
    assert kept.held == sunk.held == [planner.held_json(held)]
