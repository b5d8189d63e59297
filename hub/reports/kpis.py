"""The MSP's revenue KPIs, month by month, from what the store holds: the invoices the hub sent
(their payload lines and snapshots, less voids and credit notes), the PSA's agreements, time
entries and service tickets, and the blocks the hub sold. No vendor is called.

``build(hub, first, last)`` computes every figure of the months ``first`` to ``last`` (YYYY-MM) as
one JSON-ready dict; ``render(kpis, fmt, lang)`` writes it as HTML (charts inline), CSV or JSON.

Every figure is a row ``{metric, period, subject_id, subject, currency, value, unit}``:
``period`` is a month (YYYY-MM), an ISO week (YYYY-Www), a day (YYYY-MM-DD) or "" for the whole
range; ``subject`` what the figure is about (a client, a technician, an add-on, an agreement; ""
for the MSP as a whole); ``unit`` says how to read ``value``: ``minor`` (an integer amount in minor
units of ``currency``; amounts of two currencies are never added), ``count``, ``hours`` (a decimal
string), ``percent`` (a decimal string), ``ratio`` (a decimal string) or ``minor_per_hour``. A
figure that needs an input no API holds is left out and named in ``not_available`` with the key
to set, never shown as a guess.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Annotated, Iterable

from pydantic import PlainValidator

from hub.config import Schema, fail, validate
from hub.money import exponent, format_minor, format_quantity, round_half_up, to_minor
from hub.periods import month as month_period, parse_period, period_of
from hub.reports import render as R

if TYPE_CHECKING:  # pragma: no cover
    from hub.engine import Hub

MAX_MONTHS = 120
RECURRING_PREFIXES = ("tier:", "addon:", "minimum")     # device lines of a tier and its add-ons; the monthly minimum
UPSELL_PREFIXES = ("tier:", "addon:")
FORMATS = ("html", "csv", "json")
CSV_COLUMNS = ("metric", "period", "subject_id", "subject", "currency", "value", "unit")


# --- [reports.kpis] ---------------------------------------------------------------------------


def _costs(value: Any) -> Any:
    """``labour_cost_per_hour``: ``"45.00"`` (the hub's currency) or ``{ EUR = "45.00" }``."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = {"": value}
    if not isinstance(value, dict):
        raise fail(f"must be an amount or a table of amounts per currency, got {value!r}",
                   'write labour_cost_per_hour = "45.00", or labour_cost_per_hour = { EUR = "45.00" }')
    out = {}
    for currency, amount in value.items():
        if currency and not re.fullmatch(r"[A-Za-z]{3}", str(currency)):
            raise fail(f"{currency!r} is not an ISO currency code", 'write { EUR = "45.00" }')
        if isinstance(amount, float) or isinstance(amount, bool) or not isinstance(amount, (str, int)):
            raise fail(f"a cost is written as a string, got {amount!r}", 'write "45.00"')
        try:
            if Decimal(str(amount).strip()) <= 0:
                raise fail(f"the labour cost must be above 0, got {amount!r}", 'write "45.00"')
            to_minor(amount, str(currency) or "EUR")
        except (ValueError, ArithmeticError):
            raise fail(f"{amount!r} is not an amount", 'write it as a string such as "45.00"') from None
        out[str(currency).upper()] = str(amount).strip()
    return out


def _positive(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(f"must be a whole number of at least 1, got {value!r}", "write technicians = 4")
    return value


class KpiSettings(Schema):
    """``[reports.kpis]``: what the KPIs need that no API holds. ``labour_cost_per_hour``: what an
    hour of a technician costs the MSP (loaded cost), for the margin per agreement; ``technicians``:
    the headcount of billable technicians, for the revenue per technician; ``top_clients``: how
    many clients the ranking of ticket volumes shows."""

    labour_cost_per_hour: Annotated[dict[str, str] | None, PlainValidator(_costs)] = None
    technicians: Annotated[int | None, PlainValidator(_positive)] = None
    top_clients: Annotated[int, PlainValidator(_positive)] = 10


def language_of(config) -> str:
    """The reports' language: ``[reports] language``, else ``[billing.invoice] language`` (its
    default when that table is not written)."""
    return config.report_settings.language or config.billing_settings.invoice_settings.language


def kpi_settings(config) -> KpiSettings:
    """``[reports.kpis]`` of the config, checked (unknown key or wrong value: ConfigError naming
    the key and the fix)."""
    return validate(KpiSettings, dict(config.reports.get("kpis") or {}), file=config.file, prefix=("reports", "kpis"))


# --- labels -----------------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Revenue KPIs", "range": "{first} to {last}", "definitions": "How each figure is computed",
        "not_available": "Not available", "no_data": "No data in this range.", "month": "Month", "client": "Client",
        "currency": "Currency", "value": "Value", "total": "Total", "technician": "Technician",
        "agreement": "Agreement", "addon": "Add-on", "rank": "Rank",
        "mrr": "Monthly recurring revenue (MRR)", "mrr_movement": "MRR movement",
        "mrr_new": "New", "mrr_expansion": "Expansion", "mrr_contraction": "Contraction", "mrr_lost": "Lost",
        "clients_lost": "Lost clients", "clients_new": "New clients",
        "revenue": "Revenue", "revenue_client": "Revenue per client",
        "new_agreements": "New contracts", "new_agreement_value_avg": "Average value of a new agreement",
        "new_agreement_value": "Value of each new agreement", "new_agreements_not_invoiced": "Not invoiced yet",
        "upsell": "Upsell revenue", "devices_managed": "Devices under management",
        "devices_growth": "Growth of managed devices", "addon_client_share": "Clients with the add-on",
        "addon_device_share": "Devices with the add-on", "cross_sell": "Cross-sell coverage per add-on",
        "tickets_client": "Tickets opened per client", "tickets_top": "Clients that open the most tickets",
        "tickets_per_day": "Per day", "tickets_per_week": "Per week", "tickets_week": "Tickets opened per week",
        "hours_client": "Hours per client", "hours_worked_client": "Worked", "hours_billable_client": "Billable",
        "hours_invoiced_client": "Invoiced",
        "revenue_per_technician": "Revenue per technician", "time_revenue_technician": "Invoiced time per technician",
        "tasks_technician": "Tasks per technician", "technician_tickets": "Tickets",
        "technician_hours": "Hours", "technician_hours_cv": "Spread of hours (coefficient of variation)",
        "technician_tickets_cv": "Spread of tickets (coefficient of variation)",
        "effective_rate": "Effective hourly rate per agreement", "effective_rate_billed": "Billed",
        "effective_rate_hours": "Hours worked", "effective_rate_margin": "Margin after labour cost",
        "block_usage": "Prepaid blocks", "block_hours_used": "Hours used", "block_renewals": "Renewals",
        "block_renewal_hours": "Hours sold", "block_renewal_revenue": "Renewal revenue",
        "client_lost": "MRR the month before", "devices_growth_percent": "Growth (%)",
        "technician_tickets_cv.col": "Spread of tickets", "technician_hours_cv.col": "Spread of hours",
        "effective_rate.col": "Per hour", "effective_rate_margin.col": "Margin",
        "agreement_type": "Agreement type", "new_agreements_type": "New contracts of the type",
    },
    "fr": {
        "title": "Indicateurs de revenus", "range": "de {first} à {last}",
        "definitions": "Comment chaque indicateur est calculé", "not_available": "Non disponible",
        "no_data": "Aucune donnée sur cette période.", "month": "Mois", "client": "Client", "currency": "Devise",
        "value": "Valeur", "total": "Total", "technician": "Technicien", "agreement": "Contrat",
        "addon": "Option", "rank": "Rang",
        "mrr": "Revenu mensuel récurrent (MRR)", "mrr_movement": "Évolution du MRR",
        "mrr_new": "Nouveau", "mrr_expansion": "Expansion", "mrr_contraction": "Contraction", "mrr_lost": "Perdu",
        "clients_lost": "Clients perdus", "clients_new": "Nouveaux clients",
        "revenue": "Chiffre d'affaires", "revenue_client": "Chiffre d'affaires par client",
        "new_agreements": "Nouveaux contrats", "new_agreement_value_avg": "Valeur moyenne d'un nouveau contrat",
        "new_agreement_value": "Valeur de chaque nouveau contrat", "new_agreements_not_invoiced": "Pas encore facturés",
        "upsell": "Revenus de montée en gamme", "devices_managed": "Équipements sous contrat",
        "devices_growth": "Croissance des équipements sous contrat", "addon_client_share": "Clients ayant l'option",
        "addon_device_share": "Équipements ayant l'option", "cross_sell": "Taux d'équipement par option",
        "tickets_client": "Tickets ouverts par client", "tickets_top": "Clients qui ouvrent le plus de tickets",
        "tickets_per_day": "Par jour", "tickets_per_week": "Par semaine", "tickets_week": "Tickets ouverts par semaine",
        "hours_client": "Heures par client", "hours_worked_client": "Travaillées", "hours_billable_client": "Facturables",
        "hours_invoiced_client": "Facturées",
        "revenue_per_technician": "Chiffre d'affaires par technicien",
        "time_revenue_technician": "Temps facturé par technicien",
        "tasks_technician": "Charge par technicien", "technician_tickets": "Tickets", "technician_hours": "Heures",
        "technician_hours_cv": "Dispersion des heures (coefficient de variation)",
        "technician_tickets_cv": "Dispersion des tickets (coefficient de variation)",
        "effective_rate": "Taux horaire effectif par contrat", "effective_rate_billed": "Facturé",
        "effective_rate_hours": "Heures travaillées", "effective_rate_margin": "Marge après coût de main-d'œuvre",
        "block_usage": "Forfaits d'heures prépayés", "block_hours_used": "Heures consommées",
        "block_renewals": "Renouvellements", "block_renewal_hours": "Heures vendues",
        "block_renewal_revenue": "Chiffre d'affaires des renouvellements",
        "client_lost": "MRR du mois précédent", "devices_growth_percent": "Croissance (%)",
        "technician_tickets_cv.col": "Dispersion des tickets", "technician_hours_cv.col": "Dispersion des heures",
        "effective_rate.col": "Par heure", "effective_rate_margin.col": "Marge",
        "agreement_type": "Type de contrat", "new_agreements_type": "Nouveaux contrats de ce type",
    },
}

