"""A stateful, deterministic fake of the ConnectWise PSA REST 3.0 endpoints the client uses, with faults.

Paths, parameters, required fields and maximum lengths follow ConnectWise's spec (ManageTypes.ts,
version 2022.1); behaviour the spec does not describe (Basic auth with ``company+public:private``,
the cloud's 404 "Cannot route", the ``conditions`` grammar, forward-only paging and its Link
header, the error body) follows ConnectWise's developer documentation.
"""

from __future__ import annotations

import base64
import bisect
import collections
import json
import random
import re
import threading
import time
from array import array
from datetime import datetime
from email.utils import formatdate
from typing import Any, Callable, Iterable

import httpx

# A fixed "now" keeps generated timestamps deterministic: 2025-06-01T00:00:00Z.
DEFAULT_NOW = 1_748_736_000.0
DAY = 86_400
API_VERSION = "2022.1"
MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 1000, 25
CANNOT_ROUTE = "Cannot route. Codebase/company is invalid"
_PREFIX = re.compile(r"^/(v4_6_release|v20\d\d_\d+)/apis/3\.0(/.*)$")


def _resource_of(path: str) -> str:
    m = _PREFIX.match(path)
    return m.group(2).rstrip("/") if m else path


def _endpoint_of(path: str) -> str:
    """The collection a path lists, ids as ``{id}``: ``/finance/agreements/{id}/additions``."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", _resource_of(path))

# Currencies as ConnectWise references them (2022.1 CurrencyReference): code -> (id, symbol, name).
CURRENCIES = {"EUR": (7, "€", "Euro"), "USD": (1, "$", "US Dollar"), "GBP": (3, "£", "Pound Sterling")}
COMPANY_NAMES = ("Acme Dental", "Birchwood Legal", "Cobalt Logistics", "Driftwood Cafe", "Elm Street Clinic",
                 "Fairview Schools", "Granite Builders", "Harbor Insurance", "Ironclad Security",
                 "Juniper Accounting", "Kestrel Aviation", "Lumen Architects")
# The seeded companies' addresses, in France by default: (addressLine1, zip, city).
FRENCH_ADDRESSES = (("12 rue de la République", "69002", "Lyon"), ("4 place Bellecour", "69002", "Lyon"),
                    ("27 avenue Jean Jaurès", "13001", "Marseille"), ("8 rue Sainte-Catherine", "33000", "Bordeaux"),
                    ("15 boulevard Haussmann", "75009", "Paris"), ("3 quai de la Fosse", "44000", "Nantes"),
                    ("21 rue du Faubourg de Pierre", "67000", "Strasbourg"), ("6 allée Jean Jaurès", "31000", "Toulouse"))
# Country references (CountryReference: id, name) for the countries companies may be put in.
COUNTRY_REFS = {"France": 75, "Belgium": 21, "Germany": 82, "United Kingdom": 225, "United States": 1,
                "Switzerland": 206, "Spain": 195, "Italy": 107}
_DEFAULT = object()


def french_vat(siren: int) -> str:
    """The intra-community VAT number of a French SIREN: FR, its key, the SIREN."""
    return f"FR{(12 + 3 * (siren % 97)) % 97:02d}{siren:09d}"


# (type name, applicationUnits, applicationLimit, billing cycle): managed tiers and a block of hours.
AGREEMENT_TYPES = (("Managed Gold", None, None, "Monthly"), ("Managed Silver", None, None, "Monthly"),
                   ("Block Hours", "Hours", 20.0, "Monthly"), ("Managed Bronze", None, None, "Quarterly"))
# Catalog items sold as agreement additions and product lines: (id, identifier, description, price, cost).
CATALOG = ((11, "MS-WS", "Managed workstation", 35.0, 12.5), (12, "MS-SRV", "Managed server", 120.0, 40.0),
           (13, "AV-SEAT", "Antivirus seat", 4.5, 1.75), (14, "BACKUP-TB", "Backup per TB", 25.0, 9.0),
           (15, "SSD-1TB", "1 TB SSD", 109.99, 72.4), (16, "DOCK-USB-C", "USB-C dock", 189.0, 131.25))
MEMBERS = ((101, "jsmith", "John Smith"), (102, "amartin", "Anna Martin"), (103, "lchen", "Li Chen"),
           (104, "okafor", "Ngozi Okafor"), (105, "pdubois", "Pierre Dubois"), (106, "sgarcia", "Sofia Garcia"))
WORK_TYPES = ((1, "Remote Support"), (2, "Onsite"), (3, "Project Work"), (4, "Admin"), (5, "After Hours"),
              (6, "Virus Removal"))
WORK_ROLES = ((1, "Technician"), (2, "Senior Engineer"), (3, "Project Manager"))
BILLABLE = ("Billable", "DoNotBill", "NoCharge", "NoDefault")
CHARGE_TYPES = ("ServiceTicket", "ProjectTicket", "ChargeCode", "Activity")
STATUSES = ("Open", "PendingApproval", "ApprovedByTierOne", "ApprovedByTierTwo", "ReadyToBill", "Billed",
            "BilledAgreement", "WrittenOff")
RATES = (0.0, 95.0, 120.0, 150.0, 137.5)
BOARDS = ((1, "Help Desk"), (2, "Alerts"), (3, "Projects"))
# Every board's statuses: (name, closedStatus, defaultFlag). Ids are global, as in ConnectWise.
BOARD_STATUSES = (("New", False, True), ("In Progress", False, False), ("Waiting", False, False),
                  ("Closed", True, False), ("Resolved", True, False))
# Every board's types: (name, defaultFlag).
BOARD_TYPES = {"Help Desk": (("Incident", True), ("Service Request", False), ("Problem", False)),
               "Alerts": (("Alert", True), ("Incident", False)),
               "Projects": (("Project Task", True),)}
# ConnectWise's stock priorities: (id, name, sortOrder, defaultFlag).
PRIORITIES = ((1, "Priority 1 - Emergency Response", 2, False), (2, "Priority 2 - Quick Response", 4, False),
              (4, "Priority 3 - Normal Response", 6, True), (5, "Priority 4 - Schedule Maintenance", 8, False),
              (7, "Do Not Respond", 10, False))
# Configuration types as an MSP sets them up (ConfigurationTypeReference ids); any other name gets id 1.
CONFIGURATION_TYPES = {"Managed Workstation": 1, "Server": 2, "Firewall": 3, "Workstation": 4, "Laptop": 5,
                       "Switch": 6, "Mobile Device": 7, "Access Point": 8, "Printer": 9, "NAS": 10}
# The types the generated configurations take, in turn (workstations and laptops are the most).
GENERATED_TYPES = ("Server", "Firewall", "Workstation", "Laptop", "Workstation", "Switch", "Laptop", "Mobile Device",
                   "Workstation", "Access Point", "Laptop", "NAS")
# The generated service tickets' priorities (ids of PRIORITIES) and how long each takes to close, in
# hours (from, to): an emergency within hours, a scheduled job within weeks.
GENERATED_PRIORITIES = ((1, 1, 8), (2, 2, 48), (4, 4, 120), (4, 4, 120), (4, 8, 240), (5, 24, 600), (7, 1, 72))

# Ticket fields a PATCH may change (a subset of the spec's Ticket; the rest are refused as read-only or unknown).
TICKET_PATCHABLE = {"status", "priority", "type", "subType", "summary", "severity", "impact", "owner",
                    "externalXRef", "customerUpdatedFlag", "processNotifications", "skipCallback"}

# Maximum lengths and required fields from the spec's Ticket schema for the fields a POST may carry.
TICKET_MAX = {"summary": 100, "externalXRef": 100, "siteName": 50, "addressLine1": 50, "addressLine2": 50,
              "city": 50, "stateIdentifier": 50, "zip": 12, "contactName": 62, "contactPhoneNumber": 20,
              "contactPhoneExtension": 15, "contactEmailAddress": 250, "poNumber": 50, "automaticEmailCc": 1000}
ADDITION_NUMBERS = {"quantity", "lessIncluded", "unitPrice", "unitCost", "billedQuantity", "sequenceNumber"}
ADDITION_FIELDS = ADDITION_NUMBERS | {"product", "billCustomer", "effectiveDate", "cancelledDate", "taxableFlag",
                                      "serialNumber", "invoiceDescription", "purchaseItemFlag", "specialOrderFlag",
                                      "description", "uom", "prorateCurrentPeriodFlag", "opportunity",
                                      "invoiceGrouping", "customFields"}
ADDITION_READ_ONLY = {"id", "agreementId", "extPrice", "extCost", "margin", "prorateCost", "proratePrice",
                      "extendedProrateCost", "extendedProratePrice", "agreementStatus", "_info"}


class _Null:
    """A field value the simulator serves as JSON null (``None`` removes the field instead)."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()


def iso(epoch: float) -> str:
    """Epoch seconds as ConnectWise writes datetimes: ``2025-06-01T00:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def _error(status: int, code: str, message: str, errors: list[dict] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return _json(status, body)


def _invalid(resource: str, *errors: tuple[str, str, str]) -> httpx.Response:
    """ConnectWise's 400 for a bad object: one entry per (code, field, message)."""
    return _error(400, "InvalidObject", f"{resource} object is invalid",
                  [{"code": code, "message": message, "resource": resource, "field": field}
                   for code, field, message in errors])


class BadRequest(Exception):
    """A request the simulated API refuses with a 400; carries the response."""

    def __init__(self, response: httpx.Response):
        super().__init__("bad request")
        self.response = response


# IIS, which serves the API, refuses a query string longer than this by default (request
# filtering's maxQueryString) with "HTTP Error 404.15".
MAX_QUERY_STRING = 2048

# --- conditions ----------------------------------------------------------------------------------
# The subset of ConnectWise's conditions grammar the hub uses, and a little more: comparisons
# (= != < <= > >=, contains, like, in, not in) of a field path with a "string", a [datetime], a
# number, true/false or null, joined by and/or/not and parentheses. Keywords are case-insensitive
# and string comparisons too, as on ConnectWise's SQL Server.

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<dt>\[[^\]]*\])|(?P<num>-?\d+(?:\.\d+)?(?![\w/]))'
                    r'|(?P<op><=|>=|!=|<>|=|<|>)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<word>[A-Za-z_][\w/.]*))')
