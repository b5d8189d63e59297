"""The links as the MSP sees them, and accepting or rejecting a suggested link: what ``msp-hub
clients`` prints, the console's Clients page shows and ``POST /clients/links/...`` changes (one code
path for the three). It stands above the planner (it reads the plan's context); ``hub.linking``
below it matches names and links records.

Accepting a suggestion writes the link to ``mappings/links.toml`` (where explicit links live; the
daemon reloads the mappings when the file changes). A client whose contract is in
``contracts.toml`` keeps its links in its contract: accepting for it is refused with the line to
write there. Rejecting is recorded in the store (who, when, why, as an approval is: target
``link-rejected:<system>:<id>:<client>``) and that suggestion is not made again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hub.linking import Registry, Suggestion

REJECTED = "link-rejected"


class LinkRefused(Exception):
    """A suggestion that cannot be accepted or rejected as asked; the message names the fix."""


def rejection_target(system: str, source_id: str, client_id: str) -> str:
    return f"{REJECTED}:{system}:{source_id}:{client_id}"


@dataclass
class ClientLinks:
    """The hub's clients and their links, the suggestions still open, the rejected ones (each with
    who rejected it, when and why), what is unmapped, and the discrepancies of the links."""

    registry: Registry
    contracts: dict[str, tuple[str, str, str]]       # client id -> (contract kind, origin, file)
    suggestions: list[Suggestion]
    rejected: list[tuple[Suggestion, dict]]
    discrepancies: list                              # reconcile.Discrepancy
    links_file: str

    def where(self, suggestion: Suggestion) -> str | None:
        """Why accepting ``suggestion`` is refused (its client's links live in a contract), else None."""
        origin = self.contracts.get(suggestion.client_id)
        if origin is not None and origin[1] == "mappings":
            return (f"client {suggestion.client_id}'s links are in its contract: add "
                    f'{suggestion.system} = "{suggestion.source_id}" to links of [clients.{suggestion.client_id}] '
                    f"in {origin[2]}")
        return None


def client_links(hub) -> ClientLinks:
    """Link the pulled clients as the last ended period's plan does (``build_context``), with the
    unbilled clients reported (``report_unbilled``)."""
    from hub.engine import RunReport
    from hub.periods import last_ended_period
    from hub.planner import build_context, report_unbilled
    report = RunReport("clients", "clients", hub.clock())
    ctx = build_context(hub, report, last_ended_period(hub.clock(), hub.config.timezone))
    report_unbilled(hub, report, ctx)
    reg = ctx.registry
    contracts = {cid: (c.kind, c.origin, str(c.file)) for cid, c in ctx.contracts.items()}
    rejections = {a["target"]: a for a in hub.store.approvals() if a["target"].startswith(REJECTED + ":")}
    open_, rejected = [], []
    for s in reg.suggestions:
        seen = rejections.get(rejection_target(s.system, s.source_id, s.client_id))
        (rejected.append((s, seen)) if seen else open_.append(s))
    return ClientLinks(reg, contracts, open_, rejected, list(report.discrepancies),
                       str(Path(hub.config.mappings) / "links.toml"))


def _suggestion(links: ClientLinks, system: str, source_id: str, client_id: str) -> Suggestion:
    for s in links.suggestions:
        if (s.system, s.source_id, s.client_id) == (system, source_id, client_id):
            return s
    if any((s.system, s.source_id, s.client_id) == (system, source_id, client_id) for s, _ in links.rejected):
        raise LinkRefused(f"the suggestion {system} {source_id} -> {client_id} was rejected; see: msp-hub clients")
    raise LinkRefused(f"no suggestion links {system} client {source_id} to {client_id} now; see: msp-hub clients")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def accept_link(hub, system: str, source_id: str, client_id: str, who: str, why: str = "") -> str:
    """Write the suggested link ``system`` ``source_id`` -> ``client_id`` to ``mappings/links.toml``
    (the entry is added, or the client's table gets the line); the file is read back and restored
    if the mappings no longer load. Returns what was written and where."""
    import tomllib
    from hub.mappings import load_mappings
    links = client_links(hub)
    s = _suggestion(links, system, source_id, client_id)
    refusal = links.where(s)
    if refusal:
        raise LinkRefused(refusal)
    path = Path(links.links_file)
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        tables = (tomllib.loads(before).get("clients") or {}) if before else {}
    except tomllib.TOMLDecodeError as exc:
        raise LinkRefused(f"{path}: {exc}; fix the file, then accept again") from None
    line = f'{_toml_key(system)} = {json.dumps(source_id)}'
    note = f"# {system} {s.name!r} (id {source_id}) linked to {client_id}: suggested at confidence " \
           f"{s.confidence:.2f}, accepted by {who}" + (f": {' '.join(why.split())}" if why.strip() else "")
    if client_id in tables:
        if system in tables[client_id]:
            raise LinkRefused(f"{path}: [clients.{client_id}] already links {system} "
                              f"{tables[client_id][system]!r}; edit the file by hand")
        header = re.search(rf"^\[clients\.{re.escape(_toml_key(client_id))}\][^\n]*\n", before, re.M)
        if header is None:
            raise LinkRefused(f"{path}: client {client_id} is not written as a [clients.{client_id}] table; "
                              f"add {line} to it by hand")
        after = before[:header.end()] + note + "\n" + line + "\n" + before[header.end():]
    else:
        client = links.registry.clients[client_id]
        known = {sys: sid for sys, sid in sorted(client.links.items())}
        body = "".join(f"{_toml_key(k)} = {json.dumps(v)}\n" for k, v in known.items())
        after = (before.rstrip("\n") + "\n\n" if before.strip() else "") + \
            f"{note}\n[clients.{_toml_key(client_id)}]\nname = {json.dumps(client.name)}\n{body}{line}\n"
    path.write_text(after, encoding="utf-8")
    mappings = load_mappings(Path(hub.config.mappings))
    problem = mappings.file_errors.get(str(path)) or mappings.contract_errors.get(client_id)
    if problem:
        path.write_text(before, encoding="utf-8")
        raise LinkRefused(f"the link was not written: {problem}")
    return f"linked {system} {s.name!r} (id {source_id}) to {client_id} in {path}; the next sync bills it so"


def reject_link(hub, system: str, source_id: str, client_id: str, who: str, why: str = "") -> str:
    """Remember that ``system`` ``source_id`` is not ``client_id``: recorded in the store (who,
    when, why); the suggestion is not made again. Returns what was recorded."""
    links = client_links(hub)
    s = _suggestion(links, system, source_id, client_id)
    hub.store.record_approval(rejection_target(system, source_id, client_id), who, why)
    return (f"rejected: {system} {s.name!r} (id {source_id}) is not {s.client_name!r} ({client_id}); recorded in "
            f"the store ({hub.store.describe()}), it is not suggested again")
