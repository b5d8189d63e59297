"""``msp-hub init [DIR]``: a new MSP's config and mappings that bill nobody until edited.

The config is the annotated example (``examples/msp-hub.toml``: secrets by ``*_env`` names, never
values). The mappings start from the demo's files with everything that would bill or ticket a real
organization commented out: no contract (``contracts.toml``), no PSA agreement type
(``agreement_types.toml``), no link (``links.toml``) and one alert rule that ignores every alert
(``alert_rules.toml``). The catalog (``tiers.toml``, ``device_classes.toml``, ``defaults.toml``,
``time.toml``) is kept as a working example to edit: a price bills nobody until a contract or an
agreement type names its tier.
"""

from __future__ import annotations

import re
from pathlib import Path

from hub.errors import HubError

CONFIG_NAME = "msp-hub.toml"
# Commented whole: each would bill a real organization or open tickets for it.
COMMENTED = ("contracts.toml", "agreement_types.toml", "links.toml", "alert_rules.toml")
# Kept as working examples: a catalog bills nobody by itself.
EXAMPLES = ("tiers.toml", "device_classes.toml", "defaults.toml", "time.toml", "scorecard.toml")

HEADER = {
    "contracts.toml": "# Written by `msp-hub init`: no contract yet, so no client is billed from this file.\n"
                      "# Add one [clients.<id>] per client you bill (the demo's examples are commented below).\n",
    "agreement_types.toml": "# Written by `msp-hub init`: no PSA agreement type is billed until you uncomment or add one.\n",
    "links.toml": "# Written by `msp-hub init`: no explicit link yet (clients whose names match are linked).\n",
    "alert_rules.toml": "# Written by `msp-hub init`: every alert is ignored (the rule at the end) until you add rules\n"
                        "# above it; the demo's rules are commented below as examples.\n",
}
IGNORE_ALL = '\n[[rule]]\nname = "catch-all"\naction = "ignore"              # remove, or give a board, to ticket alerts\n'
EXAMPLE_HEADER = ("# Written by `msp-hub init` from the demo: example values to edit (prices, classes, rates).\n"
                  "# Nothing here bills anyone until contracts.toml or agreement_types.toml names a tier.\n")


class InitError(HubError):
    """``init`` refused: it names the files it would overwrite."""


def demo_mappings() -> Path:
    """The demo's mappings: the repository's ``mappings/`` in a checkout, else the copy the wheel
    ships as ``hub/_demo_mappings`` (the same files; see setup.py)."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "mappings", here / "_demo_mappings"):
        if (folder / "tiers.toml").is_file():
            return folder
    return here / "_demo_mappings"  # absent: load_mappings names it and the fix


def example_config() -> Path:
    """The annotated example config: the repository's ``examples/`` in a checkout, else the wheel's copy."""
    return example_file(CONFIG_NAME)


def example_file(name: str) -> Path:
    """A file of the repository's ``examples/`` in a checkout, else of the wheel's copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "examples" / name, here / "_examples" / name):
        if candidate.is_file():
            return candidate
    raise InitError(f"the example {name} is missing from this installation "
                    "(fix: reinstall msp-hub: pip install --force-reinstall msp-hub)")


def comment_out(text: str) -> str:
    """Every line that is not a comment or blank becomes a comment."""
    return "".join(line if not line.strip() or line.lstrip().startswith("#") else "# " + line
                   for line in text.splitlines(keepends=True))


def planned_files(folder: Path) -> dict[Path, str]:
    """The files ``init`` writes in ``folder`` and their text."""
    config = example_config().read_text(encoding="utf-8")
    config = re.sub(r'(?m)^mappings = "[^"]*"', 'mappings = "mappings"        ', config, count=1)
    config = ("# Written by `msp-hub init`. Edit the connectors' hosts and ids; secrets are read from the\n"
              "# environment variables the *_env keys name (a secrets file: see the README).\n" + config)
    files = {folder / CONFIG_NAME: config}
    source = demo_mappings()
    for name in EXAMPLES:
        files[folder / "mappings" / name] = EXAMPLE_HEADER + (source / name).read_text(encoding="utf-8")
    for name in COMMENTED:
        text = HEADER[name] + comment_out((source / name).read_text(encoding="utf-8"))
        files[folder / "mappings" / name] = text + (IGNORE_ALL if name == "alert_rules.toml" else "")
    return files


def init(folder: str | Path = ".") -> list[Path]:
    """Write a new MSP's config and mappings in ``folder``; refuse if any of them exists."""
    target = Path(folder)
    files = planned_files(target)
    existing = [p for p in files if p.exists()]
    if existing:
        raise InitError("not overwriting " + ", ".join(str(p) for p in existing)
                        + " (fix: choose another folder, or move these files away)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def next_steps(folder: Path) -> list[str]:
    config = folder / CONFIG_NAME
    return [
        f"wrote {config} and {folder / 'mappings'}/ (they bill nobody until edited). Next:",
        f"  1. {config}: each connector's host and ids; the *_env names of your secrets; timezone, [billing.tax]",
        "  2. a secrets file with those variables (chmod 600), then: set -a; . ./secrets.env; set +a",
        f"  3. {folder / 'mappings' / 'tiers.toml'}: your tiers and prices; device_classes.toml, time.toml",
        f"  4. {folder / 'mappings' / 'contracts.toml'} or agreement_types.toml: who is billed, on which tier",
        f"  5. msp-hub plan --config {config}   (review, then: msp-hub sync --config {config})",
    ]
