"""The client scorecard as HTML (hub.reports.render: one self-contained page, inline SVG), PDF
(the same HTML) and JSON, in English or French. Reads the scorecard's data only, so a frozen
scorecard renders to the same bytes every time."""

from __future__ import annotations

import json
from typing import Any

from hub.reports import render as r
from hub.reports.scorecard_config import AREAS, ROWS

FORMATS = ("html", "pdf", "json")
LANGUAGES = ("en", "fr")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Client scorecard", "subtitle": "{client} · {quarter} ({first} to {last})",
        "partial": "Quarter in progress: measured until {until}.",
        "frozen": "Frozen on {at} by {by}.", "not_frozen": "Computed from the hub's data; not frozen.",
        "area.assets": "Asset management", "area.security": "Security monitoring",
        "area.availability": "Availability", "area.tickets": "Tickets",
        "row.managed_devices": "Managed devices", "row.server_warranty": "Server and network warranty",
        "row.workstation_warranty": "Workstation, laptop and mobile warranty", "row.antivirus": "Antivirus",
        "row.os_patches": "Windows updates", "row.software_patches": "Third-party updates",
        "row.firewall": "Hardware firewall", "row.data_protection": "Data protection",
        "row.service_availability": "Service availability", "row.network_reliability": "Network reliability",
        "row.performance": "Performance", "row.tickets": "Ticket summary",
        "def.managed_devices": "Devices approved in the RMM and seen in the quarter ÷ the client's configurations in "
                               "the PSA (or, without any, its RMM devices).",
        "def.server_warranty": "Servers and network devices under warranty on the quarter's last day ÷ those with a "
                               "known warranty date.",
        "def.workstation_warranty": "The same for workstations, laptops and mobiles.",
        "def.antivirus": "Average of coverage (devices with an antivirus) and protection (active, definitions up "
                         "to date, no active threat), over servers and workstations.",
        "def.os_patches.installed_over_approved": "Operating system patches installed in the quarter ÷ those "
                                                  "approved (installed, failed, or approved and waiting).",
        "def.os_patches.buckets": "Per device by missing operating system patches (fully patched 100, 1–2 missing "
                                  "75, 3–5 50, more 25, unless configured otherwise), averaged.",
        "def.software_patches.installed_over_approved": "Third-party software patches installed in the quarter ÷ "
                                                        "those approved.",
        "def.software_patches.buckets": "Per device by missing third-party software patches, averaged.",
        "def.firewall": "Firewalls present (seen in the quarter) and healthy ÷ firewalls known, or the MSP's answer.",
        "def.data_protection": "Devices with a successful backup in the quarter ÷ devices that should be backed up "
                               "(their tier or add-on includes backup).",
        "def.service_availability": "Share of the quarter the client's servers had no open critical availability "
                                    "condition (agent offline, service down).",
        "def.network_reliability": "The same for network devices.",
        "def.performance": "Share of the quarter without an open CPU, memory or disk condition.",
        "def.tickets": "Tickets resolved within their priority's target ÷ tickets resolved in the quarter.",
        "overall": "Overall score", "overall_def": "Weighted average of the measured rows (a row not measured is "
                                                   "left out, never counted as 0).",
        "col.area": "Area", "col.row": "Row", "col.this": "This quarter", "col.previous": "Previous quarter",
        "col.weight": "Weight", "col.change": "Change", "col.prev_short": "Previous", "col.item": "Device or ticket", "col.fact": "Fact",
        "col.priority": "Priority", "col.opened": "Opened", "col.closed": "Closed",
        "not_measured": "not measured", "disabled": "disabled",
        "chart.areas": "Score per area, this quarter against the last", "chart.trend": "Overall score over the last quarters",
        "series.this": "This quarter", "series.previous": "Previous quarter", "series.overall": "Overall",
        "h.rows": "Scorecard", "h.charts": "At a glance", "h.tickets": "Tickets", "h.details": "Details",
        "tickets.mean": "Mean time to resolution: {hours} h.", "tickets.mean_none": "No ticket resolved in the quarter.",
        "tickets.within": "{within} of {total} resolved tickets within target.",
        "previous_frozen": "The previous quarter's figures are those of its frozen scorecard.",
        "previous_computed": "The previous quarter's figures are computed from the hub's data (no frozen scorecard).",
        "note.no_devices": "no device of this kind", "note.no_warranty_dates": "no known warranty date",
        "note.no_antivirus_data": "no antivirus data from the RMM", "note.no_patch_data": "no patch data from the RMM",
        "note.no_approved_patches": "no approved patch in the quarter",
        "note.no_firewall": "no firewall known (answer in scorecard.toml [firewall.manual])",
        "note.no_contract": "no contract", "note.no_backup_service": "no device whose contract includes backup",
        "note.no_backup_data": "no backup data from the RMM", "note.no_alert_data": "no alert data from the RMM",
        "note.no_ticket_data": "no ticket data from the PSA", "note.no_closed_tickets": "no ticket resolved in the quarter",
        "fact.config_managed": "{type}: managed (RMM device {device})",
        "fact.config_device_not_managed": "{type}: RMM device {device} not approved or not seen in the quarter",
        "fact.config_no_device": "{type}: no RMM device found",
        "fact.device_managed": "approved and seen in the quarter", "fact.device_not_managed": "not managed: {reason}",
        "fact.warranty_unknown": "warranty date unknown (not counted)", "fact.warranty_until": "under warranty until {date}",
        "fact.warranty_expired": "warranty ended on {date}",
        "fact.av_none": "no antivirus", "fact.av_threats": "{threats} active threat(s): {products}",
        "fact.av_not_current": "not active or not up to date: {products}", "fact.av_protected": "protected: {products}",
        "fact.patch_missing": "{missing} missing patch(es), score {score}",
        "fact.patch_ratio": "{installed} installed, {failed} failed, {waiting} approved and waiting",
        "fact.firewall_manual": "answered in scorecard.toml: {answer}", "fact.firewall_not_seen": "not present: {reason}",
        "fact.firewall_no_health": "no health reported", "fact.firewall_unhealthy": "health: {health}",
        "fact.firewall_healthy": "present and healthy", "fact.firewall_psa_only": "in the PSA only, not monitored",
        "fact.backup_done": "backed up ({by}), last success {at}", "fact.backup_none": "no successful backup ({by})",
        "fact.open_time": "{hours} h with an open condition ({share} % without)",
        "fact.ticket_open": "{priority}: still open at the quarter's end",
        "fact.ticket_closed_no_date": "{priority}: closed, with no closing date in the PSA (not counted)", "fact.ticket_no_open_date": "{priority}: no opening date",
        "fact.ticket_no_target": "{priority}: resolved in {hours} h, no target for this priority",
        "fact.ticket_within": "{priority}: resolved in {hours} h (target {target} h)",
        "fact.ticket_late": "{priority}: resolved in {hours} h, over the {target} h target",
        "yes": "yes", "no": "no",
        "reason.not_approved": "not approved in the RMM ({status})", "reason.created_after": "created after the quarter",
        "reason.never_seen": "never seen by the RMM", "reason.not_seen": "not seen in the quarter (last contact {last})",
    },
    "fr": {
        "title": "Tableau de bord client", "subtitle": "{client} · {quarter} (du {first} au {last})",
        "partial": "Trimestre en cours : mesuré jusqu'au {until}.",
        "frozen": "Figé le {at} par {by}.", "not_frozen": "Calculé à partir des données du hub ; non figé.",
        "area.assets": "Gestion des actifs", "area.security": "Surveillance de la sécurité",
        "area.availability": "Disponibilité", "area.tickets": "Tickets",
        "row.managed_devices": "Appareils gérés", "row.server_warranty": "Garantie des serveurs et équipements réseau",
        "row.workstation_warranty": "Garantie des postes, portables et mobiles", "row.antivirus": "Antivirus",
        "row.os_patches": "Mises à jour Windows", "row.software_patches": "Mises à jour des logiciels tiers",
        "row.firewall": "Pare-feu matériel", "row.data_protection": "Protection des données",
        "row.service_availability": "Disponibilité des services", "row.network_reliability": "Fiabilité du réseau",
        "row.performance": "Performances", "row.tickets": "Synthèse des tickets",
        "def.managed_devices": "Appareils approuvés dans le RMM et vus pendant le trimestre ÷ configurations du client "
                               "dans le PSA (à défaut, ses appareils du RMM).",
        "def.server_warranty": "Serveurs et équipements réseau sous garantie le dernier jour du trimestre ÷ ceux dont "
                               "la date de garantie est connue.",
        "def.workstation_warranty": "La même chose pour les postes de travail, portables et mobiles.",
        "def.antivirus": "Moyenne de la couverture (appareils dotés d'un antivirus) et de la protection (actif, "
                         "définitions à jour, aucune menace active), sur les serveurs et postes de travail.",
        "def.os_patches.installed_over_approved": "Correctifs du système d'exploitation installés pendant le "
                                                  "trimestre ÷ correctifs approuvés (installés, en échec, ou "
                                                  "approuvés en attente).",
        "def.os_patches.buckets": "Note par appareil selon les correctifs système manquants (à jour 100, 1 à 2 "
                                  "manquants 75, 3 à 5 50, au-delà 25, sauf configuration contraire), en moyenne.",
        "def.software_patches.installed_over_approved": "Correctifs des logiciels tiers installés pendant le "
                                                        "trimestre ÷ correctifs approuvés.",
        "def.software_patches.buckets": "Note par appareil selon les correctifs de logiciels tiers manquants, en "
                                        "moyenne.",
        "def.firewall": "Pare-feu présents (vus pendant le trimestre) et en bonne santé ÷ pare-feu connus, ou la "
                        "réponse du prestataire.",
        "def.data_protection": "Appareils ayant une sauvegarde réussie pendant le trimestre ÷ appareils qui doivent "
                               "être sauvegardés (leur offre ou option comprend la sauvegarde).",
        "def.service_availability": "Part du trimestre pendant laquelle les serveurs du client n'avaient aucune "
                                    "alerte critique de disponibilité ouverte (agent hors ligne, service arrêté).",
        "def.network_reliability": "La même chose pour les équipements réseau.",
        "def.performance": "Part du trimestre sans alerte processeur, mémoire ou disque ouverte.",
        "def.tickets": "Tickets résolus dans le délai cible de leur priorité ÷ tickets résolus pendant le trimestre.",
        "overall": "Note globale", "overall_def": "Moyenne pondérée des lignes mesurées (une ligne non mesurée est "
                                                  "écartée, jamais comptée comme 0).",
        "col.area": "Domaine", "col.row": "Indicateur", "col.this": "Ce trimestre", "col.previous": "Trimestre précédent",
        "col.weight": "Poids", "col.change": "Évolution", "col.prev_short": "Précédent", "col.item": "Appareil ou ticket", "col.fact": "Constat",
        "col.priority": "Priorité", "col.opened": "Ouverts", "col.closed": "Fermés",
        "not_measured": "non mesuré", "disabled": "désactivé",
        "chart.areas": "Note par domaine, ce trimestre et le précédent",
        "chart.trend": "Note globale des derniers trimestres",
        "series.this": "Ce trimestre", "series.previous": "Trimestre précédent", "series.overall": "Note globale",
        "h.rows": "Tableau de bord", "h.charts": "En un coup d'œil", "h.tickets": "Tickets", "h.details": "Détail",
        "tickets.mean": "Délai moyen de résolution : {hours} h.",
        "tickets.mean_none": "Aucun ticket résolu pendant le trimestre.",
        "tickets.within": "{within} tickets résolus sur {total} dans le délai cible.",
        "previous_frozen": "Les chiffres du trimestre précédent sont ceux de son tableau de bord figé.",
        "previous_computed": "Les chiffres du trimestre précédent sont calculés à partir des données du hub "
                             "(aucun tableau de bord figé).",
        "note.no_devices": "aucun appareil de ce type", "note.no_warranty_dates": "aucune date de garantie connue",
        "note.no_antivirus_data": "aucune donnée antivirus du RMM", "note.no_patch_data": "aucune donnée de correctifs du RMM",
        "note.no_approved_patches": "aucun correctif approuvé pendant le trimestre",
        "note.no_firewall": "aucun pare-feu connu (réponse possible dans scorecard.toml [firewall.manual])",
        "note.no_contract": "aucun contrat", "note.no_backup_service": "aucun appareil dont le contrat comprend la sauvegarde",
        "note.no_backup_data": "aucune donnée de sauvegarde du RMM", "note.no_alert_data": "aucune donnée d'alerte du RMM",
        "note.no_ticket_data": "aucune donnée de tickets du PSA",
        "note.no_closed_tickets": "aucun ticket résolu pendant le trimestre",
        "fact.config_managed": "{type} : géré (appareil RMM {device})",
        "fact.config_device_not_managed": "{type} : appareil RMM {device} non approuvé ou non vu pendant le trimestre",
        "fact.config_no_device": "{type} : aucun appareil RMM correspondant",
        "fact.device_managed": "approuvé et vu pendant le trimestre", "fact.device_not_managed": "non géré : {reason}",
        "fact.warranty_unknown": "date de garantie inconnue (non compté)",
        "fact.warranty_until": "sous garantie jusqu'au {date}", "fact.warranty_expired": "garantie terminée le {date}",
        "fact.av_none": "aucun antivirus", "fact.av_threats": "{threats} menace(s) active(s) : {products}",
        "fact.av_not_current": "inactif ou pas à jour : {products}", "fact.av_protected": "protégé : {products}",
        "fact.patch_missing": "{missing} correctif(s) manquant(s), note {score}",
        "fact.patch_ratio": "{installed} installé(s), {failed} en échec, {waiting} approuvé(s) en attente",
        "fact.firewall_manual": "réponse dans scorecard.toml : {answer}", "fact.firewall_not_seen": "absent : {reason}",
        "fact.firewall_no_health": "aucun état de santé remonté", "fact.firewall_unhealthy": "santé : {health}",
        "fact.firewall_healthy": "présent et en bonne santé", "fact.firewall_psa_only": "dans le PSA seulement, non supervisé",
        "fact.backup_done": "sauvegardé ({by}), dernière réussite le {at}",
        "fact.backup_none": "aucune sauvegarde réussie ({by})",
        "fact.open_time": "{hours} h avec une alerte ouverte ({share} % sans)",
        "fact.ticket_open": "{priority} : encore ouvert à la fin du trimestre",
        "fact.ticket_closed_no_date": "{priority} : fermé sans date de fermeture dans le PSA (non compté)", "fact.ticket_no_open_date": "{priority} : sans date d'ouverture",
        "fact.ticket_no_target": "{priority} : résolu en {hours} h, aucun délai cible pour cette priorité",
        "fact.ticket_within": "{priority} : résolu en {hours} h (cible {target} h)",
        "fact.ticket_late": "{priority} : résolu en {hours} h, au-delà de la cible de {target} h",
        "yes": "oui", "no": "non",
        "reason.not_approved": "non approuvé dans le RMM ({status})", "reason.created_after": "créé après le trimestre",
        "reason.never_seen": "jamais vu par le RMM",
        "reason.not_seen": "non vu pendant le trimestre (dernier contact le {last})",
    },
}


