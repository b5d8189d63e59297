"""ConnectWise PSA REST API 3.0 over HTTP: Basic auth, forward-only paging, conditions, retries. No mapping."""

from __future__ import annotations

import base64
import json
import re
from array import array
from bisect import bisect_left
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, quote as url_quote, urlencode, urlsplit

import httpx
import structlog
import tenacity

from hub.config import Secret
from hub.errors import CredentialsError, IncompleteError, MalformedResponseError, RetryableError, VendorError
from hub.http import make_client, parse_retry_after, retry_policy
from hub.metrics import count_request_error
from hub.ratelimit import RateLimiter

log = structlog.get_logger()

VENDOR = "connectwise"
API_PATH = "/apis/3.0"
DEFAULT_CODEBASE = "v4_6_release"
# The response model version of the spec this client was written against (ManageTypes.ts, 2022.1).
# Pinning it keeps field names stable when the tenant is upgraded.
DEFAULT_API_VERSION = "2022.1"
MAX_PAGE_SIZE = 1000
# ConnectWise sends a numeric Retry-After with its 429s; this covers one that comes without.
DEFAULT_RETRY_AFTER = 5.0
MAX_EXTERNAL_REF = 100
# The longest ``conditions`` value (URL-encoded) a batched lookup sends. IIS, which serves the
# API, refuses a query string above 2048 characters by default (request filtering's
# maxQueryString, answered 404.15); this leaves room for pageSize, pageId and fields.
MAX_CONDITIONS_URL = 1800

# The partial responses (``fields``) of the report streams: a ticket or a configuration carries
# about a hundred fields, of which the reports read these (``_info`` holds lastUpdated and
# dateEntered). ``id`` stays first: paging needs it.
CONFIGURATION_FIELDS = ("id,name,type/name,status/name,company/id,activeFlag,serialNumber,deviceIdentifier,"
                        "warrantyExpirationDate,_info")
SERVICE_TICKET_FIELDS = ("id,summary,board/name,status/name,priority/name,company/id,closedFlag,closedDate,"
                         "externalXRef,_info")

CREDENTIALS_FIX = ("check company_id, public_key and private_key_env/private_key_file in "
                   "[connectors.connectwise], and that site and codebase point at your ConnectWise "
                   "(the cloud answers a wrong company, key or codebase with 404 'Cannot route')")
CLIENT_ID_FIX = ("set client_id in [connectors.connectwise] to the clientId GUID registered at "
                 "https://developer.connectwise.com (My Account > Client IDs)")
ROLE_FIX = "give the API member a security role with Inquire (and Add/Edit for pushes) on this module"


def format_datetime(moment: datetime) -> str:
    """A datetime as ConnectWise's condition literal: ``[2024-01-01T00:00:00Z]`` (UTC, seconds)."""
    if moment.tzinfo is None:
        raise ValueError("conditions need an aware datetime")
    return "[" + moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") + "]"


def quote(value: str) -> str:
    """A string as a condition literal: double quotes, with backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def since_condition(since: datetime | None) -> str | None:
    """``lastUpdated > [..]`` for records changed after ``since`` (None: no condition)."""
    return None if since is None else f"lastUpdated > {format_datetime(since)}"


def server_time(headers: httpx.Headers) -> datetime | None:
    """The ``Date`` header of a response (RFC 9110 HTTP-date) as an aware UTC datetime, or None.

    Should an answer carry several (a proxy adding its own), the earliest: a cursor set too early
    reads some changes twice, one set too late skips them.
    """
    moments = []
    for value in headers.get_list("Date"):
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        if moment is not None:
            moments.append(moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None
                           else moment.astimezone(timezone.utc))
    return min(moments) if moments else None


def contact_email(contact: dict) -> str | None:
    """A contact's e-mail address: its default Email communication item, else its first one."""
    emails = [item for item in contact.get("communicationItems") or () if isinstance(item, dict)
              and (item.get("communicationType") == "Email"
                   or (item.get("communicationType") is None
                       and "mail" in str((item.get("type") or {}).get("name", "")).lower()))
              and isinstance(item.get("value"), str) and item["value"].strip()]
    chosen = next((item for item in emails if item.get("defaultFlag")), emails[0] if emails else None)
    return chosen["value"].strip() if chosen else None


