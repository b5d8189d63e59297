"""Report delivery: the documents of a period written into a folder, and each client's PDF e-mailed
through the MSP's SMTP server, exactly once.

Settings, ``[reports.delivery]`` in the hub config (checked here, before anything is written)::

    [reports.delivery]
    folder = "reports"                  # relative to the config file; one subfolder per period
    reports = ["scorecard", "kpis", "maturity"]   # what a delivery job may produce
    email = true                        # e-mail each client's PDF (needs [notify.email]: its SMTP server)
    language = "fr"                     # default: [reports] language, else the invoices'
    clients = ["acme", "globex"]        # optional: only these clients (default: those invoiced in the period)

    [reports.delivery.to]               # a client's address, instead of its billing e-mail
    acme = "direction@acme.example"

    [reports.delivery.subject]          # {client}, {period} and {msp} are replaced
    fr = "Votre revue trimestrielle {period}"
    [reports.delivery.body]
    fr = "Bonjour,\\n\\nVous trouverez ci-joint ..."

A per-client report goes to every client the hub invoiced for a month of the period (a sent
invoice), or to the clients ``clients`` names. A client's address is, in order: ``[reports.delivery.to]``, else its billing e-mail (the PSA
company's record, or ``email`` of its table in contracts.toml, as invoices read it). A client with
none is reported, never skipped silently; its document is e-mailed by a later run once it has one.

Files are ``<folder>/<period>/<report>-<client>-<period>.pdf`` (``<report>-<period>.pdf`` for the
MSP's own reports: KPIs, maturity), written to a temporary file and linked into place, so that a
reader never sees half a file and an existing file is never overwritten: a file found where no
delivery recorded one is reported and left alone.

Exactly once: each document is recorded (report, client, period) when it is written; before its
e-mail, the record is claimed as ``sending`` in one committed, atomic update, and marked ``sent``
after the server took it. A rerun never writes or e-mails a recorded document again; an e-mail the
SMTP server refused or could not take is ``failed`` and retried by the next run; one whose run
stopped between the claim and the answer is reported (its outcome is unknown) and never re-sent
automatically.

The producers are pluggable: ``PRODUCERS`` maps a report's name to a ``Producer`` (whether it is
made per client, for a quarter or a month, and the callable that makes its bytes).
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import structlog
from pydantic import Field, field_validator

from hub.periods import is_quarter, parse_quarter, quarter_name
from hub.config import Schema, validate
from hub.errors import ConfigError, HubError

log = structlog.get_logger()

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


# --- producers -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Producer:
    """How to make one report's document: ``make(hub, period, client_id, fmt, lang) -> bytes``;
    ``per_client``: one document per client (e-mailed to it), else one for the MSP; ``period``:
    ``"quarter"`` (``2026-Q3``) or ``"month"`` (``2026-11``)."""

    make: Callable[[Any, str, str | None, str, str], bytes]
    per_client: bool
    period: Literal["quarter", "month"]
    # The store tables the document is made from: before a document to be e-mailed is made, the
    # streams filling them must have a complete pass that ended after the period and no failure
    # since (hub.completeness), as for an invoice: a client never receives figures from a stream
    # that failed or was not read to the end.
    reads: frozenset[str] = frozenset()

    def __call__(self, hub, period: str, client_id: str | None, fmt: str, lang: str) -> bytes:
        return self.make(hub, period, client_id, fmt, lang)


class ProducerMissing(HubError):
    """A report's module is not part of this installation."""


def _module(name: str):
    try:
        return import_module(name)
    except ImportError as exc:
        raise ProducerMissing(f"{name} cannot be imported ({exc}); this installation cannot make that report") from None


def _scorecard(hub, period: str, client_id: str | None, fmt: str, lang: str) -> bytes:
    module = _module("hub.reports.scorecard")
    # The frozen scorecard when the quarter was presented, with the MSP's name and logo ([reports]).
    return module.render_for(hub, module.scorecard_for(hub, client_id, period), fmt, lang)


