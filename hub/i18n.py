"""The texts the hub writes for a client to read, in English and French: a message catalog and formats.

Invoice line descriptions, the notices and alert tickets the hub writes in the PSA and the legal
mentions of an invoice are rendered through ``text(key, language, **values)`` in the MSP's language
(``[billing.invoice] language``). Numbers, amounts, days and months are formatted by the helpers
below: French writes a decimal comma (``1,25 h``, ``95,00 EUR``), days as ``05/10/2026`` and months
as ``novembre 2026``. English is exactly what the hub always wrote (``1.25 h``, ``95.00 EUR``,
``2026-10-05``, ``2026-11``).

Names the MSP writes in its mappings (tiers, add-ons, work types, catalog items) are never
translated: the MSP writes them in its own language. A key missing from one language is a bug,
and a test checks that both languages have every key and the same placeholders.
"""

from __future__ import annotations

import string
from decimal import Decimal
from fractions import Fraction

from hub.money import exponent, format_minor, format_quantity

LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"

_MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
              "novembre", "décembre")

# The hub's device classes (mappings/device_classes.toml) as a French invoice names them; a class
# the MSP made up is its own word and is shown as written.
_CLASSES_FR = {"server": "serveur", "workstation": "poste de travail", "mobile": "mobile", "network": "réseau",
               "printer": "imprimante"}