def _label(lang: str, key: str, **args: Any) -> str:
    text = LABELS[lang][key]
    return text.format(**args) if args else text


def _num(value: float | None, lang: str) -> str:
    if value is None:
        return LABELS[lang]["not_measured"]
    text = f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"
    return (text.replace(".", ",") if lang == "fr" else text) + " %"


def _date(text: str | None, lang: str) -> str:
    if not text:
        return "—"
    day = text[:10]
    return f"{day[8:10]}/{day[5:7]}/{day[:4]}" if lang == "fr" else day


def definition(row: dict, lang: str) -> str:
    key = f"def.{row['key']}"
    if "method" in row and f"{key}.{row['method']}" in LABELS[lang]:
        key = f"{key}.{row['method']}"
    return LABELS[lang][key]


def fact_text(item: dict, lang: str) -> str:
    args = {k: ("—" if v is None else v) for k, v in item.get("args", {}).items()}
    if isinstance(item.get("args", {}).get("answer"), bool):
        args["answer"] = LABELS[lang]["yes" if item["args"]["answer"] else "no"]
    for k in ("date", "at", "last"):
        if isinstance(args.get(k), str) and args[k] != "—":
            args[k] = _date(args[k], lang)
    if f"reason.{args.get('reason')}" in LABELS[lang]:
        args["reason"] = LABELS[lang][f"reason.{args['reason']}"].format(**args)
    return LABELS[lang][f"fact.{item['fact']}"].format(**args)