def _kpis(hub, period: str, client_id: str | None, fmt: str, lang: str) -> bytes:
    """The KPIs of the year to date: January of ``period``'s year to ``period``."""
    module = _module("hub.reports.kpis")
    return module.render(module.build(hub, f"{period[:4]}-01", period), fmt, lang)


def _maturity(hub, period: str, client_id: str | None, fmt: str, lang: str) -> bytes:
    """The last recorded self-assessment, its signals as of now (``period`` names the file only)."""
    from hub.reports import maturity
    return maturity.render_report(maturity.assess(hub, None), fmt, lang, config=hub.config)


PRODUCERS: dict[str, Producer] = {
    "scorecard": Producer(_scorecard, per_client=True, period="quarter", reads=frozenset({
        "clients", "devices", "agreements", "additions", "configurations", "antivirus", "patches", "backups",
        "device_health", "alerts", "alert_events", "service_tickets"})),
    "kpis": Producer(_kpis, per_client=False, period="month"),
    "maturity": Producer(_maturity, per_client=False, period="quarter"),
}


def last_ended(kind: str, today: date) -> str:
    """The last ended quarter (``2026-Q3``) or month (``2026-11``) at ``today``."""
    if kind == "month":
        y, m = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
        return f"{y:04d}-{m:02d}"
    return parse_quarter(quarter_name(today)).previous().name


def check_period(report: str, period: str) -> str:
    """``period`` if it is of the report's kind; ValueError naming the form otherwise."""
    kind = PRODUCERS[report].period
    if not (is_quarter(period) if kind == "quarter" else MONTH.match(period)):
        raise ValueError(f"the {report} report is made per {kind}: {period!r} is not of the form "
                         + ("YYYY-QN (e.g. 2026-Q3)" if kind == "quarter" else "YYYY-MM (e.g. 2026-11)"))
    return period


# --- settings --------------------------------------------------------------------------------------

PLACEHOLDERS = ("client", "period", "msp")
DEFAULT_SUBJECT = {"fr": "{msp} — votre rapport {period}", "en": "{msp} — your report for {period}"}
DEFAULT_BODY = {
    "fr": "Bonjour,\n\nVous trouverez ci-joint le rapport {period} de {client}.\n\nBien cordialement,\n{msp}\n",
    "en": "Hello,\n\nPlease find attached the {period} report for {client}.\n\nKind regards,\n{msp}\n",
}


def _email(value: str, key: str) -> str:
    from hub.clientdetails import is_email
    if not is_email(value):
        from hub.config import fail
        raise fail(f"{value!r} is not an e-mail address", 'write it like "direction@client.example"', (key,))
    return value


def _template(value: str, key: str) -> str:
    from hub.config import fail
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise fail(f"{value!r} is not a template: {exc}", "write {client}, {period} or {msp}; double { and } "
                                                          "to write them as such", (key,)) from None
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        raise fail(f"unknown placeholder {{{unknown[0]}}}", f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}",
                   (key,))
    return value


Address = Annotated[str, Field(min_length=3)]


class DeliverySchema(Schema):
    """``[reports.delivery]`` (see the module's docstring)."""

    folder: Annotated[str, Field(min_length=1)] = "reports"
    reports: list[Literal["scorecard", "kpis", "maturity"]] = ["scorecard"]
    email: bool = False
    language: Literal["en", "fr"] | None = None
    clients: list[str] | None = None
    to: dict[str, Address] = {}
    subject: dict[Literal["en", "fr"], str] = {}
    body: dict[Literal["en", "fr"], str] = {}

    @field_validator("to")
    @classmethod
    def _to(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: _email(a, k) for k, a in v.items()}

    @field_validator("subject", "body")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: _template(t, k) for k, t in v.items()}


@dataclass(frozen=True)
class DeliverySettings:
    """``[reports.delivery]`` checked: the folder as a path, the SMTP channel when e-mailing."""

    folder: Path
    reports: tuple[str, ...]
    email: Any            # hub.notify.EmailChannel, or None: documents are only written
    language: str
    clients: tuple[str, ...] | None
    to: dict[str, str]
    subject: dict[str, str]
    body: dict[str, str]
    msp_name: str


