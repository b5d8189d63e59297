"""Which records of which system are the same client: explicit links, then matching names.

A hub client is a contract or link entry of ``mappings/`` or, when a PSA is the client master,
one of its companies. Another system's client (an RMM organization...) is linked to a hub client
by an explicit link, else by the same normalised name (case, accents, punctuation and legal
suffixes ignored). Close but unequal names are only suggested, with a confidence: a client that
is not linked is never billed and always reported.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from hub.records import Client

LEGAL_SUFFIXES = frozenset("""
inc incorporated llc llp ltd limited gmbh mbh ag kg sarl sas sasu sa eurl bv nv plc corp corporation co
company pty pte srl spa oy ab as aps lp pc pllc sl
""".split())
SUGGEST_AT = 0.75


def normalise_name(name: str) -> str:
    """``"Café Dupont & Fils, S.A.R.L."`` -> ``"cafe dupont and fils"``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = text.replace("&", " and ")
    text = re.sub(r"(?<=\b[a-z])\.(?=[a-z]\b)", "", text)        # s.a.r.l -> sarl
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


@dataclass
class HubClient:
    """A client as the hub knows it: its id, name and its id in each system."""

    id: str
    name: str
    links: dict[str, str] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)   # system -> "explicit" | "master" | "name"


@dataclass(frozen=True)
class Suggestion:
    """A possible link that was not made: names close, not equal once normalised."""

    system: str
    source_id: str
    name: str
    client_id: str
    client_name: str
    confidence: float


@dataclass
class Registry:
    """The result of linking: hub clients, suggestions, and what no hub client accounts for."""

    clients: dict[str, HubClient]
    suggestions: list[Suggestion]
    unmapped: list[Client]
    conflicts: list[str]

    def client_for(self, system: str, source_id: str) -> str | None:
        for c in self.clients.values():
            if c.links.get(system) == source_id:
                return c.id
        return None


def master_client_id(system: str, source_id: str) -> str:
    """The hub id of a client that exists only in the client master (e.g. the PSA)."""
    return f"{system}-{source_id}"


def link_clients(explicit: Iterable[HubClient], records: Iterable[Client], *, master: str | None = None) -> Registry:
    """Link every system's clients to hub clients.

    Args:
        explicit: the hub clients named in ``mappings/`` with their explicit links.
        records: every client record pulled from every system.
        master: the system whose every client is a hub client (a PSA), or None.
    Returns:
        a Registry; ``unmapped`` lists the records that no hub client links to.
    """
    clients = {c.id: HubClient(c.id, c.name, dict(c.links), {s: "explicit" for s in c.links}) for c in explicit}
    conflicts: list[str] = []
    taken: dict[tuple[str, str], str] = {}
    for c in clients.values():
        for system, sid in c.links.items():
            if (system, sid) in taken:
                conflicts.append(f"{system} client {sid} is linked to both {taken[(system, sid)]} and {c.id} "
                                 f"in mappings/; keep one link")
            taken[(system, sid)] = c.id
    records = sorted(records, key=lambda r: (r.source != master, r.source, r.source_id))
    names: dict[str, list[str]] = {}
    for c in clients.values():
        names.setdefault(normalise_name(c.name), []).append(c.id)
    unmapped: list[Client] = []
    for r in records:
        if (r.source, r.source_id) in taken:
            owner = clients[taken[(r.source, r.source_id)]]
            if owner.name == owner.id:
                owner.name = r.name
            continue
        key = normalise_name(r.name)
        candidates = [cid for cid in names.get(key, []) if r.source not in clients[cid].links]
        if len(candidates) == 1:
            owner = clients[candidates[0]]
            owner.links[r.source], owner.how[r.source] = r.source_id, "name"
            taken[(r.source, r.source_id)] = owner.id
            continue
        if len(candidates) > 1:
            conflicts.append(f"{r.source} client {r.name!r} (id {r.source_id}) matches several hub clients by name "
                             f"({', '.join(sorted(candidates))}); link it explicitly in mappings/links.toml")
        if r.source == master:
            cid = master_client_id(r.source, r.source_id)
            clients[cid] = HubClient(cid, r.name, {r.source: r.source_id}, {r.source: "master"})
            names.setdefault(key, []).append(cid)
            taken[(r.source, r.source_id)] = cid
            continue
        unmapped.append(r)
    suggestions = []
    for r in unmapped:
        key = normalise_name(r.name)
        best = max(((difflib.SequenceMatcher(None, key, normalise_name(c.name)).ratio(), c) for c in clients.values()
                    if r.source not in c.links), key=lambda t: (t[0], t[1].id), default=None)
        if best and best[0] >= SUGGEST_AT:
            suggestions.append(Suggestion(r.source, r.source_id, r.name, best[1].id, best[1].name, round(best[0], 2)))
    return Registry(clients, suggestions, unmapped, conflicts)


# --- the links as the MSP sees them; accepting or rejecting a suggestion -------------------------
# What ``msp-hub clients`` prints and the console's Clients page shows (one code path for both).
# Accepting a suggestion writes the link to ``mappings/links.toml`` (where explicit links live; the
# daemon reloads the mappings when the file changes). A client whose contract is in
# ``contracts.toml`` keeps its links in its contract: accepting for it is refused with the line to
# write there. Rejecting is recorded in the store (who, when, why, as an approval is: target
# ``link-rejected:<system>:<id>:<client>``) and that suggestion is not made again.

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
