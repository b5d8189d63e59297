"""The MSP's maturity self-assessment: four areas of five statements answered 1 to 5, the score
and stage (Réactivité, Stabilité, Proactivité, Évolutivité), the next step per area, and beside
the statements the hub can speak to, the **signal from data** computed from the store, so that
the self-score can be compared with what the data shows. Nothing here calls a vendor.

``answers.toml`` holds one list of five whole numbers per area::

    processus   = [5, 5, 4, 5, 4]
    technologie = [3, 3, 4, 3, 3]
    clients     = [4, 4, 4, 4, 3]
    revenus     = [3, 2, 3, 2, 3]
    answered_by = "Jeanne Martin"      # optional: who answered (default: the system user)

Scoring (MATURITY.md): an area's score is its points ÷ 5; the overall score is the mean of the
four areas; the stage is that of the integer part (1 Réactivité, 2 Stabilité, 3 Proactivité, 4 and
5 Évolutivité), "close to the next" between two stages (2.95). Each area's next step follows that
area's own score, so that an MSP proactive overall but stable in revenue is given the revenue
step of Stabilité. Scores are exact fractions (71/20 = 3.55), never floats rounded twice.

Each assessment is kept in the store with its date and who answered (``Store.save_maturity_answers``),
so the report shows the path over time.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

from hub.periods import parse_quarter, quarter_name, quarter_of_period
from hub.config import config_error, known_keys_fix, line_of, read_toml
from hub.errors import ConfigError
from hub.reports import render

AREAS = ("processus", "technologie", "clients", "revenus")
STAGES = ("reactivite", "stabilite", "proactivite", "evolutivite")
ANSWERS_FILE_KEYS = AREAS + ("answered_by",)

AREA_NAMES = {
    "fr": {"processus": "Processus et opérations", "technologie": "Technologie et automatisation",
           "clients": "Satisfaction et fidélisation des clients", "revenus": "Revenus et croissance"},
    "en": {"processus": "Processes and operations", "technologie": "Technology and automation",
           "clients": "Client satisfaction and retention", "revenus": "Revenue and growth"},
}

STAGE_NAMES = {
    "fr": {"reactivite": "Réactivité", "stabilite": "Stabilité", "proactivite": "Proactivité",
           "evolutivite": "Évolutivité"},
    "en": {"reactivite": "Reactive", "stabilite": "Stable", "proactivite": "Proactive", "evolutivite": "Scalable"},
}

STAGE_TEXT = {
    "fr": {"reactivite": "dépannage au coup par coup, peu de structure, pas de processus reproductible, on éteint "
                         "les incendies",
           "stabilite": "une part de standardisation, pas toujours documentée ni appliquée de façon constante",
           "proactivite": "des systèmes solides, un service proactif plutôt que des tickets, une exploitation "
                          "efficace",
           "evolutivite": "des processus optimisés, des revenus récurrents, des offres élargies et groupées, une "
                          "exploitation qui passe à l'échelle"},
    "en": {"reactivite": "break/fix, little structure, no repeatable process, firefighting",
           "stabilite": "some standardisation, not always documented or consistent",
           "proactivite": "robust systems, proactive service rather than tickets, operational efficiency",
           "evolutivite": "optimised processes, recurring revenue, broader services and bundles, operations that "
                          "scale"},
}

# The statements, French first, English after (MATURITY.md); answers.toml lists them in this order.
STATEMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "processus": (
        ("Nos procédures d'arrivée et de départ des clients sont standardisées.",
         "Client onboarding and offboarding follow a standard procedure."),
        ("L'équipe mesure ses performances et tient les engagements de ses contrats de niveau de service.",
         "The team tracks its performance and consistently meets its SLA targets."),
        ("Les procédures et les corrections techniques récurrentes sont documentées.",
         "Procedures and fixes for recurring tasks are documented."),
        ("Nous auditons et améliorons nos façons de travailler à intervalles réguliers.",
         "We regularly audit, iterate on and optimise our workflows."),
        ("Nous repérons nous-mêmes les lenteurs et les goulots d'étranglement et les corrigeons.",
         "We proactively find inefficiencies and bottlenecks and work on them."),
    ),
    "technologie": (
        ("Notre PSA et notre RMM sont entièrement déployés et utilisés chaque jour.",
         "Our PSA and RMM are fully deployed and used every day."),
        ("Les tâches répétitives (correctifs, acheminement des tickets, rapports) sont automatisées.",
         "Repetitive work (patching, ticket routing, reporting) is automated."),
        ("Nos outils sont intégrés et donnent une vue commune à toutes les équipes.",
         "Our tools are integrated and give every team the same view."),
        ("Nous réévaluons et modernisons nos outils pour répondre à nos besoins.",
         "We review and modernise our tool stack to fit our needs and cut waste."),
        ("Nous mesurons l'usage de nos outils pour trouver où optimiser.",
         "We measure how our tools are used to find what to optimise."),
    ),
    "clients": (
        ("La relation client est une priorité : nous tenons une revue trimestrielle avec chaque client.",
         "Client relationships come first: we hold a quarterly business review with each client."),
        ("Nous suivons la satisfaction (CSAT) et la recommandation (NPS) de nos clients.",
         "We track our clients' CSAT and NPS."),
        ("Nos délais de prise en charge et de résolution tiennent nos objectifs.",
         "Our response and resolution times consistently meet our targets."),
        ("Nous échangeons avec nos clients en dehors des tickets, de notre propre initiative.",
         "We talk to clients proactively, outside support tickets."),
        ("Notre communication commerciale est adaptée à chaque segment de clients.",
         "Our sales and marketing communication is tailored to each client segment."),
    ),
    "revenus": (
        ("Nos niveaux de service et nos tarifs sont clairement définis.",
         "Our service tiers and pricing are clearly defined."),
        ("Une large part de nos revenus est récurrente et prévisible.",
         "A large, steady share of our revenue is recurring and predictable."),
        ("Nous suivons la perte de clients, la valeur vie client et notre rentabilité.",
         "We track churn, client lifetime value and profitability."),
        ("Nous repérons régulièrement des ventes additionnelles liées aux objectifs des clients.",
         "We regularly find upsell opportunities tied to our clients' goals."),
        ("Nous avons revu et ajusté nos tarifs au cours des douze derniers mois.",
         "We reviewed and adjusted our prices in the last twelve months."),
    ),
}

SHORT_AREA_NAMES = {
    "fr": {"processus": "Processus", "technologie": "Technologie", "clients": "Clients", "revenus": "Revenus"},
    "en": {"processus": "Processes", "technologie": "Technology", "clients": "Clients", "revenus": "Revenue"},
}

ANSWER_LABELS = {
    "fr": {1: "pas du tout d'accord", 2: "pas d'accord", 3: "neutre", 4: "d'accord", 5: "tout à fait d'accord"},
    "en": {1: "strongly disagree", 2: "disagree", 3: "neutral", 4: "agree", 5: "strongly agree"},
}

# The next step per area and stage (MATURITY.md), French and English.
ADVICE: dict[str, dict[str, tuple[str, str]]] = {
    "processus": {
        "reactivite": ("Rédigez une procédure courte et standard pour un problème récurrent.",
                       "Write one short standard procedure for one recurring problem."),
        "stabilite": ("Confiez à une personne la responsabilité des processus clés, comme l'arrivée d'un client.",
                      "Give one person ownership of core processes such as onboarding."),
        "proactivite": ("Automatisez un processus à fort volume, comme l'application des correctifs.",
                        "Automate a high-volume process such as patching."),
        "evolutivite": ("Auditez les équipes régulièrement pour que les nouveaux arrivants et les nouveaux sites "
                        "appliquent les mêmes procédures.",
                        "Audit teams regularly so new staff and sites apply the same procedures."),
    },
    "technologie": {
        "reactivite": ("Arrêtez vos outils de base (PSA, RMM) et servez chaque client avec les mêmes.",
                       "Settle on core tools (PSA, RMM) and serve every client with the same stack."),
        "stabilite": ("Abandonnez les outils qui font deux fois le même travail.",
                      "Drop tools that do the same job twice."),
        "proactivite": ("Investissez dans des outils qui s'intègrent les uns aux autres.",
                        "Invest in tools that integrate with each other."),
        "evolutivite": ("Tenez chaque trimestre une revue technique de l'usage, de la rentabilité et des manques.",
                        "Hold a quarterly technology review of usage, profitability and gaps."),
    },
    "clients": {
        "reactivite": ("Prenez des nouvelles en dehors des tickets : un e-mail de satisfaction en deux questions.",
                       "Check in outside tickets: a two-question satisfaction e-mail."),
        "stabilite": ("Engagez-vous à tenir une revue trimestrielle ce trimestre avec un client clé.",
                      "Commit to one quarterly review this quarter with a key client."),
        "proactivite": ("Personnalisez la communication ; marquez les étapes importantes de vos clients.",
                        "Personalise communication; mark clients' milestones."),
        "evolutivite": ("Écrivez un guide de la réussite client : arrivée, revues et échanges suivis.",
                        "Write a client-success playbook for onboarding, reviews and ongoing contact."),
    },
    "revenus": {
        "reactivite": ("Revoyez vos tarifs, en commençant par un client de longue date.",
                       "Review pricing, starting with a long-standing client."),
        "stabilite": ("Suivez la perte de clients : quand et pourquoi ils partent.",
                      "Track churn: when and why clients leave."),
        "proactivite": ("Menez une campagne de ventes additionnelles : un service proposé à trois clients qui ne "
                        "l'ont pas.",
                        "Run an upsell campaign: one service offered to three clients without it."),
        "evolutivite": ("Prévoyez la croissance par segment de clients à partir de la taille et du secteur des "
                        "clients les plus rentables.",
                        "Forecast growth per client segment from the most profitable clients' size and sector."),
    },
}

LABELS = {
    "fr": {
        "title": "Auto-évaluation de maturité", "overall": "Score global", "stage": "Stade",
        "close": "proche du stade suivant", "answered": "Réponses du {date}, par {who}", "area": "Domaine",
        "score": "Score", "points": "Points", "next_step": "Prochaine étape", "statement": "Affirmation",
        "answer": "Réponse", "signal": "Ce que montrent les données", "no_data": "pas de données",
        "how": "Calcul", "history": "Parcours dans le temps", "date": "Date", "by": "Par",
        "areas_chart": "Score par domaine (sur 5)", "this": "Cette évaluation", "previous": "Évaluation précédente",
        "history_chart": "Scores au fil des évaluations (sur 5)", "stages": "Les stades",
        "signals_note": "Les signaux sont calculés à partir des données de la plateforme au {date} ; ils ne "
                        "remplacent pas la réponse, ils permettent de la comparer.",
        "one_assessment": "Une seule évaluation enregistrée : le parcours apparaîtra avec la suivante.",
        "not_saved": "Cette évaluation n'est pas enregistrée.",
    },
    "en": {
        "title": "Maturity self-assessment", "overall": "Overall score", "stage": "Stage",
        "close": "close to the next stage", "answered": "Answered on {date} by {who}", "area": "Area",
        "score": "Score", "points": "Points", "next_step": "Next step", "statement": "Statement",
        "answer": "Answer", "signal": "What the data shows", "no_data": "no data", "how": "How it is computed",
        "history": "The path over time", "date": "Date", "by": "By", "areas_chart": "Score per area (out of 5)",
        "this": "This assessment", "previous": "Previous assessment",
        "history_chart": "Scores over the assessments (out of 5)", "stages": "The stages",
        "signals_note": "The signals are computed from the hub's data as of {date}; they do not replace the "
                        "answer, they let it be compared.",
        "one_assessment": "Only one assessment is recorded: the path shows from the next one.",
        "not_saved": "This assessment is not recorded.",
    },
}

ANSWERS_EXAMPLE = ('processus = [4, 3, 5, 4, 3]   (one whole number from 1 to 5 per statement, five per area; '
                   'areas: processus, technologie, clients, revenus)')


# --- answers and scoring ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Answers:
    """Five answers (1 to 5) per area; ``answered_by`` when the file names who answered."""

    areas: dict[str, tuple[int, ...]]
    answered_by: str | None = None

    def as_dict(self) -> dict[str, list[int]]:
        return {a: list(self.areas[a]) for a in AREAS}


def parse_answers(raw: Any, *, file: str, text: str | None = None) -> Answers:
    """Check a parsed answers table; a ConfigError names the file, the line, the key and the fix."""
    def err(message: str, key: str | None, fix: str) -> ConfigError:
        return config_error(message, file=file, key=key, fix=fix, line=line_of(text, (key,)) if key else None)

    if not isinstance(raw, dict):
        raise err("must be a table of the four areas", None, f"write {ANSWERS_EXAMPLE}")
    for key in raw:
        if key not in ANSWERS_FILE_KEYS:
            raise err(f"unknown key '{key}'", key, known_keys_fix(key, ANSWERS_FILE_KEYS))
    areas: dict[str, tuple[int, ...]] = {}
    for area in AREAS:
        if area not in raw:
            raise err(f"missing: the answers of area {area!r} ({AREA_NAMES['en'][area]})", area,
                      f"add {area} = [3, 3, 3, 3, 3] with your own answers, one per statement")
        value = raw[area]
        if not isinstance(value, list):
            raise err(f"must be a list of five whole numbers, got {value!r}", area, f"write {area} = [4, 3, 5, 4, 3]")
        if len(value) != 5:
            raise err(f"has {len(value)} answer(s); the area has five statements", area,
                      f"write five answers, one per statement, e.g. {area} = [4, 3, 5, 4, 3]")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int):
                raise err(f"answer {i + 1} ({v!r}) is not a whole number", area,
                          "write each answer as a whole number from 1 to 5, without quotes")
            if not 1 <= v <= 5:
                raise err(f"answer {i + 1} is {v}, outside 1 to 5", area,
                          "answer each statement with 1 (strongly disagree) to 5 (strongly agree)")
        areas[area] = tuple(value)
    by = raw.get("answered_by")
    if by is not None and (not isinstance(by, str) or not by.strip()):
        raise err(f"must be a name in quotes, got {by!r}", "answered_by", 'write answered_by = "Jeanne Martin"')
    return Answers(areas, by.strip() if by else None)


def load_answers(path: str | Path) -> Answers:
    """Read and check ``answers.toml``."""
    path = Path(path)
    raw, text = read_toml(path, missing_fix=f"write the file with one line per area, e.g. {ANSWERS_EXAMPLE}")
    return parse_answers(raw, file=str(path), text=text)


def stage_of(score: Fraction) -> tuple[str, bool]:
    """(stage key, close to the next) of a score from 1 to 5: the integer part's stage (4 and 5:
    Évolutivité); "close to the next" when it lies between two stages (above x.9, e.g. 2.95)."""
    whole = min(max(int(score), 1), 4)
    close = whole < 4 and int(score) == whole and score - whole > Fraction(9, 10)
    return STAGES[whole - 1], close


@dataclass(frozen=True)
class Score:
    """The scores of one set of answers: points and score per area, the overall score and stage."""

    points: dict[str, int]
    areas: dict[str, Fraction]
    overall: Fraction
    stage: str
    close_to_next: bool

    def area_stage(self, area: str) -> str:
        return stage_of(self.areas[area])[0]


def score(answers: Answers | dict[str, Any]) -> Score:
    """Area score = points ÷ 5; overall = the mean of the four; the stage of the overall score."""
    areas = answers.areas if isinstance(answers, Answers) else answers
    points = {a: sum(areas[a]) for a in AREAS}
    scores = {a: Fraction(points[a], 5) for a in AREAS}
    overall = sum(scores.values(), Fraction(0)) / len(AREAS)
    stage, close = stage_of(overall)
    return Score(points, scores, overall, stage, close)


def number(value: Fraction | float, lang: str, places: int = 2) -> str:
    """``3.55`` / ``3,55``: at most ``places`` decimals, trailing zeros dropped."""
    text = f"{float(value):.{places}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",") if lang == "fr" else text


def _pct(value: Fraction | float, lang: str) -> str:
    text = f"{float(value) * 100:.0f}"
    return f"{text} %" if lang == "fr" else f"{text}%"


# --- signals from data -----------------------------------------------------------------------------

@dataclass
class Signal:
    """What the store shows about one statement: ``value`` (a share from 0 to 1, or None), the
    figure and how it was computed (per language), or ``no_data`` with why."""

    key: str
    area: str
    statement: int                      # 0-based
    value: float | None = None
    figure: dict[str, str] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    no_data: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self, lang: str) -> dict[str, Any]:
        return {"key": self.key, "area": self.area, "statement": self.statement + 1, "value": self.value,
                "no_data": self.no_data, "figure": self.figure.get(lang), "how": self.how.get(lang),
                "details": self.details}


def _both(fr: str, en: str) -> dict[str, str]:
    return {"fr": fr, "en": en}


def _ended_months(today: date, n: int) -> list[str]:
    """The ``n`` months ended before ``today``'s, newest first (``YYYY-MM``)."""
    out, y, m = [], today.year, today.month
    for _ in range(n):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        out.append(f"{y:04d}-{m:02d}")
    return out


