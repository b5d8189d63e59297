"""When the hub may send: is every stream that feeds an action complete, recent and believable?

BILLING.md, "When an invoice may be sent": an invoice, a block renewal or an agreement quantity
for a client and period is pushed only when every stream that feeds it has a complete pass that
ended after the period ended (for a forced or current period: a complete pass in this run), and
no pass of it failed since. A full sweep that read far fewer records than the sweep before it is
suspect until a person approves it (``msp-hub approve --stream connector.stream``). Tickets need
their own inputs fresh: the alert streams, and the PSA's companies that route them.

``Gate`` reads the stream passes once per plan; ``hold_reasons`` answers for one action. The
reasons name the stream, its last error or what is missing, and the command that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from hub.mappings import Contract

# Tables whose records decide what a client is billed.
BILLING_TABLES = frozenset({"clients", "devices", "agreements", "additions", "time_entries", "products"})
# Tables whose records decide what ticket the hub opens, notes or closes, and for which company.
TICKET_TABLES = frozenset({"alerts", "alert_events", "tickets", "clients"})


def resync_command(connector: str, stream: str) -> str:
    return f"msp-hub resync --connector {connector} --stream {stream}"


@dataclass(frozen=True)
class StreamRef:
    connector: str
    stream: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.connector}.{self.stream}"


class Gate:
    """The completeness of every configured stream, as the store recorded its passes."""

    def __init__(self, hub: Any, report: Any):
        """``hub``: the engine's Hub (its connectors, config and store); ``report``: the run's report."""
        self.run_id = report.run_id
        self.streams = [StreamRef(name, s.name, s.table) for name, c in sorted(hub.connectors.items())
                        for s in c.streams()]
        self.states = hub.store.stream_states()
        self.max_drop = hub.config.billing_settings.completeness.max_count_drop_percent
        approved = {a["target"] for a in hub.store.approvals() if a["target"].startswith("pass:")}
        self._suspect: dict[tuple[str, str], str | None] = {}
        for ref in self.streams:
            self._suspect[(ref.connector, ref.stream)] = self._judge_sweep(hub, ref, approved)

    def _judge_sweep(self, hub: Any, ref: StreamRef, approved: set[str]) -> str | None:
        """Why the stream's latest complete sweep is suspect, or None (believable or approved)."""
        state = self.states.get((ref.connector, ref.stream))
        if not state or not state["last_sweep"]:
            return None
        sweeps = [p for p in hub.store.stream_passes(ref.connector, ref.stream, limit=200)
                  if p["status"] == "complete" and p["sweep_count"] is not None]
        if len(sweeps) < 2:
            return None
        latest = sweeps[0]
        # The reference is the latest sweep before it that was believable: approved, or not suspect.
        for before in sweeps[1:]:
            if f"pass:{before['id']}" in approved or not _dropped(before, sweeps, self.max_drop):
                break
        else:
            before = sweeps[-1]
        if f"pass:{latest['id']}" in approved:
            return None
        old, new = before["sweep_count"], latest["sweep_count"]
        if old and (old - new) * 100 > old * self.max_drop:
            share = (old - new) * 100 // old
            return (f"stream {ref.name} is suspect: its last full sweep (run {latest['run_id']}) read {new} records, "
                    f"{share}% fewer than the {old} of the sweep before (limit {self.max_drop}%); check the vendor, "
                    f"then let it through with: msp-hub approve --stream {ref.name}")
        return None

    def problems(self, refs: Iterable[StreamRef], *, after: datetime | None, this_run: bool) -> list[str]:
        """Why these streams cannot be trusted: never complete, failed since, too old, suspect.

        ``after``: the moment their last complete pass must have ended after (a period's end).
        ``this_run``: a complete pass in this run is required instead (a forced or current period).
        """
        out = []
        for ref in refs:
            state = self.states.get((ref.connector, ref.stream)) or {}
            complete, failed = state.get("last_complete"), state.get("last_failed")
            fix = resync_command(ref.connector, ref.stream)
            if failed and failed["status"] == "failed" and (complete is None or failed["id"] > complete["id"]):
                out.append(f"stream {ref.name} failed at {failed['finished_at'][:19]} (run {failed['run_id']}): "
                           f"{failed['error']}; fix the cause, then run: {fix}")
            elif complete is None:
                out.append(f"stream {ref.name} has never been read completely; run: {fix}")
            elif this_run and complete["run_id"] != self.run_id:
                out.append(f"stream {ref.name} was not read completely in this run (last complete pass "
                           f"{complete['finished_at'][:19]}); a forced or current period needs fresh data: run a sync")
            elif after is not None and datetime.fromisoformat(complete["finished_at"]) <= after:
                out.append(f"stream {ref.name} was last read completely at {complete['finished_at'][:19]}, before "
                           f"{after.isoformat()[:19]}; run: {fix}")
            suspect = self._suspect.get((ref.connector, ref.stream))
            if suspect:
                out.append(suspect)
        return out

    def billing_streams(self, contract: Contract) -> list[StreamRef]:
        """The streams a client's invoice, renewal and quantities depend on.

        Every connector's clients (they decide how clients are linked), and the client's systems'
        devices (when its contract bills devices), agreements, additions, time and products.
        """
        out = []
        for ref in self.streams:
            if ref.table not in BILLING_TABLES:
                continue
            if ref.table == "clients" or (ref.connector in contract.links
                                          and not (ref.table == "devices" and not contract.tier)):
                out.append(ref)
        return out

    def streams_of(self, tables: Iterable[str]) -> list[StreamRef]:
        """The configured streams that fill any of ``tables`` (what a report reads)."""
        wanted = set(tables)
        return [ref for ref in self.streams if ref.table in wanted]

    def ticket_streams(self) -> list[StreamRef]:
        return [ref for ref in self.streams if ref.table in TICKET_TABLES]

    def ticket_problems(self) -> list[str]:
        """Tickets may be sent when their inputs' last passes did not fail (no age requirement:
        alerts are read every minute, companies less often)."""
        return self.problems(self.ticket_streams(), after=None, this_run=False)


def _dropped(p: dict, sweeps: list[dict], max_drop) -> bool:
    """Whether sweep ``p`` read more than ``max_drop`` % fewer records than the sweep before it."""
    i = next(i for i, s in enumerate(sweeps) if s["id"] == p["id"])
    if i + 1 >= len(sweeps):
        return False
    old = sweeps[i + 1]["sweep_count"]
    return bool(old) and (old - p["sweep_count"]) * 100 > old * max_drop