def delivery_settings(config) -> DeliverySettings:
    """Check ``[reports.delivery]`` of ``config``; a ConfigError names the key and the fix."""
    from hub.notify import notify_settings
    raw = (config.reports or {}).get("delivery") or {}
    m = validate(DeliverySchema, raw, file=config.file, prefix=("reports", "delivery"))
    folder = Path(m.folder).expanduser()
    if not folder.is_absolute() and config.path is not None:
        folder = config.path.parent / folder
    channel = None
    if m.email:
        channel = notify_settings(config).email
        if channel is None:
            raise ConfigError("e-mailing the reports needs the MSP's SMTP server", file=config.file,
                              key="reports.delivery.email",
                              fix="add [notify.email] (smtp_host, from, to...), or set email = false")
    return DeliverySettings(folder, tuple(m.reports), channel, m.language or report_language(config),
                            tuple(m.clients) if m.clients is not None else None, dict(m.to),
                            {**DEFAULT_SUBJECT, **m.subject}, {**DEFAULT_BODY, **m.body},
                            config.report_settings.msp_name)


def report_language(config) -> str:
    """``[reports] language``, else the invoices' (``[billing.invoice] language``, English when unset)."""
    return config.report_settings.language or config.billing_settings.invoice_settings.language


# --- clients and their addresses -------------------------------------------------------------------

@dataclass(frozen=True)
class Recipient:
    """A hub client the per-client reports go to: its address (None: none known) and where it came from."""

    client_id: str
    name: str
    email: str | None
    source: str | None
    language: str


def months_of(period: str) -> set[str]:
    """The months (``YYYY-MM``) of a quarter (``2026-Q3``) or of a month."""
    if not is_quarter(period):
        return {period}
    return {m.name for m in parse_quarter(period).months()}


def recipients(hub, settings: DeliverySettings, period: str) -> list[Recipient]:
    """The hub's clients (linked as billing links them) invoiced for a month of ``period`` (or those
    ``clients`` of the settings names), each with its address: ``[reports.delivery.to]``, else its
    billing e-mail."""
    from hub.clientdetails import details_for
    from hub.connectors import client_master
    from hub.linking import HubClient, link_clients
    m = hub.mappings
    explicit = [HubClient(c.client_id, c.name, dict(c.links)) for c in m.contracts.values()]
    explicit += [HubClient(cid, name, dict(links)) for cid, (name, links) in m.links.items() if cid not in m.contracts]
    master = client_master(hub)
    registry = link_clients(explicit, hub.store.iter_clients(), master=master)
    wanted = settings.clients
    if wanted is None:
        months = months_of(period)
        wanted = tuple(sorted({a["client_id"] for a in hub.store.actions(status="sent", kind="invoice")
                               if a.get("period") in months}))
    out = []
    for cid, client in sorted(registry.clients.items()):
        if wanted is not None and cid not in wanted:
            continue
        details = details_for(hub, cid, client.name, m.contracts.get(cid),
                              psa_id=client.links.get(master) if master else None)
        if cid in settings.to:
            email, source = settings.to[cid], f"[reports.delivery.to] {cid}"
        elif details.email and "email" not in details.problems:
            email, source = details.email, details.sources.get("email")
        else:
            email, source = None, details.problems.get("email")
        lang = (details.locale or "")[:2].lower()
        out.append(Recipient(cid, client.name, email, source, lang if lang in ("en", "fr") else settings.language))
    missing = sorted(set(settings.clients or ()) - {r.client_id for r in out})
    if missing:
        raise ConfigError(f"no hub client has the id {missing[0]!r}", file=hub.config.file,
                          key="reports.delivery.clients", fix="use the ids msp-hub clients lists")
    return out


# --- one delivery ----------------------------------------------------------------------------------