DEFINITIONS: dict[str, dict[str, str]] = {
    "en": {
        "revenue": "Revenue of a month: the amounts before tax of the lines of every invoice the hub sent for that "
                   "month (invoices, re-issues and block renewals), less sent credit notes (a credit note of lines "
                   "takes those lines off; one of an amount, which includes tax, takes its share before tax off "
                   "each line in proportion) and without voided invoices. A late-change line (delta) counts in the "
                   "month it corrects. Amounts of different currencies are never added.",
        "mrr": "Recurring: the device lines of a tier and of its add-ons (codes tier:... and addon:...), billed "
               "every month by the devices counted, and the top-up to the contract's monthly minimum (minimum). "
               "Time, flat-rate jobs, overage, products and block renewals are not recurring. MRR of a month: the "
               "recurring revenue of that month.",
        "mrr_movement": "Per client against the month before: new (no MRR before), expansion (more), contraction "
                        "(less, above 0), lost (MRR before, none now).",
        "new_agreements": "An agreement of the PSA whose start date falls in the month. Its value: the client's "
                          "MRR in the first invoiced month from its start, less its MRR the month before the "
                          "start (what it added); one whose client has no invoice since is not invoiced yet and "
                          "left out of the average.",
        "upsell": "Recurring revenue of the month from tiers and add-ons that a client which already had MRR the "
                  "month before was not billed that month.",
        "devices_managed": "Devices billed on a tier line of the month's sent invoices (not those of a credited "
                           "line); growth against the month before.",
        "cross_sell": "Per add-on: clients billed the add-on ÷ clients billed a tier; devices billed the add-on ÷ "
                      "devices billed a tier, in the month.",
        "tickets": "Every PSA service ticket, by the local day it was opened; per day and per week: the client's "
                   "tickets of the range ÷ the days (weeks) of the range.",
        "hours_client": "Worked: the hours of every time entry; billable: of entries marked billable; invoiced: "
                        "the hours the sent invoices billed (time and overage lines, as rounded).",
        "technicians": "Tickets: distinct tickets a technician logged time on in the month; hours: the hours of "
                       "their entries. Spread: the coefficient of variation (standard deviation ÷ mean) of those "
                       "figures among the technicians with time that month; 0 is perfectly even. Revenue per "
                       "technician: the month's revenue ÷ [reports.kpis] technicians; invoiced time per "
                       "technician: the amounts of the time lines that billed their entries.",
        "effective_rate": "Per client and set of agreements in force: the client's revenue in the months of the "
                          "range those agreements were in force ÷ every hour worked for the client in those "
                          "months. Margin: billed − hours × [reports.kpis] labour_cost_per_hour.",
        "block_usage": "Block agreements: those the PSA counts in hours, or that the hub renewed. Hours used: "
                       "hours of billable entries charged to them; renewals: sent renewal invoices, the hours "
                       "they sold and their revenue.",
    },
    "fr": {
        "revenue": "Chiffre d'affaires d'un mois : les montants hors taxe des lignes de chaque facture envoyée par le "
                   "hub pour ce mois (factures, réémissions et renouvellements de forfaits), moins les avoirs "
                   "envoyés (un avoir sur des lignes retire ces lignes ; un avoir d'un montant, taxes comprises, "
                   "retire sa part hors taxe de chaque ligne au prorata) et sans les factures annulées. Une ligne "
                   "de régularisation (delta) compte dans le mois qu'elle corrige. Les montants de devises "
                   "différentes ne sont jamais additionnés.",
        "mrr": "Récurrent : les lignes d'équipements d'un niveau de service et de ses options (codes tier:... et "
               "addon:...), facturées chaque mois selon les équipements comptés, et le complément au minimum "
               "mensuel du contrat (minimum). Le temps, les forfaits à "
               "l'intervention, les dépassements, les produits et les renouvellements de forfaits ne sont pas "
               "récurrents. MRR d'un mois : son chiffre d'affaires récurrent.",
        "mrr_movement": "Par client, par rapport au mois précédent : nouveau (pas de MRR avant), expansion (plus), "
                        "contraction (moins, au-dessus de 0), perdu (du MRR avant, plus rien).",
        "new_agreements": "Un contrat du PSA dont la date de début tombe dans le mois. Sa valeur : le MRR du client "
                          "au premier mois facturé depuis son début, moins son MRR du mois précédant le début (ce "
                          "qu'il a ajouté) ; un contrat dont le client n'a pas été facturé depuis est « pas encore "
                          "facturé » et exclu de la moyenne.",
        "upsell": "Revenu récurrent du mois provenant de niveaux et d'options qu'un client ayant déjà du MRR le "
                  "mois précédent ne payait pas ce mois-là.",
        "devices_managed": "Équipements facturés sur une ligne de niveau de service des factures envoyées du mois "
                           "(hors lignes ayant fait l'objet d'un avoir) ; croissance par rapport au mois précédent.",
        "cross_sell": "Par option : clients facturés de l'option ÷ clients facturés d'un niveau ; équipements "
                      "facturés de l'option ÷ équipements facturés d'un niveau, dans le mois.",
        "tickets": "Tous les tickets de service du PSA, selon le jour local de leur ouverture ; par jour et par "
                   "semaine : les tickets du client sur la période ÷ les jours (semaines) de la période.",
        "hours_client": "Travaillées : les heures de toutes les saisies de temps ; facturables : celles marquées "
                        "facturables ; facturées : les heures que les factures envoyées ont facturées (lignes de "
                        "temps et de dépassement, arrondies).",
        "technicians": "Tickets : tickets distincts sur lesquels un technicien a saisi du temps dans le mois ; "
                       "heures : les heures de ses saisies. Dispersion : le coefficient de variation (écart type ÷ "
                       "moyenne) parmi les techniciens ayant du temps ce mois-là ; 0 = parfaitement réparti. "
                       "Chiffre d'affaires par technicien : le chiffre d'affaires du mois ÷ [reports.kpis] "
                       "technicians ; temps facturé par technicien : les montants des lignes de temps de ses saisies.",
        "effective_rate": "Par client et ensemble de contrats en vigueur : le chiffre d'affaires du client sur les "
                          "mois de la période où ces contrats étaient en vigueur ÷ toutes les heures travaillées "
                          "pour lui ces mois-là. Marge : facturé − heures × [reports.kpis] labour_cost_per_hour.",
        "block_usage": "Forfaits : les contrats que le PSA compte en heures, ou que le hub a renouvelés. Heures "
                       "consommées : heures des saisies facturables imputées à ces contrats ; renouvellements : les "
                       "factures de renouvellement envoyées, les heures vendues et leur montant.",
    },
}

