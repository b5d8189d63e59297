"""``assert_plugin_conforms``: the checks every connector must pass against its simulator."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from hub.engine import Hub, RunReport, pull
from hub.store import PASS_COMPLETE, PASS_FAILED, RECORD_TABLES

# A fault injected "for good": more answers than any retry policy tries (hub.http: 5 attempts).
PERSISTENT = 50


@dataclass
class ConformanceReport:
    """What ``assert_plugin_conforms`` checked (``passed``) and what it could not try, and why
    (``not_run``: the simulator offers no way to make that fault). Every failed check raised."""

    connector: str
    passed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)


def _timestamps(cursor, skip: frozenset[str] = frozenset()) -> list[datetime]:
    """The hub's-clock timestamps of a cursor (``skip``: keys on the vendor's clock)."""
    out = []
    for key, value in (cursor or {}).items():
        if key in skip:
            continue
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            out.append(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    return out


def _snapshot(hub: Hub, tables: Iterable[str]) -> dict[str, list[dict]]:
    return {t: hub.store.rows(t) for t in tables}


def _records(hub: Hub, table: str, source: str) -> dict[str, tuple]:
    """The records a source stored in ``table``, as their fields only (no hub bookkeeping)."""
    names = [f.name for f in fields(RECORD_TABLES[table])]
    return {r["source_id"]: tuple(r.get(n) for n in names) for r in hub.store.rows(table) if r["source"] == source}


class _Wrapped:
    """The connector seen through ``transform(stream) -> iter_pages`` (its pushes unchanged)."""

    def __init__(self, connector, transform):
        self._connector, self._transform = connector, transform
        self.name, self.action_kinds = connector.name, connector.action_kinds

    def __getattr__(self, name):
        return getattr(self._connector, name)

    def streams(self):
        from hub.connectors import Stream
        return [Stream(s.connector, s.name, s.table, self._transform(s)) for s in self._connector.streams()]

    def push(self, action, context):
        return self._connector.push(action, context)

    def close(self) -> None:   # the caller owns the connector
        pass


def _clear(simulator) -> None:
    clear = getattr(simulator, "clear_faults", None)
    if callable(clear):
        clear()
    elif isinstance(getattr(simulator, "_faults", None), list):
        simulator._faults.clear()
    else:
        raise AssertionError(f"{type(simulator).__name__} has no clear_faults(): a persistent fault cannot be "
                             "lifted (fix: derive the simulator from hub.testing.Simulator or add clear_faults())")


def _requests(simulator) -> int | None:
    count = getattr(simulator, "requests", None)
    return count if isinstance(count, int) else None


def _run(hub: Hub, run_id: str, **kwargs) -> RunReport:
    report = RunReport(run_id, "sync", datetime.now(timezone.utc))
    pull(hub, report, **kwargs)
    return report


def assert_plugin_conforms(connector, simulator, *, actions: Iterable[Any] = ()) -> ConformanceReport:
    """Check that a connector behaves as the engine expects; raise AssertionError naming the rule.

    Against ``simulator`` (a ``hub.testing.Simulator`` or any object with ``fail_next(status,
    times=, retry_after=)``; ``timeout_next``, ``garbage_next``, ``clear_faults`` and
    ``add_unmappable`` are used when offered), it checks:

    * records: canonical types (``hub.records``) of the stream's table, ``source`` the connector's
      name, unique non-empty ``source_id``, aware UTC datetimes; every stream pulls something;
      a page ending a full sweep gives the records the sweep read as ``sweep_count``;
    * cursors: never past the run's start (keys in ``vendor_clock_keys`` follow the vendor's clock
      and are left alone); a second sync over unchanged data changes nothing;
    * transient faults survived (retried by the policy): a 429, a 503, and when offered a timeout
      and a malformed (truncated JSON) page;
    * lasting faults fail only the stream, recorded as a failed pass, records and cursor unchanged:
      a 401 (a ``CredentialsError`` naming 401), a 503 past the retries, a timeout past the
      retries, a malformed page past the retries;
    * an exception that is not a hub error, raised by a stream, fails that stream only;
    * a failure in the middle of a pass (after its first page is stored) fails the pass, and the
      next sync resumes from the saved cursor to exactly the records of an uninterrupted sync
      (a cursor never passes unread data);
    * a record that fails mapping (``simulator.add_unmappable(table) -> vendor id``) is set aside
      and reported by its id, the other records stored and the pass complete;
    * each of ``actions`` pushes idempotently: an answer lost after the vendor acted (when the
      simulator's ``fail_next`` takes ``after_apply``), then the engine's retry of the same action
      (``attempts`` 1), make one vendor object (the same ``vendor_id``; one effect when the
      simulator counts ``effects``).

    Build the connector with a retry policy that does not sleep
    (``retrying=lambda: retry_policy(sleep=lambda s: None)``) or the lasting faults wait their backoff.

    Args:
        connector: a ``hub.connectors.Connector`` whose client talks to ``simulator``.
        simulator: the vendor simulator.
        actions: ``hub.records.Action`` objects the connector can push (none: pushes unchecked).
    Returns:
        a ``ConformanceReport`` listing the checks passed and those the simulator could not run.
    """
    from hub.testing import ConnectorPlugin, MemoryPushContext, make_hub
    out = ConformanceReport(connector.name)
    vendor_keys = frozenset(getattr(connector, "vendor_clock_keys", ()))
    streams = connector.streams()
    assert streams or actions, f"connector {connector.name!r} has no stream to pull and no action was given"
    tables = {s.table for s in streams}

    # --- records and cursors, read directly -----------------------------------------------------
    for stream in streams:
        cls = RECORD_TABLES.get(stream.table)
        assert cls is not None, (f"stream {stream.name!r} writes to unknown table {stream.table!r} "
                                 f"(fix: use one of {', '.join(sorted(RECORD_TABLES))})")
        seen: set[tuple[str, str]] = set()
        started = datetime.now(timezone.utc)
        read = 0
        for page in stream.iter_pages(None, started):
            read += len(page.records) + len(page.rejected)
            if page.sweep_count is not None:
                assert page.sweep_count == read, (f"{stream.name}: the page ending the sweep says it read "
                                                  f"{page.sweep_count} records, the pass read {read} (rejected ones "
                                                  "count too): a short sweep would go unnoticed")
            for record in page.records:
                assert isinstance(record, cls), f"{stream.name}: {record!r} is not a {cls.__name__}"
                assert record.source == connector.name, f"{stream.name}: source {record.source!r} != {connector.name!r}"
                assert isinstance(record.source_id, str) and record.source_id, f"{stream.name}: source_id must be non-empty text"
                key = (record.source, record.source_id)
                assert key not in seen, f"{stream.name}: duplicate key {key}"
                seen.add(key)
                for name in (f.name for f in fields(record) if "datetime" in str(f.type)):
                    value = getattr(record, name, None)
                    assert value is None or (isinstance(value, datetime) and value.utcoffset() == timedelta(0)), \
                        f"{stream.name}: {name} must be an aware UTC datetime, got {value!r}"
            for moment in _timestamps(page.cursor, vendor_keys):
                assert moment <= started, f"{stream.name}: cursor {page.cursor} passes the run start {started}"
        assert seen, f"stream {stream.name!r} pulled nothing from the simulator"
    if streams:
        out.passed.append("records are canonical, keyed and UTC; cursors stay before the run start")

    hub = make_hub(ConnectorPlugin(_Wrapped(connector, lambda s: s.iter_pages)))
    if streams:
        first = _run(hub, "conformance-1")
        assert not first.errors, f"first sync failed: {first.errors}"
        for stream in streams:
            for moment in _timestamps(hub.store.get_cursor(connector.name, stream.name), vendor_keys):
                assert moment <= first.started_at, f"{stream.name}: saved cursor passes the run start"
        before = _snapshot(hub, tables)
        second = _run(hub, "conformance-2")
        assert not second.errors, f"second sync failed: {second.errors}"
        assert _snapshot(hub, tables) == before, "a second sync over unchanged data changed stored records"
        out.passed.append("a second sync changes nothing")
        reference = {t: _records(hub, t, connector.name) for t in tables}

        # --- transient faults: retried, nothing changes ------------------------------------------
        transient = [("a 429", lambda: simulator.fail_next(429, times=1, retry_after=0)),
                     ("a 503", lambda: simulator.fail_next(503, times=1, retry_after=0))]
        for what, method in (("a timeout", "timeout_next"), ("a malformed page", "garbage_next")):
            if callable(getattr(simulator, method, None)):
                transient.append((what, lambda m=method: getattr(simulator, m)(times=1)))
            else:
                out.not_run.append(f"{what} (the simulator has no {method}())")
        for what, inject in transient:
            inject()
            report = _run(hub, f"conformance-{what}")
            _clear(simulator)
            assert not report.errors, f"a sync did not survive {what} (it must be retried): {report.errors}"
            assert _snapshot(hub, tables) == before, f"records changed after {what} was survived"
            out.passed.append(f"{what} is retried and survived")

        # --- lasting faults: the stream's pass fails, nothing else moves ------------------------
        lasting = [("a 401", "401", lambda: simulator.fail_next(401, times=PERSISTENT)),
                   ("a 503 past the retries", "503",
                    lambda: simulator.fail_next(503, times=PERSISTENT, retry_after=0))]
        if callable(getattr(simulator, "timeout_next", None)):
            lasting.append(("a timeout past the retries", "", lambda: simulator.timeout_next(times=PERSISTENT)))
        if callable(getattr(simulator, "garbage_next", None)):
            lasting.append(("a malformed page past the retries", "",
                            lambda: simulator.garbage_next(times=PERSISTENT)))
        for what, status, inject in lasting:
            for stream in streams:
                key = f"{connector.name}.{stream.name}"
                cursor = hub.store.get_cursor(connector.name, stream.name)
                asked = _requests(simulator)
                inject()
                try:
                    report = _run(hub, f"conformance-{what}-{stream.name}", streams=[stream.name])
                finally:
                    _clear(simulator)
                state = report.passes.get(key, {})
                if asked is not None and _requests(simulator) == asked and state.get("status") == PASS_COMPLETE:
                    continue   # the pass had nothing to ask the vendor (e.g. no ticket to follow)
                assert state.get("status") == PASS_FAILED, \
                    f"{key}: {what} must fail the stream's pass, its pass is {state.get('status')!r}"
                assert state.get("error") and status in state["error"], \
                    f"{key}: {what}: the pass's error must name it, got {state.get('error')!r}"
                recorded = hub.store.stream_passes(connector.name, stream.name, limit=1)
                assert recorded and recorded[0]["status"] == PASS_FAILED, \
                    f"{key}: {what}: the store must record the pass as failed, got {recorded[:1]}"
                assert hub.store.get_cursor(connector.name, stream.name) == cursor, \
                    f"{key}: {what} moved the saved cursor"
                assert _snapshot(hub, tables) == before, f"{key}: {what} changed stored records"
            out.passed.append(f"{what} fails only the stream's pass, recorded as failed")

        # --- an exception that is not a hub error ------------------------------------------------
        victim = streams[0].name

        def crashing(stream):
            if stream.name != victim:
                return stream.iter_pages

            def iter_pages(cursor, started):
                raise RuntimeError("a bug in the plugin")
                yield  # noqa: unreachable - a generator, as iter_pages is
            return iter_pages
        crashed_hub = make_hub(ConnectorPlugin(_Wrapped(connector, crashing)))
        report = _run(crashed_hub, "conformance-crash")
        for stream in streams:
            status = report.passes[f"{connector.name}.{stream.name}"]["status"]
            expected = PASS_FAILED if stream.name == victim else PASS_COMPLETE
            assert status == expected, (f"a RuntimeError raised by stream {victim!r}: stream {stream.name!r} "
                                        f"ended {status!r}, expected {expected!r}")
        assert any("RuntimeError: a bug in the plugin" in e for e in report.errors), report.errors
        crashed_hub.close()
        out.passed.append("an exception that is not a hub error fails only its stream")

        # --- a failure in the middle of a pass, then a resumed sync -----------------------------
        for stream in streams:
            armed = [True]   # the first pass only

            def midway(s, target=stream.name, armed=armed):
                if s.name != target:
                    return s.iter_pages

                def iter_pages(cursor, started):
                    for n, page in enumerate(s.iter_pages(cursor, started)):
                        yield page
                        if n == 0 and armed[0]:   # the first page is stored: the vendor fails from now on
                            armed[0] = False
                            simulator.fail_next(503, times=PERSISTENT, retry_after=0)
                return iter_pages
            fresh = make_hub(ConnectorPlugin(_Wrapped(connector, midway)))
            try:
                broken = _run(fresh, f"conformance-midway-{stream.name}", streams=[stream.name])
            finally:
                _clear(simulator)
            status = broken.passes[f"{connector.name}.{stream.name}"]["status"]
            resumed = _run(fresh, f"conformance-resumed-{stream.name}", streams=[stream.name])
            assert not resumed.errors, f"{stream.name}: the sync after a failure mid-pass failed: {resumed.errors}"
            got = _records(fresh, stream.table, connector.name)
            want = {k: v for k, v in reference[stream.table].items()} if len(
                [s for s in streams if s.table == stream.table]) == 1 else None
            if want is not None:
                assert got == want, (f"{stream.name}: after a failure mid-pass ({status}) and a resumed sync, "
                                     f"{len(set(want) - set(got))} records are missing and {len(set(got) - set(want))} "
                                     f"extra: the saved cursor passed unread data")
            fresh.close()
        out.passed.append("a pass failed midway resumes from its cursor to the same records")

        # --- a record that cannot be mapped -----------------------------------------------------
        add = getattr(simulator, "add_unmappable", None)
        if callable(add):
            for stream in streams:
                rid = add(stream.table)
                if rid is None:
                    continue
                fresh = make_hub(ConnectorPlugin(_Wrapped(connector, lambda s: s.iter_pages)))
                report = _run(fresh, f"conformance-unmappable-{stream.name}", streams=[stream.name])
                key = f"{connector.name}.{stream.name}"
                assert report.passes[key]["status"] == PASS_COMPLETE, \
                    f"{key}: one record that cannot be mapped must not fail the pass: {report.errors}"
                assert any(f"record {rid} set aside" in e for e in report.errors), \
                    f"{key}: the unmappable record {rid} is not reported as set aside: {report.errors}"
                assert str(rid) not in _records(fresh, stream.table, connector.name), \
                    f"{key}: the unmappable record {rid} was stored"
                assert set(_records(fresh, stream.table, connector.name)) >= set(reference[stream.table]), \
                    f"{key}: records next to the unmappable one were not stored"
                fresh.close()
            out.passed.append("a record that fails mapping is set aside and reported")
        else:
            out.not_run.append("a record that fails mapping (the simulator has no add_unmappable(table))")
    hub.close()

    # --- idempotent pushes ------------------------------------------------------------------------
    for action in actions:
        effects = getattr(simulator, "effects", None)
        counted = sum(effects.values()) if effects is not None else None
        context = MemoryPushContext()
        lost = "after_apply" in inspect.signature(simulator.fail_next).parameters
        if lost:
            simulator.fail_next(503, times=1, retry_after=0, after_apply=True)
        try:
            first = connector.push(action, context)
        finally:
            _clear(simulator)
        again = connector.push(action, context.next_attempt())
        assert again.vendor_id == first.vendor_id, (f"{action.kind} {action.key}: pushed again after a lost answer, "
                                                    f"it made {again.vendor_id!r} besides {first.vendor_id!r}")
        if counted is not None:
            made = sum(simulator.effects.values()) - counted
            assert made == 1, f"{action.kind} {action.key}: a push, its lost answer and a retry made {made} effects, not 1"
        out.passed.append(f"{action.kind} {action.key} is pushed once"
                          + (" (an answer lost, then retried)" if lost else " (retried)"))
    return out
