"""Rebuild from the vendors what the hub sent, after its store was lost or restored from a backup.

The vendors remember what the hub sent: Stripe keeps the hub's client id on each customer and the
action key on each invoice. ``recover`` reads them back through each connector's
``sent_objects()`` and records, in the store, the links and the sent invoices it does not know:
each invoice with the ledger and snapshot its plan has today (what it bills, so that nothing is
billed twice), and a comparison of the total Stripe holds with the total the data gives now.
ConnectWise tickets need no recovery: the connector looks each one up by its reference before it
creates one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from hub.records import Action
from hub.store import SENT

if TYPE_CHECKING:  # pragma: no cover
    from hub.engine import Hub

log = structlog.get_logger()


@dataclass
class Recovered:
    """What ``recover`` found at the vendors and what it recorded (``dry_run``: would record)."""

    links: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    known: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"links": self.links, "actions": self.actions, "already_known": self.known, "notes": self.notes}


def recover(hub: "Hub", *, dry_run: bool = False) -> Recovered:
    """Record the links and sent invoices the vendors hold and the store does not."""
    from hub.engine import RunReport
    from hub.periods import parse_period
    from hub.planner import build_context, plan_invoice

    out = Recovered()
    run_id = None
    contexts: dict[str, Any] = {}
    for name, connector in sorted(hub.connectors.items()):
        lister = getattr(connector, "sent_objects", None)
        if lister is None:
            continue
        for obj in lister():
            if obj.get("object") == "customer":
                known = hub.store.get_link(obj["client_id"], name)
                if known == obj["customer_id"]:
                    out.known += 1
                    continue
                entry = {"connector": name, "client_id": obj["client_id"], "external_id": obj["customer_id"],
                         "replaces": known}
                if known:
                    out.notes.append(f"client {obj['client_id']}: the store links {name} {known}, {name} also has "
                                     f"{obj['customer_id']} for it; the store's link is kept")
                    continue
                out.links.append(entry)
                if not dry_run:
                    hub.store.set_link(obj["client_id"], name, obj["customer_id"])
                continue
            if obj.get("object") != "invoice":
                continue
            key = obj["action_key"]
            stored = hub.store.get_action(key)
            if stored and stored["status"] == SENT:
                out.known += 1
                continue
            entry = {"connector": name, "key": key, "vendor_id": obj["invoice_id"], "status": obj.get("status"),
                     "total": obj.get("total"), "currency": obj.get("currency"), "client_id": obj.get("client_id")}
            period_name = obj.get("period") or (key.split(":")[2] if key.count(":") >= 2 else None)
            ledger, snapshot, payload = (), None, {"total": obj.get("total"), "currency": obj.get("currency"),
                                                   "recovered": True}
            if key.startswith("invoice:") and period_name:
                period = parse_period(period_name, hub.config.timezone)
                if period_name not in contexts:
                    contexts[period_name] = build_context(hub, RunReport("recover", "plan", hub.clock()), period)
                contract = contexts[period_name].contracts.get(obj.get("client_id") or key.split(":")[1])
                if contract is not None:
                    item = plan_invoice(hub, contract, period, force=True, now=hub.clock())
                    ledger, snapshot, payload = item.ledger, item.snapshot, dict(item.action.payload, recovered=True)
                    entry["total_now"] = item.total
                    if item.total != obj.get("total"):
                        out.notes.append(f"{key}: {name} holds {obj.get('total')} (minor units), the data gives "
                                         f"{item.total} now; what it counts now is recorded as billed")
                else:
                    out.notes.append(f"{key}: no contract for its client now; recorded as sent without its items")
            elif key.startswith("renewal:"):
                out.notes.append(f"{key}: recorded as sent; the block it started is not rebuilt, check the "
                                 f"client's balance")
            out.actions.append(entry)
            if dry_run:
                continue
            if run_id is None:
                run_id, _ = hub.store.start_run("recover")
            action = Action(key, "invoice", name, obj.get("client_id") or "", payload, period_name)
            hub.store.record_action(action, run_id, ledger=ledger, snapshot=snapshot)
            hub.store.mark_sent(key, obj["invoice_id"], f"recovered from {name} ({obj.get('status')})",
                                {"recovered": True, "status": obj.get("status")})
    if run_id is not None:
        hub.store.finish_run(run_id, "ok", {"links": len(out.links), "actions": len(out.actions)}, out.notes)
    log.info("recover.done", links=len(out.links), actions=len(out.actions), known=out.known, dry_run=dry_run)
    return out
