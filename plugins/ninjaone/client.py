"""NinjaOne Public API v2 over HTTP: OAuth2 client credentials, keyset paging, retries. No mapping.

Activities page by activity id. The spec (2.0.9-draft) describes the two cursors the wrong way
round::

    olderThan: "Return activities recorded that are newer than specified activity ID"
    newerThan: "Return activities recorded that are older than specified activity ID"

The client reads them by the names (the descriptions swapped): ``olderThan=X`` answers activities
with ids below X, ``newerThan=X`` those above X, each page newest first ("Returns activity log in
reverse chronological order"). So ``olderThan`` pages backward (pass the smallest id of a page)
and ``newerThan`` pages forward (pass the largest). The simulator answers the same way, and
``tests/test_client.py::test_newer_than_pages_forward_and_older_than_backward`` records it.

Which ids above X a ``newerThan`` page holds (the next ones after X, or the newest ones) is
not written anywhere, and guessing wrong would skip activities without a sound. So
``iter_activities`` checks every ``newerThan`` page by walking back with ``olderThan`` from its
oldest id down to X: against an API that answers the next ids that walk is one request that
finds nothing; against one that answers the newest ids it fetches the gap.

Neither reading is taken on trust: it is checked on every answer. A page asked for with
``newerThan=X`` must hold ids above X only, one asked for with ``olderThan=X`` ids below X only.
When one does not, the other parameter is asked at the same cursor; if its answer proves it
pages the needed way, the two swap for the client's life (logged once, ``ninjaone.
activity_cursors_reversed``), else the read raises an IncompleteError naming the assumption: the
stream fails and its cursor stays where it is. Likewise the ``status`` filter is assumed to
select on each activity's ``statusCode`` (``status`` is also a free-text field of an activity):
an answer holding another statusCode shows the filter is not applied that way, and an empty
answer while ``lastActivityId`` lies beyond the cursor is checked against the newest activities
read without the filter and without a cursor parameter (one request of ``PROBE_PAGE_SIZE``, so
it depends on neither reading): an alert activity there above the cursor shows the empty answer
was wrong. Then one more request, the cursor parameter without the filter, tells which reading
failed: if it answers nothing above the cursor, the direction (handled as above); else the
filter. A dropped filter is dropped for the client's life (logged once, ``ninjaone.
status_filter_not_applied``) and the request is sent again without it: the pages then hold every
status and the caller keeps the statuses it wants. No page that broke an assumption is
yielded, so a caller's cursor never passes an activity it did not get.

What the probe cannot see: alert activities above the cursor that are older than the newest
``PROBE_PAGE_SIZE`` activities of the class, while a broken filter answers nothing. The next
alert activity among the newest shows the filter broken, and the read from the unmoved cursor
then gets every one of them.

Reports (``/v2/queries/*``, ``/v2/backup/jobs``) page by a cursor the server names in each answer
(``iter_report``); each page is checked to move forward, and a full page without a cursor fails
the read rather than end it.

No paged read ends on a page shorter than ``pageSize``: a server may cap the page size or cut a
page short, and an API answering the newest ids would then leave a gap. Reads end on an empty
page, or (walking back) on reaching the cursor or the lookback. That costs one request per
``newerThan`` page (the walk back) and one per pass (the empty page), when there is anything
new; a pass with nothing new is one request, or two (the probe) when the account logged other
activities since the cursor.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

import httpx
import structlog
import tenacity

from hub.config import Secret
from hub.errors import CredentialsError, IncompleteError, MalformedResponseError, RetryableError, VendorError
from hub.http import make_client, parse_retry_after, retry_policy
from hub.ratelimit import RateLimiter
from hub.metrics import count_request_error

log = structlog.get_logger()

VENDOR = "ninjaone"
TOKEN_PATH = "/ws/oauth/token"
MAX_PAGE_SIZE = 1000
# /v2/activities takes pageSize from 10 to 1000 (default 200).
MIN_ACTIVITY_PAGE_SIZE = 10
# How many of the newest activities an empty filtered answer is checked against.
PROBE_PAGE_SIZE = 50
STATUS_ASSUMPTION = "the status filter of /v2/activities selects on each activity's statusCode"
DIRECTION_ASSUMPTION = ("newerThan=X answers activities with ids above X and olderThan=X those below X "
                        "(the spec's descriptions say the reverse)")
# The statusCodes of an alert series' life in the activity log, asked for with ``status``.
ALERT_STATUSES = ("TRIGGERED", "RESET")
# With no cursor yet, how many of the newest activities to read: the log goes back months, and a
# first run only needs what happened shortly before it read the active alerts.
DEFAULT_LOOKBACK = 1000
# NinjaOne publishes no rate limits and may send a 429 without Retry-After; well-known clients
# then wait 10 s. The retry policy still caps every wait at its own max_wait.
DEFAULT_RETRY_AFTER = 10.0
# Refresh a token this long before the expiry the vendor announced (at most half its life).
TOKEN_MARGIN = 60.0

# How a report (/v2/queries/*, /v2/backup/jobs) pages; every page is checked against it.
REPORT_CURSOR_ASSUMPTION = ("a report pages by the cursor name it answers: cursor=<name> answers the next records, "
                            "and an empty page ends the report")

CREDENTIALS_FIX = ("check client_id and client_secret_env/client_secret_file in [connectors.ninjaone], "
                   "and that base_url is your tenant's host (app, eu, ca, oc, us2 .ninjarmm.com)")


class NinjaOneClient:
    """A NinjaOne API v2 client: yields vendor dicts unchanged, one page (a list) at a time.

    Args:
        base_url: the tenant's instance host, e.g. ``https://eu.ninjarmm.com`` (no ``/v2``).
        client_id: the API app's client id (a machine-to-machine app with client credentials).
        client_secret: the API app's secret, kept in a ``Secret`` until the token request.
        scope: space-separated OAuth scopes; reading needs ``monitoring``.
        http: an ``httpx.Client`` to use (tests inject a MockTransport); the caller then owns it.
        retrying: a callable returning a ``tenacity.Retrying``; default ``hub.http.retry_policy``.
        page_size: ``pageSize`` of list requests.
        default_retry_after: seconds to wait after a 429 that carries no Retry-After.
        clock: a monotonic clock in seconds, for the token's lifetime.
        limiter: the account's client-side rate limit (``hub.ratelimit``), waited on before every
            request, token requests and retries included; None: no limit.

    ``requests`` counts every HTTP request sent, token requests and retries included.
    """

    def __init__(self, base_url: str, client_id: str, client_secret: Secret, *, scope: str = "monitoring",
                 http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None,
                 page_size: int = MAX_PAGE_SIZE, default_retry_after: float = DEFAULT_RETRY_AFTER,
                 clock: Callable[[], float] = time.monotonic, limiter: RateLimiter | None = None):
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.page_size = page_size
        self.default_retry_after = default_retry_after
        self._owns_http = http is None
        self._http = make_client(self.base_url, http=http, vendor=VENDOR)
        self._retrying = retrying or retry_policy
        self.limiter = limiter
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self.requests = 0
        self.last_activity_id: int | None = None
        # How /v2/activities is read: which parameter pages forward (newer ids) and which
        # backward, and whether the status filter is sent. Each is checked on every page and
        # changed (and logged) once an answer shows the assumption does not hold.
        self._forward, self._backward = "newerThan", "olderThan"
        self.status_filter = True

    # --- public -------------------------------------------------------------------------------

    def iter_organizations(self, after: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of organizations (``GET /v2/organizations``) in id order.

        Args:
            after: start after this organization id (the last id of a previous page).
        Yields:
            non-empty lists of the vendor's organization dicts, unchanged.
        """
        return self._iter_pages("/v2/organizations", after)

    def iter_devices(self, after: int | None = None, *, detailed: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of devices (``GET /v2/devices``, basic records) in id order.

        Args:
            after: start after this device id (the last id of a previous page).
            detailed: read ``GET /v2/devices-detailed`` instead, whose records add ``ipAddresses``,
                ``os`` and ``system`` (serial number); it pages the same way (``pageSize``, ``after``).
        Yields:
            non-empty lists of the vendor's device dicts, unchanged.
        """
        return self._iter_pages("/v2/devices-detailed" if detailed else "/v2/devices", after)

    def list_alerts(self, source_type: str | None = None) -> list[dict[str, Any]]:
        """Every active alert (``GET /v2/alerts``): one unpaged list, each alert with its ``device``.

        Args:
            source_type: only alerts of this ``sourceType`` (e.g. ``CONDITION_AGENT_CPU``).
        Returns:
            the vendor's alert dicts, unchanged.
        """
        params = {"sourceType": source_type} if source_type else None
        return self._request("GET", "/v2/alerts", params=params)

    def iter_activities(self, newer_than: int | None, page_size: int | None = None, *,
                        lookback: int = DEFAULT_LOOKBACK, activity_class: str | None = "DEVICE",
                        statuses: tuple[str, ...] | None = ALERT_STATUSES) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of activities (``GET /v2/activities``) newer than an activity id, oldest first.

        Every page is in ascending id order and every page's ids are above the previous page's,
        so a caller may commit ``page[-1]["id"]`` as its cursor after each page: resuming from
        it neither skips nor repeats an activity.

        Every answer is checked against the two readings the spec leaves open (see the module
        docstring): its ids lie on the side of the cursor the parameter names, and its
        statusCodes are among those asked for. A page that breaks either is never yielded.

        Args:
            newer_than: the last activity id already seen; None reads the ``lookback`` newest.
            page_size: ``pageSize`` of each request, kept within 10..1000; default the client's.
            lookback: with no ``newer_than``, how many of the newest activities to read.
            activity_class: the ``class`` filter (SYSTEM, DEVICE, USER, ALL); None sends none.
            statuses: statusCodes to ask for, comma-separated in ``status``; None sends none.
                Once the API is seen not to filter by statusCode, the filter is no longer sent
                and the pages hold every status: callers check each activity's statusCode.
        Yields:
            non-empty lists of the vendor's activity dicts, unchanged. ``last_activity_id`` holds
            the account's newest activity id of the latest answer, whatever the filters.
        Raises:
            IncompleteError: neither ``newerThan`` nor ``olderThan`` can be shown to page the way
                the read needs; nothing past the pages already yielded is yielded.
        """
        size = min(max(page_size or self.page_size, MIN_ACTIVITY_PAGE_SIZE), MAX_PAGE_SIZE)
        wanted = frozenset(statuses) if statuses else None
        probed = False
        while True:
            base = self._activity_params(size, activity_class, statuses)
            if newer_than is None:
                found = self._walk_back(base, size, floor=None, start=None, limit=lookback)
                if not found and not probed and "status" in base and self.last_activity_id is not None:
                    probed = True
                    if self._status_filter_hides(base, None, wanted):
                        continue   # read the lookback again, without the status filter
                yield from _ascending_pages(found, size)
                return
            page = self._get_activities({**base, self._forward: newer_than})
            if not page:
                if (not probed and "status" in base and self.last_activity_id is not None
                        and self.last_activity_id > newer_than):
                    # Empty, though the account holds newer activities: nothing new for these
                    # statuses, or a status filter that selects something else. One probe tells.
                    probed = True
                    if self._status_filter_hides(base, newer_than, wanted):
                        continue
                return  # the end: nothing above the cursor
            if any(a["id"] <= newer_than for a in page):
                self._fall_back_direction(base, newer_than, page, upward=True)
                continue   # ask again with the parameter now known to page forward
            probed = True
            # Fetch whatever lies between the cursor and the page's oldest activity, short page or
            # full: a short one may be cut short, or capped, and hold the newest ids only.
            fresh = page + self._walk_back(base, size, floor=newer_than, start=min(a["id"] for a in page))
            yield from _ascending_pages(fresh, size)
            newer_than = max(a["id"] for a in fresh)

    def iter_report(self, path: str, params: dict[str, Any] | None = None, *,
                    page_size: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield the pages of a report (``/v2/queries/*``, ``/v2/backup/jobs``), paged by its cursor.

        A report answers ``{cursor: {name, offset, count, expires}, results: [...]}``; the next page
        is asked for with ``cursor=<name>`` (and the same filters). The read ends on an empty
        page, never on a short one (a server may cap or cut a page). Every answer is checked:
        ``results`` a list of objects and ``cursor`` an object or null (else a
        MalformedResponseError), and a page that shows the cursor is not honoured (an ``offset``
        that does not move forward, the very page of before again) or a full page that gives no
        cursor to go on with raises an IncompleteError: the pass fails rather than loop or stop
        short. An expired cursor is the vendor's error status, which fails the pass too (the next
        pass starts a new cursor).

        Args:
            path: the report's path, e.g. ``/v2/queries/antivirus-status``.
            params: its filters (``df``, ``installedAfter``...), sent with every page.
            page_size: ``pageSize`` of each request; default the client's.
        Yields:
            non-empty lists of the vendor's report records, unchanged.
        """
        size = page_size or self.page_size
        base = {**(params or {}), "pageSize": size}
        name: str | None = None
        last_offset: int | None = None
        previous: list[dict[str, Any]] | None = None
        pages = 0
        while True:
            body = self._request("GET", path, params=base if name is None else {**base, "cursor": name}, kind=dict)
            results, cursor = body.get("results"), body.get("cursor")
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results) or not (
                    cursor is None or isinstance(cursor, dict)):
                raise MalformedResponseError(VENDOR, 200, "GET", self.base_url + path,
                                             "expected {cursor: {name, offset, count, expires}, results: [...]}")
            if not results:
                return
            cursor = cursor or {}
            offset = cursor.get("offset")
            if not isinstance(offset, int) or isinstance(offset, bool):
                offset = None
            if name is not None and (results == previous or (
                    offset is not None and last_offset is not None and offset <= last_offset)):
                raise IncompleteError(
                    f"ninjaone GET {path}: assumption broken: {REPORT_CURSOR_ASSUMPTION}. Page {pages + 1}, asked "
                    f"for with cursor={name}, answered offset {offset} after offset {last_offset}"
                    f"{' and the same records as the page before' if results == previous else ''}. The pass stops "
                    f"here rather than read the same records forever (fix: report it to NinjaOne support; the "
                    f"next run starts a new cursor)")
            pages += 1
            yield results
            next_name = cursor.get("name")
            if not isinstance(next_name, str) or not next_name:
                if len(results) >= size:
                    raise IncompleteError(
                        f"ninjaone GET {path}: a full page of {len(results)} records came without a cursor to "
                        f"ask for the rest (assumption broken: {REPORT_CURSOR_ASSUMPTION}); the pass stops "
                        f"rather than take the report as whole (fix: report it to NinjaOne support)")
                return
            name, last_offset, previous = next_name, offset, results

    def reset_alert(self, uid: str, data: dict[str, Any] | None = None) -> bool:
        """Reset an alert (``POST /v2/alert/{uid}/reset``); needs the ``management`` scope.

        Args:
            uid: the alert's uid (its series uid in the activity log).
            data: free-form data NinjaOne records on the RESET activity.
        Returns:
            True once reset; False when no active alert has that uid (already reset, perhaps by
            an earlier try of this very call whose answer was lost).
        """
        try:
            self._request("POST", f"/v2/alert/{uid}/reset", json_body=data or {}, kind=None)
        except VendorError as exc:
            if exc.status == 404 and not isinstance(exc, RetryableError):
                return False
            raise
        return True

    def close(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> NinjaOneClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- paging -------------------------------------------------------------------------------

    def _iter_pages(self, path: str, after: int | None) -> Iterator[list[dict[str, Any]]]:
        # Keyset paging: `after` is the last id of the previous page. The spec names no end marker
        # and no maximum pageSize, and the API returns no total: only an empty page ends a sweep.
        # A short page is not the end: a server may cap pageSize below what we ask, or cut a page
        # short, and stopping there would drop every later record without a sound. The cost is one
        # request per sweep (the empty page after the last one).
        size = self.page_size
        used: set[int] = set()
        while True:
            params: dict[str, Any] = {"pageSize": size}
            if after is not None:
                if after in used:
                    raise VendorError(VENDOR, 200, "GET", self.base_url + path,
                                      f"paging repeats after={after}; stopping instead of looping forever")
                used.add(after)
                params["after"] = after
            page = self._request("GET", path, params=params)
            if not page:
                return
            last = page[-1]
            after = last.get("id") if isinstance(last, dict) else None
            if isinstance(after, bool) or not isinstance(after, int):
                raise MalformedResponseError(
                    VENDOR, 200, "GET", self.base_url + path,
                    f"the last record of a page (after={params.get('after')}) has no integer id, so the "
                    f"next page cannot be asked for; the sweep stops here rather than end early "
                    f"(fix: report it to NinjaOne support; the next run tries again)")
            yield page

    def _walk_back(self, base: dict[str, Any], size: int, *, floor: int | None, start: int | None,
                   limit: int | None = None) -> list[dict[str, Any]]:
        """Activities below ``start`` (or the newest) and above ``floor``, newest first, by olderThan.

        Stops at an empty page, at the floor, or once ``limit`` activities are in hand; never at a
        short page (a capped or cut one would leave a gap). A page holding an id at or above the
        ``start`` it was asked below breaks the direction assumption (``_fall_back_direction``).
        """
        found: list[dict[str, Any]] = []
        older_than = start
        while True:
            params = base if older_than is None else {**base, self._backward: older_than}
            page = self._get_activities(params)
            if older_than is not None and any(a["id"] >= older_than for a in page):
                self._fall_back_direction(base, older_than, page, upward=False)
                continue
            below = [a for a in page if floor is None or a["id"] > floor]
            found += below
            if limit is not None and len(found) >= limit:
                found.sort(key=_activity_id, reverse=True)
                return found[:limit]
            if not below or len(below) < len(page):
                return found  # an empty page, or the floor reached
            older_than = min(a["id"] for a in below)

    def _activity_params(self, size: int, activity_class: str | None,
                         statuses: tuple[str, ...] | None) -> dict[str, Any]:
        params: dict[str, Any] = {"pageSize": size}
        if activity_class:
            params["class"] = activity_class
        if statuses and self.status_filter:
            params["status"] = ",".join(statuses)
        return params

    def _get_activities(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One ``GET /v2/activities``: its activities (each with an integer id); notes lastActivityId.

        With a ``status`` filter, every activity's statusCode must be one of those asked for:
        otherwise the API does not filter by statusCode (it ignores the filter, or reads it as
        the free-text ``status``), so the filter is dropped for good and this request is sent
        again without it (the caller checks statusCodes itself; logged once).
        """
        asked = params.get("status")
        if asked and not self.status_filter:
            params = {k: v for k, v in params.items() if k != "status"}
        activities = self._get_activities_once(params)
        if asked and self.status_filter:
            wanted = set(asked.split(","))
            odd = sorted({str(a.get("statusCode")) for a in activities if a.get("statusCode") not in wanted})
            if odd:
                self._drop_status_filter(f"status={asked} answered activities with statusCode "
                                         f"{', '.join(odd[:5])}")
                activities = self._get_activities_once({k: v for k, v in params.items() if k != "status"})
        return activities

    def _get_activities_once(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        body = self._request("GET", "/v2/activities", params=params, kind=dict)
        activities, last = body.get("activities"), body.get("lastActivityId")
        if not isinstance(activities, list) or not all(
                isinstance(a, dict) and isinstance(a.get("id"), int) and not isinstance(a.get("id"), bool)
                for a in activities):
            raise MalformedResponseError(VENDOR, 200, "GET", self.base_url + "/v2/activities",
                                         "expected {lastActivityId, activities: [...]} with an id on every activity")
        if isinstance(last, int):
            self.last_activity_id = last
        return activities

    def _drop_status_filter(self, why: str) -> None:
        self.status_filter = False
        log.warning("ninjaone.status_filter_not_applied", assumption=STATUS_ASSUMPTION, observed=why,
                    fallback="the status filter is no longer sent; statusCodes are filtered by the hub")

    def _status_filter_hides(self, base: dict[str, Any], cursor: int | None, wanted: frozenset[str] | None) -> bool:
        """After an empty filtered answer: whether it hid activities of ``wanted`` above ``cursor``.

        The probe reads the ``PROBE_PAGE_SIZE`` newest activities of the class without the status
        filter and with no cursor parameter, so that it depends on neither reading it checks. If
        none of them is one of ``wanted`` above the cursor, the answer stands (False). Otherwise
        the empty answer was wrong: when the cursor parameter, asked without the filter, does not
        answer ids above the cursor, the direction reading is at fault (``_fall_back_direction``);
        else the status filter is dropped (logged once). Either way True: read again.
        """
        unfiltered = {k: v for k, v in base.items() if k != "status"}
        probe = self._get_activities_once({**unfiltered, "pageSize": PROBE_PAGE_SIZE})
        hidden = [a for a in probe if a.get("statusCode") in (wanted or ()) and (cursor is None or a["id"] > cursor)]
        if not hidden:
            return False
        if cursor is not None:
            check = self._get_activities_once({**unfiltered, "pageSize": MIN_ACTIVITY_PAGE_SIZE,
                                               self._forward: cursor})
            if not check or any(a["id"] <= cursor for a in check):
                self._fall_back_direction(unfiltered, cursor, check, upward=True)
                return True
        self._drop_status_filter(f"status={base['status']} answered nothing"
                                 f"{'' if cursor is None else f' above {self._forward}={cursor}'}, yet the "
                                 f"newest activities hold {len(hidden)} of those statusCodes (ids "
                                 f"{_sample(hidden)})")
        return True

    def _fall_back_direction(self, base: dict[str, Any], cursor: int, seen: list[dict[str, Any]], *,
                             upward: bool) -> None:
        """A page asked for ids above (``upward``) or below ``cursor`` holds ids on the other side.

        The other parameter takes over when its own answer at the same cursor proves it pages the
        needed way: every id it answers is on the needed side, and it answers some, or the failed
        parameter's (non-empty) answer lay wholly on the other side (it was reversed, and nothing
        is new).
        Then the two swap for the rest of this client's life (logged once). Otherwise an
        IncompleteError names the assumption (the pass fails): the read stops before yielding
        anything of this page.
        """
        failed, other = (self._forward, self._backward) if upward else (self._backward, self._forward)
        beyond = (lambda i: i > cursor) if upward else (lambda i: i < cursor)
        answer = self._get_activities({**base, other: cursor})
        wholly_reversed = bool(seen) and all((i < cursor) if upward else (i > cursor) for i in (a["id"] for a in seen))
        if all(beyond(a["id"]) for a in answer) and (answer or wholly_reversed):
            self._forward, self._backward = self._backward, self._forward
            log.warning("ninjaone.activity_cursors_reversed", assumption=DIRECTION_ASSUMPTION,
                        observed=f"{failed}={cursor} answered ids {_sample(seen)}",
                        fallback=f"{self._forward} now pages forward and {self._backward} backward")
            return
        side = "above" if upward else "below"
        raise IncompleteError(
            f"ninjaone GET /v2/activities: assumption broken: {DIRECTION_ASSUMPTION}. {failed}={cursor} answered "
            f"ids {_sample(seen)}, not all {side} {cursor}, and {other}={cursor} answered ids {_sample(answer)}, "
            f"so neither parameter reads the activities {side} the cursor. The activity stream stops with its "
            f"cursor where it is, so that no trigger or reset is skipped (fix: report it to NinjaOne support "
            f"with these ids; the next run checks again)")

    # --- requests -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 json_body: Any = None, kind: type | None = list) -> Any:
        """Send one API call under the retry policy; return its decoded JSON (of ``kind``, or None)."""
        return self._retrying()(self._attempt, method, path, params, json_body, kind)

    def _attempt(self, method: str, path: str, params: dict[str, Any] | None, json_body: Any = None,
                 kind: type | None = list) -> Any:
        """One try of an API call: token, request, one token refetch on 401, status, JSON."""
        fresh = self._token is None or self._clock() >= self._token_expires_at
        if fresh:
            self._fetch_token()
        extra = {} if json_body is None else {"json": json_body}
        response = self._send(method, path, params=params,
                              headers={"Authorization": f"Bearer {self._token}"}, **extra)
        if response.status_code == 401 and not fresh:
            # The server expired the token before the expiry it announced: fetch one, once.
            log.info("ninjaone.token_refused", path=path)
            self._fetch_token()
            response = self._send(method, path, params=params,
                                  headers={"Authorization": f"Bearer {self._token}"}, **extra)
        status = response.status_code
        if status >= 300:
            url = self.base_url + path
            detail = self._detail(response)
            if status == 401:
                raise CredentialsError(VENDOR, status, method, url,
                                       f"{detail}; a new token was refused too (fix: {CREDENTIALS_FIX})")
            if status == 403:
                needed = "monitoring" if method == "GET" else "management"
                raise CredentialsError(VENDOR, status, method, url,
                                       f"{detail} (fix: give the API app the '{needed}' scope in "
                                       f"NinjaOne and list it in scope, now {self.scope!r})")
            self._raise_for_status(response, method, url, detail)
        return None if kind is None else self._decode(response, method, path, kind)

    def _fetch_token(self) -> None:
        """Get a bearer token by the client-credentials grant and remember when to refresh it."""
        url = self.base_url + TOKEN_PATH
        response = self._send("POST", TOKEN_PATH, data={
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self._secret.reveal(), "scope": self.scope})
        status = response.status_code
        if status == 429 or status >= 500:
            self._raise_for_status(response, "POST", url, self._detail(response))
        if status >= 300:
            raise CredentialsError(VENDOR, status, "POST", url,
                                   f"{self._detail(response) or 'token refused'} (fix: {CREDENTIALS_FIX})")
        body = self._decode(response, "POST", TOKEN_PATH, dict)
        token, expires_in = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or not isinstance(expires_in, (int, float)):
            raise MalformedResponseError(VENDOR, status, "POST", url, "no access_token in the token response")
        self._token = token
        self._token_expires_at = self._clock() + expires_in - min(TOKEN_MARGIN, expires_in / 2)
        log.info("ninjaone.token_fetched", expires_in=expires_in)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one HTTP request; a transport error or timeout becomes a RetryableError."""
        if self.limiter is not None:
            self.limiter.acquire()
        self.requests += 1
        try:
            return self._http.request(method, self.base_url + path, **kwargs)
        except httpx.TransportError as exc:  # timeouts, refused connections, broken sockets
            count_request_error(VENDOR)
            raise RetryableError(VENDOR, None, method, self.base_url + path, type(exc).__name__) from exc

    def _raise_for_status(self, response: httpx.Response, method: str, url: str, detail: str) -> None:
        """Raise for an error status other than 401/403: retryable for 429 and 5xx."""
        status = response.status_code
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableError(VENDOR, status, method, url, detail,
                                 retry_after=self.default_retry_after if retry_after is None else retry_after)
        if status >= 500:
            raise RetryableError(VENDOR, status, method, url, detail,
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise VendorError(VENDOR, status, method, url, detail)

    def _decode(self, response: httpx.Response, method: str, path: str, kind: type) -> Any:
        """The body as JSON of the expected kind, else a MalformedResponseError (retried)."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, kind):
            raise MalformedResponseError(VENDOR, response.status_code, method, self.base_url + path,
                                         f"expected a JSON {'array' if kind is list else 'object'}")
        return body

    def _detail(self, response: httpx.Response) -> str:
        """The vendor's own error text (resultCode, errorMessage, OAuth error), secrets removed."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("resultCode", "errorMessage", "error", "error_description",
                                            "incidentId") if body.get(k)]
            text = "; ".join(parts)
        else:
            text = response.text.strip()[:120]
        for secret in (self._secret.reveal(), self._token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def _activity_id(activity: dict[str, Any]) -> int:
    return activity["id"]


def _sample(activities: list[dict[str, Any]]) -> str:
    ids = sorted(a["id"] for a in activities)
    if not ids:
        return "none"
    return ", ".join(map(str, ids)) if len(ids) <= 4 else f"{ids[0]}..{ids[-1]} ({len(ids)})"


def _ascending_pages(activities: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Activities in ascending id order, in pages of at most ``size``."""
    activities = sorted(activities, key=_activity_id)
    for start in range(0, len(activities), size):
        yield activities[start:start + size]