_MISSING = object()


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read the conditions at {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks, self.i = _tokens(text), 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ValueError("the conditions end too early")
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].lower() in words:
            self.i += 1
            return True
        return False

    def parse(self):
        node = self.expr()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()[1]!r} in the conditions")
        return node

    def expr(self):
        node = self.conj()
        while self.word("or"):
            node = ("or", node, self.conj())
        return node

    def conj(self):
        node = self.unary()
        while self.word("and"):
            node = ("and", node, self.unary())
        return node

    def unary(self):
        if self.word("not"):
            return ("not", self.unary())
        if self.peek() and self.peek()[0] == "lp":
            self.take()
            node = self.expr()
            if self.take()[0] != "rp":
                raise ValueError("a parenthesis is not closed")
            return node
        return self.comparison()

    def comparison(self):
        kind, field = self.take()
        if kind != "word":
            raise ValueError(f"expected a field name, got {field!r}")
        negate = self.word("not")
        if self.word("in"):
            if self.take()[0] != "lp":
                raise ValueError("expected ( after in")
            values = [self.value()]
            while self.peek() and self.peek()[0] == "comma":
                self.take()
                values.append(self.value())
            if self.take()[0] != "rp":
                raise ValueError("expected ) closing in (...)")
            node = ("in", field, values)
            return ("not", node) if negate else node
        if negate:
            raise ValueError("expected in after not")
        if self.word("contains", "like"):
            op = self.toks[self.i - 1][1].lower()
        else:
            kind, op = self.take()
            if kind != "op":
                raise ValueError(f"expected an operator after {field}, got {op!r}")
            op = "!=" if op == "<>" else op
        return ("cmp", field, op, self.value())

    def value(self):
        kind, text = self.take()
        if kind == "str":
            return ("str", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "dt":
            try:
                return ("dt", epoch(text[1:-1].strip()))
            except ValueError:
                raise ValueError(f"{text} is not a datetime like [2024-01-01T00:00:00Z]") from None
        if kind == "num":
            return ("num", float(text))
        if kind == "word" and text.lower() in ("true", "false"):
            return ("bool", text.lower() == "true")
        if kind == "word" and text.lower() == "null":
            return ("null", None)
        raise ValueError(f"expected a value, got {text!r}")


def parse_conditions(text: str):
    """The conditions as a small tree; ValueError with the reason when they cannot be read."""
    return _Parser(text).parse()


def _resolve(record: dict, field: str):
    if field in ("lastUpdated", "dateEntered", "updatedBy", "enteredBy") and field not in record:
        return (record.get("_info") or {}).get(field, _MISSING)
    value: Any = record
    for part in field.split("/"):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _compare(actual, op: str, literal) -> bool:
    kind, want = literal
    if kind == "null":
        empty = actual is None or actual is _MISSING
        return empty if op == "=" else not empty if op == "!=" else False
    if actual is None or actual is _MISSING:
        return op == "!="
    if op in ("contains", "like"):
        if kind != "str" or not isinstance(actual, str):
            return False
        if op == "contains":
            return want.lower() in actual.lower()
        pattern = "^" + ".*".join(re.escape(p) for p in re.split(r"[%*]", want.lower())) + "$"
        return re.match(pattern, actual.lower(), re.S) is not None
    if kind == "dt":
        try:
            actual = epoch(actual) if isinstance(actual, str) else float(actual)
        except (TypeError, ValueError):
            return False
    elif kind == "str":
        actual, want = str(actual).lower(), want.lower()
    elif kind == "num":
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False
    elif kind == "bool" and not isinstance(actual, bool):
        return False
    return {"=": actual == want, "!=": actual != want, "<": actual < want, "<=": actual <= want,
            ">": actual > want, ">=": actual >= want}[op]


def matches(node, record: dict) -> bool:
    """Whether ``record`` (a vendor dict) satisfies a parsed conditions tree."""
    head = node[0]
    if head == "and":
        return matches(node[1], record) and matches(node[2], record)
    if head == "or":
        return matches(node[1], record) or matches(node[2], record)
    if head == "not":
        return not matches(node[1], record)
    if head == "in":
        actual = _resolve(record, node[1])
        return any(_compare(actual, "=", v) for v in node[2])
    return _compare(_resolve(record, node[1]), node[2], node[3])


def _charge_ids(node) -> set[int] | None:
    """The chargeToId values conditions pin (``chargeToId = 5`` or ``chargeToId in (5, 6)``, alone or
    and-ed with others), or None when they pin none."""
    if node is None:
        return None
    if node[0] == "and":
        return _charge_ids(node[1]) if _charge_ids(node[1]) is not None else _charge_ids(node[2])
    if node[0] == "cmp" and node[1] == "chargeToId" and node[2] == "=" and node[3][0] == "num":
        return {int(node[3][1])}
    if node[0] == "in" and node[1] == "chargeToId" and all(v[0] == "num" for v in node[2]):
        return {int(v[1]) for v in node[2]}
    return None


def _pick(record: dict, fields: list[str]) -> dict:
    """A partial record, as ``fields=id,status/name`` asks for: only the paths named."""
    out: dict = {}
    for path in fields:
        value: Any = record
        parts = path.split("/")
        for part in parts:
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            continue
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out


# --- record stores -------------------------------------------------------------------------------

def _present(value: Any) -> Any:
    """A record as the API sends it: fields without a value left out, in nested objects too."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


class _Records:
    """Records kept as dicts, ids sorted: companies, agreements, additions, tickets...

    Served without their None fields, as the API leaves out a field without a value, unless
    ``keep_nulls`` (then as explicit nulls)."""

    keep_nulls = False

    def __init__(self, resource: str):
        self.resource = resource
        self.rows: dict[int, dict] = {}
        self.ids: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def next_id(self, start: int = 1) -> int:
        return self.ids[-1] + 1 if self.ids else start

    def put(self, record: dict) -> dict:
        if record["id"] not in self.rows:
            bisect.insort(self.ids, record["id"])
        self.rows[record["id"]] = record
        return record

    def get(self, record_id: int) -> dict | None:
        return self.rows.get(record_id)

    def encode(self, record_id: int) -> bytes:
        record = self.rows[record_id]
        return json.dumps(record if self.keep_nulls else _present(record)).encode()

    def touch(self, record_id: int, when: float) -> None:
        self.rows[record_id].setdefault("_info", {})["lastUpdated"] = iso(when)

    def updated_after(self, when: float, strict: bool) -> list[int] | None:
        return None  # small tables are filtered record by record


class _TimeEntries:
    """Time entries in columns (about 50 bytes each), rendered to JSON only when served.

    A million entries fit in some 60 MB. ``updated_after`` answers ``lastUpdated > [t]`` from an
    index sorted by lastUpdated plus the entries changed since it was built, so a query never
    scans the table; its answer is cached until the next change.
    """

    resource = "timeEntry"
    # One entry's JSON, filled from the columns with pre-escaped names.
    _TEMPLATE = (
        '{"id": %d, "company": {"id": %d, "identifier": %s, "name": %s}, "chargeToId": %s, '
        '"chargeToType": "%s", "member": {"id": %d, "identifier": "%s", "name": "%s"}, "locationId": 2, '
        '"businessUnitId": 10, "workType": {"id": %d, "name": "%s"}, "workRole": {"id": %d, "name": "%s"}, '
        '"agreement": %s, "timeStart": "%s", "timeEnd": "%s", "hoursDeduct": 0.0, "actualHours": %s, '
        '"billableOption": "%s", "notes": "%s", "internalNotes": "", "addToDetailDescriptionFlag": false, '
        '"addToInternalAnalysisFlag": false, "addToResolutionFlag": false, "hoursBilled": %s, '
        '"invoiceHours": %s, "enteredBy": "%s", "dateEntered": "%s", "invoice": %s, "hourlyRate": %s, '
        '"overageRate": 0.0, "agreementHours": 0.0, "agreementAmount": 0.0, "status": "%s", '
        '"ticket": %s, "_info": {"lastUpdated": "%s", "updatedBy": "%s", "dateEntered": "%s"}}')

    # The fields the template may fill with null, left out unless ``keep_nulls`` (never the last).
    _NULLABLE = tuple(f'"{k}": null, ' for k in ("chargeToId", "agreement", "invoice", "ticket"))
    keep_nulls = False

    def __init__(self, companies: _Records, agreements: _Records):
        self._companies, self._agreements = companies, agreements
        self.ids = array("i")
        self._company, self._charge_id, self._agreement, self._invoice = array("i"), array("i"), array("i"), array("i")
        self._start, self._updated = array("q"), array("q")
        self._minutes, self._rate_cents = array("H"), array("i")
        self._member, self._work_type, self._work_role = array("B"), array("B"), array("B")
        self._billable, self._charge_type, self._status = array("B"), array("B"), array("B")
        self.extra: dict[int, dict] = {}      # per-entry fields set or removed (None) by tests
        self._index_ids, self._index_at = array("i"), array("q")
        self._changed: dict[int, int] = {}    # id -> lastUpdated, for entries changed since the index
        self._cache: tuple | None = None
        self.version = 0
        self._company_json: dict[int, tuple[str, str]] = {}   # JSON of names, filled on first use
        self._agreement_json: dict[int, str] = {0: "null"}

    def __len__(self) -> int:
        return len(self.ids)

    def next_id(self, start: int = 1) -> int:
        return self.ids[-1] + 1 if self.ids else start

    def append(self, entry_id: int, company: int, member: int, start: int, minutes: int, billable: int,
               work_type: int, work_role: int, charge_type: int, charge_id: int, agreement: int,
               rate_cents: int, status: int, invoice: int, updated: int, *, indexed: bool = True) -> None:
        """Add one entry; ids must increase. ``indexed=False`` (bulk loads) waits for ``build_index``."""
        if self.ids and entry_id <= self.ids[-1]:
            raise ValueError(f"time entry ids must increase: {entry_id} <= {self.ids[-1]}")
        self.ids.append(entry_id)
        self._company.append(company)
        self._member.append(member)
        self._start.append(start)
        self._minutes.append(minutes)
        self._billable.append(billable)
        self._work_type.append(work_type)
        self._work_role.append(work_role)
        self._charge_type.append(charge_type)
        self._charge_id.append(charge_id)
        self._agreement.append(agreement)
        self._rate_cents.append(rate_cents)
        self._status.append(status)
        self._invoice.append(invoice)
        self._updated.append(updated)
        if indexed:
            self._changed[entry_id] = updated
            self._changed_some()

    def _row(self, entry_id: int) -> int:
        i = bisect.bisect_left(self.ids, entry_id)
        if i == len(self.ids) or self.ids[i] != entry_id:
            raise KeyError(entry_id)
        return i

    def __contains__(self, entry_id: int) -> bool:
        i = bisect.bisect_left(self.ids, entry_id)
        return i < len(self.ids) and self.ids[i] == entry_id

    def get(self, entry_id: int) -> dict | None:
        return json.loads(self.encode(entry_id)) if entry_id in self else None

    def encode(self, entry_id: int) -> bytes:
        i = self._row(entry_id)
        company = self._company[i]
        names = self._company_json.get(company)
        if names is None:
            rec = self._companies.get(company) or {"identifier": f"C{company}", "name": f"Company {company}"}
            names = self._company_json[company] = (json.dumps(rec["identifier"]), json.dumps(rec["name"]))
        member_id, member, member_name = MEMBERS[self._member[i]]
        wt_id, wt = WORK_TYPES[self._work_type[i]]
        wr_id, wr = WORK_ROLES[self._work_role[i]]
        start, minutes = self._start[i], self._minutes[i]
        charge_type = CHARGE_TYPES[self._charge_type[i]]
        charge_id = self._charge_id[i]
        agreement_id = self._agreement[i]
        agreement = self._agreement_json.get(agreement_id)
        if agreement is None:
            agr = self._agreements.get(agreement_id)
            agreement = self._agreement_json[agreement_id] = json.dumps(
                {"id": agreement_id, "name": agr["name"] if agr else f"Agreement {agreement_id}",
                 "type": agr["type"]["name"] if agr else ""})
        invoice_id = self._invoice[i]
        invoice = f'{{"id": {invoice_id}, "identifier": "INV{invoice_id}"}}' if invoice_id else "null"
        hours = repr(minutes / 60)
        billable = BILLABLE[self._billable[i]]
        billed = hours if billable == "Billable" else "0.0"
        ticket = (f'{{"id": {charge_id}, "summary": "Ticket {charge_id}"}}'
                  if charge_type in ("ServiceTicket", "ProjectTicket") else "null")
        entered = iso(start + minutes * 60)
        text = self._TEMPLATE % (
            entry_id, company, names[0], names[1], charge_id if charge_id else "null", charge_type, member_id,
            member, member_name, wt_id, wt, wr_id, wr, agreement, iso(start), entered, hours,
            billable, f"{wt} for ticket {charge_id}", billed, billed, member, entered, invoice,
            repr(self._rate_cents[i] / 100), STATUSES[self._status[i]], ticket, iso(self._updated[i]), member, entered)
        if not self.keep_nulls:
            for key in self._NULLABLE:
                text = text.replace(key, "")
        extra = self.extra.get(entry_id)
        if extra:
            record = json.loads(text)
            for key, value in extra.items():
                if value is None:
                    record.pop(key, None)
                else:
                    record[key] = None if value is NULL else value
            return json.dumps(record).encode()
        return text.encode()

    def forget_names(self) -> None:
        """Drop the cached JSON of company and agreement names (one was added or renamed)."""
        self._company_json.clear()
        self._agreement_json = {0: "null"}

    def touch(self, entry_id: int, when: float) -> None:
        i = self._row(entry_id)
        self._updated[i] = int(when)
        self._changed[entry_id] = int(when)
        self._changed_some()

    def set(self, entry_id: int, **fields: Any) -> None:
        """Set raw vendor fields of one entry (``None`` removes a field), as an edit in ConnectWise."""
        self._row(entry_id)
        self.extra.setdefault(entry_id, {}).update(fields)
        self.version += 1
        self._cache = None

    def _changed_some(self) -> None:
        self.version += 1
        self._cache = None
        if len(self._changed) > 100_000:
            self.build_index()

    def build_index(self) -> None:
        """Sort every entry by lastUpdated (then id); forget the list of changed entries."""
        order = sorted(range(len(self.ids)), key=self._updated.__getitem__)
        self._index_ids = array("i", [self.ids[i] for i in order])
        self._index_at = array("q", [self._updated[i] for i in order])
        self._changed.clear()
        self._cache = None

    def charged_to(self, charge_ids: set[int]) -> list[int]:
        """Ids (in id order) of the entries that may be charged to one of ``charge_ids``: those whose
        chargeToId column is one of them, and those with fields set by tests (checked by the caller)."""
        ids, charged = self.ids, self._charge_id
        found = {ids[i] for i in range(len(ids)) if charged[i] in charge_ids}
        found.update(self.extra)
        return sorted(found)

    def updated_after(self, when: float, strict: bool) -> list[int]:
        """Ids (in id order) of the entries whose lastUpdated is after ``when`` (or at it, not strict)."""
        key = (when, strict, self.version)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        at = self._index_at
        first = bisect.bisect_right(at, when) if strict else bisect.bisect_left(at, when)
        changed = self._changed
        ids = [i for i in self._index_ids[first:] if i not in changed]
        ids.extend(i for i, t in changed.items() if (t > when if strict else t >= when))
        ids.sort()
        self._cache = (key, ids)
        return ids


# --- the simulator ---------------------------------------------------------------------------------

class ConnectWiseSimulator:
    """Companies, agreements with additions, time entries, product lines, tickets with notes, boards.

    Served like ``https://{site}/{codebase}/apis/3.0/...``; mount with ``httpx.MockTransport(sim.handler)``
    or serve over HTTP with ``hub.testing.serve``. Data comes from ``random.Random(seed)``; ids increase
    with gaps. Every request must carry Basic auth ``company_id+public_key:private_key`` and the
    ``clientId`` header. ``requests`` counts requests served and ``requests_by_path`` counts them per
    resource path (``/time/entries``); ``log`` keeps the last 1000 as ``(method, path, query dict)``.
    ``now`` (epoch seconds) is the clock for generated data, ``touch`` and writes, and the ``Date``
    header of every answer. It stands still unless ``clock_offset`` is given: then it is the real
    time plus that many seconds (negative: behind), as a server whose clock differs from the
    hub's; setting ``now`` stops it again.

    Paging faults: ``max_page_size`` caps every page below the ``pageSize`` asked for (the next
    link still leads on); ``links=False`` sends no Link header (the client then pages by the last
    id); ``forward_only=False`` ignores the ``pagination-type`` header (and ``pageId``) and answers
    numbered pages, as an endpoint without forward-only paging; ``without_links`` and
    ``without_forward_only`` do either for the endpoints named only (``/time/entries``,
    ``/finance/agreements/{id}/additions``), as a server where forward-only paging is not
    supported on every endpoint (attributes too, sets to change between requests);
    ``short_page_next`` cuts the next
    pages short (what is left out comes on the next page); ``lose_next`` leaves records out of
    the next pages for good, as a page that lost records, so that only a ``/count`` shows them
    missing.

    Configurations (``/company/configurations``, ``add_configuration``) can be associated with a
    ticket (``POST /service/tickets/{id}/configurations`` with ``{"id": <configuration id>}``, listed
    by ``GET`` on the same path as ConfigurationReference; an association made twice is refused with
    400); ``ticket_configurations`` says which are. ``configurations=N`` generates N of them over
    the companies, of the types in ``GENERATED_TYPES``, most with a ``warrantyExpirationDate``
    (expired or not), some without one, some inactive.
    Fields without a value are left out of every record served, as the API does; ``nulls=True``
    sends them as explicit nulls instead. Companies carry ``currency.currencyCode`` (the 2022.1
    ``CurrencyReference``); ``add_company(currency=...)`` sets it.

    Tickets follow their board's statuses (``BOARD_STATUSES``: a status with ``closedStatus`` sets
    ``closedFlag``, ``closedDate`` and ``closedBy``), priorities (``/service/priorities``) and types
    (``/service/boards/{id}/types``). What the API writes is done as the API member ``api_member``
    (``_info.enteredBy``/``updatedBy``, ``closedBy``); ``technician_works_on`` and
    ``technician_sets_status`` act as a person in ConnectWise would.

    Args:
        tickets: how many tickets to generate, about half of them made by the hub (``externalXRef``
            ``msp-hub:...``), some worked on, some closed.
        configurations: how many configurations to generate (see above).
        service_tickets: how many tickets of the past to generate, opened over the last nine
            months (``_info.dateEntered``) at every priority, most of them closed some hours or
            days later (``closedDate``); about half opened by the hub on Alerts, the rest by people
            on Help Desk (a few with another integration's ``externalXRef``).
        Both come from their own random generator: the data of the other arguments is the same
        with or without them (their records come after, with the next ids).
        api_member: the identifier of the API member the keys belong to.
        cloud: True answers bad credentials like the cloud (404 "Cannot route..."), False like
            an on-premise server (401 with the JSON error).
    """

    def __init__(self, seed: int = 0, companies: int = 4, agreements: int = 6, time_entries: int = 60,
                 products: int = 12, tickets: int = 0, *, configurations: int = 0, service_tickets: int = 0,
                 company_id: str = "msphub",
                 public_key: str = "sim-public-key", private_key: str = "sim-private-key",
                 client_id: str = "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f", now: float = DEFAULT_NOW,
                 api_member: str = "apimember", cloud: bool = True, clock_offset: float | None = None,
                 max_page_size: int | None = None, links: bool = True, forward_only: bool = True,
                 without_links: Iterable[str] = (), without_forward_only: Iterable[str] = (), nulls: bool = False):
        self.company_id, self.public_key, self.private_key = company_id, public_key, private_key
        self.client_id, self.now, self.cloud, self.api_member = client_id, now, cloud, api_member
        self.clock_offset = clock_offset
        if max_page_size is not None and max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        self.max_page_size, self.links, self.forward_only = max_page_size, links, forward_only
        self.without_links, self.without_forward_only = set(without_links), set(without_forward_only)
        self.nulls = nulls
        # The longest query string served (IIS's default maxQueryString); longer ones get 404.15.
        self.max_query_string = MAX_QUERY_STRING
        self.refused_queries = 0
        self._page_faults: list[dict[str, Any]] = []
        self.rng = random.Random(seed)
        self.requests = 0
        self.requests_by_path: collections.Counter[str] = collections.Counter()
        self.versions: collections.Counter[str] = collections.Counter()  # Accept versions seen
        self.log: collections.deque[tuple[str, str, dict[str, str]]] = collections.deque(maxlen=1000)
        self._lock = threading.RLock()
        self._faults: list[dict[str, Any]] = []
        self.companies = _Records("company")
        self.agreements = _Records("agreement")
        self.additions = _Records("addition")
        self.products = _Records("productItem")
        self.tickets = _Records("ticket")
        self.notes = _Records("serviceNote")
        self.boards = _Records("board")
        self.statuses = _Records("boardStatus")
        self.types = _Records("boardType")
        self.priorities = _Records("priority")
        # Configurations (CIs) and, per ticket, the configuration ids associated with it.
        self.configurations = _Records("configuration")
        # Contacts (``/company/contacts``): a company's ``defaultContact`` or ``billingContact``.
        self.contacts = _Records("contact")
        self._ticket_configurations: dict[int, list[int]] = {}
        self.time_entries = _TimeEntries(self.companies, self.agreements)
        if nulls:
            for table in (self.companies, self.agreements, self.additions, self.products, self.tickets, self.notes,
                          self.boards, self.statuses, self.types, self.priorities, self.time_entries, self.contacts):
                table.keep_nulls = True
        for priority_id, name, sort, default in PRIORITIES:
            self.add_priority(name, sort_order=sort, default=default, id=priority_id)
        self._initial_descriptions: dict[int, str] = {}
        for board_id, name in BOARDS:
            self.add_board(name, id=board_id)
        for i in range(companies):
            base = COMPANY_NAMES[i % len(COMPANY_NAMES)]
            self.add_company(base if i < len(COMPANY_NAMES) else f"{base} {i // len(COMPANY_NAMES) + 1}")
        for i in range(agreements):
            type_name, units, limit, cycle = AGREEMENT_TYPES[i % len(AGREEMENT_TYPES)]
            company = self.companies.ids[i % len(self.companies.ids)]
            agreement_id = self.add_agreement(company, type_name, application_units=units,
                                              application_limit=limit, billing_cycle=cycle)
            if units is None:
                for item in self.rng.sample(CATALOG[:4], self.rng.randint(1, 3)):
                    self.add_addition(agreement_id, item[1], quantity=self.rng.randint(1, 60))
        self._generate_time_entries(time_entries)
        self._generate_products(products)
        self._generate_tickets(tickets)
        self.add_report_data(configurations, service_tickets, seed=seed)
        self.time_entries.build_index()

    @property
    def now(self) -> float:
        """The simulator's clock: fixed, or the real time plus ``clock_offset``."""
        return self._now if self.clock_offset is None else time.time() + self.clock_offset

    @now.setter
    def now(self, value: float) -> None:
        self._now, self.clock_offset = value, None

    # --- shaping data ---------------------------------------------------------------------------

    def _info(self, when: float | None = None, by: str = "sim") -> dict[str, str]:
        stamp = iso(self.now if when is None else when)
        return {"lastUpdated": stamp, "updatedBy": by, "dateEntered": stamp, "enteredBy": by}

    def add_company(self, name: str, identifier: str | None = None, id: int | None = None,  # noqa: A002
                    updated: float | None = None, currency: str = "EUR", *, address: Any = _DEFAULT,
                    country: str | None = "France", tax_identifier: Any = _DEFAULT, email: Any = _DEFAULT,
                    invoice_email: str | None = None) -> int:
        """Add a company; return its id (the next free one from 250 unless given).

        By default it is in France: a French address (``FRENCH_ADDRESSES``, by id), its VAT number
        as ``taxIdentifier`` (from a SIREN made of its id) and a default contact whose e-mail is
        ``billing@<identifier>.example.fr``. ``address``: ``(addressLine1, zip, city)`` or None;
        ``country``: a name of ``COUNTRY_REFS`` (or any name: id 999) or None; ``tax_identifier``:
        the text or None; ``email``: the default contact's e-mail, or None for no contact;
        ``invoice_email``: the company's ``invoiceToEmailAddress``.
        """
        with self._lock:
            company_id = id if id is not None else self.companies.next_id(250)
            identifier = identifier or re.sub(r"\W", "", name)[:25]
            record: dict[str, Any] = {
                "id": company_id, "identifier": identifier, "name": name[:50],
                "status": {"id": 1, "name": "Active"},
                "types": [{"id": 1, "name": "Client"}], "deletedFlag": False,
                "currency": {"id": CURRENCIES.get(currency, (99, "", ""))[0], "symbol": CURRENCIES.get(currency, (99, "", ""))[1],
                             "currencyCode": currency, "name": CURRENCIES.get(currency, (99, "", currency))[2]},
                "_info": self._info(updated)}
            if address is _DEFAULT:
                address = FRENCH_ADDRESSES[company_id % len(FRENCH_ADDRESSES)]
            if address is not None:
                record.update({"addressLine1": address[0], "zip": address[1], "city": address[2]})
            if country is not None:
                record["country"] = {"id": COUNTRY_REFS.get(country, 999), "name": country}
            if tax_identifier is _DEFAULT:
                tax_identifier = french_vat(400_000_000 + company_id * 1_009)
            if tax_identifier is not None:
                record["taxIdentifier"] = tax_identifier
            if invoice_email is not None:
                record["invoiceToEmailAddress"] = invoice_email
            self.companies.put(record)
            if email is _DEFAULT:
                email = f"billing@{identifier.lower()}.example.fr"
            if email is not None:
                self.add_contact(company_id, "Service", "Comptabilité", email, default=True, updated=updated)
            self.time_entries.forget_names()
            return company_id

    def add_contact(self, company_id: int, first_name: str, last_name: str, email: str | None = None, *,
                    default: bool = False, billing: bool = False, id: int | None = None,  # noqa: A002
                    updated: float | None = None) -> int:
        """Add a contact of a company (``/company/contacts``) with its e-mail as a default Email
        communication item; ``default``/``billing`` make it the company's ``defaultContact`` /
        ``billingContact`` (without touching the company's ``lastUpdated``, as in ConnectWise)."""
        with self._lock:
            company = self.companies.get(company_id)
            if company is None:
                raise ValueError(f"no company {company_id}")
            contact_id = id if id is not None else self.contacts.next_id(500)
            items = [] if email is None else [
                {"id": contact_id * 10, "type": {"id": 1, "name": "Email"}, "value": email, "defaultFlag": True,
                 "communicationType": "Email"}]
            self.contacts.put({
                "id": contact_id, "firstName": first_name, "lastName": last_name,
                "company": {"id": company_id, "identifier": company["identifier"], "name": company["name"]},
                "defaultFlag": default, "communicationItems": items, "_info": self._info(updated)})
            reference = {"id": contact_id, "name": f"{first_name} {last_name}"}
            if default:
                company["defaultContact"] = reference
            if billing:
                company["billingContact"] = reference
            self.companies.put(company)
            return contact_id

    def add_agreement(self, company_id: int, type_name: str = "Managed Gold", *, name: str | None = None,
                      application_units: str | None = None, application_limit: float | None = None,
                      billing_cycle: str = "Monthly", start: str = "2024-01-01T00:00:00Z", end: str | None = None,
                      status: str = "Active", id: int | None = None, updated: float | None = None) -> int:  # noqa: A002
        """Add an agreement for a company (``application_units="Hours"`` and a limit for a block)."""
        with self._lock:
            company = self.companies.get(company_id)
            if company is None:
                raise ValueError(f"no company {company_id}")
            agreement_id = id if id is not None else self.agreements.next_id(40)
            types = [t[0] for t in AGREEMENT_TYPES]
            self.agreements.put({
                "id": agreement_id, "name": name or f"{company['name']} {type_name}"[:100],
                "type": {"id": types.index(type_name) + 1 if type_name in types else 99, "name": type_name},
                "company": {"id": company_id, "identifier": company["identifier"], "name": company["name"]},
                "startDate": start, "endDate": end, "noEndingDateFlag": end is None,
                "cancelledFlag": status == "Cancelled", "applicationUnits": application_units,
                "applicationLimit": application_limit, "applicationUnlimitedFlag": False,
                "applicationCycle": "CalendarMonth" if application_units else None,
                "billingCycle": {"id": 1, "name": billing_cycle}, "billTime": "Billable",
                "billExpenses": "Billable", "billProducts": "Billable", "billAmount": 0.0,
                "agreementStatus": status, "_info": self._info(updated)})
            self.time_entries.forget_names()
            return agreement_id

    def add_addition(self, agreement_id: int, product: str = "MS-WS", *, quantity: float = 1,
                     unit_price: float | None = None, bill_customer: str = "Billable",
                     description: str | None = None, effective: str = "2024-01-01T00:00:00Z",
                     cancelled: str | None = None, id: int | None = None,  # noqa: A002
                     updated: float | None = None) -> int:
        """Add an addition (a recurring line) to an agreement; price from the catalog unless given."""
        with self._lock:
            if self.agreements.get(agreement_id) is None:
                raise ValueError(f"no agreement {agreement_id}")
            item = next((c for c in CATALOG if c[1] == product), (99, product, product, 0.0, 0.0))
            price = item[3] if unit_price is None else unit_price
            addition_id = id if id is not None else self.additions.next_id(700)
            record = {"id": addition_id, "product": {"id": item[0], "identifier": item[1]},
                      "quantity": quantity, "lessIncluded": 0.0, "unitPrice": price, "unitCost": item[4],
                      "billCustomer": bill_customer, "effectiveDate": effective, "taxableFlag": False,
                      "invoiceDescription": description or item[2], "agreementId": agreement_id,
                      "description": description or item[2], "uom": "Each",
                      "extPrice": round(quantity * price, 2), "extCost": round(quantity * item[4], 2),
                      "agreementStatus": self.agreements.get(agreement_id)["agreementStatus"],
                      "_info": self._info(updated)}
            if cancelled:
                record["cancelledDate"] = cancelled
            self.additions.put(record)
            return addition_id

    def add_time_entry(self, company_id: int, hours: float = 1.0, *, member: str = "jsmith",
                       start: float | None = None, billable: str = "Billable", work_type: str = "Remote Support",
                       work_role: str = "Technician", charge_type: str = "ServiceTicket", charge_id: int = 0,
                       agreement_id: int = 0, hourly_rate: float = 120.0, status: str = "Open",
                       invoice_id: int = 0, updated: float | None = None, **fields: Any) -> int:
        """Add a time entry; ``fields`` sets raw vendor fields as they are (``None`` removes one)."""
        with self._lock:
            start = int(self.now - DAY if start is None else start)
            entry_id = self.time_entries.next_id(10_000)
            self.time_entries.append(
                entry_id, company_id, [m[1] for m in MEMBERS].index(member), start, round(hours * 60),
                BILLABLE.index(billable), [w[1] for w in WORK_TYPES].index(work_type),
                [r[1] for r in WORK_ROLES].index(work_role), CHARGE_TYPES.index(charge_type), charge_id,
                agreement_id, round(hourly_rate * 100), STATUSES.index(status), invoice_id,
                int(self.now if updated is None else updated))
            if fields:
                self.time_entries.set(entry_id, **fields)
            return entry_id

    def add_product(self, company_id: int, item: str = "SSD-1TB", *, quantity: float = 1,
                    price: float | None = None, billable: str = "Billable", ticket_id: int | None = None,
                    agreement_id: int | None = None, invoice_id: int | None = None,
                    id: int | None = None, updated: float | None = None) -> int:  # noqa: A002
        """Add a product line (``/procurement/products``) sold to a company."""
        with self._lock:
            company = self.companies.get(company_id)
            if company is None:
                raise ValueError(f"no company {company_id}")
            cat = next((c for c in CATALOG if c[1] == item), (99, item, item, 0.0, 0.0))
            product_id = id if id is not None else self.products.next_id(3000)
            stamp = iso(self.now if updated is None else updated)
            record = {
                "id": product_id, "catalogItem": {"id": cat[0], "identifier": cat[1]}, "description": cat[2],
                "sequenceNumber": 1.0, "quantity": quantity, "price": cat[3] if price is None else price,
                "cost": cat[4], "discount": 0.0, "priceMethod": "PricePerUnit", "billableOption": billable,
                "locationId": 2, "businessUnitId": 10, "taxableFlag": True, "dropshipFlag": False,
                "specialOrderFlag": False, "cancelledFlag": False, "customerDescription": cat[2],
                "productClass": "NonInventory", "purchaseDate": stamp,
                "company": {"id": company_id, "identifier": company["identifier"], "name": company["name"]},
                "_info": self._info(updated)}
            if ticket_id:
                record["ticket"] = {"id": ticket_id, "summary": f"Ticket {ticket_id}"}
            if agreement_id:
                agr = self.agreements.get(agreement_id)
                record["agreement"] = {"id": agreement_id, "name": agr["name"] if agr else "", "type": ""}
            if invoice_id:
                record["invoice"] = {"id": invoice_id, "identifier": f"INV{invoice_id}"}
            self.products.put(record)
            return product_id

    def add_board(self, name: str, id: int | None = None, *, statuses: bool = True) -> int:  # noqa: A002
        """Add a service board with the usual statuses (``BOARD_STATUSES``; none if not ``statuses``)
        and types (``BOARD_TYPES`` for the stock boards' names, else an "Incident" type)."""
        with self._lock:
            board_id = id if id is not None else self.boards.next_id(1)
            self.boards.put({"id": board_id, "name": name[:50], "inactiveFlag": False, "projectFlag": False,
                             "_info": self._info()})
            if statuses:
                for order, (status, closed, default) in enumerate(BOARD_STATUSES):
                    self.add_board_status(board_id, status, closed=closed, default=default, sort_order=order)
            for type_name, default in BOARD_TYPES.get(name, (("Incident", True),)):
                self.add_board_type(board_id, type_name, default=default)
            return board_id

    def add_board_status(self, board_id: int, name: str, *, closed: bool = False, default: bool = False,
                         sort_order: int | None = None, inactive: bool = False) -> int:
        """Add a status to a board (``closed``: closedStatus, ``default``: defaultFlag, which then
        moves from the board's other statuses)."""
        with self._lock:
            board = self.boards.get(board_id)
            if board is None:
                raise ValueError(f"no board {board_id}")
            mine = [r for r in self.statuses.rows.values() if r["board"]["id"] == board_id]
            if default:
                for other in mine:
                    other["defaultFlag"] = False
            status_id = self.statuses.next_id(1)
            self.statuses.put({"id": status_id, "name": name[:50], "board": {"id": board_id, "name": board["name"]},
                               "sortOrder": len(mine) if sort_order is None else sort_order, "displayOnBoard": True,
                               "inactive": inactive, "closedStatus": closed, "timeEntryNotAllowed": False,
                               "defaultFlag": default, "escalationStatus": "Resolved" if closed else "NotResponded",
                               "customerPortalFlag": False, "_info": self._info()})
            return status_id

    def add_board_type(self, board_id: int, name: str, *, default: bool = False, inactive: bool = False) -> int:
        """Add a ticket type to a board."""
        with self._lock:
            board = self.boards.get(board_id)
            if board is None:
                raise ValueError(f"no board {board_id}")
            type_id = self.types.next_id(1)
            self.types.put({"id": type_id, "name": name[:50], "category": "Reactive", "defaultFlag": default,
                            "inactiveFlag": inactive, "requestForChangeFlag": False,
                            "board": {"id": board_id, "name": board["name"]}, "_info": self._info()})
            return type_id

    def add_priority(self, name: str, *, sort_order: int = 0, default: bool = False,
                     id: int | None = None) -> int:  # noqa: A002
        """Add a service priority (``/service/priorities``)."""
        with self._lock:
            priority_id = id if id is not None else self.priorities.next_id(1)
            self.priorities.put({"id": priority_id, "name": name[:50], "color": "Custom", "sortOrder": sort_order,
                                 "defaultFlag": default, "_info": self._info()})
            return priority_id

    def board_status(self, board_id: int, name: str) -> dict | None:
        """The status called ``name`` (case-insensitive) of a board, or None."""
        return next((r for r in self.statuses.rows.values()
                     if r["board"]["id"] == board_id and r["name"].lower() == name.lower()), None)

    def technician_works_on(self, ticket_id: int, hours: float = 0.5, member: str = "jsmith") -> int:
        """A technician logs time on a ticket: a time entry charged to it, the ticket's ``actualHours``
        grows and its ``lastUpdated`` moves, as saving time on a ticket does in ConnectWise. Returns
        the time entry's id."""
        with self._lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                raise ValueError(f"no ticket {ticket_id}")
            entry_id = self.add_time_entry(ticket["company"]["id"], hours, member=member, start=self.now - hours * 3600,
                                           charge_type="ServiceTicket", charge_id=ticket_id)
            ticket["actualHours"] = round((ticket.get("actualHours") or 0.0) + hours, 2)
            self.tickets.touch(ticket_id, self.now)
            return entry_id

    def technician_sets_status(self, ticket_id: int, name: str, member: str = "jsmith") -> None:
        """A technician sets a ticket's status by name (one of its board's), as a PATCH by ``member``."""
        with self._lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                raise ValueError(f"no ticket {ticket_id}")
            response = self._patch_ticket(ticket, [{"op": "replace", "path": "status", "value": {"name": name}}],
                                          member)
        if response.status_code != 200:
            raise ValueError(response.text)

    def add_ticket(self, summary: str, company_id: int, board: str = "Help Desk", external_ref: str | None = None,
                   *, member: str = "jsmith", priority: str | int | None = None, opened: float | None = None,
                   closed: float | None = None, closed_by: str | None = None) -> int:
        """Add a service ticket as if ``member`` created it in ConnectWise (pass ``member=sim.api_member``
        for one the hub made).

        For tickets of the past: ``priority`` (a priority's name or id; default: the default
        priority), ``opened`` (epoch seconds: ``_info.dateEntered``; default ``now``) and
        ``closed`` (epoch seconds: closed then, in the board's Closed status, by ``closed_by``,
        default ``member``; its ``lastUpdated``).
        """
        body = {"summary": summary, "company": {"id": company_id}, "board": {"name": board},
                "externalXRef": external_ref}
        if priority is not None:
            body["priority"] = {"id": priority} if isinstance(priority, int) else {"name": priority}
        with self._lock:
            response = self._create_ticket(body, member)
            if response.status_code != 201:
                raise ValueError(response.text)
            ticket = self.tickets.get(json.loads(response.content)["id"])
            info = ticket["_info"]
            if opened is not None:
                info["dateEntered"] = info["lastUpdated"] = iso(opened)
            if closed is not None:
                status = self.board_status(ticket["board"]["id"], "Closed")
                if status is None:
                    raise ValueError(f"board {board} has no Closed status")
                by = closed_by or member
                ticket.update(status={"id": status["id"], "name": status["name"]}, closedFlag=True,
                              closedDate=iso(closed), closedBy=by)
                info["lastUpdated"], info["updatedBy"] = iso(closed), by
        return ticket["id"]

    def add_configuration(self, company_id: int, name: str, serial_number: str | None = None, *,
                          type_name: str = "Managed Workstation", active: bool = True, id: int | None = None,  # noqa: A002
                          device_identifier: str | None = None, warranty_end: str | None = None,
                          updated: float | None = None) -> int:
        """Add a configuration (a CI) of a company; return its id (the next free one from 3000 unless
        given). A field given None is left out of the record, as the API leaves out what is not set.
        ``warranty_end``: an ISO date, served as ``warrantyExpirationDate`` at midnight UTC;
        ``updated``: when it was entered and last updated (epoch seconds; default ``now``)."""
        with self._lock:
            company = self.companies.get(company_id)
            if company is None:
                raise ValueError(f"no company {company_id}")
            config_id = id if id is not None else self.configurations.next_id(3000)
            record = {"id": config_id, "name": name, "type": {"id": CONFIGURATION_TYPES.get(type_name, 1),
                                                              "name": type_name},
                      "status": {"id": 1, "name": "Active" if active else "Inactive"},
                      "company": {"id": company_id, "identifier": company["identifier"], "name": company["name"]},
                      "activeFlag": active, "billFlag": False, "_info": self._info(updated)}
            if warranty_end is not None:
                record["warrantyExpirationDate"] = f"{datetime.fromisoformat(warranty_end).date().isoformat()}T00:00:00Z"
            if serial_number is not None:
                record["serialNumber"] = serial_number
            if device_identifier is not None:
                record["deviceIdentifier"] = device_identifier
            self.configurations.put(record)
            return config_id

    def ticket_configurations(self, ticket_id: int) -> list[int]:
        """The ids of the configurations associated with a ticket, in the order they were added."""
        return list(self._ticket_configurations.get(ticket_id, []))

    def touch(self, kind: str, ids: Iterable[int]) -> None:
        """Bump ``_info.lastUpdated`` to ``now`` for records of ``kind`` (``time_entries``, ``companies``,
        ``agreements``, ``additions``, ``products``, ``tickets``), as an edit in ConnectWise would."""
        with self._lock:
            table = self._table(kind)
            for record_id in ids:
                table.touch(record_id, self.now)

    def record(self, kind: str, record_id: int) -> dict | None:
        """A record as the API serves it (a copy)."""
        table = self._table(kind)
        return json.loads(table.encode(record_id)) if table.get(record_id) is not None else None

    def ids(self, kind: str) -> list[int]:
        return list(self._table(kind).ids)

    def initial_description(self, ticket_id: int) -> str | None:
        """What a ticket was created with as ``initialDescription`` (the API never returns it)."""
        return self._initial_descriptions.get(ticket_id)

    def _table(self, kind: str):
        tables = {"companies": self.companies, "agreements": self.agreements, "additions": self.additions,
                  "time_entries": self.time_entries, "products": self.products, "tickets": self.tickets,
                  "notes": self.notes, "boards": self.boards, "statuses": self.statuses, "types": self.types,
                  "priorities": self.priorities, "configurations": self.configurations, "contacts": self.contacts}
        if kind not in tables:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(tables)}")
        return tables[kind]

    # --- faults ---------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None, path: str | None = None,
                  *, method: str | None = None, body: str | dict | None = None, after_apply: bool = False,
                  query: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests (to ``path``, or any) with ``status``, e.g. 429 or 503.

        ``path`` is the resource path (``/time/entries``) or the full one. ``body`` replaces the
        default error body. ``after_apply`` acts on the request first, then answers with the
        error: a write that succeeded but whose answer was lost. ``query``: only requests whose
        query string holds these parameters with these values (``{"fields": "id,summary"}``).
        """
        self._faults.append({"kind": "status", "status": status, "times": times, "retry_after": retry_after,
                             "path": path, "method": method, "body": body, "after_apply": after_apply,
                             "query": query})

    def garbage_next(self, times: int = 1, path: str | None = None, *, method: str | None = None) -> None:
        """Answer the next ``times`` requests with a 200 whose body is truncated JSON."""
        self._faults.append({"kind": "garbage", "times": times, "path": path, "method": method,
                             "after_apply": False})

    def timeout_next(self, times: int = 1, path: str | None = None, *, method: str | None = None,
                     after_apply: bool = False) -> None:
        """Raise httpx.ReadTimeout for the next ``times`` requests (a 500 when served over HTTP);
        with ``after_apply`` the request is acted on first."""
        self._faults.append({"kind": "timeout", "times": times, "path": path, "method": method,
                             "after_apply": after_apply})

    def short_page_next(self, path: str, drop: int = 1, times: int = 1) -> None:
        """Serve the next ``times`` non-empty pages of the collection ``path`` (``/time/entries``)
        without their last ``drop`` records (one stays); the next page starts after the last one served."""
        self._page_faults.append({"kind": "short", "path": path, "drop": drop, "times": times})

    def lose_next(self, path: str, records: int = 1, times: int = 1) -> None:
        """Serve the next ``times`` pages of ``path`` that hold more than ``records`` records without
        ``records`` of them from the middle: they are skipped for good, and only ``/count`` knows."""
        self._page_faults.append({"kind": "lose", "path": path, "drop": records, "times": times})

    def _page_fault(self, path: str, chosen: list[int]) -> list[int]:
        for fault in self._page_faults:
            if fault["path"] != path or len(chosen) <= fault["drop"]:
                continue
            fault["times"] -= 1
            if fault["times"] <= 0:
                self._page_faults.remove(fault)
            drop = fault["drop"]
            if fault["kind"] == "short":
                return chosen[:len(chosen) - drop]
            middle = len(chosen) // 2
            return chosen[:middle - drop // 2] + chosen[middle - drop // 2 + drop:] if middle - drop // 2 >= 0 \
                else chosen[drop:]
        return chosen

    def _take_fault(self, method: str, path: str, resource: str | None,
                    query: dict[str, str] | None = None) -> dict[str, Any] | None:
        for fault in self._faults:
            if fault["path"] not in (None, path, resource) or fault["method"] not in (None, method):
                continue
            if fault.get("query") and any((query or {}).get(k) != v for k, v in fault["query"].items()):
                continue
            fault["times"] -= 1
            if fault["times"] <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _fault_response(self, fault: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if fault["kind"] == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=request)
        if fault["kind"] == "garbage":
            return httpx.Response(200, content=b'[{"id": 1, "name": "trunc',
                                  headers={"Content-Type": "application/json"})
        status, body = fault["status"], fault["body"]
        headers = {} if fault["retry_after"] is None else {"Retry-After": f"{fault['retry_after']:g}"}
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"Content-Type": "text/plain", **headers})
        if body is None:
            code = {429: "TooManyRequests", 400: "InvalidObject", 401: "Unauthorized", 403: "Forbidden",
                    404: "NotFound", 409: "Conflict"}.get(status, "InternalServerError" if status >= 500 else "Error")
            body = {"code": code, "message": "simulated fault"}
        return _json(status, body, headers)

    # --- the API --------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Serve one request like ConnectWise PSA's REST API 3.0."""
        path = request.url.path
        m = _PREFIX.match(path)
        resource = m.group(2).rstrip("/") if m else None
        with self._lock:
            self.requests += 1
            self.requests_by_path[resource or path] += 1
            query = dict(request.url.params)
            self.log.append((request.method, resource or path, query))
            if len(request.url.query) > self.max_query_string:
                # IIS request filtering (maxQueryString, 2048 by default) refuses it before the API
                # sees it, with its own HTML page.
                self.refused_queries += 1
                return self._dated(httpx.Response(404, headers={"Content-Type": "text/html"}, text=(
                    "<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head>"
                    "<body><h2>HTTP Error 404.15 - Not Found</h2><p>The request filtering module is "
                    "configured to deny a request where the query string is too long.</p></body></html>")))
            fault = self._take_fault(request.method, path, resource, query)
            if fault is not None and not fault["after_apply"]:
                return self._dated(self._fault_response(fault, request))
            response = self._serve(request, resource, query)
            if fault is not None:
                return self._dated(self._fault_response(fault, request))
            return self._dated(response)

    def _dated(self, response: httpx.Response) -> httpx.Response:
        """The answer with the server's ``Date`` header (its own clock, to the second)."""
        response.headers["Date"] = formatdate(self.now, usegmt=True)
        return response

    def _serve(self, request: httpx.Request, resource: str | None, query: dict[str, str]) -> httpx.Response:
        denied = self._check_auth(request, resource)
        if denied is not None:
            return denied
        accept = request.headers.get("Accept", "")
        version = re.search(r"version=([\d.]+)", accept)
        if version:
            self.versions[version.group(1)] += 1
        try:
            response = self._route(request, resource, query)
        except BadRequest as exc:
            response = exc.response
        response.headers["api-current-version"] = "2025.1"
        return response

    def _check_auth(self, request: httpx.Request, resource: str | None) -> httpx.Response | None:
        auth = request.headers.get("Authorization", "")
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":") if auth.startswith("Basic ") \
                else ("", "", "")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        company, _, public = user.partition("+")
        if resource is None or company.lower() != self.company_id.lower():
            # The cloud routes on the codebase and the company before anything else.
            if self.cloud or resource is None:
                return httpx.Response(404, text=CANNOT_ROUTE, headers={"Content-Type": "text/plain"})
            return _error(401, "Unauthorized", "Authentication failed for the company given")
        if not request.headers.get("clientId"):
            return _error(401, "Unauthorized", "A clientId header is required; register one at "
                                               "https://developer.connectwise.com/ClientID")
        if request.headers.get("clientId") != self.client_id:
            return _error(401, "Unauthorized", "The clientId is not registered")
        if public != self.public_key or password != self.private_key:
            if self.cloud:
                return httpx.Response(404, text=CANNOT_ROUTE, headers={"Content-Type": "text/plain"})
            return _error(401, "Unauthorized", "Invalid public or private key")
        return None

    _ROUTES = (
        (re.compile(r"^/company/companies(/count)?$"), "list", "companies"),
        (re.compile(r"^/company/companies/(\d+)$"), "one", "companies"),
        (re.compile(r"^/finance/agreements(/count)?$"), "list", "agreements"),
        (re.compile(r"^/finance/agreements/(\d+)$"), "one", "agreements"),
        (re.compile(r"^/finance/agreements/(\d+)/additions(/count)?$"), "additions", None),
        (re.compile(r"^/finance/agreements/(\d+)/additions/(\d+)$"), "addition", None),
        (re.compile(r"^/time/entries(/count)?$"), "list", "time_entries"),
        (re.compile(r"^/time/entries/(\d+)$"), "one", "time_entries"),
        (re.compile(r"^/procurement/products(/count)?$"), "list", "products"),
        (re.compile(r"^/procurement/products/(\d+)$"), "one", "products"),
        (re.compile(r"^/service/tickets(/count)?$"), "tickets", None),
        (re.compile(r"^/service/tickets/(\d+)$"), "ticket", None),
        (re.compile(r"^/service/tickets/(\d+)/notes(/count)?$"), "notes", None),
        (re.compile(r"^/service/tickets/(\d+)/notes/(\d+)$"), "note", None),
        (re.compile(r"^/service/boards(/count)?$"), "list", "boards"),
        (re.compile(r"^/service/boards/(\d+)$"), "one", "boards"),
        (re.compile(r"^/service/boards/(\d+)/statuses(/count)?$"), "board_list", "statuses"),
        (re.compile(r"^/service/boards/(\d+)/statuses/(\d+)$"), "board_one", "statuses"),
        (re.compile(r"^/service/boards/(\d+)/types(/count)?$"), "board_list", "types"),
        (re.compile(r"^/service/boards/(\d+)/types/(\d+)$"), "board_one", "types"),
        (re.compile(r"^/service/priorities(/count)?$"), "list", "priorities"),
        (re.compile(r"^/company/contacts(/count)?$"), "list", "contacts"),
        (re.compile(r"^/company/contacts/(\d+)$"), "one", "contacts"),
        (re.compile(r"^/company/configurations(/count)?$"), "list", "configurations"),
        (re.compile(r"^/company/configurations/(\d+)$"), "one", "configurations"),
        (re.compile(r"^/service/tickets/(\d+)/configurations(/count)?$"), "ticket_configurations", None),
        (re.compile(r"^/service/priorities/(\d+)$"), "one", "priorities"),
    )

    def _route(self, request: httpx.Request, resource: str, query: dict[str, str]) -> httpx.Response:
        method = request.method
        for pattern, kind, table in self._ROUTES:
            m = pattern.match(resource)
            if not m:
                continue
            if kind == "list":
                return self._only(method, "GET") or self._list(request, self._table(table), query, bool(m.group(1)))
            if kind == "one":
                return self._only(method, "GET") or self._one(self._table(table), int(m.group(1)))
            if kind == "tickets":
                if method == "POST" and not m.group(1):
                    return self._create_ticket(self._body(request, dict, "ticket"), self.api_member)
                return self._only(method, "GET") or self._list(request, self.tickets, query, bool(m.group(1)))
            if kind == "ticket":
                if method == "PATCH" and self.tickets.get(int(m.group(1))) is not None:
                    return self._patch_ticket(self.tickets.get(int(m.group(1))), self._body(request, list, "ticket"),
                                              self.api_member)
                if method in ("GET", "PATCH"):
                    return self._one(self.tickets, int(m.group(1)))
                return self._only(method, "GET")
            if kind in ("board_list", "board_one"):
                board_id, children = int(m.group(1)), self._table(table)
                if self.boards.get(board_id) is None:
                    return _error(404, "NotFound", f"Board with id {board_id} was not found.")
                if kind == "board_list":
                    return self._only(method, "GET") or self._list(
                        request, children, query, bool(m.group(2)), scope=lambda r: r["board"]["id"] == board_id)
                child = children.get(int(m.group(2)))
                if child is None or child["board"]["id"] != board_id:
                    return _error(404, "NotFound", f"{children.resource[0].upper()}{children.resource[1:]} with id "
                                                   f"{m.group(2)} was not found.")
                return self._only(method, "GET") or _json(200, child)
            if kind in ("additions", "addition"):
                agreement_id = int(m.group(1))
                if self.agreements.get(agreement_id) is None:
                    return _error(404, "NotFound", f"Agreement with id {agreement_id} was not found.")
                if kind == "additions":
                    return self._only(method, "GET") or self._list(
                        request, self.additions, query, bool(m.group(2)),
                        scope=lambda r: r.get("agreementId") == agreement_id)
                addition = self.additions.get(int(m.group(2)))
                if addition is None or addition.get("agreementId") != agreement_id:
                    return _error(404, "NotFound", f"Addition with id {m.group(2)} was not found.")
                if method == "PATCH":
                    return self._patch_addition(addition, self._body(request, list, "addition"))
                return self._only(method, "GET") or _json(200, addition)
            if kind == "ticket_configurations":
                return self._ticket_configurations_route(request, int(m.group(1)), query, bool(m.group(2)))
            if kind in ("notes", "note"):
                ticket_id = int(m.group(1))
                if self.tickets.get(ticket_id) is None:
                    return _error(404, "NotFound", f"Ticket with id {ticket_id} was not found.")
                if kind == "notes":
                    if method == "POST" and not m.group(2):
                        return self._create_note(ticket_id, self._body(request, dict, "serviceNote"), self.api_member)
                    return self._only(method, "GET") or self._list(
                        request, self.notes, query, bool(m.group(2)), scope=lambda r: r.get("ticketId") == ticket_id)
                note = self.notes.get(int(m.group(2)))
                if note is None or note.get("ticketId") != ticket_id:
                    return _error(404, "NotFound", f"Note with id {m.group(2)} was not found.")
                return self._only(method, "GET") or _json(200, note)
        return _error(404, "NotFound", f"No resource at {resource}")

    def _ticket_configurations_route(self, request: httpx.Request, ticket_id: int, query: dict[str, str],
                                     count: bool) -> httpx.Response:
        """``GET`` the configurations of a ticket (ConfigurationReference: id, deviceIdentifier),
        ``POST {"id": <configuration id>}`` to associate one (201 with its reference)."""
        if self.tickets.get(ticket_id) is None:
            return _error(404, "NotFound", f"Ticket with id {ticket_id} was not found.")
        linked = self._ticket_configurations.setdefault(ticket_id, [])
        if request.method == "POST" and not count:
            body = self._body(request, dict, "configurationReference")
            config_id = body.get("id")
            config = self.configurations.get(config_id) if isinstance(config_id, int) and \
                not isinstance(config_id, bool) else None
            if config is None:
                return _error(400, "InvalidObject", f"configuration id {config_id!r} was not found",
                              [{"code": "InvalidObject", "message": "The configuration was not found.",
                                "resource": "configurationReference", "field": "id"}])
            if config_id in linked:
                return _error(400, "InvalidObject", "The configuration is already associated with this ticket.")
            linked.append(config_id)
            return _json(201, self._configuration_reference(config_id))
        refs = _Records("configurationReference")
        for config_id in linked:
            refs.put(self._configuration_reference(config_id))
        return self._only(request.method, "GET") or self._list(request, refs, query, count)

    def _configuration_reference(self, config_id: int) -> dict[str, Any]:
        config = self.configurations.get(config_id) or {}
        reference = {"id": config_id, "_info": {"configuration_href": f"/company/configurations/{config_id}"}}
        if config.get("deviceIdentifier") is not None:
            reference["deviceIdentifier"] = config["deviceIdentifier"]
        return reference

    @staticmethod
    def _only(method: str, allowed: str) -> httpx.Response | None:
        if method != allowed:
            return _error(405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'.")
        return None

    @staticmethod
    def _body(request: httpx.Request, kind: type, resource: str):
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        if not isinstance(body, kind):
            raise BadRequest(_error(400, "InvalidObject", f"The request body is not a JSON {kind.__name__} "
                                                          f"of {resource}"))
        return body

    @staticmethod
    def _one(table, record_id: int) -> httpx.Response:
        if table.get(record_id) is None:
            return _error(404, "NotFound", f"{table.resource[0].upper()}{table.resource[1:]} with id "
                                           f"{record_id} was not found.")
        return httpx.Response(200, content=table.encode(record_id),
                              headers={"Content-Type": "application/json; charset=utf-8"})

    def _list(self, request: httpx.Request, table, query: dict[str, str], count: bool,
              scope: Callable[[dict], bool] | None = None) -> httpx.Response:
        """A collection: conditions, then forward-only (pageId) or numbered (page) paging, and
        ``fields`` for a partial response."""
        endpoint = _endpoint_of(request.url.path)
        forward = self.forward_only and endpoint not in self.without_forward_only and \
            request.headers.get("pagination-type", "").lower() == "forward-only"
        try:
            size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("page", 1))
            page_id = int(query["pageId"]) if forward and query.get("pageId") else None
        except ValueError:
            return _error(400, "InvalidObject", "page, pageSize and pageId must be whole numbers")
        size = max(1, min(size, MAX_PAGE_SIZE, self.max_page_size or MAX_PAGE_SIZE))
        if forward and (query.get("orderBy") or "page" in query):
            return _error(400, "InvalidObject", "orderBy and page cannot be used with forward-only pagination")
        node = None
        if query.get("conditions"):
            try:
                node = parse_conditions(query["conditions"])
            except ValueError as exc:
                return _error(400, "InvalidObject", f"conditions is invalid: {exc}",
                              [{"code": "InvalidField", "message": str(exc), "resource": table.resource,
                                "field": "conditions"}])
        ids = self._matching(table, node, scope, page_id, size if forward and not count else None)
        if count:
            return _json(200, {"count": len(ids)})
        if forward:
            chosen, more = ids[:size], len(ids) > size
            if chosen:
                served = self._page_fault(_resource_of(request.url.path), chosen)
                more = more or (len(served) < len(chosen) and served == chosen[:len(served)])  # cut short
                chosen = served
            links = [f'<{request.url.copy_set_param("pageId", chosen[-1])}>; rel="next"'] if more else []
        else:
            chosen = ids[(page - 1) * size:page * size]
            last = max(1, -(-len(ids) // size))
            links = [f'<{request.url.copy_set_param("page", n)}>; rel="{rel}"'
                     for rel, n, show in (("next", page + 1, page < last), ("prev", page - 1, page > 1),
                                          ("first", 1, page > 1), ("last", last, page < last)) if show]
        fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
        if fields:
            body = json.dumps([_pick(table.get(i), fields) for i in chosen]).encode()
        else:
            body = b"[" + b",".join([table.encode(i) for i in chosen]) + b"]"
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if links and self.links and endpoint not in self.without_links:
            headers["Link"] = ", ".join(links)
        return httpx.Response(200, content=body, headers=headers)

    def _matching(self, table, node, scope, after: int | None, limit: int | None) -> list[int]:
        """Ids matching, in id order, after ``after``: ``limit + 1`` of them at most (enough to
        know whether another page follows), or all when ``limit`` is None."""
        fast = node is not None and node[0] == "cmp" and node[1] == "lastUpdated" and node[2] in (">", ">=") \
            and node[3][0] == "dt" and scope is None
        candidates = table.updated_after(node[3][1], node[2] == ">") if fast else None
        if candidates is not None:
            node = None
        elif isinstance(table, _TimeEntries) and _charge_ids(node) is not None:
            candidates = table.charged_to(_charge_ids(node))  # the rest of the conditions still apply
        else:
            candidates = table.ids
        start = 0 if after is None else bisect.bisect_right(candidates, after)
        if node is None and scope is None:
            return list(candidates[start:]) if limit is None else list(candidates[start:start + limit + 1])
        out: list[int] = []
        want = None if limit is None else limit + 1
        for i in candidates[start:]:
            record = table.get(i)
            if (scope is None or scope(record)) and (node is None or matches(node, record)):
                out.append(i)
                if want is not None and len(out) >= want:
                    break
        return out

    # --- writes ---------------------------------------------------------------------------------

    def _reference(self, table: _Records, ref: Any, keys: tuple[str, ...]) -> dict | None:
        if not isinstance(ref, dict):
            return None
        if isinstance(ref.get("id"), int):
            return table.get(ref["id"])
        for key in keys:
            if isinstance(ref.get(key), str):
                return next((r for r in table.rows.values() if str(r.get(key, "")).lower() == ref[key].lower()), None)
        return None

    def _board_child(self, table: _Records, board_id: int, ref: Any) -> dict | None:
        """A board's status or type from a reference by id or by name; None if it is not the board's."""
        if not isinstance(ref, dict):
            return None
        if isinstance(ref.get("id"), int):
            found = table.get(ref["id"])
        elif isinstance(ref.get("name"), str):
            found = next((r for r in table.rows.values()
                          if r["board"]["id"] == board_id and r["name"].lower() == ref["name"].lower()), None)
        else:
            return None
        return found if found is not None and found["board"]["id"] == board_id else None

    def _opening_status(self, board_id: int) -> dict | None:
        """The status a new ticket of the board gets: its default, else its first open one."""
        mine = sorted((r for r in self.statuses.rows.values() if r["board"]["id"] == board_id and not r["inactive"]),
                      key=lambda r: (r["sortOrder"], r["id"]))
        return next((r for r in mine if r["defaultFlag"]), None) or \
            next((r for r in mine if not r["closedStatus"]), None)

    def _create_ticket(self, body: dict, member: str) -> httpx.Response:
        errors = []
        summary = body.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append(("NullValue", "summary", "Summary may not be empty."))
        for field, limit in TICKET_MAX.items():
            value = body.get(field)
            if isinstance(value, str) and len(value) > limit:
                errors.append(("InvalidField", field, f"{field} exceeds the maximum length of {limit}."))
        board = self._reference(self.boards, body.get("board"), ("name",))
        if board is None:
            errors.append(("NullValue" if body.get("board") is None else "InvalidField", "board",
                           "A valid board is required." if body.get("board") is None else "Board not found."))
        company = self._reference(self.companies, body.get("company"), ("identifier", "name"))
        if company is None:
            errors.append(("NullValue" if body.get("company") is None else "InvalidField", "company",
                           "A valid company is required." if body.get("company") is None else "Company not found."))
        priority = (self._reference(self.priorities, body["priority"], ("name",)) if body.get("priority") is not None
                    else next((r for r in self.priorities.rows.values() if r["defaultFlag"]), None))
        if priority is None and body.get("priority") is not None:
            errors.append(("InvalidField", "priority", "Priority not found."))
        status = ticket_type = None
        if board is not None:
            status = (self._board_child(self.statuses, board["id"], body["status"]) if body.get("status") is not None
                      else self._opening_status(board["id"]))
            if status is None:
                errors.append(("InvalidField", "status", f"The status is not one of board {board['name']}'s."
                               if body.get("status") is not None else f"Board {board['name']} has no open status."))
            ticket_type = (self._board_child(self.types, board["id"], body["type"]) if body.get("type") is not None
                           else next((r for r in self.types.rows.values()
                                      if r["board"]["id"] == board["id"] and r["defaultFlag"]), None))
            if ticket_type is None and body.get("type") is not None:
                errors.append(("InvalidField", "type", f"The type is not one of board {board['name']}'s."))
        if errors:
            return _invalid("ticket", *errors)
        ticket_id = self.tickets.next_id(5000)
        ticket = {"id": ticket_id, "summary": summary, "recordType": "ServiceTicket",
                  "board": {"id": board["id"], "name": board["name"]},
                  "status": {"id": status["id"], "name": status["name"]},
                  "company": {"id": company["id"], "identifier": company["identifier"], "name": company["name"]},
                  "severity": "Medium", "impact": "Medium", "closedFlag": False, "_info": self._info(by=member)}
        if priority is not None:
            ticket["priority"] = {"id": priority["id"], "name": priority["name"], "sort": priority["sortOrder"]}
        if ticket_type is not None:
            ticket["type"] = {"id": ticket_type["id"], "name": ticket_type["name"]}
        for key in ("externalXRef", "subType", "item", "contact", "agreement", "poNumber", "integratorTags"):
            if body.get(key) is not None:
                ticket[key] = body[key]
        if status["closedStatus"]:
            ticket.update(closedFlag=True, closedDate=iso(self.now), closedBy=member)
        self.tickets.put(ticket)
        if body.get("initialDescription"):
            self._initial_descriptions[ticket_id] = body["initialDescription"]
            self._create_note(ticket_id, {"text": body["initialDescription"], "detailDescriptionFlag": True}, member)
        return _json(201, ticket)

    def _patch_ticket(self, ticket: dict, ops: list, member: str) -> httpx.Response:
        """JSON-patch a ticket as ``member``; a status change opens or closes it as the status says."""
        errors, changes = [], {}
        board_id = ticket["board"]["id"]
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") \
                    or not isinstance(op.get("path"), str):
                errors.append(("InvalidField", "op", "Each operation needs op (add, replace or remove) and path."))
                continue
            field, value = op["path"].lstrip("/"), op.get("value")
            if field not in TICKET_PATCHABLE:
                errors.append(("InvalidField", field, f"{field} cannot be changed."
                               if field in {"id", "closedFlag", "closedDate", "closedBy", "board", "company", "_info",
                                            "actualHours", "dateEntered", "recordType"}
                               else f"{field} is not a field of ticket."))
            elif op["op"] == "remove":
                if field in ("status", "summary", "priority"):
                    errors.append(("NullValue", field, f"{field} may not be empty."))
                else:
                    changes[field] = None
            elif field == "status":
                status = self._board_child(self.statuses, board_id, value)
                if status is None:
                    errors.append(("InvalidField", "status", f"The status is not one of board "
                                                             f"{ticket['board']['name']}'s."))
                else:
                    changes["status"] = status
            elif field == "priority":
                priority = self._reference(self.priorities, value, ("name",))
                if priority is None:
                    errors.append(("InvalidField", "priority", "Priority not found."))
                else:
                    changes["priority"] = {"id": priority["id"], "name": priority["name"],
                                           "sort": priority["sortOrder"]}
            elif field == "type":
                ticket_type = self._board_child(self.types, board_id, value)
                if ticket_type is None:
                    errors.append(("InvalidField", "type",
                                   f"The type is not one of board {ticket['board']['name']}'s."))
                else:
                    changes["type"] = {"id": ticket_type["id"], "name": ticket_type["name"]}
            elif field in ("summary", "externalXRef") and (not isinstance(value, str)
                                                           or len(value) > TICKET_MAX[field]):
                errors.append(("InvalidField", field,
                               f"{field} must be text of at most {TICKET_MAX[field]} characters."))
            else:
                changes[field] = value
        if errors:
            return _invalid("ticket", *errors)
        status = changes.pop("status", None)
        for field, value in changes.items():
            if value is None:
                ticket.pop(field, None)
            else:
                ticket[field] = value
        if status is not None and status["id"] != ticket["status"]["id"]:
            ticket["status"] = {"id": status["id"], "name": status["name"]}
            if status["closedStatus"] and not ticket.get("closedFlag"):
                ticket.update(closedFlag=True, closedDate=iso(self.now), closedBy=member)
            elif not status["closedStatus"] and ticket.get("closedFlag"):
                ticket["closedFlag"] = False
                ticket.pop("closedDate", None)
                ticket.pop("closedBy", None)
        info = ticket.setdefault("_info", {})
        info["lastUpdated"], info["updatedBy"] = iso(self.now), member
        return _json(200, ticket)

    def _create_note(self, ticket_id: int, body: dict, member: str) -> httpx.Response:
        # The spec marks no ServiceNote field required; ConnectWise refuses a note without text or
        # without one of the three flags that say where it goes.
        errors = []
        if not isinstance(body.get("text"), str) or not body["text"].strip():
            errors.append(("NullValue", "text", "Text may not be empty."))
        if not any(body.get(f) is True for f in ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")):
            errors.append(("InvalidField", "detailDescriptionFlag",
                           "One of detailDescriptionFlag, internalAnalysisFlag or resolutionFlag must be true."))
        if errors:
            return _invalid("serviceNote", *errors)
        note_id = self.notes.next_id(9000)
        note = {"id": note_id, "ticketId": ticket_id, "text": body["text"],
                "detailDescriptionFlag": bool(body.get("detailDescriptionFlag")),
                "internalAnalysisFlag": bool(body.get("internalAnalysisFlag")),
                "resolutionFlag": bool(body.get("resolutionFlag")), "issueFlag": False,
                "member": {"id": 999, "identifier": member, "name": member},
                "dateCreated": iso(self.now), "createdBy": member,
                "internalFlag": bool(body.get("internalAnalysisFlag")),
                "externalFlag": bool(body.get("detailDescriptionFlag")), "_info": self._info()}
        self.notes.put(note)
        self.tickets.touch(ticket_id, self.now)
        return _json(201, note)

    def _patch_addition(self, addition: dict, ops: list) -> httpx.Response:
        errors, changes = [], {}
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") \
                    or not isinstance(op.get("path"), str):
                errors.append(("InvalidField", "op", "Each operation needs op (add, replace or remove) and path."))
                continue
            field = op["path"].lstrip("/")
            if field in ADDITION_READ_ONLY:
                errors.append(("InvalidField", field, f"{field} cannot be changed."))
            elif field not in ADDITION_FIELDS:
                errors.append(("InvalidField", field, f"{field} is not a field of addition."))
            elif op["op"] == "remove":
                changes[field] = None
            elif field in ADDITION_NUMBERS and (isinstance(op.get("value"), bool)
                                                or not isinstance(op.get("value"), (int, float))):
                errors.append(("InvalidField", field, f"{field} must be a number."))
            elif field == "billCustomer" and op.get("value") not in ("Billable", "DoNotBill", "NoCharge"):
                errors.append(("InvalidField", field, "billCustomer must be Billable, DoNotBill or NoCharge."))
            else:
                changes[field] = op.get("value")
        if errors:
            return _invalid("addition", *errors)
        addition.update(changes)
        quantity, price = addition.get("quantity") or 0, addition.get("unitPrice") or 0
        addition["extPrice"] = round(quantity * price, 2)
        addition["extCost"] = round(quantity * (addition.get("unitCost") or 0), 2)
        self.additions.touch(addition["id"], self.now)
        return _json(200, addition)

    # --- generated data -------------------------------------------------------------------------

    def _generate_time_entries(self, count: int) -> None:
        if count and not self.companies.ids:
            raise ValueError("time entries need at least one company")
        rng = self.rng
        companies = self.companies.ids
        by_company: dict[int, list[int]] = {}
        for agreement_id in self.agreements.ids:
            by_company.setdefault(self.agreements.rows[agreement_id]["company"]["id"], []).append(agreement_id)
        table, now = self.time_entries, int(self.now)
        first = now - 3 * 365 * DAY
        span = max(1, now - DAY - first)
        entry_id = table.next_id(10_000)
        rand, randrange = rng.random, rng.randrange
        for n in range(count):
            entry_id += 1 + (randrange(4) == 0)  # ids increase with gaps, as deleted entries leave them
            start = first + span * n // max(count, 1) + randrange(3600)
            start -= start % 300
            company = companies[randrange(len(companies))]
            r = rand()
            billable = 0 if r < 0.62 else 2 if r < 0.85 else 1 if r < 0.95 else 3
            r = rand()
            charge_type = 0 if r < 0.8 else 1 if r < 0.9 else 2 if r < 0.95 else 3
            agreements = by_company.get(company)
            agreement = agreements[randrange(len(agreements))] if agreements and rand() < 0.5 else 0
            age = now - start
            status = (5 if agreement == 0 else 6) if age > 45 * DAY else randrange(5)
            invoice = 900_000 + (start // (30 * DAY)) % 100_000 if status == 5 else 0
            table.append(entry_id, company, randrange(len(MEMBERS)), start, 15 * (1 + randrange(16)), billable,
                         randrange(len(WORK_TYPES)), randrange(len(WORK_ROLES)), charge_type,
                         (5000 + randrange(200_000)) if charge_type < 2 else (0 if charge_type == 3 else 7),
                         agreement, 0 if billable == 2 else round(RATES[1 + randrange(4)] * 100), status,
                         invoice, min(now, start + 3600 + randrange(2 * DAY)), indexed=False)

    def _generate_tickets(self, count: int) -> None:
        """Tickets: the even ones made by the hub on Alerts, the odd ones by people (some with another
        integration's externalXRef); some worked on, some moved to In Progress, some closed."""
        if count and not self.companies.ids:
            raise ValueError("tickets need at least one company")
        rng = self.rng
        for n in range(count):
            company = rng.choice(self.companies.ids)
            uid = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}"
            if n % 2 == 0:
                ticket_id = self.add_ticket(f"SRV-{n:02d}: disk C: above 90 %", company, "Alerts",
                                            f"msp-hub:ticket:ninjaone:{uid}", member=self.api_member)
            else:
                ticket_id = self.add_ticket(f"Printer {n} offline", company, "Help Desk",
                                            f"automate:{uid}" if n % 4 == 1 else None, member="amartin")
            if n % 5 == 2:
                self.technician_works_on(ticket_id, 0.25 * (1 + n % 4), member=MEMBERS[n % len(MEMBERS)][1])
            if n % 7 == 4:
                self.technician_sets_status(ticket_id, "In Progress", member=MEMBERS[n % len(MEMBERS)][1])
            if n % 6 == 0 and n:
                ticket = self.tickets.get(ticket_id)
                self._patch_ticket(ticket, [{"op": "replace", "path": "status", "value": {"name": "Closed"}}],
                                   self.api_member)

    def _generate_products(self, count: int) -> None:
        rng = self.rng
        for _ in range(count):
            company = rng.choice(self.companies.ids)
            item = rng.choice(CATALOG[4:])
            self.add_product(company, item[1], quantity=rng.randint(1, 5),
                             billable=rng.choice(("Billable", "Billable", "NoCharge")),
                             ticket_id=5000 + rng.randrange(1000) if rng.random() < 0.7 else None,
                             updated=self.now - rng.randrange(90 * DAY))

    def add_report_data(self, configurations: int = 0, service_tickets: int = 0, *, seed: int = 0,
                        by_hub: bool = True) -> None:
        """Generate ``configurations`` and past ``service_tickets`` over the companies there are
        (as the constructor's arguments of those names do), from their own generator (``seed``).
        ``by_hub=False``: every ticket is a person's (none carries an ``msp-hub:`` reference), for
        a hub that starts on this PSA now."""
        with self._lock:
            rng = random.Random(f"reports-{seed}")
            self._generate_configurations(configurations, rng)
            self._generate_service_tickets(service_tickets, rng, by_hub=by_hub)

    def _generate_configurations(self, count: int, rng: random.Random) -> None:
        """Configurations over the companies: one type after another (``GENERATED_TYPES``), a
        warranty ending from two years ago to three years ahead for four in five, none for the
        rest; one in ten inactive; each entered up to a year ago."""
        if count and not self.companies.ids:
            raise ValueError("configurations need at least one company")
        companies = self.companies.ids
        for n in range(count):
            type_name = GENERATED_TYPES[n % len(GENERATED_TYPES)]
            company = companies[n % len(companies)]
            prefix = {"Server": "SRV", "Firewall": "FW", "Switch": "SW", "Access Point": "AP", "NAS": "NAS",
                      "Mobile Device": "MOB", "Laptop": "LT"}.get(type_name, "WS")
            warranty = None
            if rng.random() < 0.8:
                warranty = time.strftime("%Y-%m-%d", time.gmtime(self.now + rng.randrange(-730, 1095) * DAY))
            self.add_configuration(company, f"{prefix}-{n + 1:03d}", f"SN{rng.getrandbits(40):010X}",
                                   type_name=type_name, active=rng.random() >= 0.1, warranty_end=warranty,
                                   device_identifier=str(1000 + n) if n % 3 == 0 else None,
                                   updated=self.now - rng.randrange(365 * DAY))

    def _generate_service_tickets(self, count: int, rng: random.Random, *, by_hub: bool = True) -> None:
        """Tickets of the past nine months at every priority (``GENERATED_PRIORITIES``): the even
        ones opened by the hub on Alerts, the odd ones by people on Help Desk (one in four of
        those with another integration's reference); each closed after its priority's time,
        unless that is still to come or it is one in six left open, by the hub for one in three
        of its own, else by a technician."""
        if count and not self.companies.ids:
            raise ValueError("service tickets need at least one company")
        for n in range(count):
            company = self.companies.ids[rng.randrange(len(self.companies.ids))]
            priority, low, high = GENERATED_PRIORITIES[rng.randrange(len(GENERATED_PRIORITIES))]
            uid = f"{rng.getrandbits(32):08x}"
            if n % 2 == 0 and by_hub:
                summary, board, ref = f"Alert {n}: service stopped on SRV-{n % 7:02d}", "Alerts", \
                    f"msp-hub:ticket:ninjaone:{uid}"
                member = self.api_member
            else:
                summary, board, ref = f"User request {n}", "Help Desk", f"automate:{uid}" if n % 4 == 1 else None
                member = MEMBERS[n % len(MEMBERS)][1]
            opened = self.now - rng.randrange(270 * DAY)
            opened -= opened % 60
            closed = opened + rng.randrange(low * 3600, high * 3600 + 1)
            by = self.api_member if by_hub and n % 2 == 0 and n % 3 == 0 else MEMBERS[(n // 2) % len(MEMBERS)][1]
            self.add_ticket(summary, company, board, ref, member=member, priority=priority, opened=opened,
                            closed=closed if closed <= self.now and n % 6 != 5 else None, closed_by=by)