def _local_today(hub) -> date:
    from hub.periods import local_day
    return local_day(hub.clock(), hub.config.timezone)


def _sent_invoices(hub) -> list[dict]:
    return [a for a in hub.store.actions(status="sent", kind="invoice") if a.get("period")]


def signal_quarterly_reviews(hub, today: date) -> Signal:
    """Frozen scorecards (presented to the client) among the clients invoiced, over the last four
    ended quarters."""
    sig = Signal("quarterly_reviews", "clients", 0)
    quarters, q = [], parse_quarter(quarter_name(today)).previous()
    for _ in range(4):
        quarters.append(q.name)
        q = q.previous()
    quarters.reverse()
    invoiced: dict[str, set[str]] = {name: set() for name in quarters}
    for a in _sent_invoices(hub):
        qn = quarter_of_period(a["period"])
        if qn in invoiced:
            invoiced[qn].add(a["client_id"])
    frozen: dict[str, set[str]] = {name: set() for name in quarters}
    for r in hub.store.frozen_scorecards():
        if r["quarter"] in frozen:
            frozen[r["quarter"]].add(r["client_id"])
    how = _both(f"scorecards gelées (présentées au client, msp-hub report scorecard --freeze) parmi les clients "
                f"facturés par la plateforme, trimestre par trimestre, de {quarters[0]} à {quarters[-1]}",
                f"scorecards frozen (presented to the client, msp-hub report scorecard --freeze) among the clients "
                f"the hub invoiced, quarter by quarter, from {quarters[0]} to {quarters[-1]}")
    sig.how = how
    total = sum(len(invoiced[n]) for n in quarters)
    if total == 0:
        sig.no_data = True
        sig.figure = _both("pas de données : aucune facture envoyée sur ces trimestres",
                           "no data: no invoice sent in these quarters")
        return sig
    held = sum(len(invoiced[n] & frozen[n]) for n in quarters)
    with_review = sum(1 for n in quarters if invoiced[n] & frozen[n])
    sig.value = held / total
    last = quarters[-1]
    sig.details = {n: {"invoiced": len(invoiced[n]), "reviewed": len(invoiced[n] & frozen[n])} for n in quarters}
    sig.figure = _both(
        f"{held} revue(s) sur {total} client-trimestres ({_pct(sig.value, 'fr')}) ; au moins une revue "
        f"{with_review} trimestre(s) sur 4 ; {last} : {len(invoiced[last] & frozen[last])} sur {len(invoiced[last])}",
        f"{held} review(s) of {total} client-quarters ({_pct(sig.value, 'en')}); at least one review in "
        f"{with_review} of 4 quarters; {last}: {len(invoiced[last] & frozen[last])} of {len(invoiced[last])}")
    return sig


