"""The plugin author's contract stays honest: documented hooks, each exercised, a true __all__."""

import inspect
import re
import types
from pathlib import Path

import click
import pytest

import hub
from hub import hookspecs
from hub.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _specs():
    return [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(f, "msp_hub_spec")]


def test_every_hookspec_documents_each_argument():
    specs = _specs()
    assert {f.__name__ for f in specs} >= {"register_connectors", "add_billing_lines", "amend_action",
                                           "veto_action", "sync_finished"}
    for f in specs:
        doc = inspect.getdoc(f) or ""
        assert "Called" in doc, f"{f.__name__}: say when it is called"
        for arg in inspect.signature(f).parameters:
            assert f":param {arg}:" in doc, f"{f.__name__}: document argument {arg}"


def test_every_hook_has_a_test():
    text = "\n".join(p.read_text() for p in list((ROOT / "tests").rglob("test_*.py"))
                     + list((ROOT / "plugins").rglob("test_*.py")))
    for f in _specs():
        assert re.search(rf"def test_hook_{f.__name__}[_(]", text), f"no test_hook_{f.__name__} anywhere"


def test_public_surface_matches_all():
    exported = {n for n, v in vars(hub).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert sorted(hub.__all__) == hub.__all__
    assert set(hub.__all__) == exported


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path, cmd", list(_commands(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help_with_an_example(path, cmd):
    assert cmd.help and "Example:" in cmd.help, f"msp-hub {' '.join(path)} needs help ending in an Example"
