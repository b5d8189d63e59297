"""Correcting a sent invoice: a void or a credit note, optionally a re-issue, with an audit trail.

A sent invoice is final at the vendor; it is corrected by another action of the outbox, never by
rewriting it:

- ``invoice_void`` (key ``void:<invoice key>``): the vendor voids the invoice (an open, unpaid
  one; the connector checks its status before anything: paid is refused, naming a credit note
  instead; already void is done, nothing sent);
- ``credit_note`` (key ``credit:<invoice key>:<n>``): a credit note of some lines, whole, or of an
  amount; what all the credit notes of an invoice credit never passes its total.

Each is recorded in the outbox with a row of ``corrections`` (who asked, why, when, what) in one
transaction before anything is sent, and pushed like every action: by the next sync, or at once
with ``push_corrections`` (``msp-hub invoice ... --now``). With ``reissue``, once the void or the
credit note is confirmed sent, the plan bills the period again under the successor key
``invoice:<client>:<period>:r<n>``: everything for a void, the credited lines for a credit note;
the ledger frees what the corrected invoice billed there (``Store.live_billed_item_ids``), so
the re-issue bills it once and a later invoice never bills it again. A voided period never gets
a late-change delta on a later invoice (``planner.live_snapshots``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from hub.errors import HubError
from hub.money import format_minor
from hub.plugins import broken_plugins
from hub.records import Action
from hub.store import CANCELLED, FAILED, HELD, SENT, system_user

if TYPE_CHECKING:  # pragma: no cover
    from hub.engine import Hub, RunReport

VOID, CREDIT = "invoice_void", "credit_note"
KINDS = (VOID, CREDIT)


class CorrectionError(HubError):
    """A correction refused before anything is recorded or sent; the message names the key and the fix."""


def void_key(invoice_key: str) -> str:
    return f"void:{invoice_key}"


def credit_key(invoice_key: str, n: int) -> str:
    return f"credit:{invoice_key}:{n}"


def base_invoice_key(key: str) -> str:
    """``invoice:<client>:<period>`` of an invoice key or of one of its successors (``...:r<n>``)."""
    parts = key.split(":")
    if len(parts) > 3 and parts[-1].startswith("r") and parts[-1][1:].isdigit():
        return ":".join(parts[:-1])
    return key


def sent_invoice(hub: "Hub", key: str) -> dict:
    """The sent invoice action ``key``, or a CorrectionError saying why it cannot be corrected."""
    row = hub.store.get_action(key)
    if row is None:
        raise CorrectionError(f"no action {key!r} in the outbox; list the sent invoices with: "
                              f"msp-hub actions --status sent")
    if row["kind"] != "invoice":
        raise CorrectionError(f"{key!r} is a {row['kind']} action, not an invoice: only an invoice is voided or "
                              f"credited (give its key, invoice:<client>:<period>)")
    if row["status"] != SENT or not row["vendor_id"]:
        fix = "correct the data and let the next sync send it, or wait until it is sent (msp-hub actions)"
        raise CorrectionError(f"invoice {key!r} is {row['status']}, not sent: nothing at the vendor to correct; {fix}")
    finalized = hub.store.get_action(f"finalize:{key}")
    if row["details"].get("draft") and not (finalized and finalized["status"] == SENT):
        raise CorrectionError(f"invoice {key!r} is a draft waiting for review (vendor id {row['vendor_id']}): "
                              f"nothing was issued to correct; delete the draft at the vendor or let the review "
                              f"finalize it")
    return row


def _live(corrections: list[dict]) -> list[dict]:
    return [c for c in corrections if c["status"] != CANCELLED]


def _invoice_total(row: dict) -> int:
    payload = row["payload"]
    tax = payload.get("tax") or {}
    return int(tax.get("total_with_tax", payload.get("total") or 0))


def credited(hub: "Hub", key: str) -> int:
    """What the live credit notes of invoice ``key`` credit (minor units)."""
    return sum(int(c["amount"] or 0) for c in _live(hub.store.corrections(key)) if c["kind"] == CREDIT)


def _refuse_if_voided(hub: "Hub", key: str) -> None:
    for c in _live(hub.store.corrections(key)):
        if c["kind"] == VOID:
            state = "voided" if c["status"] == SENT else f"being voided ({c['action_key']} is {c['status']})"
            raise CorrectionError(f"invoice {key!r} is already {state} (asked by {c['requested_by']} at "
                                  f"{c['requested_at']}); nothing more to correct on it: see "
                                  f"msp-hub invoice history {key}")


def _successor(hub: "Hub", key: str, row: dict) -> str:
    """The next successor key of the period's invoice: ``invoice:<client>:<period>:r<n>``."""
    for c in _live(hub.store.corrections(key)):
        done = hub.store.get_action(c["reissue_key"]) if c["reissue_key"] else None
        if c["reissue_key"] and (c["kind"] == VOID or done is None or done["status"] != SENT):
            state = "sent" if done and done["status"] == SENT else "not sent yet"
            raise CorrectionError(f"invoice {key!r} has a re-issue under {c['reissue_key']} ({state}, after "
                                  f"{c['action_key']}): let it be sent, then correct {c['reissue_key']} instead "
                                  f"(see msp-hub invoice history {key})")
    taken = {c["reissue_key"] for c in hub.store.corrections(client_id=row["client_id"], period=row["period"])
             if c["reissue_key"]}
    base = base_invoice_key(key)
    n = 1
    while f"{base}:r{n}" in taken or hub.store.get_action(f"{base}:r{n}") is not None:
        n += 1
    return f"{base}:r{n}"


