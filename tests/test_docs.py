"""The plugin developers' documentation (docs/, MkDocs) covers every hook and every record table,
and its records page is what hub.records says."""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

import hub.hookspecs
from hub.store import RECORD_TABLES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS = sorted(name for name, f in vars(hub.hookspecs).items()
               if inspect.isfunction(f) and hasattr(f, "msp_hub_spec"))
SECTIONS = ("## When it is called", "## Arguments", "## Returns", "## Several plugins", "## Example")


def render_records() -> str:
    """The generated part of docs/records.md: each table, its record class and its fields."""
    out = []
    for table, cls in RECORD_TABLES.items():
        out.append(f"## `{table}`: `{cls.__name__}`\n")
        out.append((inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ") + "\n")
        out.append("| Field | Type | Required |\n|---|---|---|")
        for f in fields(cls):
            required = "yes" if f.default is MISSING and f.default_factory is MISSING else "no"
            out.append(f"| `{f.name}` | `{str(f.type).replace(' | ', '` or `')}` | {required} |")
        out.append("")
    return "\n".join(out)


def test_the_hooks_are_the_ones_of_hookspecs():
    assert HOOKS == ["add_billing_lines", "alert_rule", "amend_action", "register_connectors",
                     "sync_finished", "veto_action"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_page_with_its_signature_arguments_and_every_section(hook):
    page = DOCS / "hooks" / f"{hook}.md"
    assert page.exists(), f"docs/hooks/{hook}.md is missing: every hook of hub/hookspecs.py has a page"
    text = page.read_text()
    arguments = list(inspect.signature(getattr(hub.hookspecs, hook)).parameters)
    assert f"def {hook}({', '.join(arguments)})" in text, f"{page.name}: the signature differs from the spec"
    for name in arguments:
        assert f"- `{name}`" in text, f"{page.name}: the argument {name!r} is not described"
    for section in SECTIONS:
        assert section in text, f"{page.name}: no {section!r} section"
    assert "@hookimpl" in text.split("## Example")[1], f"{page.name}: the example implements no hook"
    nav = (ROOT / "mkdocs.yml").read_text()
    assert f"hooks/{hook}.md" in nav and f"({hook}.md)" in (DOCS / "hooks" / "index.md").read_text()


def test_no_page_documents_a_hook_that_does_not_exist():
    pages = {p.stem for p in (DOCS / "hooks").glob("*.md")} - {"index"}
    assert pages == set(HOOKS)


def test_the_records_page_lists_every_table_with_the_fields_of_its_record():
    text = (DOCS / "records.md").read_text()
    generated = text.split("<!-- generated: records -->\n")[1].split("<!-- end: records -->")[0]
    assert generated.strip() == render_records().strip(), "docs/records.md differs from hub.records: regenerate its last part"
    for table in RECORD_TABLES:
        assert f"## `{table}`:" in generated


def test_every_record_table_says_what_the_hub_does_with_it():
    overview = (DOCS / "records.md").read_text().split("## What the hub does with each table")[1].split("\n## ")[0]
    named = set(re.findall(r"`([a-z_]+)`", overview))
    assert set(RECORD_TABLES) <= named, f"not in the overview: {sorted(set(RECORD_TABLES) - named)}"


def test_every_page_is_in_the_navigation_and_every_link_between_pages_resolves():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        relative = page.relative_to(DOCS).as_posix()
        assert relative in nav, f"docs/{relative} is not in mkdocs.yml's nav"
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"docs/{relative} links to a missing {target}"


def test_the_documented_fixtures_simulator_methods_and_error_classes_exist():
    import hub.errors
    import hub.testing.fixtures as fixtures
    from hub.testing import Simulator
    text = (DOCS / "testing.md").read_text()
    for fixture in re.findall(r"^\| `([a-z_]+)` \| ", text.split("## Fixtures")[1].split("\n## ")[0], re.M):
        assert hasattr(fixtures, fixture), f"testing.md documents a fixture {fixture!r} that does not exist"
    for method in re.findall(r"^\| `([a-z_]+)\(", text.split("## `Simulator`")[1].split("\n## ")[0], re.M):
        assert callable(getattr(Simulator, method, None)), f"testing.md documents Simulator.{method}, which does not exist"
    errors = (DOCS / "cursors-and-errors.md").read_text()
    for name in re.findall(r"^\| `([A-Za-z]+Error)` \|", errors, re.M):
        assert issubclass(getattr(hub.errors, name), hub.errors.HubError)