ALERT_WINDOW_DAYS = 90


def signal_alert_tickets(hub, now: datetime) -> Signal:
    """Alerts of the last 90 days that the hub turned into a PSA ticket (made or adopted)."""
    sig = Signal("alert_tickets", "technologie", 1)
    since = now - timedelta(days=ALERT_WINDOW_DAYS)
    utc = since.astimezone(timezone.utc).isoformat()
    alerts = [a for source in hub.store.sources("alerts")
              for a in hub.store.iter_records("alerts", source, where="created_at >= ?", args=[utc])
              if a.created_at is not None and a.created_at >= since]
    ticketed: set[str] = set()
    for t in hub.store.actions(status="sent", kind="ticket"):
        ticketed.update(str(u) for u in (t["payload"].get("uids") or ()))
    sig.how = _both(f"alertes du RMM créées ces {ALERT_WINDOW_DAYS} derniers jours pour lesquelles la plateforme "
                    f"a créé (ou repris) un ticket dans le PSA, sans intervention ; une règle « ignore » de "
                    f"mappings/alert_rules.toml compte comme non transformée",
                    f"RMM alerts raised in the last {ALERT_WINDOW_DAYS} days for which the hub made (or adopted) "
                    f"a PSA ticket by itself; an alert a rule of mappings/alert_rules.toml ignores counts as not "
                    f"turned into a ticket")
    if not alerts:
        sig.no_data = True
        sig.figure = _both(f"pas de données : aucune alerte ces {ALERT_WINDOW_DAYS} derniers jours",
                           f"no data: no alert in the last {ALERT_WINDOW_DAYS} days")
        return sig
    done = sum(1 for a in alerts if a.source_id in ticketed)
    sig.value = done / len(alerts)
    sig.details = {"alerts": len(alerts), "ticketed": done}
    sig.figure = _both(f"{done} alerte(s) sur {len(alerts)} devenues un ticket automatiquement "
                       f"({_pct(sig.value, 'fr')})",
                       f"{done} of {len(alerts)} alert(s) turned into a ticket automatically "
                       f"({_pct(sig.value, 'en')})")
    return sig


