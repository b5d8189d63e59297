"""The console's Clients page: how clients are linked across systems and how each link was made,
the suggested links with their confidence (accept or reject), the unmapped clients, and the
discrepancies of the links (revenue found, conflicts).

What ``msp-hub clients`` shows (``hub.clientlinks.client_links``). Accepting a suggestion writes the
link to ``mappings/links.toml`` (``hub.clientlinks.accept_link``, as ``msp-hub clients --accept``);
rejecting it records in the store who said the names are not the same client, and why
(``hub.clientlinks.reject_link``, as ``msp-hub clients --reject``): it is not suggested again. The page
says both before the click and in the result.
"""

from __future__ import annotations

import flask
import structlog

from hub.console.auth import action, page
from hub.console.views import bp, done, hub_of, render
from hub.clientlinks import LinkRefused, accept_link, client_links, reject_link

log = structlog.get_logger()

LINK_KINDS = ("link_conflict", "contract_conflict", "revenue_found", "client_without_contract", "unknown_company",
              "contract_error")


@bp.get("/clients")
@page
def clients():
    with hub_of() as hub:
        links = client_links(hub)
        counts = hub.store.device_counts()
        store = hub.store.describe()
    reg = links.registry
    rows = []
    for c in sorted(reg.clients.values(), key=lambda c: c.id):
        rows.append({"id": c.id, "name": c.name, "contract": links.contracts.get(c.id),
                     "links": [(s, x, c.how.get(s, "explicit"), counts.get((s, x), 0)) for s, x in sorted(c.links.items())]})
    suggestions = [{"s": s, "refusal": links.where(s)} for s in links.suggestions]
    unmapped = [{"u": u, "devices": counts.get((u.source, u.source_id), 0),
                 "suggested": any((s.system, s.source_id) == (u.source, u.source_id) for s in links.suggestions)}
                for u in reg.unmapped]
    discrepancies = [d for d in links.discrepancies if d.kind in LINK_KINDS]
    return render("clients.html", rows=rows, suggestions=suggestions, rejected=links.rejected, unmapped=unmapped,
                  conflicts=reg.conflicts, discrepancies=discrepancies, links_file=links.links_file, store=store)


@bp.post("/clients/<verb>")
@action
def link(verb: str):
    """Accept or reject one suggestion (``system``, ``source_id``, ``client_id`` in the form)."""
    if verb not in ("accept", "reject"):
        flask.abort(404)
    form = flask.request.form
    system, source_id, client_id = (form.get(k, "") for k in ("system", "source_id", "client_id"))
    why = " ".join(form.get("why", "").split())
    with hub_of() as hub:
        try:
            message = (accept_link if verb == "accept" else reject_link)(
                hub, system, source_id, client_id, who=flask.g.session.approver, why=why)
        except LinkRefused as exc:
            return done("console.clients", str(exc), "error")
        except OSError as exc:   # links.toml not writable: nothing was linked
            return done("console.clients", f"nothing was linked: {exc.filename}: {exc.strerror} (fix: let the "
                                           "daemon's user write mappings/links.toml, or link it there by hand)", "error")
    log.info(f"console.link_{verb}", system=system, source_id=source_id, client=client_id, admin=flask.g.session.name)
    return done("console.clients", message)