CATALOG: dict[str, dict[str, str]] = {
    # --- invoice lines: devices (hub/reconcile.py) ---
    "line.device": {"en": "{tier} managed services, {device_class} ({period})",
                    "fr": "Infogérance {tier}, {device_class} ({period})"},
    "line.addon": {"en": "{addon}, {device_class} ({period})",
                   "fr": "{addon}, {device_class} ({period})"},
    "line.minimum": {"en": "Monthly minimum top-up ({period})",
                     "fr": "Complément au minimum mensuel ({period})"},
    # --- invoice lines: time, products and blocks (hub/timebilling.py) ---
    "line.time": {"en": "{work_type} time ({period})",
                  "fr": "{work_type}, temps passé ({period})"},
    "line.time_late": {"en": "Late entries {of_late}: {work_type} time ({which})",
                       "fr": "Saisies tardives {of_late} : {work_type}, temps passé ({which})"},
    "line.entry": {"en": "{facts}, {hours} × {price}",
                   "fr": "{facts}, {hours} × {price}"},
    "line.entry_late": {"en": "Late entry {id} {of_late}: {text}",
                        "fr": "Saisie tardive {id} {of_late} : {text}"},
    "line.ticket": {"en": "Ticket {ticket}: {text}",
                    "fr": "Ticket {ticket} : {text}"},
    "line.no_ticket": {"en": "Time without a ticket: {text}",
                       "fr": "Temps sans ticket : {text}"},
    "line.ticket_late": {"en": "Late entries {of_late}, ticket {ticket}: {text}",
                         "fr": "Saisies tardives {of_late}, ticket {ticket} : {text}"},
    "line.no_ticket_late": {"en": "Late entries {of_late}, time without a ticket: {text}",
                            "fr": "Saisies tardives {of_late}, temps sans ticket : {text}"},
    "line.ticket_text": {"en": "{kinds}, {hours} × {price} ({entries})",
                         "fr": "{kinds}, {hours} × {price} ({entries})"},
    "line.flat": {"en": "{work_type}, ticket {ticket} (flat rate)",
                  "fr": "{work_type}, ticket {ticket} (forfait)"},
    "line.renewal": {"en": "Prepaid block of {hours} hours (block {block})",
                     "fr": "Bloc prépayé de {hours} heures (bloc {block})"},
    "line.overage_title": {"en": "Hours beyond the prepaid block",
                           "fr": "Heures au-delà du bloc prépayé"},
    "line.overage_title_of": {"en": "Hours beyond the prepaid block of agreement {agreement}",
                              "fr": "Heures au-delà du bloc prépayé du contrat {agreement}"},
    "line.overage": {"en": "{title} ({period})",
                     "fr": "{title} ({period})"},
    "line.overage_entry": {"en": "{title} ({period}): {late}{facts}, {hours} × {price}",
                           "fr": "{title} ({period}) : {late}{facts}, {hours} × {price}"},
    "line.overage_entry_late": {"en": "late entry {id} {of_own}, ",
                                "fr": "saisie tardive {id} {of_own}, "},
    "line.overage_ticket": {"en": "{title} ({period}), {which}: {hours} × {price} ({entries})",
                            "fr": "{title} ({period}), {which} : {hours} × {price} ({entries})"},
    # a line of contracts in force part of the period, and a late change of an earlier period (hub/planner.py)
    "line.days": {"en": "{description}, {first} to {last}", "fr": "{description}, du {first} au {last}"},
    "line.more_days": {"en": "{description} and {first} to {last}", "fr": "{description} et du {first} au {last}"},
    "line.late_change": {"en": "Late change for {period}: {description}",
                         "fr": "Régularisation sur {period} : {description}"},
    "line.late_time": {"en": "Late change for {period}: entry {id} ({facts}), {was} billed, {now} now, {diff} × {price}",
                       "fr": "Régularisation sur {period} : saisie {id} ({facts}), {was} facturées, {now} "
                             "désormais, {diff} × {price}"},
    "line.late_overage": {"en": "Late change for {period}: hours beyond the prepaid block of agreement {agreement}, "
                                "entry {id} ({work_type}, {day}), {was} billed, {now} now",
                          "fr": "Régularisation sur {period} : heures au-delà du bloc prépayé du contrat "
                                "{agreement}, saisie {id} ({work_type}, {day}), {was} facturées, {now} désormais"},
    "line.late_product": {"en": "Late change for {period}: product {id} ({description}), {was} billed, {now} now",
                          "fr": "Régularisation sur {period} : produit {id} ({description}), {was} facturé(s), "
                                "{now} désormais"},
    # the parts of a line
    "facts": {"en": "{day}, {member}, {ticket}, {work_type}",
              "fr": "{day}, {member}, {ticket}, {work_type}"},
    "ticket": {"en": "ticket {ticket}", "fr": "ticket {ticket}"},
    "no_ticket": {"en": "no ticket", "fr": "sans ticket"},
    "no_technician": {"en": "no technician", "fr": "sans technicien"},
    "no_date": {"en": "no date", "fr": "sans date"},
    "entry_one": {"en": "entry {ids}", "fr": "saisie {ids}"},
    "entry_many": {"en": "entries {ids}", "fr": "saisies {ids}"},
    "and_more": {"en": "{shown} and {more} more", "fr": "{shown} et {more} autres"},
    "count_entry": {"en": "{n} entry", "fr": "{n} saisie"},
    "count_entries": {"en": "{n} entries", "fr": "{n} saisies"},
    # --- the invoice as a whole (hub/planner.py) ---
    "invoice.description": {"en": "Managed services for {client}, {period}",
                            "fr": "Infogérance pour {client}, {period}"},
    "invoice.renewal": {"en": "Prepaid block renewal for {client}: {hours} h",
                        "fr": "Renouvellement du bloc prépayé pour {client} : {hours} h"},
    # --- the notices the hub writes in the PSA (hub/planner.py) ---
    "notice.low.summary": {"en": "Prepaid hours low: {hours} h left",
                           "fr": "Heures prépayées bientôt épuisées : {hours} h restantes"},
    "notice.low.text": {"en": "The prepaid block {block} of agreement {agreement} has {hours} h left (threshold "
                              "{threshold} h). A renewal of {size} h at {price} was invoiced.",
                        "fr": "Le bloc prépayé {block} du contrat {agreement} n'a plus que {hours} h (seuil "
                              "{threshold} h). Un renouvellement de {size} h à {price} a été facturé."},
    # --- alert tickets (hub/alerting.py) ---
    "alert.again": {"en": "Alert triggered again on {device}: {message} (severity {severity}, alert {uid})",
                    "fr": "Alerte de nouveau déclenchée sur {device} : {message} (gravité {severity}, alerte {uid})"},
    "alert.reopen": {"en": "Alert triggered again on {device}: {message} (alert {uid}); reopened",
                     "fr": "Alerte de nouveau déclenchée sur {device} : {message} (alerte {uid}) ; ticket rouvert"},
    "alert.storm": {"en": "Alert storm: {count} alerts in {minutes} min",
                    "fr": "Tempête d'alertes : {count} alertes en {minutes} min"},
    "alert.closed": {"en": "The alert cleared in the RMM; closed by msp-hub ({reason}).",
                     "fr": "L'alerte est levée dans le RMM ; ticket fermé par msp-hub ({reason})."},
    "alert.touched": {"en": "The alert cleared in the RMM ({reason}); the ticket stays open because a technician "
                            "worked on it.",
                      "fr": "L'alerte est levée dans le RMM ({reason}) ; le ticket reste ouvert car un technicien "
                            "y a travaillé."},
    "alert.cleared": {"en": "The alert cleared in the RMM ({reason}); the rule does not auto-close this ticket.",
                      "fr": "L'alerte est levée dans le RMM ({reason}) ; la règle ne ferme pas ce ticket "
                            "automatiquement."},
    "alert.reset": {"en": "every alert of the ticket was reset", "fr": "toutes les alertes du ticket sont levées"},
    "alert.reset_missed": {"en": "every alert of the ticket was reset (not seen in the activity log: caught by the "
                                 "backstop)",
                           "fr": "toutes les alertes du ticket sont levées (absentes du journal d'activité : "
                                 "constaté par le contrôle de secours)"},
    "alert.title": {"en": "{severity} alert on {device}", "fr": "Alerte {severity} sur {device}"},
    "alert.unrated": {"en": "Unrated", "fr": "non classée"},
    "alert.triggered": {"en": "Triggered: {when}", "fr": "Déclenchée : {when}"},
    "alert.client": {"en": "Client: {name} ({client})", "fr": "Client : {name} ({client})"},
    "alert.client_id": {"en": "Client: {client}", "fr": "Client : {client}"},
    "alert.no_client": {"en": "Client: none (the organization is linked to no hub client)",
                        "fr": "Client : aucun (l'organisation n'est liée à aucun client du hub)"},
    "alert.organization": {"en": "{rmm} organization: {org} (id {id})", "fr": "Organisation {rmm} : {org} (id {id})"},
    "alert.organization_only": {"en": "{rmm} organization: {org}", "fr": "Organisation {rmm} : {org}"},
    "alert.device": {"en": "Device: {device}", "fr": "Appareil : {device}"},
    "alert.device_class": {"en": "Device: {device} ({device_class})", "fr": "Appareil : {device} ({device_class})"},
    "alert.os": {"en": "OS: {value}", "fr": "Système : {value}"},
    "alert.last_contact": {"en": "Last contact: {value}", "fr": "Dernier contact : {value}"},
    "alert.ip": {"en": "IP addresses: {value}", "fr": "Adresses IP : {value}"},
    "alert.serial": {"en": "Serial number: {value}", "fr": "Numéro de série : {value}"},
    "alert.open_in": {"en": "Open in {rmm}: {url}", "fr": "Ouvrir dans {rmm} : {url}"},
    "alert.message": {"en": "Alert message:", "fr": "Message de l'alerte :"},
    "alert.no_message": {"en": "(none)", "fr": "(aucun)"},
    "alert.source": {"en": "Source: {value}", "fr": "Source : {value}"},
    "alert.severity": {"en": "Severity: {value}", "fr": "Gravité : {value}"},
    "alert.priority": {"en": ", priority {value}", "fr": ", priorité {value}"},
    "alert.id": {"en": "Alert id: {value}", "fr": "Id de l'alerte : {value}"},
    "alert.rule": {"en": "Rule: {value}", "fr": "Règle : {value}"},
    "alert.condition": {"en": "{source_type}, condition {condition}", "fr": "{source_type}, condition {condition}"},
    "alert.storm_head": {"en": "{count} alerts within {minutes} min from {start}",
                         "fr": "{count} alertes en {minutes} min à partir du {start}"},
    "alert.storm_last_contact": {"en": "last contact {value}", "fr": "dernier contact {value}"},
    "alert.storm_alert": {"en": "{message} ({severity}, alert {uid})", "fr": "{message} ({severity}, alerte {uid})"},
    # --- legal mentions of an invoice (hub/mentions.py) ---
    "mention.siren": {"en": "SIREN", "fr": "SIREN"},
    "mention.siret": {"en": "SIRET", "fr": "SIRET"},
    "mention.vat": {"en": "VAT number", "fr": "N° TVA intracommunautaire"},
    "mention.rcs": {"en": "Trade register (RCS)", "fr": "RCS"},
    "mention.payment_terms": {"en": "Payment terms", "fr": "Conditions de paiement"},
    "mention.company_capital": {"en": "{name}, share capital {capital}", "fr": "{name}, au capital de {capital}"},
    "mention.terms": {"en": "Payment terms: {terms}.", "fr": "Conditions de paiement : {terms}."},
    "mention.penalty_default": {"en": "three times the French legal interest rate",
                                "fr": "3 fois le taux d'intérêt légal"},
    "mention.penalty": {"en": "Late payment penalties: {rate}.", "fr": "Pénalités de retard : {rate}."},
    "mention.indemnity": {"en": "Fixed indemnity for recovery costs in case of late payment: {amount}.",
                          "fr": "Indemnité forfaitaire pour frais de recouvrement en cas de retard de paiement : "
                                "{amount}."},
    "mention.discount_default": {"en": "No discount for early payment", "fr": "Pas d'escompte pour paiement anticipé"},
    "mention.discount": {"en": "{text}.", "fr": "{text}."},
}


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r} is not one of {', '.join(LANGUAGES)}; set [billing.invoice] "
                         f"language to \"en\" or \"fr\"")
    return language