def _normalised(data: dict) -> dict:
    """The data as JSON gives it back (keys sorted): a scorecard just built and the same one read
    back frozen render alike."""
    return json.loads(json.dumps(data, sort_keys=True, ensure_ascii=False))


def to_json(data: dict, lang: str) -> dict:
    """The figures, items and definitions, with every text in ``lang``."""
    data = _normalised(data)
    out = dict(data, language=lang, overall_definition=LABELS[lang]["overall_def"])
    out["rows"] = [dict(row, label=LABELS[lang][f"row.{row['key']}"], area_label=LABELS[lang][f"area.{row['area']}"],
                        definition=definition(row, lang),
                        note_text=LABELS[lang][f"note.{row['note']}"] if row.get("note") else None,
                        items=[dict(i, fact_text=fact_text(i, lang)) for i in row["items"]])
                   for row in data["rows"]]
    return out


def html(data: dict, lang: str, *, details: bool = False, msp_name: str = "", logo: str | None = None) -> str:
    data = _normalised(data)
    L = LABELS[lang]
    rows = {row["key"]: row for row in data["rows"]}
    body = []
    notes = [L["frozen"].format(at=_date(data["frozen"]["at"], lang), by=data["frozen"]["by"])
             if data.get("frozen") else L["not_frozen"]]
    if data.get("partial"):
        notes.append(L["partial"].format(until=_date(data["measured_until"], lang)))
    notes.append(L["previous_frozen"] if data.get("previous_frozen") else L["previous_computed"])
    body.append(f'<p class="muted small">{r.esc(" ".join(notes))}</p>')
    colon = " :" if lang == "fr" else ":"
    body.append(f'<p><strong>{r.esc(L["overall"])}{colon} {r.esc(_num(data["overall"], lang))}</strong> '
                f'<span class="muted">({r.esc(L["col.previous"])} {r.esc(data["previous_quarter"])}{colon} '
                f'{r.esc(_num(data["previous_overall"], lang))})</span><br>'
                f'<span class="small muted">{r.esc(L["overall_def"])}</span></p>')
    body.append(f'<h2>{r.esc(L["h.charts"])}</h2>')
    area_labels = [L[f"area.{a}"] for a in AREAS]
    body.append(f'<figure>{r.bar_chart(area_labels, [(L["series.this"] + " " + data["quarter"], [data["areas"].get(a) for a in AREAS]), (L["series.previous"] + " " + data["previous_quarter"], [data["previous_areas"].get(a) for a in AREAS])], max_value=100, unit=" %", height=210)}'
                f'<figcaption>{r.esc(L["chart.areas"])}</figcaption></figure>')
    trend = data.get("trend") or []
    if trend:
        body.append(f'<figure>{r.bar_chart([t["quarter"] for t in trend], [(L["series.overall"], [t["overall"] for t in trend])], max_value=100, unit=" %", height=170)}'
                    f'<figcaption>{r.esc(L["chart.trend"])}</figcaption></figure>')
    body.append(f'<h2>{r.esc(L["h.rows"])}</h2>')
    body.append(_rows_table(rows, lang))
    summary = rows["tickets"].get("summary")
    if summary:
        body.append(f'<h2>{r.esc(L["h.tickets"])}</h2>')
        body.append(r.table((L["col.priority"], L["col.opened"], L["col.closed"]),
                            [(p, c["opened"], c["closed"]) for p, c in sorted(summary["by_priority"].items())]
                            + [("Total", summary["opened"], summary["closed"])], numeric=(1, 2)))
        mean = summary["mean_hours"]
        text = (L["tickets.mean"].format(hours=f"{mean:g}".replace(".", ",") if lang == "fr" else f"{mean:g}")
                if mean is not None else L["tickets.mean_none"])
        text += " " + L["tickets.within"].format(within=summary["within_target"], total=summary["with_target"])
        body.append(f"<p>{r.esc(text)}</p>")
    if details:
        body.append(f'<h2>{r.esc(L["h.details"])}</h2>')
        for key, _ in ROWS:
            row = rows[key]
            if not row["items"]:
                continue
            body.append(f'<h3>{r.esc(L["row." + key])} — {r.esc(_num(row["value"], lang))}</h3>')
            body.append(r.table((L["col.item"], L["col.fact"]),
                                [(f'{i["name"]} ({i["id"]})', ("✔ " if i["counted"] else "✘ ") + fact_text(i, lang))
                                 for i in row["items"]]))
    subtitle = L["subtitle"].format(client=data["client_name"], quarter=data["quarter"],
                                    first=_date(data["first_day"], lang), last=_date(data["last_day"], lang))
    return r.page(f'{L["title"]} — {data["client_name"]}', "\n".join(body), lang=lang, msp_name=msp_name, logo=logo,
                  subtitle=subtitle)