NOT_AVAILABLE = {   # metric -> (the [reports.kpis] key it needs, its message per language)
    "revenue_per_technician": ("technicians", {
        "en": "revenue per technician: not available: set [reports.kpis] technicians (the headcount of billable "
              "technicians)",
        "fr": "chiffre d'affaires par technicien : non disponible : renseignez [reports.kpis] technicians (le "
              "nombre de techniciens facturables)"}),
    "effective_rate_margin": ("labour_cost_per_hour", {
        "en": "margin after labour cost per agreement: not available: set [reports.kpis] labour_cost_per_hour "
              "(e.g. \"45.00\")",
        "fr": "marge après coût de main-d'œuvre par contrat : non disponible : renseignez [reports.kpis] "
              "labour_cost_per_hour (par exemple \"45.00\")"}),
}


# --- months -------------------------------------------------------------------------------------


def months_between(first: str, last: str) -> list[str]:
    """``"2026-01"``, ``"2026-03"`` -> the three months; ValueError naming the fix otherwise."""
    a, b = parse_period(first), parse_period(last)
    if a.name > b.name:
        raise ValueError(f"--from {first} is after --to {last}: give the earlier month first")
    out, p = [], a
    while p.name <= b.name:
        out.append(p.name)
        p = p.next()
    if len(out) > MAX_MONTHS:
        raise ValueError(f"{len(out)} months from {first} to {last}: at most {MAX_MONTHS} at once")
    return out


def _previous(name: str) -> str:
    return parse_period(name).previous().name


def _percent(num: int | Fraction, den: int | Fraction) -> str | None:
    """``num`` ÷ ``den`` as a percent with one decimal; None (not measured) when ``den`` is 0."""
    return _decimal(Fraction(num) * 100 / Fraction(den), 1) if den else None


def _decimal(value: Fraction, places: int) -> str:
    """An exact fraction as a decimal string rounded half up to ``places`` (no float)."""
    scale = 10 ** places
    n = round_half_up(value * scale)
    sign = "-" if n < 0 else ""
    whole, rest = divmod(abs(n), scale)
    return f"{sign}{whole}.{rest:0{places}d}" if places else f"{sign}{whole}"


def _hours(value: Fraction) -> str:
    return format_quantity(value)


# --- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Amount:
    """An amount before tax of one invoice line (or of its credit), counted in ``period``."""

    client_id: str
    period: str
    code: str            # the line's code; a delta's: what it corrects
    amount: int
    currency: str
    invoice_key: str

    @property
    def recurring(self) -> bool:
        return self.code.startswith(RECURRING_PREFIXES)

    @property
    def offer(self) -> str:
        """``tier:gold`` / ``addon:backup``: what a recurring line sells, without the class."""
        return ":".join(self.code.split(":")[:2])