def _check_reason(reason: str | None, key: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise CorrectionError(f"a correction of {key!r} needs --reason: why it is corrected is recorded with who "
                              f"and when")
    return reason


def _connector(hub: "Hub", kind: str, key: str) -> str:
    c = hub.invoice_connector()
    if c is None or kind not in c.action_kinds:
        name = c.name if c else "(none configured)"
        raise CorrectionError(f"the invoice connector {name} cannot push {kind} actions, so {key!r} cannot be "
                              f"corrected by the hub: correct it at the vendor")
    return c.name


def _holds(hub: "Hub", action: Action) -> str | None:
    """Why a correction must wait for a person, as a planned action would: a plugin's veto
    (``veto_action``), or a broken plugin whose hooks cannot be asked. None: it may go."""
    reasons = [str(r) for r in hub.pm.hook.veto_action(action=action) if r]
    broken = broken_plugins(hub.pm)
    if broken:
        reasons.append("held while a plugin is broken (its hooks may change or hold it): "
                       + "; ".join(b.message for b in broken))
    return "; ".join(reasons) + f" (let it go with: msp-hub actions approve {action.key} --why ...)" if reasons else None


def request_void(hub: "Hub", key: str, *, reason: str, by: str | None = None, reissue: bool = False,
                 run_id: str = "correction") -> dict:
    """Record the void of the sent invoice ``key`` (and, with ``reissue``, its re-issue once the
    void is sent); returns the correction row. Nothing is sent here."""
    reason = _check_reason(reason, key)
    row = sent_invoice(hub, key)
    existing = hub.store.get_correction(void_key(key))
    _refuse_if_voided(hub, key)
    if credited(hub, key):
        done = format_minor(credited(hub, key), str(row["payload"].get("currency") or ""))
        raise CorrectionError(f"invoice {key!r} already has credit notes ({done} "
                              f"credited): it is not voided; credit what is left instead: msp-hub invoice credit {key} "
                              f"--amount ... --reason ...")
    who = by or system_user()
    successor = _successor(hub, key, row) if reissue else None
    connector = _connector(hub, VOID, key)
    action = Action(void_key(key), VOID, connector, row["client_id"],
                    {"invoice_key": key, "invoice_id": row["vendor_id"], "reason": reason, "requested_by": who},
                    row["period"])
    held = _holds(hub, action)
    if existing is not None:        # cancelled before: asked again, it goes back in the outbox
        hub.store.retry_action(action.key)
        hub.store.record_approval(action.key, who, f"asked again: {reason}")
        if held:
            hub.store.mark_failed(action.key, held, status=HELD)
        return hub.store.get_correction(action.key)
    return hub.store.record_correction(action, run_id, held=held, correction={
        "invoice_key": key, "kind": VOID, "client_id": row["client_id"], "period": row["period"],
        "requested_by": who, "reason": reason, "amount": _invoice_total(row),
        "currency": row["payload"].get("currency"), "lines": None, "reissue_key": successor,
        "frees": "all" if reissue else None})


def request_credit(hub: "Hub", key: str, *, reason: str, lines: Iterable[str] = (), amount: int | None = None,
                   by: str | None = None, reissue: bool = False, run_id: str = "correction") -> dict:
    """Record a credit note on the sent invoice ``key``: ``lines`` (codes, credited whole) or an
    ``amount`` (minor units); with ``reissue``, the credited lines are billed again under the
    successor key once the credit note is sent. Returns the correction row."""
    reason = _check_reason(reason, key)
    codes = list(dict.fromkeys(lines))
    if bool(codes) == (amount is not None):
        raise CorrectionError(f"credit of {key!r}: give either --lines CODE ... or --amount X")
    row = sent_invoice(hub, key)
    for c in hub.store.corrections(key):
        if c["kind"] == VOID and c["status"] == FAILED:
            # The vendor refused the void (a paid invoice): the credit note replaces it.
            hub.store.cancel_action(c["action_key"])
    _refuse_if_voided(hub, key)
    payload = row["payload"]
    currency = str(payload.get("currency") or "")
    total, already = _invoice_total(row), credited(hub, key)
    credit_lines = None
    if codes:
        by_code = {str(line["code"]): line for line in payload.get("lines") or []}
        unknown = [c for c in codes if c not in by_code]
        if unknown:
            raise CorrectionError(f"credit of {key!r}: no line {', '.join(map(repr, unknown))} on the invoice; "
                                  f"its lines are {', '.join(sorted(by_code)) or '(none)'}: see "
                                  f"msp-hub invoice history {key}")
        taken = {line["code"] for c in _live(hub.store.corrections(key)) if c["kind"] == CREDIT
                 for line in c["lines"] or []}
        twice = [c for c in codes if c in taken]
        if twice:
            raise CorrectionError(f"credit of {key!r}: line(s) {', '.join(map(repr, twice))} were already credited; "
                                  f"see msp-hub invoice history {key}")
        negative = [c for c in codes if int(by_code[c]["amount"]) <= 0]
        if negative:
            raise CorrectionError(f"credit of {key!r}: line(s) {', '.join(map(repr, negative))} credit the client "
                                  f"already (amount not above 0); a credit note credits charged lines only")
        credit_lines = [{"code": c, "description": by_code[c]["description"], "amount": int(by_code[c]["amount"]),
                         **({"tax": by_code[c]["tax"]} if by_code[c].get("tax") else {})} for c in codes]
        amount = sum(_with_tax(line) for line in credit_lines)
    elif reissue:
        raise CorrectionError(f"credit of {key!r}: an amount credits no line, so there is nothing to re-issue; "
                              f"credit the wrong lines with --lines CODE ... --reissue")
    if amount is None or amount <= 0:
        raise CorrectionError(f"credit of {key!r}: the amount must be above 0 (got {amount})")
    if already + amount > total:
        raise CorrectionError(f"credit of {key!r}: {format_minor(amount, currency)} would credit "
                              f"{format_minor(already + amount, currency)} in all, above the invoice's "
                              f"{format_minor(total, currency)} ({format_minor(already, currency)} "
                              f"credited already, {format_minor(total - already, currency)} left): credit at most "
                              f"what is left")
    who = by or system_user()
    successor = _successor(hub, key, row) if reissue else None
    connector = _connector(hub, CREDIT, key)
    n = 1 + sum(1 for c in hub.store.corrections(key) if c["kind"] == CREDIT)
    while hub.store.get_action(credit_key(key, n)) is not None:
        n += 1
    body = {"invoice_key": key, "invoice_id": row["vendor_id"], "reason": reason, "requested_by": who,
            "currency": currency}
    body.update({"lines": credit_lines} if credit_lines else {"amount": amount})
    action = Action(credit_key(key, n), CREDIT, connector, row["client_id"], body, row["period"])
    frees = None
    if reissue:
        frees = _items_of(hub, row, codes)
    return hub.store.record_correction(action, run_id, held=_holds(hub, action), correction={
        "invoice_key": key, "kind": CREDIT, "client_id": row["client_id"], "period": row["period"],
        "requested_by": who, "reason": reason, "amount": amount, "currency": currency,
        "lines": credit_lines, "reissue_key": successor, "frees": frees})


def _with_tax(line: dict) -> int:
    """A line's amount with its tax (rounded half up, as the invoice computed it)."""
    from decimal import ROUND_HALF_UP, Decimal
    tax = line.get("tax")
    if not tax:
        return int(line["amount"])
    t = (Decimal(int(line["amount"])) * Decimal(str(tax["percent"])) / 100).quantize(Decimal(1), ROUND_HALF_UP)
    return int(line["amount"]) + int(t)


def _items_of(hub: "Hub", row: dict, codes: list[str]) -> list[list[str]]:
    """The ledger items (kind, id) the invoice's lines ``codes`` billed (from its snapshot)."""
    from hub.planner import LEDGER_PREFIXES
    # The period's snapshot is the latest invoice's (a credit note's re-issue keeps the lines it
    # did not bill, as the invoice it corrects recorded them).
    lines = hub.store.snapshot_lines(row["key"]) or hub.store.get_snapshot(row["client_id"], row["period"]) or []
    return [[code.split(":", 1)[0], str(item["id"])] for line in lines
            if (code := str(line.get("code"))) in codes and code.startswith(LEDGER_PREFIXES)
            for item in line.get("items") or [] if "id" in item]


def history(hub: "Hub", key: str) -> dict:
    """An action and every correction of it (and of its successors), oldest first: only an
    invoice is ever corrected, so any other action has none."""
    row = hub.store.get_action(key)
    if row is None:
        raise CorrectionError(f"no action {key!r} in the outbox; list the invoices with: msp-hub actions")
    chain, seen, out = [key], set(), []
    while chain:
        k = chain.pop(0)
        if k in seen:
            continue
        seen.add(k)
        for c in hub.store.corrections(k):
            out.append(c)
            if c["reissue_key"]:
                chain.append(c["reissue_key"])
    reissues = {k: hub.store.get_action(k) for k in seen if k != key}
    return {"invoice": _brief(row), "corrections": out,
            "reissues": [_brief(r) for k, r in sorted(reissues.items()) if r is not None],
            "credited": credited(hub, key), "total": _invoice_total(row)}


def _brief(row: dict) -> dict:
    return {k: row[k] for k in ("key", "status", "vendor_id", "summary", "sent_at", "client_id", "period")} | \
        {"total": _invoice_total(row), "currency": row["payload"].get("currency")}


def push_corrections(hub: "Hub", client_id: str, kinds: Iterable[str] = KINDS, *, holder: str = "cli") -> "RunReport":
    """Send the client's recorded corrections now (under the run lock), as the next sync would."""
    from hub.engine import LOCK, LockedError, RunReport, lock_holder_of, push
    run_id, started = hub.store.start_run("correction")
    lock_holder = lock_holder_of(hub, holder, run_id)
    taken = hub.store.acquire_lock(LOCK, lock_holder)
    if taken is not None:
        hub.store.finish_run(run_id, "refused", {}, [str(LockedError(taken))])
        raise LockedError(taken)
    report = RunReport(run_id, "correction", started, lock_holder=lock_holder)
    status = "ok"
    try:
        push(hub, report, [], clients=[client_id], kinds=frozenset(kinds))
        status = "failed" if report.failed else "ok"
    finally:
        hub.store.release_lock(LOCK, lock_holder)
        hub.store.finish_run(run_id, status, {"pushed": len(report.pushed), "failed": len(report.failed)},
                             report.errors)
    return report


def correction_json(c: dict) -> dict:
    return {k: c.get(k) for k in ("action_key", "invoice_key", "kind", "client_id", "period", "requested_by",
                                  "reason", "requested_at", "amount", "currency", "lines", "reissue_key",
                                  "status", "vendor_id", "summary", "sent_at", "last_error")}
