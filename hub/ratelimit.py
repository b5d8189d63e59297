"""Client-side rate limits per vendor account: requests per second, shared by every client and
thread of the process and, through the store, by every process using the same database.

A limit is a GCRA (generic cell rate algorithm) with a burst of one: a request takes its
account's slot only when the slot is free *now* (the next one is then ``interval = 1.02 / rate``
later, see MARGIN), else it sleeps until the slot frees and asks again. Taking a slot at the moment
of sending (not reserving one ahead and sleeping to it) means a sender delayed after its wait (a
busy machine) cannot be caught up by the next one. So no two requests of an account leave closer
than ``interval``, and no window of one second holds more than ``rate`` of them, whichever thread
or process sends them. A vendor's 429 is honoured on top (``Retry-After``, see
``hub.http.retry_policy``).

- In one process the slots live in memory (one lock per account), shared by every limiter of the
  same key: two connectors, clients or threads of one account share one pace.
- With a database (a SQLite file or a PostgreSQL URL), the slot is taken in the store, one
  atomic statement a try (``Store.take_rate_slot``: a row per account holding its next free
  time), so processes on one machine or several share it too. The clocks of the machines
  must agree (NTP): a clock running ahead by d can bring two requests d closer than
  ``interval``, which MARGIN absorbs up to 20 ms.

A limiter key is ``<vendor>:<hash>``: the hash (SHA-256, 16 hex digits) of what names the vendor
account (its URL, a public id, or the API key for Stripe), so a credential never appears in a
key, a log line or the database.

Why our own bucket rather than pyrate-limiter: the cross-process part has to live in the hub's
own store (SQLite today, PostgreSQL at scale) in one portable statement, which pyrate-limiter's
SQLite/Postgres buckets do not give (their own tables and connections, a lock per bucket, a
leaky-bucket list of timestamps); the in-process part is twenty lines.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any, Callable

import structlog

from hub.errors import ConfigError

log = structlog.get_logger()

MAX_RATE = 10_000.0   # requests per second; more than any vendor allows, so a typo shows
# Slots are 2% longer than 1/rate: rate + 1 requests then span at least 1.02 s, so up to 20 ms of
# jitter between taking a slot and reaching the vendor (the network, a busy machine) cannot put
# rate + 1 of them into one second of the vendor's clock.
MARGIN = 0.02
SETTING = "rate_limit"

# In-process slots: key -> the next free time (seconds, the limiter's clock), with one lock a key.
_NEXT: dict[str, float] = {}
_LOCKS: dict[str, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def account_key(vendor: str, *parts: str) -> str:
    """``<vendor>:<16 hex digits>``, the hash of what names the account (secrets may be among ``parts``)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"{vendor}:{digest}"


def _lock(key: str) -> threading.Lock:
    with _REGISTRY_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


class _StoreSlots:
    """Slots taken in the store of ``database``: one connection a thread (a SQLite connection
    belongs to the thread that opened it), opened on the first request of that thread."""

    def __init__(self, database: str, schema: str | None = None, password: str | None = None):
        self.database, self.schema, self._password = database, schema, password
        self._local = threading.local()

    def store(self):
        store = getattr(self._local, "store", None)
        if store is None:
            from hub.store import Store
            store = Store(self.database, schema=self.schema, password=self._password)   # schema: PostgreSQL only
            self._local.store = store
        return store

    def take(self, key: str, interval: float, now: float) -> float:
        return self.store().take_rate_slot(key, interval, now, uuid.uuid4().hex)