def _streams(hub) -> list[tuple[str, str, str]]:
    """(connector, stream, table) of every configured connector's streams."""
    out = []
    for name, connector in sorted(hub.connectors.items()):
        for st in connector.streams():
            out.append((name, st.name, st.table))
    return out


def signal_connectors(hub) -> Signal:
    """The configured connectors' streams whose last read was complete."""
    sig = Signal("connectors", "technologie", 2)
    sig.how = _both("connecteurs configurés (RMM, PSA, facturation) et, pour chacun de leurs flux, si la dernière "
                    "lecture est allée à son terme (msp-hub streams)",
                    "connectors configured (RMM, PSA, invoicing) and, for each of their streams, whether its last "
                    "read went to its end (msp-hub streams)")
    streams = _streams(hub)
    if not streams:
        sig.no_data = True
        sig.figure = _both("pas de données : aucun connecteur configuré", "no data: no connector configured")
        return sig
    states = hub.store.stream_states()
    healthy = [f"{c}.{s}" for c, s, _ in streams if ((states.get((c, s)) or {}).get("last") or {}).get("status")
               == "complete"]
    failing = sorted(f"{c}.{s}" for c, s, _ in streams if f"{c}.{s}" not in healthy)
    names = ", ".join(sorted({c for c, _, _ in streams}))
    sig.value = len(healthy) / len(streams)
    sig.details = {"connectors": sorted({c for c, _, _ in streams}), "healthy": sorted(healthy), "not_healthy": failing}
    tail_fr = f" ; en échec ou jamais lus : {', '.join(failing)}" if failing else ""
    tail_en = f"; failed or never read: {', '.join(failing)}" if failing else ""
    sig.figure = _both(f"{len(healthy)} flux sur {len(streams)} lus complètement à la dernière lecture "
                       f"(connecteurs : {names}){tail_fr}",
                       f"{len(healthy)} of {len(streams)} streams read completely on their last read "
                       f"(connectors: {names}){tail_en}")
    return sig