def text(key: str, language: str = DEFAULT_LANGUAGE, **values: object) -> str:
    """The catalog's ``key`` in ``language`` with ``values`` put in; KeyError for an unknown key."""
    return CATALOG[key][_check_language(language)].format(**values)


def placeholders(template: str) -> set[str]:
    """The names a template's ``{...}`` placeholders use (for the catalog's own test)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def number(value: str | int | Fraction | Decimal, language: str = DEFAULT_LANGUAGE) -> str:
    """A number as the hub writes it (``1.25``), with a decimal comma in French (``1,25``)."""
    out = format_quantity(value) if isinstance(value, Fraction) else str(value)
    return out.replace(".", ",") if _check_language(language) == "fr" else out


def hours(value: str | int | Fraction, language: str = DEFAULT_LANGUAGE) -> str:
    """``1.25 h``; ``1,25 h`` in French."""
    return f"{number(value, language)} h"


def money(amount: int, currency: str, language: str = DEFAULT_LANGUAGE) -> str:
    """Minor units as ``95.00 EUR``; ``95,00 EUR`` in French, thousands grouped by a narrow no-break
    space (``1 234,50 EUR``) as French typography writes them."""
    if _check_language(language) == "en":
        return format_minor(amount, currency)
    exp = exponent(currency)
    value = Decimal(amount).scaleb(-exp)
    whole, _, cents = f"{abs(value):,.{exp}f}".partition(".")
    whole = whole.replace(",", "\u202f")
    sign = "-" if amount < 0 else ""
    return f"{sign}{whole}{',' + cents if cents else ''} {currency.upper()}"


def day(iso: str | None, language: str = DEFAULT_LANGUAGE) -> str | None:
    """A day ``2026-10-05`` as written: unchanged in English, ``05/10/2026`` in French."""
    if iso is None or _check_language(language) == "en":
        return iso
    y, m, d = iso.split("-")
    return f"{d}/{m}/{y}"


def period(name: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A billing period ``2026-11``: unchanged in English, ``novembre 2026`` in French."""
    if _check_language(language) == "en":
        return name
    y, m = name.split("-")
    return f"{_MONTHS_FR[int(m) - 1]} {y}"


