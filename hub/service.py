"""The daemon's service: admin settings, scope checks, and runs one at a time (scheduled or triggered).

``Service`` is what the scheduler (``hub.daemon``) and the admin API (``hub.api``) share. Every
run goes through ``engine.sync_once`` with the service's stop event, so a shutdown lets the run
in flight finish its current page and commit. A run needs the store lock "sync" as well: a run
of another process (``msp-hub sync`` or ``resync`` in-process) keeps the daemon's runs out.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import structlog

from hub.config import HubConfig, Secret, load_config
from hub.engine import LOCK, Hub, LockedError, run_status, sync_once
from hub.store import open_store
from hub.errors import ConfigError, HubError, UnavailableError
from hub.logs import configure_logging
from hub.periods import parse_period
from hub.store import Store

log = structlog.get_logger()

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
SCOPE_KEYS = ("connectors", "streams", "clients", "period", "full", "dry_run")
ADMIN_KEYS = ("host", "port", "token_env", "token_file", "session_idle", "session_max")   # the last two: the console's sessions


class ScopeError(HubError):
    """A run's scope is wrong: ``key`` names the scope key, ``fix`` says what to write instead."""

    def __init__(self, message: str, *, key: str, fix: str):
        self.key, self.fix = key, fix
        super().__init__(f"{key}: {message} (fix: {fix})")


@dataclass(frozen=True)
class AdminSettings:
    """``[admin]``: where the admin API listens and the token it wants (None when not set)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: Secret | None = None

    @property
    def url(self) -> str:
        """The address a client on this machine calls (a wildcard listen address means loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def admin_settings(config: HubConfig, *, require_token: bool = False) -> AdminSettings:
    """Read and check ``[admin]``; the token follows the same rules as a connector's secrets."""
    section = config.admin
    for key in section:
        if key not in ADMIN_KEYS:
            raise ConfigError(f"unknown key '{key}'", file=config.file, key=f"admin.{key}",
                              fix=f"use one of {', '.join(ADMIN_KEYS)}")
    host = section.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        raise ConfigError("must be a host name or address", file=config.file, key="admin.host",
                          fix=f'write host = "{DEFAULT_HOST}" (this machine only)')
    port = section.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"must be a port number from 1 to 65535, got {port!r}", file=config.file,
                          key="admin.port", fix=f"write port = {DEFAULT_PORT}")
    token = config.admin_secret(required=require_token)
    if token is not None and len(token.reveal()) < 16:
        raise ConfigError(f"the admin token from {token.origin} is shorter than 16 characters", file=config.file,
                          key="admin.token", fix="generate one with: openssl rand -hex 32")
    return AdminSettings(host=host, port=port, token=token)


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ScopeError(f"must be a list of names, got {value!r}", key=key, fix=f'write {key} = ["name", ...]')
    return tuple(value)


def normalize_scope(scope: dict[str, Any], streams: dict[str, list[str]] | None) -> dict[str, Any]:
    """Check a run's scope against the configured connectors and their streams; return
    ``sync_once`` keyword arguments. Raises ScopeError naming the key and the fix.

    ``streams`` maps each configured connector to its stream names (None: check only the types).
    Client ids are checked by the engine (they come from the mappings and the pulled data).
    """
    if not isinstance(scope, dict):
        raise ScopeError("must be a table of scope keys", key="scope", fix=f"use keys among {', '.join(SCOPE_KEYS)}")
    for key in scope:
        if key not in SCOPE_KEYS:
            raise ScopeError(f"unknown key '{key}'", key=key, fix=f"use one of {', '.join(SCOPE_KEYS)}")
    out: dict[str, Any] = {}
    connectors = _names(scope.get("connectors", ()), "connectors")
    wanted = _names(scope.get("streams", ()), "streams")
    if streams is not None:
        for name in connectors:
            if name not in streams:
                raise ScopeError(f"connector {name!r} is not configured", key="connectors",
                                 fix=f"use one of {', '.join(sorted(streams)) or '(none configured)'}")
        offered = sorted({s for c in (connectors or streams) for s in streams[c]})
        for name in wanted:
            if name not in offered:
                raise ScopeError(f"no {'chosen' if connectors else 'configured'} connector has a stream {name!r}",
                                 key="streams", fix=f"use one of {', '.join(offered) or '(none)'}")
    if connectors:
        out["connectors"] = list(connectors)
    if wanted:
        out["streams"] = list(wanted)
    clients = _names(scope.get("clients", ()), "clients")
    if clients:
        out["clients"] = clients
    period = scope.get("period")
    if period is not None:
        try:
            parse_period(str(period))
        except ValueError as exc:
            raise ScopeError(str(exc), key="period", fix='write period = "2026-10"') from None
        out["period"] = str(period)
    for flag in ("full", "dry_run"):
        value = scope.get(flag, False)
        if not isinstance(value, bool):
            raise ScopeError(f"must be true or false, got {value!r}", key=flag, fix=f"write {flag} = true")
        if value:
            out[flag] = True
    return out