def signal_psa_rmm(hub, now: datetime) -> Signal:
    """Whether an RMM (devices) and a PSA (agreements) are configured and read completely in the last day."""
    sig = Signal("psa_rmm_daily", "technologie", 0)
    sig.how = _both("un RMM (flux des appareils) et un PSA (flux des contrats) configurés, et lus complètement "
                    "dans les dernières 24 heures",
                    "an RMM (the devices stream) and a PSA (the agreements stream) configured, and read completely "
                    "in the last 24 hours")
    states = hub.store.stream_states()
    found = {"rmm": [], "psa": []}
    for c, s, table in _streams(hub):
        kind = {"devices": "rmm", "agreements": "psa"}.get(table)
        if kind:
            done = ((states.get((c, s)) or {}).get("last_complete") or {}).get("finished_at")
            found[kind].append((c, datetime.fromisoformat(done) if done else None))
    parts_fr, parts_en, ok = [], [], 0
    for kind, label in (("rmm", "RMM"), ("psa", "PSA")):
        if not found[kind]:
            parts_fr.append(f"{label} : aucun connecteur")
            parts_en.append(f"{label}: no connector")
            continue
        c, at = max(found[kind], key=lambda t: t[1] or datetime.min.replace(tzinfo=timezone.utc))
        if at is not None and now - at <= timedelta(days=1):
            ok += 1
            hours = int((now - at).total_seconds() // 3600)
            parts_fr.append(f"{label} ({c}) lu il y a {hours} h")
            parts_en.append(f"{label} ({c}) read {hours} h ago")
        else:
            when = at.date().isoformat() if at else None
            parts_fr.append(f"{label} ({c}) " + (f"pas lu depuis le {when}" if when else "jamais lu complètement"))
            parts_en.append(f"{label} ({c}) " + (f"not read since {when}" if when else "never read completely"))
    sig.value = ok / 2
    sig.details = {"read_in_last_day": ok}
    sig.figure = _both(f"{ok} sur 2 : " + " ; ".join(parts_fr), f"{ok} of 2: " + "; ".join(parts_en))
    return sig


def signal_recurring_share(hub, today: date) -> Signal:
    """The monthly recurring revenue's share of the revenue of the last twelve ended months, per
    currency, as the KPI report counts both (``kpis.recurring_revenue``)."""
    sig = Signal("recurring_share", "revenus", 1)
    months = _ended_months(today, 12)
    sig.how = _both(f"part du revenu mensuel récurrent (niveaux de service, options par appareil et minimum "
                    f"mensuel) dans le chiffre d'affaires hors taxes des factures envoyées pour les douze derniers "
                    f"mois clos ({months[-1]} à {months[0]}), comptés comme le rapport des indicateurs (avoirs "
                    f"déduits, factures annulées écartées) ; temps, produits et blocs d'heures sont non récurrents",
                    f"share of the monthly recurring revenue (managed-service tiers, per-device add-ons and the "
                    f"monthly minimum) in the revenue before tax of the invoices sent for the last twelve ended "
                    f"months ({months[-1]} to {months[0]}), counted as the KPI report counts them (credit notes "
                    f"deducted, voided invoices left out); time, products and blocks of hours are not recurring")
    from hub.reports.kpis import recurring_revenue
    totals = {c: list(t) for c, t in recurring_revenue(hub, months[-1], months[0]).items()}
    totals = {c: t for c, t in totals.items() if t[1]}
    if not totals:
        sig.no_data = True
        sig.figure = _both("pas de données : aucune facture envoyée sur ces douze mois",
                           "no data: no invoice sent in these twelve months")
        return sig
    from hub.money import format_minor
    main = max(totals, key=lambda c: totals[c][1])
    sig.value = totals[main][0] / totals[main][1]
    sig.details = {c: {"recurring": t[0], "total": t[1]} for c, t in sorted(totals.items())}
    parts = [(c, t, t[0] / t[1]) for c, t in sorted(totals.items())]
    sig.figure = _both(" ; ".join(f"{_pct(s, 'fr')} récurrent ({format_minor(t[0], c)} sur {format_minor(t[1], c)})"
                                  for c, t, s in parts),
                       "; ".join(f"{_pct(s, 'en')} recurring ({format_minor(t[0], c)} of {format_minor(t[1], c)})"
                                 for c, t, s in parts))
    return sig


ENDED = ("cancelled", "expired", "inactive")


def _ended_on(agreement, today: date) -> date | None:
    """The day an agreement ended (its end date, else for an ended status the day it was last
    changed), None while it is in force."""
    end = date.fromisoformat(agreement.end_date[:10]) if agreement.end_date else None
    if end is not None and end < today:
        return end
    if agreement.status in ENDED:
        if end is not None:
            return end
        return agreement.updated_at.date() if agreement.updated_at else today
    return None


def signal_churn(hub, today: date) -> Signal:
    """Clients whose every PSA agreement ended in the last twelve months, against the clients with an
    agreement in force twelve months ago."""
    sig = Signal("churn", "revenus", 2)
    start = date(today.year - 1, today.month, min(today.day, 28))
    sig.how = _both(f"clients du PSA dont tous les contrats ont pris fin entre le {start.isoformat()} et le "
                    f"{today.isoformat()} (date de fin, sinon date de la dernière modification d'un contrat résilié "
                    f"ou expiré), rapportés aux clients qui avaient un contrat en vigueur le {start.isoformat()}",
                    f"PSA clients whose every agreement ended between {start.isoformat()} and {today.isoformat()} "
                    f"(the end date, else the day a cancelled or expired agreement was last changed), against the "
                    f"clients with an agreement in force on {start.isoformat()}")
    by_client: dict[tuple[str, str], list] = {}
    for source in hub.store.sources("agreements"):
        for a in hub.store.iter_records("agreements", source):
            by_client.setdefault((a.source, a.client_source_id), []).append(a)
    if not by_client:
        sig.no_data = True
        sig.figure = _both("pas de données : aucun contrat lu du PSA", "no data: no agreement read from the PSA")
        return sig
    names = {(c.source, c.source_id): c.name for c in hub.store.iter_clients()}
    at_start, lost = set(), []
    for key, agreements in by_client.items():
        ends = [_ended_on(a, today) for a in agreements]
        for a, end in zip(agreements, ends):
            began = date.fromisoformat(a.start_date[:10]) if a.start_date else None
            if (began is None or began <= start) and (end is None or end >= start):
                at_start.add(key)
        if all(e is not None for e in ends) and start <= max(ends) <= today:
            lost.append(key)
    lost.sort(key=lambda k: names.get(k, k[1]))
    lost_names = [names.get(k, f"{k[0]} {k[1]}") for k in lost]
    sig.details = {"lost": lost_names, "in_force_at_start": len(at_start)}
    if at_start:
        sig.value = len(lost) / len(at_start)
    rate_fr = f" ({_pct(sig.value, 'fr')} des {len(at_start)} clients sous contrat il y a un an)" if at_start else ""
    rate_en = f" ({_pct(sig.value, 'en')} of the {len(at_start)} clients under contract a year ago)" if at_start else ""
    listed = f" : {', '.join(lost_names)}" if lost_names else ""
    sig.figure = _both(f"{len(lost)} client(s) perdu(s) en douze mois{rate_fr}{listed}",
                       f"{len(lost)} client(s) lost in twelve months{rate_en}{listed.replace(' :', ':')}")
    return sig


def signal_price_review(hub, today: date) -> Signal:
    """Tier prices (unit price per device class) that changed on the invoices sent in the last
    twelve ended months, client by client, from one invoiced month to the next."""
    sig = Signal("price_review", "revenus", 4)
    months = set(_ended_months(today, 12))
    sig.how = _both("prix unitaires des niveaux de service (par classe d'appareil) sur les factures envoyées : un "
                    "changement est un prix différent de celui de la facture précédente du même client, au cours "
                    "des douze derniers mois clos",
                    "unit prices of the managed-service tiers (per device class) on the invoices sent: a change is "
                    "a price other than on the same client's previous invoice, within the last twelve ended months")
    series: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for a in _sent_invoices(hub):
        for line in a["payload"].get("lines") or ():
            code = str(line.get("code", ""))
            if code.startswith("tier:"):
                series.setdefault((a["client_id"], code), []).append(
                    (a["period"], int(line.get("unit_amount") or 0), a["payload"].get("currency") or "?"))
    invoiced = {code for (_, code), points in series.items() if any(p in months for p, _, _ in points)}
    if not invoiced:
        sig.no_data = True
        sig.figure = _both("pas de données : aucune ligne de niveau de service facturée sur ces douze mois",
                           "no data: no tier line invoiced in these twelve months")
        return sig
    from hub.money import format_minor
    changes: dict[str, tuple[str, str, str]] = {}
    for (_, code), points in sorted(series.items()):
        points.sort()
        for (p0, u0, c0), (p1, u1, c1) in zip(points, points[1:]):
            if p1 in months and u1 != u0 and (code not in changes or p1 < changes[code][2]):
                changes[code] = (format_minor(u0, c0), format_minor(u1, c1), p1)
    sig.value = len(changes) / len(invoiced)
    sig.details = {"tier_codes": sorted(invoiced), "changed": {c: list(v) for c, v in sorted(changes.items())}}
    listed = [f"{code[5:].replace(':', '/')} {old} → {new} ({p})" for code, (old, new, p) in sorted(changes.items())]
    sig.figure = _both(f"{len(changes)} prix sur {len(invoiced)} modifiés" + (f" : {'; '.join(listed)}" if listed else ""),
                       f"{len(changes)} of {len(invoiced)} prices changed" + (f": {'; '.join(listed)}" if listed else ""))
    return sig


def signal_resolution_time(hub, now: datetime) -> Signal:
    """Time from opening to closing of the PSA's service tickets closed in the last 90 days."""
    sig = Signal("resolution_time", "clients", 2)
    since = now - timedelta(days=ALERT_WINDOW_DAYS)
    sig.how = _both(f"tickets du PSA (tous, pas seulement ceux de la plateforme) fermés ces {ALERT_WINDOW_DAYS} "
                    f"derniers jours : durée entre ouverture et fermeture ; aucun objectif n'est connu de la "
                    f"plateforme, comparez avec vos engagements",
                    f"PSA service tickets (all of them, not only the hub's) closed in the last "
                    f"{ALERT_WINDOW_DAYS} days: time from opening to closing; the hub holds no target, compare "
                    f"with your own commitments")
    hours = []
    for source in hub.store.sources("service_tickets"):
        for t in hub.store.iter_records("service_tickets", source, where="closed_at >= ?",
                                        args=[since.astimezone(timezone.utc).isoformat()]):
            if t.closed_at is not None and t.opened_at is not None and t.closed_at >= since:
                hours.append((t.closed_at - t.opened_at).total_seconds() / 3600)
    if not hours:
        sig.no_data = True
        sig.figure = _both(f"pas de données : aucun ticket fermé ces {ALERT_WINDOW_DAYS} derniers jours",
                           f"no data: no ticket closed in the last {ALERT_WINDOW_DAYS} days")
        return sig
    mean, median = sum(hours) / len(hours), statistics.median(hours)
    sig.details = {"tickets": len(hours), "mean_hours": round(mean, 2), "median_hours": round(median, 2)}
    sig.figure = _both(f"{len(hours)} ticket(s) : résolution en {number(mean, 'fr', 1)} h en moyenne, "
                       f"{number(median, 'fr', 1)} h en médiane",
                       f"{len(hours)} ticket(s): resolved in {number(mean, 'en', 1)} h on average, "
                       f"{number(median, 'en', 1)} h median")
    return sig


def signals(hub) -> dict[str, Signal]:
    """Every signal from data, computed from the store at the hub's clock."""
    now, today = hub.clock(), _local_today(hub)
    out = [signal_psa_rmm(hub, now), signal_alert_tickets(hub, now), signal_connectors(hub),
           signal_quarterly_reviews(hub, today), signal_resolution_time(hub, now), signal_recurring_share(hub, today),
           signal_churn(hub, today), signal_price_review(hub, today)]
    return {s.key: s for s in out}


# --- the report ------------------------------------------------------------------------------------

@dataclass
class Assessment:
    """One assessment with its scores, the signals, and the history of every recorded assessment."""

    answers: Answers
    score: Score
    answered_at: str
    answered_by: str
    signals: dict[str, Signal]
    history: list[dict]
    saved: bool
    as_of: str

    def as_json(self, lang: str) -> dict[str, Any]:
        by_statement = {(s.area, s.statement): s for s in self.signals.values()}
        areas = {}
        for a in AREAS:
            stage = self.score.area_stage(a)
            areas[a] = {"name": AREA_NAMES[lang][a], "points": self.score.points[a],
                        "score": float(self.score.areas[a]), "stage": stage, "stage_name": STAGE_NAMES[lang][stage],
                        "next_step": ADVICE[a][stage][0 if lang == "fr" else 1],
                        "statements": [{"n": i + 1, "text": STATEMENTS[a][i][0 if lang == "fr" else 1],
                                        "answer": self.answers.areas[a][i],
                                        "signal": by_statement[(a, i)].as_json(lang) if (a, i) in by_statement else None}
                                       for i in range(5)]}
        return {"report": "maturity", "language": lang, "answered_at": self.answered_at,
                "answered_by": self.answered_by, "saved": self.saved, "signals_as_of": self.as_of,
                "overall": float(self.score.overall), "overall_exact": f"{self.score.overall.numerator}/"
                                                                        f"{self.score.overall.denominator}",
                "stage": self.score.stage, "stage_name": STAGE_NAMES[lang][self.score.stage],
                "close_to_next": self.score.close_to_next, "areas": areas,
                "signals": {k: s.as_json(lang) for k, s in sorted(self.signals.items())},
                "history": [{"answered_at": h["answered_at"], "answered_by": h["answered_by"],
                             "overall": float(score(h["answers"]).overall), "stage": h["stage"],
                             "areas": {a: float(score(h["answers"]).areas[a]) for a in AREAS}} for h in self.history]}


def assess(hub, answers: Answers | None = None, *, save: bool = True, by: str | None = None) -> Assessment:
    """Score ``answers`` (None: the last recorded assessment), compute the signals, and (``save``)
    record the answers with the date and who answered; answers identical to the last recorded ones
    on the same day are not recorded twice. A ConfigError when there are no answers at all."""
    from hub.store import system_user
    store = hub.store
    now = hub.clock()
    history = store.maturity_history()
    saved = False
    if answers is None:
        if not history:
            raise ConfigError("no maturity self-assessment is recorded yet",
                              fix="answer it once: msp-hub report maturity --answers answers.toml "
                                  f"(one line per area, e.g. {ANSWERS_EXAMPLE})")
        last = history[-1]
        answers = Answers({a: tuple(last["answers"][a]) for a in AREAS}, last["answered_by"])
        answered_at, who = last["answered_at"], last["answered_by"]
    else:
        who = answers.answered_by or by or system_user()
        answered_at = now.isoformat()
        result = score(answers)
        last = history[-1] if history else None
        same = (last is not None and last["answers"] == answers.as_dict()
                and last["answered_at"][:10] == answered_at[:10])
        if save and not same:
            store.save_maturity_answers(answers.as_dict(), at=answered_at, by=who,
                                        overall=number(result.overall, "en"), stage=result.stage)
            history = store.maturity_history()
            saved = True
        elif same:
            answered_at, who, saved = last["answered_at"], last["answered_by"], True
    return Assessment(answers, score(answers), answered_at, who, signals(hub), history, saved, now.isoformat())


def _date(text: str) -> str:
    return text[:10]


# A row never splits across two pages of the PDF; the statements' table keeps its columns.
_STYLE = ("<style>tr { break-inside: avoid; page-break-inside: avoid; } "
          "table.statements { table-layout: fixed; }</style>")


def render_html(assessment: Assessment, lang: str, *, msp_name: str = "", logo: str | None = None) -> str:
    """The report as one self-contained HTML page."""
    L, s = LABELS[lang], assessment.score
    esc = render.esc
    li = 0 if lang == "fr" else 1
    stage_line = STAGE_NAMES[lang][s.stage] + (f" ({L['close']})" if s.close_to_next else "")
    body = [_STYLE, f'<p><strong>{esc(L["overall"])} : {esc(number(s.overall, lang))} / 5</strong> — '
            f'{esc(L["stage"])} : <strong>{esc(stage_line)}</strong></p>' if lang == "fr" else
            f'<p><strong>{esc(L["overall"])}: {esc(number(s.overall, lang))} / 5</strong> — '
            f'{esc(L["stage"])}: <strong>{esc(stage_line)}</strong></p>',
            f'<p class="muted">{esc(STAGE_TEXT[lang][s.stage])}.</p>']
    if not assessment.saved:
        body.append(f'<p class="muted small">{esc(L["not_saved"])}</p>')
    previous = None
    recorded = [h for h in assessment.history if h["answered_at"] != assessment.answered_at]
    if recorded and recorded[-1]["answered_at"] < assessment.answered_at:
        previous = score(recorded[-1]["answers"])
    series = [(L["this"], [float(s.areas[a]) for a in AREAS])]
    if previous is not None:
        series.append((L["previous"] + f" ({_date(recorded[-1]['answered_at'])})",
                       [float(previous.areas[a]) for a in AREAS]))
    body.append(f'<figure>{render.bar_chart([SHORT_AREA_NAMES[lang][a] for a in AREAS], series, max_value=5)}'
                f'<figcaption>{esc(L["areas_chart"])}</figcaption></figure>')
    body.append(render.table((L["area"], L["points"], L["score"], L["stage"], L["next_step"]),
                             [(AREA_NAMES[lang][a], f"{s.points[a]} / 25", number(s.areas[a], lang),
                               STAGE_NAMES[lang][s.area_stage(a)], ADVICE[a][s.area_stage(a)][li]) for a in AREAS],
                             numeric=(1, 2)))
    by_statement = {(sig.area, sig.statement): sig for sig in assessment.signals.values()}
    for a in AREAS:
        body.append(f"<h2>{esc(AREA_NAMES[lang][a])} — {esc(number(s.areas[a], lang))} / 5</h2>")
        rows = []
        for i in range(5):
            sig = by_statement.get((a, i))
            answer = assessment.answers.areas[a][i]
            cell = ""
            if sig is not None:
                figure = sig.figure.get(lang, "")
                cell = (f'{esc(figure)}<div class="muted small">{esc(L["how"])} : {esc(sig.how.get(lang, ""))}</div>'
                        if lang == "fr" else
                        f'{esc(figure)}<div class="muted small">{esc(L["how"])}: {esc(sig.how.get(lang, ""))}</div>')
            rows.append(f'<tr><td class="num">{i + 1}</td><td>{esc(STATEMENTS[a][i][li])}</td>'
                        f'<td class="num">{answer}<div class="muted small">{esc(ANSWER_LABELS[lang][answer])}</div></td>'
                        f"<td>{cell}</td></tr>")
        body.append(f'<table class="statements"><colgroup><col style="width:3%"><col style="width:42%">'
                    f'<col style="width:13%"><col style="width:42%"></colgroup><thead><tr><th class="num">#</th>'
                    f'<th>{esc(L["statement"])}</th><th class="num">{esc(L["answer"])}</th>'
                    f'<th>{esc(L["signal"])}</th></tr></thead>'
                    f'<tbody>{"".join(rows)}</tbody></table>')
        body.append(f'<p><strong>{esc(L["next_step"])}</strong> ({esc(STAGE_NAMES[lang][s.area_stage(a)])}) : '
                    f'{esc(ADVICE[a][s.area_stage(a)][li])}</p>' if lang == "fr" else
                    f'<p><strong>{esc(L["next_step"])}</strong> ({esc(STAGE_NAMES[lang][s.area_stage(a)])}): '
                    f'{esc(ADVICE[a][s.area_stage(a)][li])}</p>')
    body.append(f'<p class="muted small">{esc(L["signals_note"].format(date=_date(assessment.as_of)))}</p>')
    body.append(f"<h2>{esc(L['history'])}</h2>")
    history = assessment.history
    if len(history) >= 2:
        scored = [(h, score(h["answers"])) for h in history]
        labels = [_date(h["answered_at"]) for h, _ in scored]
        lines = [(L["overall"], [float(sc.overall) for _, sc in scored])]
        lines += [(SHORT_AREA_NAMES[lang][a], [float(sc.areas[a]) for _, sc in scored]) for a in AREAS]
        body.append(f'<figure>{render.line_chart(labels, lines, max_value=5, height=280)}'
                    f'<figcaption>{esc(L["history_chart"])}</figcaption></figure>')
    else:
        body.append(f'<p class="muted">{esc(L["one_assessment"])}</p>')
    if history:
        body.append(render.table(
            (L["date"], L["by"], L["overall"], *[SHORT_AREA_NAMES[lang][a] for a in AREAS], L["stage"]),
            [(_date(h["answered_at"]), h["answered_by"] or "", number(score(h["answers"]).overall, lang),
              *[number(score(h["answers"]).areas[a], lang) for a in AREAS], STAGE_NAMES[lang][h["stage"]])
             for h in history], numeric=(2, 3, 4, 5, 6)))
    body.append(f"<h2>{esc(L['stages'])}</h2>")
    body.append(render.table((L["stage"], ""), [(f"{i + 1} — {STAGE_NAMES[lang][k]}", STAGE_TEXT[lang][k])
                                               for i, k in enumerate(STAGES)]))
    subtitle = L["answered"].format(date=_date(assessment.answered_at), who=assessment.answered_by)
    return render.page(L["title"], "\n".join(body), lang=lang, msp_name=msp_name, logo=logo, subtitle=subtitle)


def report_dress(config) -> dict[str, Any]:
    """The MSP's name and logo (a data: URI) from ``[reports]``."""
    logo = config.report_logo
    if logo is not None and not Path(logo).is_file():
        raise ConfigError(f"the logo file {logo} does not exist", file=config.file, key="reports.logo",
                          fix="point logo at an image file, relative to the config file")
    return {"msp_name": config.report_settings.msp_name, "logo": render.data_uri(logo) if logo else None}


def render_report(assessment: Assessment, fmt: str, lang: str, *, config=None) -> bytes:
    """The report as bytes: ``html``, ``pdf`` (the same HTML through WeasyPrint) or ``json``."""
    if fmt == "json":
        return (json.dumps(assessment.as_json(lang), indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    dress = report_dress(config) if config is not None else {}
    document = render_html(assessment, lang, **dress)
    if fmt == "html":
        return document.encode()
    if fmt == "pdf":
        return render.to_pdf(document)
    raise ValueError(f"unknown format {fmt!r}: use html, pdf or json")