class _Rows:
    def __init__(self):
        self.rows: list[dict[str, Any]] = []

    def add(self, metric: str, period: str, value: Any, unit: str, *, subject_id: str = "", subject: str = "",
            currency: str = "") -> None:
        self.rows.append({"metric": metric, "period": period, "subject_id": subject_id, "subject": subject,
                          "currency": currency, "value": value, "unit": unit})


def _registry(hub: "Hub"):
    """The hub's clients linked across systems, as the plan links them (no vendor is called)."""
    from hub.connectors import client_master
    from hub.linking import HubClient, link_clients
    m = hub.mappings
    explicit = [HubClient(c.client_id, c.name, dict(c.links)) for c in m.contracts.values()]
    explicit += [HubClient(cid, name, dict(links)) for cid, (name, links) in m.links.items() if cid not in m.contracts]
    return link_clients(explicit, list(hub.store.iter_clients()), master=client_master(hub))


def _tax_share(payload: dict) -> Fraction:
    """Before-tax ÷ with-tax of an invoice (1 without a tax block)."""
    tax = payload.get("tax") or {}
    total, with_tax = int(payload.get("total") or 0), tax.get("total_with_tax")
    if with_tax in (None, 0) or not total:
        return Fraction(1)
    return Fraction(total, int(with_tax))


