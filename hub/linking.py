"""Which records of which system are the same client: explicit links, then matching names.

A hub client is a contract or link entry of ``mappings/`` or, when a PSA is the client master,
one of its companies. Another system's client (an RMM organization...) is linked to a hub client
by an explicit link, else by the same normalised name (case, accents, punctuation and legal
suffixes ignored). Close but unequal names are only suggested, with a confidence: a client that
is not linked is never billed and always reported.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
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