@dataclass
class DeliveryResult:
    """What one delivery did, document by document (each entry names the client and the file)."""

    report: str
    period: str
    written: list[dict] = field(default_factory=list)        # new files
    already: list[dict] = field(default_factory=list)        # written by an earlier run
    sent: list[dict] = field(default_factory=list)           # e-mailed now
    failed: list[dict] = field(default_factory=list)         # an e-mail that failed: retried next run
    no_address: list[dict] = field(default_factory=list)     # a client without an address: not e-mailed
    unknown: list[dict] = field(default_factory=list)        # a run stopped while e-mailing it
    errors: list[dict] = field(default_factory=list)         # a document not made, or a file in the way
    held: list[str] = field(default_factory=list)            # why no document to e-mail was made (a stream)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.no_address or self.unknown or self.errors or self.held)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def lines(self) -> list[str]:
        """One line per document that was not simply done, and a count of the rest."""
        out = [f"{self.report} {self.period}: {len(self.written)} written, {len(self.already)} already written, "
               f"{len(self.sent)} e-mailed"]
        out += [f"e-mail failed (retried next run): {e['client_id']} to {e['to']}: {e['error']}" for e in self.failed]
        out += [f"no address: {e['client_id']} ({e['name']}): {e['why']}" for e in self.no_address]
        out += [f"outcome unknown: {e['client_id']} to {e['to']}: {e['why']}" for e in self.unknown]
        out += [f"not delivered: {e['client_id'] or 'msp'}: {e['error']}" for e in self.errors]
        out += [f"held (no document made, made by a later run once fixed): {why}" for why in self.held]
        return out


def _stream_problems(hub, producer: Producer, period: str) -> list[str]:
    """Why the streams ``producer`` reads cannot be trusted for ``period`` (the completeness gate's
    words): failed since their last complete pass, never complete, or last complete before the
    period ended. Empty: the documents may be made."""
    from types import SimpleNamespace

    from hub.completeness import Gate
    from hub.periods import is_quarter, parse_period, parse_quarter
    tz = hub.config.timezone
    end = (parse_quarter(period, tz) if is_quarter(period) else parse_period(period, tz)).end
    gate = Gate(hub, SimpleNamespace(run_id=None))
    return gate.problems(gate.streams_of(producer.reads), after=end, this_run=False)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