def _spread(amount: int, weights: list[int]) -> list[int]:
    """``amount`` split in proportion to ``weights`` in whole minor units (largest remainders)."""
    total = sum(weights)
    if not total:
        return [0] * len(weights)
    exact = [Fraction(amount * w, total) for w in weights]
    out = [math.floor(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:amount - sum(out)]:
        out[i] += 1
    return out


def _line_period(code: str, period: str) -> tuple[str, str]:
    """(the period a line counts in, the code it is about): a delta line ``delta:<p>:<code>``
    counts in the month it corrects."""
    if code.startswith("delta:"):
        parts = code.split(":", 2)
        if len(parts) == 3 and re.fullmatch(r"\d{4}-\d{2}", parts[1]):
            return parts[1], parts[2]
    return period, code


def _amounts(invoices: list[dict], corrections: list[dict]) -> tuple[list[_Amount], dict[str, set[str]]]:
    """The before-tax amounts of the sent invoices, with their credit notes as negative amounts and
    voided invoices left out; and per invoice key the codes a credit note took off."""
    voided = {c["invoice_key"] for c in corrections if c["kind"] == "invoice_void"}
    credits: dict[str, list[dict]] = defaultdict(list)
    for c in corrections:
        if c["kind"] == "credit_note":
            credits[c["invoice_key"]].append(c)
    out: list[_Amount] = []
    credited: dict[str, set[str]] = defaultdict(set)
    for inv in invoices:
        if inv["key"] in voided:
            continue
        payload, cur = inv["payload"], str(inv["payload"].get("currency") or "").upper()
        lines = [(str(l["code"]), int(l["amount"])) for l in payload.get("lines") or []]
        for code, amount in lines:
            period, about = _line_period(code, inv["period"])
            out.append(_Amount(inv["client_id"], period, about, amount, cur, inv["key"]))
        for c in credits.get(inv["key"], ()):
            if c["lines"]:
                for line in c["lines"]:
                    period, about = _line_period(str(line["code"]), inv["period"])
                    out.append(_Amount(inv["client_id"], period, about, -int(line["amount"]), cur, inv["key"]))
                    credited[inv["key"]].add(str(line["code"]))
            else:
                before_tax = round_half_up(int(c["amount"]) * _tax_share(payload))
                charged = [(code, a) for code, a in lines if a > 0]
                for (code, _), part in zip(charged, _spread(before_tax, [a for _, a in charged])):
                    period, about = _line_period(code, inv["period"])
                    out.append(_Amount(inv["client_id"], period, about, -part, cur, inv["key"]))
    return out, credited


def _in_force(agreement, name: str) -> bool:
    p = parse_period(name)
    start = agreement.start_date or "0000-00-00"
    end = agreement.end_date or "9999-99-99"
    return start[:10] < p.next().first_day.isoformat() and end[:10] >= p.first_day.isoformat()


def recurring_revenue(hub: "Hub", first: str, last: str) -> dict[str, tuple[int, int]]:
    """Per currency, (recurring, all) revenue of the months ``first`` to ``last`` (YYYY-MM,
    inclusive), counted as the report counts ``mrr`` and ``revenue`` (sent invoices before tax,
    less credit notes, voids left out, a late change in the month it corrects)."""
    amounts, _ = _amounts(hub.store.sent_invoices(first, "9999-12"), hub.store.sent_corrections())
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in amounts:
        if first <= a.period <= last:
            out[a.currency][1] += a.amount
            if a.recurring:
                out[a.currency][0] += a.amount
    return {c: (r, t) for c, (r, t) in sorted(out.items())}


def build(hub: "Hub", first: str, last: str) -> dict[str, Any]:
    """Every KPI of the months ``first`` to ``last`` (YYYY-MM, inclusive) from the hub's store.

    Returns a JSON-ready dict: ``from``, ``to``, ``months``, ``definitions`` (per language),
    ``not_available`` (messages naming the ``[reports.kpis]`` key to set), ``rows`` (see the
    module docstring) and ``page`` (the MSP's name and logo file for the HTML). ValueError for a
    wrong range; ConfigError for a wrong ``[reports.kpis]``."""
    months = months_between(first, last)
    settings = kpi_settings(hub.config)
    tz = hub.config.timezone
    store = hub.store
    before = _previous(months[0])
    rows = _Rows()
    registry = _registry(hub)
    names = {cid: c.name for cid, c in registry.clients.items()}

    linked = {(system, ext): cid for cid, c in registry.clients.items() for system, ext in c.links.items()}

    def hub_client(source: str, source_id: str) -> str:
        cid = linked.get((source, source_id))
        if cid is None:
            cid = f"{source}-{source_id}"
            names.setdefault(cid, cid)
        return cid

    invoices = store.sent_invoices(before, "9999-12")
    for inv in invoices:
        names.setdefault(inv["client_id"], str(inv["payload"].get("client_name") or inv["client_id"]))
    amounts, credited = _amounts(invoices, store.sent_corrections())
    inside = set(months)
    watched = set([before, *months])

    # Revenue and MRR per client, month and currency.
    revenue: dict[tuple[str, str, str], int] = defaultdict(int)
    mrr: dict[tuple[str, str, str], int] = defaultdict(int)
    offers: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    invoiced_months: dict[str, set[str]] = defaultdict(set)
    for a in amounts:
        revenue[(a.period, a.client_id, a.currency)] += a.amount
        invoiced_months[a.client_id].add(a.period)
        if a.recurring:
            mrr[(a.period, a.client_id, a.currency)] += a.amount
            offers[(a.period, a.client_id, a.currency)][a.offer] += a.amount
    currencies = sorted({c for (p, _, c) in revenue if p in inside})
    of_client: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)     # client -> (month, currency) -> revenue
    for (p, cid, cur), v in revenue.items():
        of_client[cid][(p, cur)] = v

    def total(table, month: str, cur: str) -> int:
        return sum(v for (p, _, c), v in table.items() if p == month and c == cur)

    for m in months:
        for cur in currencies:
            rows.add("revenue", m, total(revenue, m, cur), "minor", currency=cur)
            rows.add("mrr", m, total(mrr, m, cur), "minor", currency=cur)
        for (p, cid, cur), v in sorted(revenue.items()):
            if p == m:
                rows.add("revenue_client", m, v, "minor", subject_id=cid, subject=names.get(cid, cid), currency=cur)

    # MRR movement.
    for m in months:
        prev = _previous(m)
        for cur in currencies:
            moves = {"mrr_new": 0, "mrr_expansion": 0, "mrr_contraction": 0, "mrr_lost": 0}
            clients = sorted({cid for (p, cid, c) in mrr if c == cur and p in (m, prev)})
            new, lost = [], []
            for cid in clients:
                was, now = mrr.get((prev, cid, cur), 0), mrr.get((m, cid, cur), 0)
                if was <= 0 < now:
                    moves["mrr_new"] += now
                    new.append((cid, now))
                elif was > 0 >= now:
                    moves["mrr_lost"] += was
                    lost.append((cid, was))
                elif now > was:
                    moves["mrr_expansion"] += now - was
                elif now < was:
                    moves["mrr_contraction"] += was - now
            for metric, v in moves.items():
                rows.add(metric, m, v, "minor", currency=cur)
            rows.add("clients_new", m, len(new), "count", currency=cur)
            rows.add("clients_lost", m, len(lost), "count", currency=cur)
            for cid, v in new:
                rows.add("client_new", m, v, "minor", subject_id=cid, subject=names.get(cid, cid), currency=cur)
            for cid, v in lost:
                rows.add("client_lost", m, v, "minor", subject_id=cid, subject=names.get(cid, cid), currency=cur)

    # Upsell: recurring revenue of offers an existing client was not billed the month before.
    for m in months:
        prev = _previous(m)
        per: dict[str, int] = defaultdict(int)
        for (p, cid, cur), got in offers.items():
            if p != m or mrr.get((prev, cid, cur), 0) <= 0:
                continue
            had = offers.get((prev, cid, cur), {})
            gain = sum(v for offer, v in got.items() if offer.startswith(UPSELL_PREFIXES) and had.get(offer, 0) <= 0
                       and v > 0)
            if gain:
                per[cur] += gain
                rows.add("upsell_client", m, gain, "minor", subject_id=cid, subject=names.get(cid, cid), currency=cur)
        for cur in currencies:
            rows.add("upsell", m, per.get(cur, 0), "minor", currency=cur)

    # Agreements: new contracts and their value.
    agreements = [a for src in store.sources("agreements") for a in store.iter_records("agreements", src)]
    for m in months:
        started = [a for a in agreements if (a.start_date or "")[:7] == m]
        rows.add("new_agreements", m, len(started), "count")
        for kind in sorted({a.type_name or "" for a in started}):
            rows.add("new_agreements_type", m, sum(1 for a in started if (a.type_name or "") == kind), "count",
                     subject_id=kind, subject=kind)
        values: dict[str, list[int]] = defaultdict(list)
        waiting = 0
        for a in sorted(started, key=lambda a: (a.source, a.source_id)):
            cid = hub_client(a.source, a.client_source_id)
            billed = sorted(p for p in invoiced_months.get(cid, ()) if p >= m)
            if not billed:
                waiting += 1
                continue
            for cur in sorted(c for (p, c) in of_client.get(cid, {}) if p == billed[0]):
                value = mrr.get((billed[0], cid, cur), 0) - mrr.get((_previous(m), cid, cur), 0)
                values[cur].append(value)
                rows.add("new_agreement_value", m, value, "minor", subject_id=f"{a.source}:{a.source_id}",
                         subject=f"{a.name} ({names.get(cid, cid)})", currency=cur)
        rows.add("new_agreements_not_invoiced", m, waiting, "count")
        for cur, vs in sorted(values.items()):
            rows.add("new_agreement_value_avg", m, round_half_up(Fraction(sum(vs), len(vs))), "minor", currency=cur)

    # Devices under management and cross-sell, from the snapshots of the sent invoices.
    snaps = store.sent_snapshots(before, months[-1])
    sent_keys = {inv["key"] for inv in invoices}
    voided = {c["invoice_key"] for c in store.sent_corrections() if c["kind"] == "invoice_void"}
    tiers: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))    # month -> client -> devices
    addons: dict[str, dict[str, dict[str, set[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    time_things: list[tuple[str, str, dict, str]] = []    # (month, client, thing, currency)
    for s in snaps:
        if s["action_key"] not in sent_keys or s["action_key"] in voided:
            continue
        taken = credited.get(s["action_key"], set())
        for line in s["lines"]:
            code = str(line.get("code") or "")
            if code in taken:
                continue
            things = line.get("things") or [{"id": str(i.get("id"))} for i in line.get("items") or [] if "id" in i]
            if code.startswith("tier:"):
                tiers[s["period"]][s["client_id"]].update(str(t["id"]) for t in things)
            elif code.startswith("addon:"):
                addons[s["period"]][code.split(":")[1]][s["client_id"]].update(str(t["id"]) for t in things)
            elif code.startswith(("time:", "overage:")):
                for t in line.get("things") or []:
                    time_things.append((s["period"], s["client_id"], t, str(line.get("currency") or "").upper()))
    names_of_addons = sorted({a for m in months for a in addons.get(m, {})})
    for m in months:
        count = sum(len(d) for d in tiers.get(m, {}).values())
        was = sum(len(d) for d in tiers.get(_previous(m), {}).values())
        rows.add("devices_managed", m, count, "count")
        rows.add("devices_growth", m, count - was, "count")
        pct = _percent(count - was, was)
        if pct is not None:
            rows.add("devices_growth_percent", m, pct, "percent")
        managed = tiers.get(m, {})
        devices = sum(len(d) for d in managed.values())
        for addon in names_of_addons:
            having = addons.get(m, {}).get(addon, {})
            share_c = _percent(len([c for c, d in having.items() if d]), len(managed))
            share_d = _percent(sum(len(d) for d in having.values()), devices)
            if share_c is not None:
                rows.add("addon_client_share", m, share_c, "percent", subject_id=addon, subject=addon)
            if share_d is not None:
                rows.add("addon_device_share", m, share_d, "percent", subject_id=addon, subject=addon)

    # Tickets.
    span_days = (parse_period(months[-1]).next().first_day - parse_period(months[0]).first_day).days
    per_client: dict[str, int] = defaultdict(int)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)      # (metric, period, client)
    for src in store.sources("service_tickets"):
        for t in store.iter_records("service_tickets", src):
            if t.opened_at is None:
                continue
            m = period_of(t.opened_at, tz).name
            if m not in inside:
                continue
            day = parse_period(m).local_day(t.opened_at)
            iso = day.isocalendar()
            cid = hub_client(t.source, t.client_source_id)
            per_client[cid] += 1
            counts[("tickets_client", m, cid)] += 1
            counts[("tickets_client_week", f"{iso[0]:04d}-W{iso[1]:02d}", cid)] += 1
            counts[("tickets_client_day", day.isoformat(), cid)] += 1
    for (metric, period, cid), n in sorted(counts.items()):
        rows.add(metric, period, n, "count", subject_id=cid, subject=names.get(cid, cid))
    weeks: dict[str, int] = defaultdict(int)
    for (metric, period, _), n in counts.items():
        if metric == "tickets_client_week":
            weeks[period] += n
    for week, n in sorted(weeks.items()):
        rows.add("tickets_week", week, n, "count")
    for m in months:
        rows.add("tickets", m, sum(n for (k, p, _), n in counts.items() if k == "tickets_client" and p == m), "count")
    ranked = sorted(per_client.items(), key=lambda kv: (-kv[1], names.get(kv[0], kv[0]), kv[0]))
    for cid, n in ranked:
        rows.add("tickets_client_total", "", n, "count", subject_id=cid, subject=names.get(cid, cid))
        rows.add("tickets_client_per_day", "", _decimal(Fraction(n, span_days), 2), "ratio", subject_id=cid,
                 subject=names.get(cid, cid))
        rows.add("tickets_client_per_week", "", _decimal(Fraction(n * 7, span_days), 2), "ratio", subject_id=cid,
                 subject=names.get(cid, cid))
    for rank, (cid, n) in enumerate(ranked[:settings.top_clients], 1):
        rows.add("tickets_top", "", n, "count", subject_id=cid, subject=f"{rank}. {names.get(cid, cid)}")

    # Time: hours per client, tasks per technician, invoiced time per technician.
    entries = {}
    worked: dict[tuple[str, str], Fraction] = defaultdict(Fraction)        # (month, client)
    billable: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    tech_hours: dict[tuple[str, str], Fraction] = defaultdict(Fraction)    # (month, member)
    tech_tickets: dict[tuple[str, str], set[str]] = defaultdict(set)
    block_used: dict[tuple[str, str], Fraction] = defaultdict(Fraction)    # (month, agreement)
    for src in store.sources("time_entries"):
        for e in store.iter_records("time_entries", src):
            entries[e.source_id] = e
            if e.started_at is None:
                continue
            m = period_of(e.started_at, tz).name
            if m not in watched:
                continue
            hours = Fraction(Decimal(e.hours or "0"))
            cid = hub_client(e.source, e.client_source_id)
            worked[(m, cid)] += hours
            if e.billable == "billable":
                billable[(m, cid)] += hours
                if e.agreement_source_id:
                    block_used[(m, f"{e.source}:{e.agreement_source_id}")] += hours
            member = e.member or "?"
            tech_hours[(m, member)] += hours
            if e.ticket_id:
                tech_tickets[(m, member)].add(str(e.ticket_id))
    invoiced_hours: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    tech_revenue: dict[tuple[str, str, str], int] = defaultdict(int)
    for m, cid, thing, cur in time_things:
        invoiced_hours[(m, cid)] += Fraction(Decimal(str(thing.get("billed_hours") or "0")))
        entry = entries.get(str(thing.get("id")))
        if thing.get("kind") == "time" and entry is not None:
            tech_revenue[(m, entry.member or "?", cur)] += int(thing.get("amount") or 0)
    for m in months:
        for (p, cid) in sorted(set(worked) | set(invoiced_hours)):
            if p != m:
                continue
            who = dict(subject_id=cid, subject=names.get(cid, cid))
            rows.add("hours_worked_client", m, _hours(worked.get((m, cid), Fraction(0))), "hours", **who)
            rows.add("hours_billable_client", m, _hours(billable.get((m, cid), Fraction(0))), "hours", **who)
            rows.add("hours_invoiced_client", m, _hours(invoiced_hours.get((m, cid), Fraction(0))), "hours", **who)
        members = sorted(k for (p, k) in tech_hours if p == m)
        for member in members:
            rows.add("technician_hours", m, _hours(tech_hours[(m, member)]), "hours", subject_id=member, subject=member)
            rows.add("technician_tickets", m, len(tech_tickets.get((m, member), ())), "count", subject_id=member,
                     subject=member)
        for metric, values in (("technician_hours_cv", [tech_hours[(m, k)] for k in members]),
                               ("technician_tickets_cv", [Fraction(len(tech_tickets.get((m, k), ()))) for k in members])):
            cv = _variation(values)
            if cv is not None:
                rows.add(metric, m, cv, "ratio")
        for (p, member, cur), v in sorted(tech_revenue.items()):
            if p == m:
                rows.add("time_revenue_technician", m, v, "minor", subject_id=member, subject=member, currency=cur)
        if settings.technicians:
            for cur in currencies:
                rows.add("revenue_per_technician", m, round_half_up(Fraction(total(revenue, m, cur), settings.technicians)),
                         "minor", currency=cur)

    # Effective hourly rate per client and set of agreements in force.
    by_client: dict[str, list] = defaultdict(list)
    for a in agreements:
        by_client[hub_client(a.source, a.client_source_id)].append(a)
    costs = {(c or hub.mappings.currency).upper(): v for c, v in (settings.labour_cost_per_hour or {}).items()}
    for cid in sorted(set(by_client) | {k for (p, k, _) in revenue if p in inside}):
        groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for m in months:
            force = tuple(sorted(f"{a.source}:{a.source_id}" for a in by_client.get(cid, ()) if _in_force(a, m)))
            groups[force].append(m)
        label = {f"{a.source}:{a.source_id}": a.name for a in by_client.get(cid, ())}
        for force, ms in sorted(groups.items()):
            hours = sum((worked.get((m, cid), Fraction(0)) for m in ms), Fraction(0))
            billed: dict[str, int] = defaultdict(int)
            for (p, cur), v in of_client.get(cid, {}).items():
                if p in ms:
                    billed[cur] += v
            if not billed and not hours:
                continue
            subject = f"{names.get(cid, cid)}: " + (", ".join(label[a] for a in force) if force else "-")
            sid = f"{cid}|{','.join(force)}"
            rows.add("effective_rate_hours", "", _hours(hours), "hours", subject_id=sid, subject=subject)
            for cur, v in sorted(billed.items()):
                rows.add("effective_rate_billed", "", v, "minor", subject_id=sid, subject=subject, currency=cur)
                if hours:
                    rows.add("effective_rate", "", round_half_up(Fraction(v) / hours), "minor_per_hour",
                             subject_id=sid, subject=subject, currency=cur)
                if cur in costs:
                    cost = round_half_up(hours * to_minor(costs[cur], cur))
                    rows.add("effective_rate_margin", "", v - cost, "minor", subject_id=sid, subject=subject,
                             currency=cur)

    # Prepaid blocks: hours used and renewals.
    blocks = store.sent_blocks()
    block_ids = {f"{a.source}:{a.source_id}" for a in agreements if (a.application_units or "").lower() == "hours"}
    psa_of = {a.source_id: f"{a.source}:{a.source_id}" for a in agreements}
    block_ids |= {psa_of.get(b["agreement"], b["agreement"]) for b in blocks if b["agreement"]}
    agreement_names = {f"{a.source}:{a.source_id}": f"{a.name} ({names.get(hub_client(a.source, a.client_source_id))})"
                       for a in agreements}
    renewals = {inv["key"]: inv for inv in invoices if inv["key"].startswith("renewal:") and inv["key"] not in voided}
    for m in months:
        for (p, ag), hours in sorted(block_used.items()):
            if p == m and ag in block_ids:
                rows.add("block_hours_used", m, _hours(hours), "hours", subject_id=ag,
                         subject=agreement_names.get(ag, ag))
        sold = [b for b in blocks if b["period"] == m and b["action_key"] in renewals]
        rows.add("block_renewals", m, len(sold), "count")
        rows.add("block_renewal_hours", m, _hours(sum((Fraction(Decimal(b["hours"] or "0")) for b in sold),
                                                     Fraction(0))), "hours")
        per_cur: dict[str, int] = defaultdict(int)
        for a in amounts:
            if a.invoice_key in renewals and a.period == m:
                per_cur[a.currency] += a.amount
        for cur, v in sorted(per_cur.items()):
            rows.add("block_renewal_revenue", m, v, "minor", currency=cur)

    missing = [{"metric": metric, "set": key, "message": msgs} for metric, (key, msgs) in NOT_AVAILABLE.items()
               if getattr(settings, key) is None]
    without = sorted({r["currency"] for r in rows.rows if r["metric"] == "effective_rate_billed"} - set(costs))
    if costs and without:
        example = f'labour_cost_per_hour = {{ {without[0]} = "..." }}'
        missing.append({"metric": "effective_rate_margin", "set": "labour_cost_per_hour", "message": {
            "en": f"margin after labour cost in {', '.join(without)}: not available: set [reports.kpis] {example}",
            "fr": f"marge après coût de main-d'œuvre en {', '.join(without)} : non disponible : renseignez "
                  f"[reports.kpis] {example}"}})
    rs = hub.config.report_settings
    logo = hub.config.report_logo
    return {"from": months[0], "to": months[-1], "months": months, "currencies": currencies,
            "definitions": DEFINITIONS, "not_available": missing, "rows": rows.rows,
            "page": {"msp_name": rs.msp_name, "logo": str(logo) if logo else None,
                     "language": language_of(hub.config)}}


def _variation(values: list[Fraction]) -> str | None:
    """Population standard deviation ÷ mean, 2 places; None without two values or a mean of 0."""
    if len(values) < 2:
        return None
    mean = sum(values, Fraction(0)) / len(values)
    if not mean:
        return None
    var = sum(((v - mean) ** 2 for v in values), Fraction(0)) / len(values)
    root = Decimal(var.numerator).sqrt() / Decimal(var.denominator).sqrt()
    return _decimal(Fraction(root) / mean, 2)


# --- output -------------------------------------------------------------------------------------


def render(kpis: dict[str, Any], fmt: str, lang: str | None = None) -> bytes:
    """``kpis`` (``build``'s result) as ``fmt``: ``html`` (one self-contained page with charts),
    ``csv`` (one row per metric, period and subject: ``CSV_COLUMNS``), ``json``, or ``pdf`` (the
    HTML page through WeasyPrint, for the delivery job); ``lang`` ("en" or
    "fr") for the HTML's labels, default the report language of the config."""
    if fmt == "json":
        return (json.dumps({k: v for k, v in kpis.items() if k != "page"}, indent=2, ensure_ascii=False,
                           sort_keys=True) + "\n").encode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in kpis["rows"]:
            writer.writerow(row)
        return out.getvalue().encode()
    if fmt in ("html", "pdf"):
        page = _html(kpis, lang or kpis.get("page", {}).get("language") or "en")
        if fmt == "pdf":     # the same page through WeasyPrint (what the delivery job keeps)
            from hub.reports.render import to_pdf
            return to_pdf(page)
        return page.encode()
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}, pdf")


def _money(value: int, currency: str, lang: str) -> str:
    from hub import i18n
    return i18n.money(value, currency, lang)


def _cell(row: dict, lang: str) -> str:
    v, unit = row["value"], row["unit"]
    if unit == "minor":
        return _money(int(v), row["currency"], lang)
    if unit == "minor_per_hour":
        return _money(int(v), row["currency"], lang) + (" / h")
    if unit == "percent":
        return (str(v).replace(".", ",") if lang == "fr" else str(v)) + " %"
    if unit in ("hours", "ratio"):
        return str(v).replace(".", ",") if lang == "fr" else str(v)
    return str(v)


def _major(value: int, currency: str) -> float:
    """An amount in major units, for a chart's bar height only (never summed)."""
    return value / (10 ** exponent(currency))


def _html(kpis: dict[str, Any], lang: str) -> str:
    L = LABELS.get(lang, LABELS["en"])
    D = DEFINITIONS.get(lang, DEFINITIONS["en"])
    rows, months = kpis["rows"], kpis["months"]
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["metric"]].append(r)
    parts: list[str] = []

    def h2(key: str) -> None:
        parts.append(f"<h2>{R.esc(L[key])}</h2>")

    def define(key: str) -> None:
        parts.append(f'<p class="small muted">{R.esc(D[key])}</p>')

    def month_table(metrics: list[str], subject: str | None = None) -> None:
        """One row per month (and subject, currency); a count without currency joins each currency's row."""
        keys = {(r["subject"], r["currency"]) for m in metrics for r in by.get(m, [])}
        if not keys:
            parts.append(f'<p class="muted">{R.esc(L["no_data"])}</p>')
            return
        keys = sorted(k for k in keys if k[1] or not any(s == k[0] and c for s, c in keys))
        keys.sort(key=lambda k: (k[1], k[0]))
        index = {(r["metric"], r["period"], r["subject"], r["currency"]): r for m in metrics for r in by.get(m, [])}
        headers = [L["month"]] + ([L[subject]] if subject else []) + [L.get(f"{m}.col") or L.get(m, m) for m in metrics]
        table_rows = []
        for mo in months:
            for subj, cur in keys:
                cells = [index.get((m, mo, subj, cur)) or index.get((m, mo, subj, "")) for m in metrics]
                if subject and not any(cells):
                    continue
                table_rows.append([mo] + ([subj] if subject else []) + [_cell(c, lang) if c else "—" for c in cells])
        first = 2 if subject else 1
        parts.append(R.table(headers, table_rows, numeric=range(first, first + len(metrics))))

    def money_chart(metrics: list[str], chart=R.bar_chart) -> None:
        for cur in kpis.get("currencies", []):
            series = []
            for m in metrics:
                at = {r["period"]: r["value"] for r in by.get(m, []) if r["currency"] == cur and not r["subject"]}
                series.append((f"{L.get(m, m)} ({cur})", [_major(at[mo], cur) if mo in at else None for mo in months]))
            parts.append(f'<figure>{chart(months, series, unit="")}</figure>')

    if kpis["not_available"]:
        parts.append(f"<h2>{R.esc(L['not_available'])}</h2><ul>"
                     + "".join(f"<li>{R.esc(m['message'].get(lang) or m['message']['en'])}</li>"
                               for m in kpis["not_available"]) + "</ul>")
    h2("revenue")
    define("revenue")
    money_chart(["revenue", "mrr"])
    month_table(["revenue", "mrr"])
    h2("mrr_movement")
    define("mrr")
    define("mrr_movement")
    money_chart(["mrr_new", "mrr_expansion", "mrr_contraction", "mrr_lost"])
    month_table(["mrr_new", "mrr_expansion", "mrr_contraction", "mrr_lost"])
    month_table(["clients_new", "clients_lost"])
    month_table(["client_lost"], "clients_lost")
    h2("revenue_client")
    month_table(["revenue_client"], "client")
    h2("new_agreements")
    define("new_agreements")
    month_table(["new_agreements", "new_agreements_not_invoiced", "new_agreement_value_avg"])
    month_table(["new_agreements_type"], "agreement_type")
    month_table(["new_agreement_value"], "agreement")
    h2("upsell")
    define("upsell")
    month_table(["upsell"])
    h2("devices_managed")
    define("devices_managed")
    parts.append("<figure>" + R.line_chart(months, [(L["devices_managed"], [
        next((float(r["value"]) for r in by.get("devices_managed", []) if r["period"] == mo), None) for mo in months])])
        + "</figure>")
    month_table(["devices_managed", "devices_growth", "devices_growth_percent"])
    h2("cross_sell")
    define("cross_sell")
    month_table(["addon_client_share", "addon_device_share"], "addon")
    h2("tickets_client")
    define("tickets")
    weeks = sorted({r["period"] for r in by.get("tickets_week", [])})
    if weeks:
        at = {r["period"]: r["value"] for r in by["tickets_week"]}
        parts.append("<figure>" + R.bar_chart(weeks, [(L["tickets_week"], [float(at[w]) for w in weeks])]) + "</figure>")
    month_table(["tickets_client"], "client")
    totals = {r["subject_id"]: r for r in by.get("tickets_client_total", [])}
    per_day = {r["subject_id"]: r for r in by.get("tickets_client_per_day", [])}
    per_week = {r["subject_id"]: r for r in by.get("tickets_client_per_week", [])}
    parts.append(f"<h2>{R.esc(L['tickets_top'])}</h2>")
    top = by.get("tickets_top", [])
    if top:
        parts.append(R.table([L["client"], L["total"], L["tickets_per_week"], L["tickets_per_day"]],
                             [[r["subject"], r["value"], _cell(per_week[r["subject_id"]], lang),
                               _cell(per_day[r["subject_id"]], lang)] for r in top if r["subject_id"] in totals],
                             numeric=(1, 2, 3)))
    else:
        parts.append(f'<p class="muted">{R.esc(L["no_data"])}</p>')
    h2("hours_client")
    define("hours_client")
    month_table(["hours_worked_client", "hours_billable_client", "hours_invoiced_client"], "client")
    h2("tasks_technician")
    define("technicians")
    month_table(["technician_tickets", "technician_hours"], "technician")
    month_table(["technician_tickets_cv", "technician_hours_cv"])
    h2("revenue_per_technician")
    month_table(["revenue_per_technician"])
    month_table(["time_revenue_technician"], "technician")
    h2("effective_rate")
    define("effective_rate")
    subjects = sorted({(r["subject"], r["subject_id"]) for r in by.get("effective_rate_hours", [])})
    if subjects:
        idx = {(r["metric"], r["subject_id"], r["currency"]): r for m in ("effective_rate", "effective_rate_billed",
                                                                         "effective_rate_margin", "effective_rate_hours")
               for r in by.get(m, [])}
        table_rows = []
        for subject, sid in subjects:
            curs = sorted({c for (m, s, c) in idx if s == sid and c}) or [""]
            for cur in curs:
                cells = [idx.get(("effective_rate_billed", sid, cur)), idx.get(("effective_rate_hours", sid, "")),
                         idx.get(("effective_rate", sid, cur)), idx.get(("effective_rate_margin", sid, cur))]
                table_rows.append([subject] + [_cell(c, lang) if c else "—" for c in cells])
        parts.append(R.table([L["agreement"], L["effective_rate_billed"], L["effective_rate_hours"],
                              L["effective_rate.col"], L["effective_rate_margin.col"]], table_rows, numeric=(1, 2, 3, 4)))
    else:
        parts.append(f'<p class="muted">{R.esc(L["no_data"])}</p>')
    h2("block_usage")
    define("block_usage")
    month_table(["block_renewals", "block_renewal_hours", "block_renewal_revenue"])
    month_table(["block_hours_used"], "agreement")
    page = kpis.get("page") or {}
    logo = R.data_uri(page["logo"]) if page.get("logo") else None
    return R.page(L["title"], "\n".join(parts), lang=lang, msp_name=page.get("msp_name") or "", logo=logo,
                  subtitle=L["range"].format(first=kpis["from"], last=kpis["to"]))