def _change(this: float | None, previous: float | None, lang: str) -> str:
    if this is None or previous is None:
        return "—"
    delta = round(this - previous, 1)
    if delta == 0:
        return "="
    text = f"{delta:+.1f} pts"
    return text.replace(".", ",") if lang == "fr" else text


def _rows_table(rows: dict[str, dict], lang: str) -> str:
    """The scorecard: one header row per area, then its rows (name and definition, this quarter,
    the previous one, the change, the weight)."""
    L = LABELS[lang]
    heads = (L["col.row"], L["col.this"], L["col.prev_short"], L["col.change"], L["col.weight"])
    num = ' class="num" style="white-space: normal"'
    out = ['<table style="table-layout: fixed"><colgroup><col style="width: 46%"><col style="width: 15%"><col style="width: 13%"><col style="width: 15%"><col style="width: 11%"></colgroup><thead><tr>'
           + "".join(f'<th{num if i else ""}>{r.esc(h)}</th>' for i, h in enumerate(heads))
           + "</tr></thead><tbody>"]
    for area in AREAS:
        out.append(f'<tr class="area" style="break-after: avoid"><th colspan="5">{r.esc(L["area." + area])}</th></tr>')
        for key, row_area in ROWS:
            if row_area != area:
                continue
            row = rows[key]
            this = r.esc(_num(row["value"], lang))
            if row["value"] is None and row.get("note"):
                this += f'<br><span class="small muted">{r.esc(L["note." + row["note"]])}</span>'
            weight = L["disabled"] if not row["weight"] else (f"{row['weight']:g}".replace(".", ",") if lang == "fr"
                                                              else f"{row['weight']:g}")
            out.append(f'<tr style="break-inside: avoid"><td><strong>{r.esc(L["row." + key])}</strong><br>'
                       f'<span class="small muted">{r.esc(definition(row, lang))}</span></td>'
                       f'<td class="num">{this}</td><td class="num">{r.esc(_num(row["previous"], lang))}</td>'
                       f'<td class="num">{r.esc(_change(row["value"], row["previous"], lang))}</td>'
                       f'<td class="num">{r.esc(weight)}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def render(data: dict, fmt: str, lang: str, *, details: bool = False, msp_name: str = "",
           logo: str | None = None) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
    if fmt == "json":
        return (json.dumps(to_json(data, lang), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    document = html(data, lang, details=details, msp_name=msp_name, logo=logo)
    return document.encode() if fmt == "html" else r.to_pdf(document)
