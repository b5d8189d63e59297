"""Client-side rate limits: the pace of one vendor account, in one thread, several threads, several
store connections and several processes; the rate_limit settings and their defaults; 429s still
honoured on top."""

import multiprocessing as mp
import threading

import httpx
import pytest

from hub.config import Secret, config_from_dict
from hub.errors import ConfigError
from hub.http import retry_policy
from hub.ratelimit import MARGIN, RateLimiter, account_key, forget, limiter_for, max_in_any_window
from hub.store import Store
from plugins.connectwise.plugin import ConnectWiseSettings
from plugins.ninjaone.plugin import NinjaOneSettings
from plugins.stripe.client import StripeClient
from plugins.stripe.plugin import StripeSettings, default_rate_limit
from plugins.stripe.simulator import StripeSimulator


class FakeClock:
    """Wall-clock seconds that move only when someone sleeps."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def fresh_slots():
    forget()
    yield
    forget()


def test_a_limiter_never_lets_more_than_its_rate_through_any_one_second_window():
    clock = FakeClock()
    limiter = RateLimiter("test:pace", 25, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(200):
        limiter.acquire()
        sent.append(clock())
    assert max_in_any_window(sent) == 25
    assert max_in_any_window(sent, 1.0 + MARGIN * 0.99) == 25     # 20 ms of jitter to spare
    assert limiter.interval == pytest.approx(1.02 / 25)
    assert min(b - a for a, b in zip(sent, sent[1:])) == pytest.approx(limiter.interval)
    assert sent[-1] - sent[0] == pytest.approx(199 * limiter.interval)   # paced, not slower


def test_a_request_late_after_its_wait_is_not_caught_up_by_the_next():
    """A slot is taken when the request goes, so a sender that was held up (a busy machine)
    pushes the next slot back rather than letting the next request follow it closely."""
    clock = FakeClock()
    limiter = RateLimiter("test:late", 10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    first = clock()
    clock.now += 0.5                      # held up: the slot had been free for 0.4 s
    limiter.acquire()
    second = clock()
    limiter.acquire()
    assert second - first == pytest.approx(0.5) and clock() - second == pytest.approx(limiter.interval)


def test_a_limiter_waits_nothing_once_the_account_was_idle_long_enough():
    clock = FakeClock()
    limiter = RateLimiter("test:idle", 10, clock=clock, sleep=clock.sleep)
    assert limiter.acquire() == 0
    clock.now += 5
    assert limiter.acquire() == 0 and limiter.acquire() == pytest.approx(limiter.interval)


def test_rate_zero_lets_every_request_go_and_writes_nothing(tmp_path):
    store = Store(str(tmp_path / "hub.db"))
    clock = FakeClock()
    limiter = RateLimiter("test:off", 0, store=store, clock=clock, sleep=clock.sleep)
    assert all(limiter.acquire() == 0 for _ in range(100)) and clock.sleeps == []
    assert list(store.db.query("select * from rate_limits")) == []


def test_two_limiters_of_one_account_in_one_process_share_its_pace():
    clock = FakeClock()
    first = RateLimiter("test:shared", 4, clock=clock, sleep=clock.sleep)
    second = RateLimiter("test:shared", 4, clock=clock, sleep=clock.sleep)
    other = RateLimiter("test:other", 4, clock=clock, sleep=clock.sleep)
    assert first.take() == 0 and second.take() == pytest.approx(first.interval) and other.take() == 0
    assert second.acquire() == pytest.approx(first.interval) and first.take() == pytest.approx(first.interval)


def taken_at_each_instant(take, instants, tries=20) -> list[int]:
    """How many of ``tries`` takes succeed at each instant of ``instants`` (a frozen clock each)."""
    return [sum(1 for _ in range(tries) if take(now) == 0) for now in instants]


def test_two_threads_share_one_account_one_request_a_slot():
    clock = FakeClock()
    instants = [clock.now + k * 0.1 for k in range(30)]   # a slot (0.0204 s) frees between two
    limiters = [RateLimiter("test:threads", 50, clock=lambda: clock.now) for _ in range(2)]
    counts: list[list[int]] = []
    barrier = threading.Barrier(2)

    def send(limiter: RateLimiter) -> None:
        mine = []
        for now in instants:
            barrier.wait()
            clock.now = now
            mine.append(sum(1 for _ in range(20) if limiter.take() == 0))
            barrier.wait()
        counts.append(mine)

    threads = [threading.Thread(target=send, args=(limiter,)) for limiter in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a + b for a, b in zip(*counts)] == [1] * len(instants)   # one request a slot, whoever sends it


def test_two_store_connections_share_the_pace_through_the_database(tmp_path):
    path = str(tmp_path / "hub.db")
    a, b = Store(path), Store(path)
    clock = FakeClock()
    left = RateLimiter("test:db", 10, store=a, clock=clock, sleep=clock.sleep)
    right = RateLimiter("test:db", 10, store=b, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(5):
        for limiter in (left, right):
            limiter.acquire()
            sent.append(clock())
    assert [round(t - sent[0], 6) for t in sent] == pytest.approx([k * left.interval for k in range(10)])
    assert right.take() > 0 and left.take() > 0        # the slot is taken, for either connection
    clock.now += 100   # idle: the next request goes at once, whichever connection sends it
    assert right.take() == 0 and left.take() == pytest.approx(left.interval)
    assert [r["limiter"] for r in a.db.query("select limiter from rate_limits")] == ["test:db"]


def _take_in_a_process(path: str, instants: list[float], queue) -> None:
    clock = {"now": instants[0]}
    limiter = RateLimiter("test:processes", 20, database=path, clock=lambda: clock["now"])

    def take(now):
        clock["now"] = now
        return limiter.take()

    queue.put(taken_at_each_instant(take, instants))


def test_two_processes_share_the_pace_through_the_database(tmp_path):
    path = str(tmp_path / "hub.db")
    Store(path).close()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    instants = [2_000_000.0 + k * 0.1 for k in range(40)]   # a slot (0.051 s) frees between two
    workers = [ctx.Process(target=_take_in_a_process, args=(path, instants, queue)) for _ in range(2)]
    for w in workers:
        w.start()
    counts = [queue.get(timeout=120), queue.get(timeout=120)]
    for w in workers:
        w.join(timeout=60)
    # Whichever process asked first at an instant took its slot; the other found it taken.
    assert [a + b for a, b in zip(*counts)] == [1] * len(instants)


def test_a_limiter_key_and_the_database_never_hold_the_credential(tmp_path):
    secret = "sk_live_51SuperSecretKeyValue"
    config = config_from_dict({"database": str(tmp_path / "hub.db"),
                               "connectors": {"stripe": {"api_key_env": "K"}}}, environ={"K": secret})
    settings = StripeSettings.from_config(config)
    limiter = limiter_for(config, "stripe", (settings.base_url, secret), settings.rate_limit)
    limiter.acquire()
    assert secret not in limiter.key and limiter.key.startswith("stripe:") and limiter.shared
    assert secret.encode() not in (tmp_path / "hub.db").read_bytes()
    assert account_key("stripe", "https://api.stripe.com", secret) == limiter.key
    assert account_key("stripe", "https://api.stripe.com", secret + "x") != limiter.key


@pytest.mark.parametrize("key, base_url, rate", [
    ("sk_test_abc", "https://api.stripe.com", 25.0),
    ("rk_test_abc", "https://api.stripe.com/", 25.0),
    ("sk_live_abc", "https://api.stripe.com", 100.0),
    ("rk_live_abc", "https://api.stripe.com", 100.0),
    ("sk_live_abc", "http://localhost:12111", 0.0),    # a Stripe-compatible server: no published limit
])
def test_stripe_defaults_to_its_published_limit_by_key_prefix(key, base_url, rate):
    assert default_rate_limit(key, base_url)[0] == rate
    config = config_from_dict({"database": ":memory:", "connectors": {"stripe": {
        "api_key_env": "K", "base_url": base_url}}}, environ={"K": key})
    assert StripeSettings.from_config(config).rate_limit == rate


def cw_section(**extra):
    return {"site": "https://api-eu.myconnectwise.net", "company_id": "msphub", "public_key": "pub",
            "private_key_env": "CW", "client_id": "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f", **extra}


def test_connectwise_and_ninjaone_have_no_limit_unless_one_is_set():
    config = config_from_dict({"database": ":memory:", "connectors": {
        "connectwise": cw_section(), "ninjaone": {"client_id": "id", "client_secret_env": "N"}}},
        environ={"CW": "x", "N": "y"})
    assert ConnectWiseSettings.from_config(config).rate_limit == 0
    assert NinjaOneSettings.from_config(config).rate_limit == 0
    config = config_from_dict({"database": ":memory:", "connectors": {
        "connectwise": cw_section(rate_limit=8), "ninjaone": {"client_id": "id", "client_secret_env": "N",
                                                              "rate_limit": 2.5},
        "stripe": {"api_key_env": "S", "rate_limit": 0}}}, environ={"CW": "x", "N": "y", "S": "sk_test_1"})
    assert ConnectWiseSettings.from_config(config).rate_limit == 8
    assert NinjaOneSettings.from_config(config).rate_limit == 2.5
    assert StripeSettings.from_config(config).rate_limit == 0


@pytest.mark.parametrize("value", [-1, "25", True, 20_000])
def test_a_wrong_rate_limit_names_the_key_and_the_fix(value):
    config = config_from_dict({"database": ":memory:", "connectors": {"connectwise": cw_section(rate_limit=value)}},
                              environ={"CW": "x"})
    with pytest.raises(ConfigError) as caught:
        ConnectWiseSettings.from_config(config)
    message = str(caught.value)
    assert "connectors.connectwise.rate_limit" in message and "fix: write rate_limit = 0" in message


def test_a_429_is_still_honoured_on_top_of_the_limit():
    """The limit paces every request, the retry after a 429 included; the wait the 429 asked for
    comes on top of it."""
    sim = StripeSimulator(api_key="sk_test_limits")
    sim.fail_next(429, times=2, retry_after=3)
    clock = FakeClock()
    limiter = RateLimiter("test:stripe", 25, clock=clock, sleep=clock.sleep)
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock.sleep(seconds)

    client = StripeClient("https://api.stripe.test", Secret(sim.api_key, "test"),
                          http=httpx.Client(transport=httpx.MockTransport(sim.handler), base_url="https://api.stripe.test"),
                          retrying=lambda: retry_policy(attempts=5, sleep=sleep), limiter=limiter)
    client.create_customer({"name": "Acme"}, idempotency_key="k1")
    assert waited == [3.0, 3.0]                 # Retry-After, twice
    assert client.requests == 3 and limiter.waited == 0   # the 429 waits spaced the requests already
    for n in range(3):
        client.create_customer({"name": "Acme"}, idempotency_key=f"k{n + 2}")
    assert limiter.waited == pytest.approx(3 * limiter.interval)   # back to back: each waits its slot


def test_the_slot_statement_runs_on_postgresql_and_two_connections_share_it(pg_url):
    """The statement ``Store.take_rate_slot`` sends, on a real PostgreSQL through psycopg (the
    ``?`` placeholders as psycopg's ``%s``), with the table m016 makes: one winner an instant."""
    import psycopg
    sql = Store.TAKE_RATE_SLOT_SQL.replace("?", "%s")
    with psycopg.connect(pg_url, autocommit=True) as a, psycopg.connect(pg_url, autocommit=True) as b:
        a.execute("CREATE TABLE rate_limits (limiter TEXT PRIMARY KEY, tat FLOAT, holder TEXT)")

        def take(conn, now, token, interval=0.1):
            tat, holder = conn.execute(sql, ["stripe:abc", now + interval, token, now, now + interval,
                                             now, token]).fetchone()
            return 0.0 if holder == token else tat - now

        assert take(a, 1000.0, "a1") == 0
        assert take(b, 1000.0, "b1") == pytest.approx(0.1)
        assert take(b, 1000.05, "b2") == pytest.approx(0.05)
        assert take(b, 1000.1, "b3") == 0 and take(a, 1000.1, "a2") == pytest.approx(0.1)
        assert a.execute("SELECT tat, holder FROM rate_limits").fetchall() == [(pytest.approx(1000.2), "b3")]


# --- the vendors' clients wait for their account's limit --------------------------------------

def test_every_vendor_client_waits_for_its_limit_before_each_request():
    from hub.testing import mock_client
    from plugins.connectwise.client import ConnectWiseClient
    from plugins.connectwise.simulator import ConnectWiseSimulator
    from plugins.ninjaone.client import NinjaOneClient
    from plugins.ninjaone.simulator import NinjaOneSimulator

    clock = FakeClock()
    cw_sim = ConnectWiseSimulator(seed=1, companies=3, agreements=0, time_entries=0, products=0)
    ninja_sim = NinjaOneSimulator(seed=1, organizations=3, devices=5)
    stripe_sim = StripeSimulator(api_key="sk_test_each")
    limiters = {name: RateLimiter(f"test:{name}", 5, clock=clock, sleep=clock.sleep)
                for name in ("connectwise", "ninjaone", "stripe")}
    cw = ConnectWiseClient("https://api-eu.myconnectwise.net", cw_sim.company_id, cw_sim.public_key,
                           Secret(cw_sim.private_key, "t"), cw_sim.client_id, http=mock_client(cw_sim.handler),
                           limiter=limiters["connectwise"])
    ninja = NinjaOneClient("https://eu.ninjarmm.test", ninja_sim.client_id, Secret(ninja_sim.client_secret, "t"),
                           http=mock_client(ninja_sim.handler, "https://eu.ninjarmm.test"),
                           limiter=limiters["ninjaone"])
    stripe = StripeClient("https://api.stripe.test", Secret(stripe_sim.api_key, "t"),
                          http=mock_client(stripe_sim.handler, "https://api.stripe.test"), limiter=limiters["stripe"])
    start = clock()
    cw.count("/company/companies")
    cw.count("/company/companies")
    list(ninja.iter_organizations())                # the token, then the pages
    for n in range(3):
        stripe.create_customer({"name": f"C{n}"}, idempotency_key=f"c{n}")
    sent = {"connectwise": cw.requests, "ninjaone": ninja.requests, "stripe": stripe.requests}
    assert sent["connectwise"] == 2 and sent["ninjaone"] >= 2 and sent["stripe"] == 3
    # Each account's own pace: all but its first request waited a slot; the accounts wait apart.
    total = sum(sent.values()) - 3
    assert clock.sleeps == pytest.approx([limiters["stripe"].interval] * total)
    assert clock() - start == pytest.approx(total * limiters["stripe"].interval)


def test_connectors_share_their_limit_through_the_hubs_database(tmp_path):
    from plugins.connectwise import plugin as cw_plugin
    from plugins.ninjaone import plugin as ninja_plugin
    from plugins.stripe import plugin as stripe_plugin

    config = config_from_dict({"database": str(tmp_path / "hub.db"), "connectors": {
        "connectwise": cw_section(rate_limit=8), "ninjaone": {"client_id": "id", "client_secret_env": "N",
                                                              "rate_limit": 3},
        "stripe": {"api_key_env": "S"}}}, environ={"CW": "cw-secret", "N": "ninja-secret", "S": "sk_live_secret"})
    (cw,), (ninja,), (stripe,) = (p.register_connectors(config=config) for p in (cw_plugin, ninja_plugin, stripe_plugin))
    assert (cw.client.limiter.rate, ninja.client.limiter.rate, stripe.client._transport.limiter.rate) == (8, 3, 100)
    assert cw.client.limiter.shared and ninja.client.limiter.shared and stripe.client._transport.limiter.shared
    assert cw.client.limiter.key == account_key("connectwise", "https://api-eu.myconnectwise.net", "msphub")
    assert ninja.client.limiter.key == account_key("ninjaone", "https://app.ninjarmm.com", "id")
    assert "sk_live_secret" not in stripe.client._transport.limiter.key
