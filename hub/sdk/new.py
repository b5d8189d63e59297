"""``msp-hub plugin new NAME``: write a working connector package from the template."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from hub.errors import ConfigError

TEMPLATE = Path(__file__).parent / "template"
NAME_RULE = re.compile(r"[a-z][a-z0-9_]{1,39}")
# Names the package cannot take: the hub's own packages and the built-in connectors' names.
TAKEN = frozenset({"hub", "plugins", "tests", "connectwise", "ninjaone", "stripe", "test", "msp_hub"})


def check_name(name: str) -> None:
    """Refuse a NAME that cannot be a Python package and a connector name; the message says why."""
    if not NAME_RULE.fullmatch(name) or name.endswith("_") or "__" in name:
        raise ConfigError(f"plugin name {name!r} is not valid",
                          fix="use 2 to 40 lowercase letters, digits and single underscores, starting with "
                              "a letter (e.g. acme_rmm): it names the Python package, the connector, "
                              "its [connectors.NAME] section and its device_classes.toml section")
    if keyword.iskeyword(name) or name in TAKEN:
        raise ConfigError(f"plugin name {name!r} is taken (a Python keyword or one of msp-hub's own names)",
                          fix="choose another name, e.g. the vendor's name followed by _rmm")


def substitutions(name: str) -> dict[str, str]:
    words = name.split("_")
    return {"{{NAME}}": name, "{{DIST}}": "msp-hub-" + name.replace("_", "-"),
            "{{TITLE}}": " ".join(w.capitalize() for w in words),
            "{{CLASS}}": "".join(w.capitalize() for w in words),
            "{{ENV}}": name.upper() + "_API_KEY"}


def new_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the package ``<directory>/<name>/`` from the template; return its path.

    Refuses (ConfigError) an invalid name and an existing target (nothing is overwritten).
    """
    check_name(name)
    target = Path(directory) / name
    if target.exists():
        raise ConfigError(f"folder {target} already exists; nothing was written",
                          fix="choose another NAME or --dir, or remove that folder first")
    values = substitutions(name)
    files = sorted(p for p in TEMPLATE.rglob("*.tmpl") if p.is_file())
    if not files:
        raise ConfigError(f"the template is missing from {TEMPLATE}", fix="reinstall msp-hub")
    for source in files:
        relative = source.relative_to(TEMPLATE).with_suffix("")   # drop .tmpl
        parts = [name if part == "package" else part for part in relative.parts]
        text = source.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        out = target.joinpath(*parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return target