class RateLimiter:
    """At most ``rate`` requests a second for the account ``key``; ``rate`` 0 lets every request go.

    Args:
        key: the account, from ``account_key`` (never a credential in clear).
        rate: requests per second (may be fractional: 0.5 is one request every two seconds).
        database: the hub's database (a SQLite path or a PostgreSQL URL) to share the pace with
            other processes; None or ``":memory:"``: this process only.
        schema: the PostgreSQL schema of the tenant (``hub.tenants.schema_of``).
        store: a Store to take slots in (tests); used from the calling thread only.
        clock: wall-clock seconds (shared across machines); sleep: how to wait.
    """

    def __init__(self, key: str, rate: float, *, database: str | None = None, schema: str | None = None,
                 password: str | None = None, store: Any = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        if rate < 0 or rate > MAX_RATE:
            raise ValueError(f"rate must be from 0 to {MAX_RATE:g} requests a second, got {rate!r}")
        self.key, self.rate = key, float(rate)
        self.interval = (1.0 + MARGIN) / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        if store is not None:
            self._slots: Any = _FixedStore(store)
        elif database and database != ":memory:":
            self._slots = _StoreSlots(database, schema, password)
        else:
            self._slots = None
        self.waited = 0.0   # seconds this limiter made its requests wait, in all

    @property
    def shared(self) -> bool:
        """Whether the pace is shared through the store (with other processes)."""
        return self._slots is not None

    def take(self) -> float:
        """Take the slot for a request sent now if it is free: 0, else the seconds until it frees."""
        if not self.interval:
            return 0.0
        now = self._clock()
        if self._slots is not None:
            return self._slots.take(self.key, self.interval, now)
        with _lock(self.key):
            free = _NEXT.get(self.key, now)
            if free <= now:
                _NEXT[self.key] = now + self.interval
                return 0.0
            return free - now

    def acquire(self) -> float:
        """Wait until this request may go, and take its slot; return the seconds waited. Call it
        right before each HTTP request (retries included)."""
        waited = 0.0
        while True:
            wait = self.take()
            if wait <= 0:
                self.waited += waited
                return waited
            waited += wait
            self._sleep(wait)


class _FixedStore:
    def __init__(self, store: Any):
        self.store = store

    def take(self, key: str, interval: float, now: float) -> float:
        return self.store.take_rate_slot(key, interval, now, uuid.uuid4().hex)


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """The most of ``times`` (seconds) in any half-open window [t, t + width): the rate a server saw,
    to check a limit against (tests, benchmarks/push_rate.py)."""
    ordered, best, j = sorted(times), 0, 0
    for i, t in enumerate(ordered):
        while ordered[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def forget(key: str | None = None) -> None:
    """Drop the in-process slots (of ``key``, else all): for tests that reuse an account."""
    with _REGISTRY_LOCK:
        if key is None:
            _NEXT.clear()
        else:
            _NEXT.pop(key, None)


def read_rate(section: dict, *, config: Any, connector: str, default: float, why: str) -> float:
    """``rate_limit`` of ``[connectors.<connector>]`` (requests a second, 0 = off), else ``default``.

    A ConfigError names the key and the fix for anything but a number from 0 to 10000. ``why``
    says where the default comes from, for the error's fix.
    """
    value = section.get(SETTING, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_RATE \
            or value != value:
        raise ConfigError(f"must be requests per second from 0 to {MAX_RATE:g} (0 = no limit), got {value!r}",
                          file=getattr(config, "file", None), key=f"connectors.{connector}.{SETTING}",
                          fix=f"write {SETTING} = {default:g} ({why}), or leave it out")
    return float(value)


def limiter_for(config: Any, vendor: str, account: tuple[str, ...], rate: float) -> RateLimiter:
    """The limiter of one vendor account for a hub configured by ``config``: shared through its
    database (``config.database``, in the tenant's schema) when that is not in memory."""
    from hub.tenants import schema_of
    key = account_key(vendor, *account)
    database = getattr(config, "database", None)
    password = getattr(config, "database_password", None)
    limiter = RateLimiter(key, rate, database=database, schema=schema_of(getattr(config, "tenant", "default")),
                          password=password.reveal() if password is not None else None)
    if rate:
        log.info("ratelimit.configured", vendor=vendor, limiter=key, rate=rate, shared=limiter.shared)
    return limiter