def _links(link_header: str | None) -> tuple[bool, bool, int | None, int | None]:
    """From a Link header: (one was sent, it has rel="next", that URL's pageId, its page), the
    last two None when absent. A next link with a ``page`` is numbered paging (forward-only links
    carry a ``pageId`` only; a numbered one may echo the ``pageId`` it ignored)."""
    if not link_header:
        return False, False, None, None
    for part in link_header.split(","):
        url, _, params = part.partition(";")
        if params.replace(" ", "").replace('"', "").lower() != "rel=next":
            continue
        values = parse_qs(urlsplit(url.strip().strip("<>")).query)
        page_id = (values.get("pageId") or values.get("pageid") or [None])[0]
        number = (values.get("page") or [None])[0]
        return (True, True, int(page_id) if page_id and page_id.isdigit() else None,
                int(number) if number and number.isdigit() else None)
    return True, False, None, None


def _page_ids(page: list) -> list[int | None]:
    """The integer ids of a page's records, in order; None for a record without one (the mapping
    sets it aside; paging only needs the last record's id)."""
    ids: list[int | None] = []
    for record in page:
        try:
            ids.append(int(record["id"]))
        except (KeyError, TypeError, ValueError):
            ids.append(None)
    return ids


def _sample_ids(ids: list[int]) -> str:
    ordered = sorted(ids)
    return ", ".join(map(str, ordered)) if len(ordered) <= 4 else f"{ordered[0]}..{ordered[-1]} ({len(ordered)})"


def _ref_prefix_condition(prefix: str) -> str:
    if any(c in prefix for c in "%_[*"):
        raise ValueError(f"a ticket reference prefix cannot hold %, _, [ or *: {prefix!r}")
    return f"externalXRef like {quote(prefix + '%')}"


def _encoded_length(text: str) -> int:
    return len(url_quote(text, safe=""))


def ref_batches(refs: list[str], limit: int = MAX_CONDITIONS_URL) -> list[list[str]]:
    """``refs`` cut, in order, into batches whose ``externalXRef in (...)`` condition stays within
    ``limit`` characters once URL-encoded (at least one reference a batch)."""
    batches: list[list[str]] = []
    head, sep = _encoded_length("externalXRef in ()"), _encoded_length(", ")
    size = head
    for ref in refs:
        cost = _encoded_length(quote(ref))
        if batches and batches[-1] and size + sep + cost <= limit:
            batches[-1].append(ref)
            size += sep + cost
        else:
            batches.append([ref])
            size = head + cost
    return batches


def _resendable(exc: BaseException) -> bool:
    """Whether a failed create can be sent again blindly: the server surely did not act on it."""
    if not isinstance(exc, RetryableError):
        return False
    if exc.status == 429:
        return True
    return isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))



class _ReadIds:
    """The ids a pass has read, for ``in``: ascending runs (forward-only pages, the usual case) in
    one array of 8 bytes an id, anything else in a set. A million ids take 8 MB, not 60."""

    __slots__ = ("_sorted", "_other")

    def __init__(self) -> None:
        self._sorted, self._other = array("q"), set()

    def update(self, ids: list[int]) -> None:
        for i in ids:
            if not self._sorted or i > self._sorted[-1]:
                self._sorted.append(i)
            else:
                self._other.add(i)

    def __contains__(self, i: int) -> bool:
        ordered = self._sorted
        if ordered and i <= ordered[-1]:
            k = bisect_left(ordered, i)
            if ordered[k] == i:
                return True
        return i in self._other