def document_path(folder: Path, report: str, period: str, client_id: str | None) -> Path:
    """``<folder>/<period>/<report>-<client>-<period>.pdf`` (no client: ``<report>-<period>.pdf``)."""
    name = f"{report}-{_safe(client_id)}-{period}.pdf" if client_id else f"{report}-{period}.pdf"
    return folder / period / name


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` atomically, never over an existing file (FileExistsError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)          # fails when the file exists: nothing is overwritten
    finally:
        tmp.unlink(missing_ok=True)


def _fill(template: str, **values: str) -> str:
    return template.format(**values)


def compose(settings: DeliverySettings, recipient: Recipient, report: str, period: str, data: bytes,
            filename: str) -> EmailMessage:
    """The e-mail of one client's document: subject and body in its language, the PDF attached."""
    values = {"client": recipient.name, "period": period, "msp": settings.msp_name or settings.email.sender}
    mail = EmailMessage()
    mail["Subject"] = _fill(settings.subject[recipient.language], **values)
    mail["From"] = settings.email.sender
    mail["To"] = recipient.email
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain=settings.email.sender.rsplit("@", 1)[-1])
    mail.set_content(_fill(settings.body[recipient.language], **values))
    mail.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return mail


def deliver(hub, report: str, period: str | None = None, *, settings: DeliverySettings | None = None,
            send: Callable[[Any, EmailMessage], None] | None = None) -> DeliveryResult:
    """Produce ``report``'s documents of ``period`` (default: the last ended quarter or month) into
    the folder and, for a per-client report with ``email`` on, e-mail each client its PDF; exactly
    once (see the module's docstring). ``send(channel, mail)``: defaults to ``hub.notify.send_mail``."""
    from hub.notify import DeliveryError, send_mail
    from hub.periods import local_day
    settings = settings or delivery_settings(hub.config)
    if report not in PRODUCERS:
        raise ConfigError(f"unknown report {report!r}", file=hub.config.file, key="reports.delivery.reports",
                          fix=f"use one of {', '.join(sorted(PRODUCERS))}")
    if report not in settings.reports:
        raise ConfigError(f"the {report} report is not among the reports delivered", file=hub.config.file,
                          key="reports.delivery.reports", fix=f'add "{report}" to reports')
    producer = PRODUCERS[report]
    period = check_period(report, period) if period else last_ended(producer.period,
                                                                    local_day(hub.clock(), hub.config.timezone))
    send = send or send_mail
    result = DeliveryResult(report, period)
    targets = recipients(hub, settings, period) if producer.per_client else [None]
    mailing = producer.per_client and settings.email is not None
    store = hub.store
    if mailing and producer.reads:
        result.held = _stream_problems(hub, producer, period)
    for target in targets:
        cid = target.client_id if target else None
        key = (report, cid or "", period)
        lang = target.language if target else settings.language
        path = document_path(settings.folder, report, period, cid)
        entry = {"client_id": cid, "file": str(path)}
        row = store.get_delivery(*key)
        if row is None and result.held:
            continue            # made once its streams are complete again (a later run)
        if row is None:
            if path.exists():
                result.errors.append({**entry, "error": f"{path} exists but no delivery recorded it: it is not "
                                                        f"overwritten (fix: move it away, then deliver again)"})
                continue
            try:
                data = producer(hub, period, cid, "pdf", lang)
                write_new(path, data)
            except FileExistsError:
                result.errors.append({**entry, "error": f"{path} appeared while it was written: it is not "
                                                        f"overwritten (fix: move it away, then deliver again)"})
                continue
            except Exception as exc:  # one document's failure must not stop the others
                error = str(exc) if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
                log.error("reports.delivery.produce_failed", report=report, client=cid, period=period, error=error)
                result.errors.append({**entry, "error": f"not made: {error}"})
                continue
            digest = hashlib.sha256(data).hexdigest()
            store.record_delivery(*key, file=str(path), sha256=digest, language=lang,
                                  status="produced" if mailing else "kept")
            row = store.get_delivery(*key)
            result.written.append(entry)
        else:
            result.already.append(entry)
        if not mailing or row["status"] in ("sent", "kept"):
            continue
        if row["status"] == "sending":
            result.unknown.append({**entry, "to": row["recipient"],
                                   "why": f"a run stopped while e-mailing it (attempt {row['attempts']}); it is not "
                                          f"sent again automatically: check that mailbox"})
            continue
        if not target.email:
            result.no_address.append({**entry, "name": target.name, "why": (
                (target.source + "; ") if target.source else "") + "no e-mail address is known for it (fix: add "
                f"{target.client_id} = \"address\" to [reports.delivery.to], or give the company a billing e-mail "
                f"in the PSA)"})
            continue
        try:
            data = Path(row["file"]).read_bytes()
        except OSError as exc:
            result.errors.append({**entry, "error": f"{row['file']} was written but cannot be read now "
                                                    f"({exc.strerror}); not e-mailed (fix: restore it)"})
            continue
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            result.errors.append({**entry, "error": f"{row['file']} changed since it was written; not e-mailed "
                                                    f"(fix: restore the file as written)"})
            continue
        if not store.claim_delivery(*key, target.email):
            continue            # another process took it meanwhile
        try:
            send(settings.email, compose(settings, target, report, period, data, Path(row["file"]).name))
        except DeliveryError as exc:
            store.finish_delivery(*key, error=str(exc))
            log.error("reports.delivery.email_failed", report=report, client=cid, period=period, error=str(exc))
            result.failed.append({**entry, "to": target.email, "error": str(exc)})
            continue
        store.finish_delivery(*key)
        log.info("reports.delivery.emailed", report=report, client=cid, period=period)
        result.sent.append({**entry, "to": target.email})
    return result