def check_clients(hub: Hub, clients: Iterable[str]) -> None:
    """Refuse client ids unknown to the mappings and the data pulled so far, before a long pull."""
    from hub.engine import RunReport
    from hub.periods import last_ended_period
    from hub.planner import build_context
    report = RunReport("scope", "scope", hub.clock())
    known = build_context(hub, report, last_ended_period(hub.clock(), hub.config.timezone)).registry.clients
    unknown = sorted(set(clients) - set(known))
    if unknown:
        raise ScopeError(f"unknown client(s) {', '.join(unknown)}", key="clients",
                         fix="list the hub's clients with: msp-hub clients")


def mark_abandoned(hub: Hub) -> list[str]:
    """Mark the runs left ``running`` by a process that died as ``abandoned``; return their ids.

    When the run lock is free, no pulling run is alive anywhere, so every pulling run still
    ``running`` is abandoned; otherwise only those whose process is gone from this host."""
    probe = f"daemon:start:{os.getpid()}"
    held = hub.store.acquire_lock(LOCK, probe) is None
    try:
        dead = hub.store.mark_abandoned_runs(lock_held=held)
    finally:
        if held:
            hub.store.release_lock(LOCK, probe)
    if dead:
        log.warning("daemon.runs_abandoned", runs=dead, reason="their process ended before they finished")
    return dead


DEFAULT_KEEP_RUNS = "90d"


def keep_runs(config: HubConfig) -> timedelta:
    """``[schedule] keep_runs``: how long the daemon keeps the runs (and their stream passes)
    before it prunes them; ``"90d"`` by default. A ConfigError names the key and the fix."""
    from hub.config import parse_duration
    value = (config.schedule or {}).get("keep_runs", DEFAULT_KEEP_RUNS)
    try:
        return parse_duration(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a duration", file=config.file, key="schedule.keep_runs",
                          fix=f'write keep_runs = "{DEFAULT_KEEP_RUNS}" (a whole number and a unit: h or d)') from None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


# --- stream health ---------------------------------------------------------------------------------