def of_period(name: str, language: str = DEFAULT_LANGUAGE) -> str:
    """``of 2026-10``; in French ``d'octobre 2026`` or ``de novembre 2026`` (elided before a vowel)."""
    if _check_language(language) == "en":
        return f"of {name}"
    month = period(name, language)
    return f"d'{month}" if month[0] in "aeiouyéè" else f"de {month}"


def device_class(name: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A device class as a client reads it: ``server``; ``serveur`` in French. A class of the MSP's
    own stays as written."""
    return _CLASSES_FR.get(name, name) if _check_language(language) == "fr" else name


def count_entries(n: int, language: str = DEFAULT_LANGUAGE) -> str:
    """``1 entry``, ``3 entries``; ``1 saisie``, ``3 saisies``."""
    return text("count_entry" if n == 1 else "count_entries", language, n=n)


def which_entries(ids: list[str], language: str = DEFAULT_LANGUAGE, shown: int = 5) -> str:
    """``entry 7``, ``entries 1, 2, 3, 4, 5 and 2 more`` (the first ``shown`` ids)."""
    if len(ids) == 1:
        return text("entry_one", language, ids=ids[0])
    listed = ", ".join(ids[:shown])
    if len(ids) > shown:
        listed = text("and_more", language, shown=listed, more=len(ids) - shown)
    return text("entry_many", language, ids=listed)


__all__ = ["CATALOG", "DEFAULT_LANGUAGE", "LANGUAGES", "count_entries", "day", "device_class", "hours", "money",
           "number", "of_period", "period", "placeholders", "text", "which_entries"]