class ConnectWiseClient:
    """A ConnectWise PSA REST 3.0 client: yields vendor dicts unchanged, one page (a list) at a time.

    Args:
        base_url: the site, e.g. ``https://api-eu.myconnectwise.net`` (no codebase, no /apis/3.0).
        company_id: the company id you log in with (e.g. ``msphub``).
        public_key: the API member's public key.
        private_key: the API member's private key, kept in a ``Secret``.
        client_id: the ``clientId`` GUID registered at developer.connectwise.com; sent on every request.
        codebase: ``v4_6_release`` (an alias of the current release) or a pinned one (``v2024_1``).
        api_version: the response model version pinned in ``Accept``.
        http: an ``httpx.Client`` to use (tests inject a MockTransport); the caller then owns it.
        retrying: a callable returning a ``tenacity.Retrying``; default ``hub.http.retry_policy``.
        page_size: ``pageSize`` of list requests (1..1000).
        limiter: the account's client-side rate limit (``hub.ratelimit``), waited on before every
            request, retries included; None: no limit.

    Lists use forward-only paging (``pagination-type: forward-only`` and ``pageId`` = last id), so
    records come in id order and a page costs the same however deep it is. Not every endpoint
    supports it, so every page is checked (ids above pageId, none read earlier in the pass); an
    endpoint that fails the check is read by page number (logged once per endpoint, listed in
    ``numbered_paths``), and numbered pages that repeat a whole page read already fail the read
    with an IncompleteError naming the endpoint (see ``iter_pages``). ``requests`` counts
    every HTTP request sent, retries included. ``server_time`` is the ``Date`` header of the latest
    answer (ConnectWise's clock, not the hub's), None until one came with a Date.
    """

    def __init__(self, base_url: str, company_id: str, public_key: str, private_key: Secret, client_id: str, *,
                 codebase: str = DEFAULT_CODEBASE, api_version: str = DEFAULT_API_VERSION,
                 http: httpx.Client | None = None, retrying: Callable[[], tenacity.Retrying] | None = None,
                 page_size: int = MAX_PAGE_SIZE, limiter: RateLimiter | None = None):
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}")
        self.base_url = base_url.rstrip("/")
        self.codebase = codebase.strip("/")
        self.api_root = f"{self.base_url}/{self.codebase}{API_PATH}"
        self.company_id = company_id
        self.client_id = client_id
        self.api_version = api_version
        self.page_size = page_size
        self._private_key = private_key
        token = base64.b64encode(f"{company_id}+{public_key}:{private_key.reveal()}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {token}",
            "clientId": client_id,
            "Accept": f"application/vnd.connectwise.com+json; version={api_version}",
        }
        self._secrets = [private_key.reveal(), token]
        self._owns_http = http is None
        self._http = make_client(self.base_url, http=http, vendor=VENDOR)
        self._retrying = retrying or retry_policy
        self.limiter = limiter
        self.requests = 0
        self.server_time: datetime | None = None
        # The endpoints seen not to honour forward-only paging (each read by page number).
        self.numbered_paths: set[str] = set()

    # --- lists --------------------------------------------------------------------------------

    def iter_companies(self, since: datetime | None = None, after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of companies (``GET /company/companies``) in id order.

        Args:
            since: only companies whose ``lastUpdated`` is after this aware datetime.
            after_id: start after this company id (the last id of a previous page).
        Yields:
            non-empty lists of the vendor's company dicts, unchanged.
        """
        return self.iter_pages("/company/companies", since_condition(since), after_id)

    def iter_agreements(self, since: datetime | None = None, after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of agreements (``GET /finance/agreements``) in id order; args as ``iter_companies``."""
        return self.iter_pages("/finance/agreements", since_condition(since), after_id)

    def iter_additions(self, agreement_id: int, since: datetime | None = None,
                       after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of one agreement's additions (``GET /finance/agreements/{id}/additions``).

        The API has no path listing the additions of every agreement: one call per agreement.
        """
        return self.iter_pages(f"/finance/agreements/{int(agreement_id)}/additions", since_condition(since), after_id)

    def iter_time_entries(self, since: datetime | None = None, after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of time entries (``GET /time/entries``) in id order; args as ``iter_companies``."""
        return self.iter_pages("/time/entries", since_condition(since), after_id)

    def iter_products(self, since: datetime | None = None, after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of product lines (``GET /procurement/products``) in id order; args as ``iter_companies``."""
        return self.iter_pages("/procurement/products", since_condition(since), after_id)

    def iter_configurations(self, since: datetime | None = None,
                            after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of every company's configurations (``GET /company/configurations``) in id
        order, only the fields the reports read (``CONFIGURATION_FIELDS``); args as ``iter_companies``."""
        return self.iter_pages("/company/configurations", since_condition(since), after_id,
                               fields=CONFIGURATION_FIELDS)

    def iter_service_tickets(self, since: datetime | None = None,
                             after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of every service ticket of every company, whoever opened it (``GET
        /service/tickets``), in id order, only the fields the reports read (``SERVICE_TICKET_FIELDS``);
        args as ``iter_companies``."""
        return self.iter_pages("/service/tickets", since_condition(since), after_id, fields=SERVICE_TICKET_FIELDS)

    def iter_tickets_by_ref(self, prefix: str, since: datetime | None = None,
                            after_id: int | None = None) -> Iterator[list[dict]]:
        """Yield pages of the tickets whose ``externalXRef`` starts with ``prefix`` (``GET /service/tickets``).

        The condition is ``externalXRef like "<prefix>%"``: ``%`` is the wildcard ConnectWise's SQL
        Server reads, so a prefix holding ``%``, ``_`` or ``[`` is refused rather than matched loosely.
        Other args as ``iter_companies``.
        """
        conditions = _ref_prefix_condition(prefix)
        if since is not None:
            conditions += f" and {since_condition(since)}"
        return self.iter_pages("/service/tickets", conditions, after_id)

    def count_tickets_by_ref(self, prefix: str) -> int:
        """How many tickets ``iter_tickets_by_ref(prefix)`` lists (``GET /service/tickets/count``)."""
        return self.count("/service/tickets", _ref_prefix_condition(prefix))

    def iter_pages(self, path: str, conditions: str | None = None,
                   after_id: int | None = None, *, fields: str | None = None) -> Iterator[list[dict]]:
        """Yield the pages of any collection under ``/apis/3.0``, forward-only, in id order (or by
        page number from an endpoint that ignores forward-only paging).

        Args:
            path: the collection, e.g. ``/service/tickets``.
            conditions: a ConnectWise conditions string, e.g. ``closedFlag = false``.
            after_id: start after this id.
            fields: a partial response, e.g. ``id,chargeToId`` (keep ``id``: paging may need it).
        """
        # Forward-only paging: pageId acts as an extra "id > pageId" condition. Once the server has
        # sent a Link header, follow its rel="next" and stop on a page without one (the vendor's end
        # marker; it saves the empty request after a full last page). Without Link headers, take the
        # last id and stop only on an empty page: a short page is not the end, since a server may
        # cap pageSize or cut a page short (one more request per read, the empty page).
        #
        # That forward-only paging works on this endpoint is checked on every page, not assumed:
        # every id must lie above the pageId asked for and none may have been read earlier in this
        # pass. A missing Link header proves nothing by itself (a last page has none either): the
        # next page, asked by the last id, is what shows whether pageId was honoured.
        # An endpoint without forward-only paging ignores the header and pageId and answers
        # numbered pages: once a page shows that, the read goes on by page number (navigable mode,
        # without the header), ending the same way, on a page without a next link or an empty
        # page. A numbered page may repeat a record read already (a record added meanwhile shifts
        # the pages): those are dropped; a page holding nothing but repeats fails the read loudly
        # rather than loop, or end early.
        size, page_id, linked = self.page_size, after_id, False
        number: int | None = None   # the page to ask for in navigable mode
        seen = _ReadIds()           # the ids read in this pass
        catching_up = False         # reading numbered pages again from page 1, up to the new ones
        last_ids: list[int] = []
        while True:
            params: dict[str, Any] = {"pageSize": size}
            if conditions:
                params["conditions"] = conditions
            if fields:
                params["fields"] = fields
            if number is not None:
                params["page"] = number
            elif page_id is not None:
                params["pageId"] = page_id
            page, headers = self._request("GET", path, params=params, forward_only=number is None, expect=list)
            has_link, has_next, next_id, next_number = _links(headers.get("Link"))
            ids = [i for i in _page_ids(page) if i is not None]
            if number is None and page_id is not None and page and \
                    any(i <= page_id or i in seen for i in ids):
                # Ids at or below pageId, or read already: the endpoint ignores pageId (no
                # forward-only paging). Go on by page number. A page of records this read has (or
                # had before it resumed) is its first page again: the next is the one its next link
                # names, else page 2. A page mixing in others is not known to be the first: read
                # from page 1, dropping what was read.
                if has_link and not has_next and all(i <= page_id or i in seen for i in ids):
                    return
                self._say_numbered(path, page_id, ids)
                if all(i <= page_id or i in seen for i in ids):
                    number = next_number if next_number is not None else 2
                else:
                    number, catching_up = 1, True
                continue
            empty = not page
            if not empty:
                if number is not None:
                    fresh = [(r, i) for r, i in zip(page, _page_ids(page)) if i is None or i not in seen]
                    # Pages of what was read are expected while catching up, not the same one twice.
                    repeated = not fresh and any(i in seen for i in ids) and (not catching_up or ids == last_ids)
                    catching_up = catching_up and not fresh
                    last_ids = ids
                    if repeated:
                        raise IncompleteError(
                            f"connectwise GET {path}: assumption broken: numbered pages (page=N, the fallback "
                            f"of an endpoint without forward-only paging) never repeat a whole page read "
                            f"earlier in the pass, yet page={number} holds only ids read already "
                            f"({_sample_ids(ids)}). The read stops rather than loop or end early: the pass "
                            f"fails and its cursor stays where it is (fix: report it to ConnectWise support "
                            f"naming {path}; the next run reads it again)")
                    page = [r for r, _ in fresh]
                    seen.update([i for _, i in fresh if i is not None])
                else:
                    seen.update(ids)
                if page:
                    yield page
            linked = linked or has_link
            if empty or (linked and not has_next):
                return
            if number is not None or next_number is not None:   # numbered: the link asks for a page
                if number is None:
                    self._say_numbered(path, page_id, ids)
                # Numbered pages start from the first whatever pageId asked: a resumed read may
                # read again records it had (the upsert makes that harmless), never skip one.
                following = next_number if next_number is not None else (number or 1) + 1
                if number is not None and following <= number:
                    raise IncompleteError(
                        f"connectwise GET {path}: assumption broken: the next link of page={number} leads "
                        f"forward, yet it names page={following}; the read stops rather than loop (fix: "
                        f"report it to ConnectWise support naming {path}; the next run reads it again)")
                number = following
                continue
            if next_id is None:
                next_id = _page_ids(page[-1:])[0]
                if next_id is None:
                    raise MalformedResponseError(VENDOR, 200, "GET", self.api_root + path,
                                                 "last record of a page has no id")
            page_id = next_id

    def _say_numbered(self, path: str, page_id: int | None, ids: list[int]) -> None:
        """Log, once per endpoint for this client, that it is read by page number."""
        endpoint = re.sub(r"/\d+(?=/|$)", "/{id}", path)
        if endpoint not in self.numbered_paths:
            self.numbered_paths.add(endpoint)
            log.warning("connectwise.forward_only_not_supported", path=endpoint,
                        assumption="pageId with pagination-type forward-only answers ids above pageId only",
                        observed=f"pageId={page_id} answered ids {_sample_ids(ids)}",
                        fallback="numbered pages (page=N), dropping records read already")

    # --- reads and writes for pushes ----------------------------------------------------------

    def find_tickets(self, external_ref: str) -> list[dict]:
        """The tickets whose ``externalXRef`` is ``external_ref`` (``GET /service/tickets``), by id."""
        return [t for page in self.iter_pages("/service/tickets", f"externalXRef = {quote(external_ref)}")
                for t in page]

    def find_tickets_by_refs(self, refs: list[str]) -> dict[str, list[dict]]:
        """The tickets of each of ``refs`` by ``externalXRef`` (``GET /service/tickets``), by id.

        One request per batch of references (``externalXRef in ("a", "b", ...)``, ``= "a"`` for one; cut by
        ``ref_batches`` so that the URL stays short), plus a page for each further 1,000 tickets
        and, without Link headers, the empty page that ends each batch. References compare without
        regard to case, as ConnectWise's SQL Server does (and ``find_tickets``): each reference gets
        every ticket a lookup of it alone would have found.
        """
        found: dict[str, list[dict]] = {ref: [] for ref in refs}
        by_case: dict[str, list[str]] = {}
        for ref in found:
            by_case.setdefault(ref.lower(), []).append(ref)
        for batch in ref_batches(list(found)):
            conditions = (f"externalXRef = {quote(batch[0])}" if len(batch) == 1
                          else f"externalXRef in ({', '.join(quote(ref) for ref in batch)})")
            for page in self.iter_pages("/service/tickets", conditions):
                for ticket in page:
                    for ref in by_case.get(str(ticket.get("externalXRef") or "").lower(), ()):
                        found[ref].append(ticket)
        for tickets in found.values():
            tickets.sort(key=lambda t: t.get("id") or 0)
        return found

    def get_ticket(self, ticket_id: int) -> dict:
        """One ticket (``GET /service/tickets/{id}``); a VendorError with status 404 if there is none."""
        body, _ = self._request("GET", f"/service/tickets/{int(ticket_id)}", expect=dict)
        return body

    def create_ticket(self, body: dict) -> dict:
        """Create a ticket (``POST /service/tickets``); return it as created.

        Not sent twice on an unclear failure (a 5xx or timeout after sending): the API has no
        idempotency key, so the caller looks the ticket up by ``externalXRef`` before a new try.
        """
        created, _ = self._request("POST", "/service/tickets", json_body=body, expect=dict, resend=_resendable)
        return created

    def associate_configuration(self, ticket_id: int, configuration_id: int) -> dict:
        """Associate a configuration with a ticket (``POST /service/tickets/{id}/configurations``).

        Not sent twice on an unclear failure: the caller reads the ticket's configurations first.
        """
        body, _ = self._request("POST", f"/service/tickets/{int(ticket_id)}/configurations",
                                json_body={"id": int(configuration_id)}, expect=dict, resend=_resendable)
        return body

    def list_ticket_notes(self, ticket_id: int) -> list[dict]:
        """Every note of a ticket (``GET /service/tickets/{id}/notes``), by id."""
        return [n for page in self.iter_pages(f"/service/tickets/{int(ticket_id)}/notes") for n in page]

    def create_ticket_note(self, ticket_id: int, body: dict) -> dict:
        """Add a note to a ticket (``POST /service/tickets/{id}/notes``); not resent blindly either."""
        created, _ = self._request("POST", f"/service/tickets/{int(ticket_id)}/notes", json_body=body,
                                   expect=dict, resend=_resendable)
        return created

    def patch_ticket(self, ticket_id: int, ops: list[dict]) -> dict:
        """Apply JSON-patch ``ops`` to a ticket (``PATCH /service/tickets/{id}``); return the ticket.

        Example: ``[{"op": "replace", "path": "status", "value": {"id": 42}}]``. A replace is
        idempotent, so this one is retried like a read.
        """
        body, _ = self._request("PATCH", f"/service/tickets/{int(ticket_id)}", json_body=ops, expect=dict)
        return body

    def count_ticket_time(self, ticket_id: int) -> int:
        """How many time entries are charged to a service ticket (``GET /time/entries/count``)."""
        return self.count("/time/entries", f'chargeToType = "ServiceTicket" and chargeToId = {int(ticket_id)}')

    def tickets_with_time(self, ticket_ids: list[int], chunk: int = 100) -> set[int]:
        """Which of ``ticket_ids`` have a time entry charged to them (``GET /time/entries``).

        One request per ``chunk`` tickets (``chargeToId in (...)``, which keeps the URL short),
        asking only for ``id,chargeToId``; a further page only when those tickets carry more than
        ``page_size`` entries between them.
        """
        found: set[int] = set()
        ids = sorted({int(i) for i in ticket_ids})
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            conditions = f'chargeToType = "ServiceTicket" and chargeToId in ({", ".join(map(str, part))})'
            for page in self.iter_pages("/time/entries", conditions, fields="id,chargeToId"):
                found.update(int(e["chargeToId"]) for e in page if e.get("chargeToId") is not None)
        return found

    def contact_emails(self, contact_ids: list[int], chunk: int = 100) -> dict[int, str | None]:
        """The e-mail address of each contact of ``contact_ids`` (``GET /company/contacts``), None
        for one without any; a contact that does not exist (deleted) is left out.

        One request per ``chunk`` contacts (``id in (...)``), asking only for
        ``id,communicationItems``; of a contact's Email items, the default one (``defaultFlag``),
        else the first.
        """
        found: dict[int, str | None] = {}
        ids = sorted({int(i) for i in contact_ids})
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            for page in self.iter_pages("/company/contacts", f"id in ({', '.join(map(str, part))})",
                                        fields="id,communicationItems"):
                for contact in page:
                    if isinstance(contact, dict) and contact.get("id") is not None:
                        found[int(contact["id"])] = contact_email(contact)
        return found

    def count(self, path: str, conditions: str | None = None) -> int:
        """The ``count`` of a collection's ``/count`` under ``conditions``."""
        body, _ = self._request("GET", path + "/count", params={"conditions": conditions} if conditions else None,
                                expect=dict)
        try:
            return int(body["count"])
        except (KeyError, TypeError, ValueError):
            raise MalformedResponseError(VENDOR, 200, "GET", self.api_root + path + "/count",
                                         "no count in the answer") from None

    def list_board_statuses(self, board_id: int) -> list[dict]:
        """Every status of a service board (``GET /service/boards/{id}/statuses``), by id."""
        return [s for page in self.iter_pages(f"/service/boards/{int(board_id)}/statuses") for s in page]

    def find_board_type(self, board_id: int, name: str) -> dict | None:
        """The active ticket type called ``name`` on a board (``GET /service/boards/{id}/types``), or None."""
        for page in self.iter_pages(f"/service/boards/{int(board_id)}/types",
                                    f"name = {quote(name)} and inactiveFlag = false"):
            if page:
                return page[0]
        return None

    def find_priority(self, name: str) -> dict | None:
        """The service priority called ``name`` (``GET /service/priorities``), or None."""
        for page in self.iter_pages("/service/priorities", f"name = {quote(name)}"):
            if page:
                return page[0]
        return None

    def find_board(self, name: str) -> dict | None:
        """The service board called ``name`` (``GET /service/boards``), or None."""
        for page in self.iter_pages("/service/boards", f"name = {quote(name)}"):
            if page:
                return page[0]
        return None

    def patch_addition(self, agreement_id: int, addition_id: int, ops: list[dict]) -> dict:
        """Apply JSON-patch ``ops`` to an agreement addition; return the updated addition.

        Example: ``[{"op": "replace", "path": "quantity", "value": 42}]``. A replace is idempotent,
        so this one is retried like a read.
        """
        body, _ = self._request("PATCH", f"/finance/agreements/{int(agreement_id)}/additions/{int(addition_id)}",
                                json_body=ops, expect=dict)
        return body

    def close(self) -> None:
        """Close the HTTP client if this client made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ConnectWiseClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, params: dict | None = None, json_body: Any = None,
                 forward_only: bool = False, expect: type = dict,
                 resend: Callable[[BaseException], bool] | None = None) -> tuple[Any, httpx.Headers]:
        """Send one API call under the retry policy; return (decoded JSON, response headers).

        ``resend``: for requests that must not be repeated blindly, which failures may be.
        """
        retrying = self._retrying()
        if resend is not None:
            retrying = retrying.copy(retry=tenacity.retry_if_exception(resend))
        return retrying(self._attempt, method, path, params, json_body, forward_only, expect)

    def _attempt(self, method: str, path: str, params: dict | None, json_body: Any, forward_only: bool,
                 expect: type) -> tuple[Any, httpx.Headers]:
        """One try of an API call: send, map the status to an error, decode the JSON."""
        url = self.api_root + path
        headers = dict(self._headers)
        if forward_only:
            headers["pagination-type"] = "forward-only"
        target = url
        if params:
            # %20 rather than "+" for spaces: every server reads it as a space, brackets and
            # quotes of conditions included.
            target += "?" + urlencode(params, quote_via=url_quote, safe="")
        kwargs: dict[str, Any] = {"headers": headers}
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if self.limiter is not None:
            self.limiter.acquire()
        self.requests += 1
        try:
            response = self._http.request(method, target, **kwargs)
        except httpx.TransportError as exc:  # timeouts, refused connections, broken sockets
            count_request_error(VENDOR)
            raise RetryableError(VENDOR, None, method, url, type(exc).__name__) from exc
        status = response.status_code
        moment = server_time(response.headers)
        if moment is not None:
            self.server_time = moment
        if status >= 300:
            self._raise_for_status(response, method, url)
        if status == 204 or not response.content:
            return None, response.headers
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, expect):
            raise MalformedResponseError(VENDOR, status, method, url,
                                         f"expected a JSON {'array' if expect is list else 'object'}")
        return body, response.headers

    def _raise_for_status(self, response: httpx.Response, method: str, url: str) -> None:
        """Raise the hub error for an error status: retryable, credentials, or the vendor's own."""
        status = response.status_code
        error, detail = self._detail(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableError(VENDOR, status, method, url, detail,
                                 retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after)
        if status >= 500:
            # ConnectWise answers 500 for database timeouts too; all 5xx are worth another try.
            raise RetryableError(VENDOR, status, method, url, detail,
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status == 404 and error is None and "404.15" in response.text[:2000]:
            # IIS refused the URL before ConnectWise saw it (request filtering): not the credentials.
            raise VendorError(VENDOR, status, method, url,
                              f"the server refused the query string as too long (IIS HTTP Error 404.15, "
                              f"maxQueryString; {len(response.request.url.query)} characters were sent)")
        if "cannot route" in detail.lower() or (status == 404 and error is None):
            # The cloud answers a wrong company id, key pair or codebase with 404 (sometimes 400)
            # and a plain or HTML body, not its JSON error.
            raise CredentialsError(VENDOR, status, method, url,
                                   f"{detail or 'not found'}: the company id, API keys or codebase are wrong "
                                   f"(fix: {CREDENTIALS_FIX})")
        if "clientid" in detail.lower() and status in (400, 401, 403):
            raise CredentialsError(VENDOR, status, method, url, f"{detail} (fix: {CLIENT_ID_FIX})")
        if status == 401:
            raise CredentialsError(VENDOR, status, method, url, f"{detail} (fix: {CREDENTIALS_FIX})")
        if status == 403:
            raise CredentialsError(VENDOR, status, method, url, f"{detail} (fix: {ROLE_FIX})")
        raise VendorError(VENDOR, status, method, url, detail)

    def _detail(self, response: httpx.Response) -> tuple[dict | None, str]:
        """(ConnectWise's JSON error body or None, its text): code, message, each field's error."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and ("code" in body or "message" in body):
            parts = [str(body[k]) for k in ("code", "message") if body.get(k)]
            for err in body.get("errors") or []:
                if isinstance(err, dict):
                    field = err.get("field") or err.get("resource") or "?"
                    parts.append(f"{field}: {err.get('message') or err.get('code') or 'invalid'}")
            text = "; ".join(parts)
        else:
            body = None
            text = " ".join(response.text.split())[:200]
            if text.lstrip().lower().startswith(("<!doctype", "<html")):
                text = f"an HTML page ({text[:80]}...)"
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return body, text