DEFAULT_MAX_AGE = 26 * 3600      # a stream no job pulls: a daily pull with two hours of slack
SCHEDULE_FACTOR = 3              # a scheduled stream may miss two firings before it is stale
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: Any) -> int:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` (or a number of seconds, or a timedelta) -> seconds;
    ValueError otherwise. Uses ``hub.config.parse_duration`` when the config module offers it."""
    from datetime import timedelta
    from hub import config as config_module
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and hasattr(config_module, "parse_duration"):
        return duration_seconds(config_module.parse_duration(value))
    else:
        m = _DURATION.match(value) if isinstance(value, str) else None
        if not m:
            raise ValueError(f"{value!r} is not a duration")
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return int(seconds)


def human_seconds(seconds: float) -> str:
    """3720 -> "1h2m"; 90 -> "1m30s"; 200000 -> "2d7h"."""
    seconds = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return f"{seconds // size}{unit}" + (f"{rest}{sub}" if rest else "")
    return f"{seconds}s"


def configured_max_ages(config: HubConfig, streams: dict[str, list[str]]) -> dict[str, int]:
    """``[health] max_age = { "ninjaone.devices" = "2h" }``: "connector.stream" -> seconds.

    Read from the typed section when the config has one, else from the raw table; a key that names
    no configured stream, or a value that is not a duration, is a ConfigError naming the key."""
    section = getattr(config, "health", None)
    if section is None:
        raw = getattr(config, "raw", None)
        section = raw.get("health") if isinstance(raw, dict) else None
    if section is None:
        return {}
    table = section.get("max_age") if isinstance(section, dict) else getattr(section, "max_age", None)
    if not table:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("must be a table of stream = duration", file=config.file, key="health.max_age",
                          fix='write max_age = { "ninjaone.devices" = "2h" }')
    known = sorted(f"{c}.{s}" for c, names in streams.items() for s in names)
    out: dict[str, int] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"no configured stream {key!r}", file=config.file, key=f'health.max_age."{key}"',
                              fix=f"use connector.stream, one of {', '.join(known) or '(none configured)'}")
        try:
            out[key] = duration_seconds(value)
        except ValueError as exc:
            raise ConfigError(str(exc), file=config.file, key=f'health.max_age."{key}"',
                              fix='write a duration such as "90m", "2h" or "1d"') from None
    return out


def _job_interval(job, tz: str, now: datetime) -> int | None:
    """A job's interval in seconds: ``every``, or for a cron line the gap between its next two firings."""
    if job.every:
        return int(job.every)
    if not job.cron:
        return None
    from hub.daemon import cron_trigger
    trigger = cron_trigger(job.cron, tz)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    return int((second - first).total_seconds()) if first and second else None


def max_ages(config: HubConfig, streams: dict[str, list[str]],
             now: datetime | None = None) -> dict[str, tuple[int, str]]:
    """Each stream's maximum age (seconds) and where it comes from: ``[health] max_age``, else
    ``SCHEDULE_FACTOR`` times the interval of the most frequent scheduled job that pulls it, else
    ``DEFAULT_MAX_AGE``."""
    from hub.daemon import parse_schedule
    now = now or datetime.now(timezone.utc)
    configured = configured_max_ages(config, streams)
    jobs = parse_schedule(config, streams) if config.schedule else []
    out: dict[str, tuple[int, str]] = {}
    for connector, names in streams.items():
        for stream in names:
            key = f"{connector}.{stream}"
            if key in configured:
                out[key] = (configured[key], f'[health] max_age "{key}"')
                continue
            best: tuple[int, str] | None = None
            for job in jobs:
                scope = job.scope
                if scope.get("connectors") and connector not in scope["connectors"]:
                    continue
                if scope.get("streams") and stream not in scope["streams"]:
                    continue
                interval = _job_interval(job, config.timezone, now)
                if interval and (best is None or interval < best[0]):
                    best = (interval, job.name)
            if best:
                out[key] = (SCHEDULE_FACTOR * best[0], f"{SCHEDULE_FACTOR} x the interval of job {best[1]!r} "
                                                       f"({human_seconds(best[0])})")
            else:
                out[key] = (DEFAULT_MAX_AGE, "no scheduled job pulls it: the default")
    return out


def stream_health(hub: Hub, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each configured stream's last pass, last complete pass, age, maximum age and last error,
    with ``reason`` saying why it is not healthy (None when it is).

    Unhealthy: its last pass failed, it never completed a pass, or its last complete pass is
    older than its maximum age (see ``max_ages``). Ages are measured from the passes' real end
    times, not from the hub's clock."""
    now = now or datetime.now(timezone.utc)
    streams = {name: [s.name for s in c.streams()] for name, c in sorted(hub.connectors.items())}
    limits = max_ages(hub.config, streams, now)
    states = hub.store.stream_states()
    out = []
    for connector, names in streams.items():
        for stream in names:
            key = f"{connector}.{stream}"
            state = states.get((connector, stream)) or {}
            last, complete, failed = state.get("last"), state.get("last_complete"), state.get("last_failed")
            limit, basis = limits[key]
            age = None
            if complete and complete.get("finished_at"):
                age = max(0.0, (now - datetime.fromisoformat(complete["finished_at"])).total_seconds())
            last_error = failed.get("error") if failed else None
            reason = None
            if last and last["status"] == "failed":
                reason = (f"{key}: its last pass failed at {last['finished_at']}: {last.get('error') or 'no message'}"
                          + (f"; last complete pass {human_seconds(age)} ago" if age is not None else ""))
            elif complete is None:
                reason = f"{key} has never pulled successfully" + (f" (last error: {last_error})" if last_error else "")
            elif age is not None and age > limit:
                reason = (f"{key}: its last complete pass ended {human_seconds(age)} ago, more than its maximum age "
                          f"of {human_seconds(limit)} ({basis})" + (f"; last error: {last_error}" if last_error else ""))
            out.append({"connector": connector, "stream": stream, "healthy": reason is None, "reason": reason,
                        "last_pass": last, "last_complete": complete,
                        "last_success": complete.get("finished_at") if complete else None,
                        "age_seconds": round(age, 1) if age is not None else None,
                        "max_age_seconds": limit, "max_age_basis": basis, "last_error": last_error})
    return out


@dataclass(frozen=True)
class _Shared:
    fingerprint: tuple
    config: HubConfig
    pm: Any
    mappings: Any
    connectors: dict[str, Any]
    notify_settings: Any


class _SharedHub(Hub):
    """A Hub on a process's shared plugin manager, mappings and connectors, with its own store.
    ``close()`` closes the store only (unless ``keep_open``): the connectors outlive it."""

    def __init__(self, shared: _Shared, store: Store, *, keep_open: bool = False):   # noqa: super() builds anew
        self.shared, self.keep_open = shared, keep_open
        self.config, self.pm, self.store, self.mappings = shared.config, shared.pm, store, shared.mappings
        self.clock = lambda: datetime.now(timezone.utc)
        self.notify_settings = shared.notify_settings
        self.connectors = dict(shared.connectors)

    def close(self) -> None:
        if not self.keep_open:
            self.store.close()


class Service:
    """A configured hub run as a service: one run at a time, a stop event, and its status.

    Args:
        config_path: the TOML config; ``[admin]`` must give the token (``token_env`` or ``token_file``).
        environ: for tests; None means os.environ.
        tenant: the ``hub.tenants.Tenant`` served (its config and its own secrets); ``config_path``
            and ``environ`` are then the tenant's. Its ``[admin]`` token is optional (the
            deployment's token opens it), and the deployment configures the logging once.
    """

    def __init__(self, config_path: str | Path | None = None, *, environ: dict[str, str] | None = None,
                 tenant=None):
        self.tenant = tenant
        if tenant is not None:
            config_path = tenant.config_path
        self.config_path = str(config_path)
        self.environ = environ
        self.config = self._load()
        if tenant is None:
            configure_logging(fmt=self.config.logging.get("format", "console"),
                              level=self.config.logging.get("level", "info"), secrets=self.config.secret_values())
        self.admin = admin_settings(self.config, require_token=tenant is None)
        self.keep_runs = keep_runs(self.config)   # a bad [schedule] keep_runs fails now
        self.stop = threading.Event()          # set on shutdown: runs stop after their current page
        self._busy = threading.Lock()          # held while a run of this process is in flight
        self._state = threading.Lock()         # guards the fields below
        self._current: dict[str, Any] | None = None
        self._last: dict[str, dict[str, Any]] = {}       # each job's last outcome
        self._workers: list[threading.Thread] = []
        self.catch_up: set[str] = set()        # jobs whose next firing is a catch-up (hub.daemon)
        # The process's one set of plugins, mappings and connectors (their HTTP clients and OAuth
        # tokens kept across runs), rebuilt only when the config file or the mappings change.
        self._shared_lock = threading.Lock()
        self._shared: _Shared | None = None
        self._retired: list[Any] = []          # connectors of an older config, closed when no run uses them
        self._local = threading.local()        # each serving thread's store (a SQLite connection serves one thread)
        # Set by the daemon: whether the scheduler runs, and each job's next run time.
        self.scheduler_info: Callable[[], dict[str, Any]] = lambda: {"running": False, "jobs": {}}
        from hub.logs import tenant_scope
        with tenant_scope(self.config.tenant):
            hub = self.open_hub()              # fails now, not at the first run, on a bad connector
            try:
                configured_max_ages(self.config, self.streams)   # a bad [health] key fails now too
                self.abandoned = mark_abandoned(hub)
            finally:
                hub.close()

    @property
    def token(self) -> Secret:
        return self.admin.token

    def _load(self) -> HubConfig:
        """The config, read again (a tenant's with its own secrets, its secrets file read again, and its name)."""
        if self.tenant is not None:
            self.environ = self.tenant.environ()
            return self.tenant.load_config(environ=self.environ)
        return load_config(self.config_path, environ=self.environ)

    # --- the process's hub -----------------------------------------------------------------------

    def _fingerprint(self) -> tuple:
        """What the shared hub was built from: the config file's and each mappings file's
        modification time and size (a few stat calls)."""
        def stat(path: Path) -> tuple:
            try:
                st = path.stat()
            except OSError:
                return (str(path), None)
            return (str(path), st.st_mtime_ns, st.st_size)
        out = [stat(Path(self.config_path))]
        if self.tenant is not None and self.tenant.secrets_file is not None:
            out.append(stat(self.tenant.secrets_file))   # a rotated secret rebuilds the connectors
        folder = Path(self.config.mappings)
        out.append(stat(folder))
        if folder.is_dir():
            out += [stat(p) for p in sorted(folder.rglob("*")) if p.is_file()]
        return tuple(out)

    def _refresh(self) -> _Shared:
        """The shared plugins, mappings and connectors, rebuilt when the config or mappings changed."""
        fingerprint = self._fingerprint()
        shared = self._shared
        if shared is not None and shared.fingerprint == fingerprint:
            if self._retired:
                self._close_retired()
            return shared
        with self._shared_lock:
            shared = self._shared
            if shared is not None and shared.fingerprint == fingerprint:
                return shared
            from hub.mappings import load_mappings
            from hub.plugins import get_plugin_manager
            config = self.config if shared is None else self._load()
            if shared is not None:
                keep_runs(config)
            fingerprint = self._fingerprint()   # read before building: a change meanwhile rebuilds again
            pm = get_plugin_manager()
            mappings = load_mappings(config.mappings)
            built = Hub(config, pm=pm, mappings=mappings)
            built.store.close()
            new = _Shared(fingerprint, config, pm, mappings, built.connectors, built.notify_settings)
            if shared is not None:
                log.info("daemon.config_reloaded", config=config.file, reason="the config file or the mappings changed")
                self._retired += list(shared.connectors.values())
            self.config, self.keep_runs = config, keep_runs(config)
            self.streams = {name: [s.name for s in c.streams()] for name, c in sorted(new.connectors.items())}
            self._shared = new
        self._close_retired()
        return new

    def _close_retired(self) -> None:
        if self._retired and self._busy.acquire(blocking=False):
            try:
                retired, self._retired = self._retired, []
                for connector in retired:
                    connector.close()
            finally:
                self._busy.release()

    def open_hub(self) -> Hub:
        """A Hub for the calling thread on the process's shared plugins, mappings and connectors,
        with its own store (a SQLite connection serves one thread); close it after."""
        shared = self._refresh()
        return _SharedHub(shared, open_store(shared.config))

    def shared_hub(self) -> Hub:
        """The calling thread's hub, kept open for the thread's next request (the admin API's
        serving threads); ``close()`` on it leaves it open. Rebuilt when the config changes."""
        shared = self._refresh()
        hub = getattr(self._local, "hub", None)
        if hub is None or hub.shared is not shared:
            if hub is not None:
                hub.store.close()
            hub = _SharedHub(shared, open_store(shared.config), keep_open=True)
            self._local.hub = hub
        return hub

    def check_scope(self, scope: dict[str, Any]) -> dict[str, Any]:
        return normalize_scope(scope, self.streams)

    # --- runs ----------------------------------------------------------------------------------

    def _locked(self) -> LockedError:
        """The error for a run refused because this process already runs one."""
        hub = self.open_hub()
        try:
            info = hub.store.lock_info(LOCK)
        finally:
            hub.close()
        if info:
            return LockedError(info)
        cur = self._current or {}     # between this process's runs' lock release and busy release
        return LockedError({"holder": cur.get("holder", "daemon"), "pid": os.getpid(), "host": socket.gethostname(),
                            "since": cur.get("since")})

    def trigger(self, scope: dict[str, Any], trigger: str = "api") -> str:
        """Start a run of ``scope`` in a worker thread and return its run id at once.

        Raises ScopeError (a HubError) for a bad scope and LockedError when a run is in flight,
        here or in another process: a manual resync is refused, never queued.
        """
        kwargs = self.check_scope(scope)
        if self.stop.is_set():
            raise UnavailableError("the daemon is stopping; run the resync after it restarts")
        if not self._busy.acquire(blocking=False):
            raise self._locked()
        try:
            hub = self.open_hub()
            try:
                if kwargs.get("clients"):
                    check_clients(hub, kwargs["clients"])
                # Another process's run (msp-hub sync) is refused now, not in the worker; the lock
                # is taken again by sync_once, which refuses the run if it lost a race meanwhile.
                probe = f"daemon:probe:{os.getpid()}"
                taken = hub.store.acquire_lock(LOCK, probe)
                if taken is not None:
                    raise LockedError(taken)
                hub.store.release_lock(LOCK, probe)
            finally:
                hub.close()
            run_id = Store.new_run_id()
            self._begin(run_id, "resync", kwargs)
            worker = threading.Thread(target=self._run_triggered, args=(run_id, kwargs, trigger), name=f"resync-{run_id}",
                                      daemon=True)
            with self._state:
                self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()
        except BaseException:
            self._end()
            self._busy.release()
            raise
        log.info("daemon.resync_started", run_id=run_id, scope=kwargs)
        return run_id

    def _run_triggered(self, run_id: str, kwargs: dict[str, Any], trigger: str = "api") -> None:
        from hub.logs import tenant_scope
        with tenant_scope(self.config.tenant):
            self._run_triggered_here(run_id, kwargs, trigger)

    def _run_triggered_here(self, run_id: str, kwargs: dict[str, Any], trigger: str = "api") -> None:
        try:
            self._run(run_id, "resync", kwargs, trigger=trigger)
        finally:
            self._end()
            self._busy.release()

    def run_job(self, name: str, scope: dict[str, Any], wait: float = 0.0) -> str | None:
        """``run_job_here`` under the service's tenant (its log lines and metrics labelled)."""
        from hub.logs import tenant_scope
        with tenant_scope(self.config.tenant):
            return self.run_job_here(name, scope, wait)

    def run_job_here(self, name: str, scope: dict[str, Any], wait: float = 0.0) -> str | None:
        """Run a scheduled job now; return its run id, or None when it was skipped.

        ``scope`` is already checked (``normalize_scope``). When another run of this process is in
        flight, the job waits for it up to ``wait`` seconds (the daemon passes the job's misfire
        grace time): jobs that fire together, such as "every 1m" and "every 15m" at the quarter,
        would otherwise skip the longer one every time. The scheduler keeps at most one instance
        of a job, so nothing piles up. Past ``wait``, on shutdown, or when another process holds
        the lock, the job logs ``daemon.job_skipped`` and its next firing runs it.
        """
        deadline = time.monotonic() + wait
        while not self._busy.acquire(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
            if self.stop.is_set() or time.monotonic() >= deadline:
                cur = self._current or {}
                log.info("daemon.job_skipped", job=name, reason="a run is in flight", holder=cur.get("holder"),
                         run_id=cur.get("run_id"), waited=round(wait, 1))
                self._note(name, {"status": "skipped", "at": _iso(datetime.now(timezone.utc)),
                                  "reason": f"run {cur.get('run_id')} was in flight"})
                return None
        try:
            if self.stop.is_set():
                log.info("daemon.job_skipped", job=name, reason="the daemon is stopping")
                return None
            run_id = Store.new_run_id()
            self._begin(run_id, name, scope)
            with self._state:
                trigger = "catch-up" if name in self.catch_up else "cron"
                self.catch_up.discard(name)
            return self._run(run_id, name, scope, trigger=trigger, job_name=name)
        finally:
            self._end()
            self._busy.release()

    def _begin(self, run_id: str, job: str, scope: dict[str, Any]) -> None:
        with self._state:
            self._current = {"run_id": run_id, "job": job, "holder": f"daemon:{job}", "scope": scope,
                             "since": _iso(datetime.now(timezone.utc)),
                             "progress": {"records": 0, "pages": 0, "actions": 0, "failed": 0, "stream": None}}

    def _progress(self, event: dict[str, Any]) -> None:
        """Count the run's pages, records and pushes, for ``status()`` (and the CLI following it)."""
        with self._state:
            if self._current is None:
                return
            p = self._current["progress"]
            if event.get("event") == "page":
                p["pages"] += 1
                p["records"] += event.get("records", 0)
                p["stream"] = f"{event.get('connector')}.{event.get('stream')}"
            elif event.get("event") == "action":
                p["actions"] += 1
                p["failed"] += event.get("status") == "failed"

    def _end(self) -> None:
        with self._state:
            self._current = None

    def _note(self, job: str, outcome: dict[str, Any]) -> None:
        with self._state:
            self._last[job] = outcome

    def _run(self, run_id: str, job: str, kwargs: dict[str, Any], *, trigger: str = "cron",
             job_name: str | None = None) -> str | None:
        """One ``sync_once`` on the shared connectors; every error is logged, none reaches the
        scheduler. The run is recorded with its ``trigger`` and scheduled job (``job=``); old
        runs are pruned after it (``[schedule] keep_runs``)."""
        jlog = log.bind(run_id=run_id, job=job)
        jlog.info("daemon.job_started", scope=kwargs, trigger=trigger)
        t0 = time.perf_counter()
        outcome: dict[str, Any] = {"run_id": run_id, "at": _iso(datetime.now(timezone.utc))}
        hub = None
        try:
            hub = self.open_hub()
            report = sync_once(hub, stop=self.stop, run_id=run_id, holder=f"daemon:{job}", progress=self._progress,
                               trigger=trigger, job=job_name, **kwargs)
            recorded = (hub.store.get_run(run_id) or {}).get("status")   # what the engine judged the run
            self.prune(hub)
        except LockedError as exc:
            jlog.info("daemon.job_skipped", reason="the sync lock is held", holder=exc.holder, pid=exc.pid,
                      since=str(exc.since))
            outcome.update(status="skipped", reason=str(exc))
            self._note(job, outcome)
            return None
        except Exception as exc:  # a failed run must not stop the scheduler or the next jobs
            jlog.error("daemon.job_failed", error=str(exc) if isinstance(exc, HubError) else repr(exc))
            outcome.update(status="failed", reason=str(exc))
            self._note(job, outcome)
            return run_id
        finally:
            if hub is not None:
                hub.close()
        status = recorded or run_status(report)
        outcome.update(status=status, records=report.records_total, pushed=len(report.pushed),
                       failed=len(report.failed))
        self._note(job, outcome)
        jlog.info("daemon.job_finished", status=status, records=report.records_total, pushed=len(report.pushed),
                  failed=len(report.failed), seconds=round(time.perf_counter() - t0, 3))
        return run_id

    def prune(self, hub: Hub, now: datetime | None = None) -> dict[str, int]:
        """Delete the runs (and their stream passes) older than ``[schedule] keep_runs``; never fails a run."""
        try:
            gone = hub.store.prune_runs((now or datetime.now(timezone.utc)) - self.keep_runs)
        except Exception as exc:   # a busy database: the next run prunes
            log.warning("daemon.prune_failed", error=repr(exc))
            return {"runs": 0, "stream_passes": 0}
        if gone["runs"]:
            log.info("daemon.runs_pruned", **gone, keep_runs=human_seconds(self.keep_runs.total_seconds()))
        return gone

    def join(self, timeout: float | None = None) -> None:
        """Wait for the triggered runs still in flight (after ``stop`` is set they end soon)."""
        with self._state:
            workers = list(self._workers)
        deadline = None if timeout is None else time.monotonic() + timeout
        for w in workers:
            w.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # --- status --------------------------------------------------------------------------------

    def status(self, hub: Hub | None = None, streams: list[dict] | None = None) -> dict[str, Any]:
        """The scheduler (running, each job's next run time and last outcome), the run in flight
        (None when idle) and each connector's last successful pull, read with ``hub`` (else a
        hub of its own) from ``streams`` (``stream_health``, computed when not given)."""
        from hub.api import pull_health
        info = self.scheduler_info()
        with self._state:
            current = dict(self._current, progress=dict(self._current["progress"])) if self._current else None
            last = dict(self._last)
        own = hub is None
        hub = self.open_hub() if own else hub
        try:
            connectors = pull_health(hub, streams)
        finally:
            if own:
                hub.close()
        jobs = [{"id": job_id, "next_run_at": _iso(moment), "last": last.get(job_id)}
                for job_id, moment in sorted(info["jobs"].items())]
        return {"pid": os.getpid(), "stopping": self.stop.is_set(),
                "scheduler": {"running": info["running"], "jobs": jobs},
                "current_run": current, "connectors": connectors}


class TenantServices:
    """The services of a deployment's tenants, as the admin API and the daemon see them.

    ``services``: tenant name -> Service; ``token``: the deployment token (a Secret, or None), which
    opens every tenant's paths; ``unprefixed``: the tenant the paths without ``/tenants/<name>``
    serve (the ``default`` tenant, or the only one; None when there are several and none is
    ``default``). A single hub is ``TenantServices.single(service)``: its token opens its paths."""

    def __init__(self, services: dict[str, Any], token: Secret | None = None, unprefixed: str | None = None):
        self.services, self.token, self.unprefixed = dict(services), token, unprefixed

    @classmethod
    def single(cls, service) -> "TenantServices":
        name = getattr(getattr(service, "config", None), "tenant", None) or "default"
        return cls({name: service}, None, name)

    @classmethod
    def of(cls, services: dict[str, Any], token: Secret | None = None) -> "TenantServices":
        unprefixed = "default" if "default" in services else (next(iter(services)) if len(services) == 1 else None)
        return cls(services, token, unprefixed)

    def tokens(self, name: str) -> list[str]:
        """The tokens that open tenant ``name``: the deployment's and the tenant's own."""
        out = [self.token.reveal()] if self.token is not None else []
        service = self.services.get(name)
        own = getattr(service, "token", None) if service is not None else None
        if own is not None:
            out.append(own.reveal())
        return out


# --- approvals: one code path for the CLI, the API and the console ---------------------------------

class ApprovalRefused(HubError):
    """An approval that cannot be recorded (no such action, already sent or cancelled)."""


def approve_action(hub: Hub, key: str, who: str, why: str = "") -> tuple[dict, str]:
    """Record the approval of the held action ``key`` by ``who`` (and ``why``): (the approval
    recorded, a sentence saying what happens next). What ``msp-hub approve KEY --why`` and the
    console's approve buttons call. Raises ApprovalRefused naming the fix."""
    from hub.store import sent_text
    row = hub.store.get_action(key)
    if row is None:
        raise ApprovalRefused(f"no action {key!r} in the outbox; list them with: msp-hub actions --status held")
    if row["status"] == "sent":
        raise ApprovalRefused(f"action {key!r} {sent_text(row)}; there is nothing to approve")
    if row["status"] == "cancelled":
        raise ApprovalRefused(f"action {key!r} was cancelled; there is nothing to approve "
                              f"(put it back with: msp-hub actions retry {key})")
    hub.store.approve(key, who=who, why=why)
    return hub.store.approvals(key)[-1], f"approved {key}; the next sync pushes it"
