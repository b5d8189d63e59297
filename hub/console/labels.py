"""The console's words, in English and French: ``label(language, key)``; a template writes ``t("key")``.

The language is the MSP's: ``[reports] language``, else ``[billing.invoice] language`` (the
config's ``report_language``). A page added later adds its keys to both tables (a test checks that
both have the same keys).
"""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "msp-hub console",
        "nav.overview": "Overview", "nav.runs": "Runs", "nav.plan": "Plan", "nav.outbox": "Outbox",
        "nav.clients": "Clients", "nav.reports": "Reports",
        "signin": "Sign in", "signin.token": "Admin token", "signin.name": "Your name",
        "signin.name_help": "Recorded with what you approve.",
        "signin.token_help": "The token of the admin API ([admin] token_env or token_file).",
        "signin.bad": "This token opens nothing here. Use the admin API's token ([admin] token_env or token_file).",
        "signin.no_name": "Write your name: it is recorded with what you approve.",
        "signin.ended": "Your session has ended: sign in again.",
        "signout": "Sign out", "signed_in_as": "Signed in as", "tenant": "Tenant", "switch": "Switch",
        "overview": "Overview", "streams": "Streams", "connector": "Connector", "stream": "Stream",
        "last_pass": "Last pass", "status": "Status", "age": "Age", "max_age": "Maximum age",
        "last_error": "Last error", "healthy": "healthy", "unhealthy": "failing", "never": "never",
        "resync": "Resync", "resync_all": "Resync everything", "resync_client": "Resync a client",
        "client": "Client", "actions": "Actions", "pending": "pending", "held": "held", "failed": "failed",
        "jobs": "Next scheduled jobs", "job": "Job", "next_run": "Next run", "no_jobs": "No scheduled job.",
        "scheduler_stopped": "The scheduler is not running.",
        "current_run": "Run in progress", "run": "Run", "progress": "Progress", "running": "running",
        "finished": "finished", "open_run": "Open the run",
        "runs": "Runs", "trigger": "Trigger", "scope": "Scope", "started": "Started", "duration": "Duration",
        "records": "Records", "pushes": "Pushed", "errors": "Errors", "filter": "Filter", "any": "any",
        "no_runs": "No run matches.", "pulled": "Pulled", "pushed_actions": "Actions of this run",
        "held_why": "Held, and why", "nothing": "Nothing.", "mode": "Mode", "finished_at": "Finished",
        "outbox": "Outbox", "key": "Key", "kind": "Kind", "attempts": "Attempts", "created": "Created",
        "updated": "Updated", "sent_at": "Sent", "retry": "Retry", "cancel": "Cancel", "approve": "Approve",
        "why": "Why", "approved_by": "approved by", "no_actions": "No action matches.", "all": "all",
        "open": "open", "summary": "Summary", "everything": "everything",
        # --- reports: scorecards, KPIs, maturity (hub.console.reports) ---
        "rep.title": "Reports", "rep.scorecards": "Scorecards", "rep.kpis": "KPIs", "rep.maturity": "Maturity",
        "rep.sections": "Reports",
        "sc.client": "Client", "sc.this_quarter": "This quarter", "sc.frozen_quarters": "Frozen scorecards",
        "sc.frozen_on": "frozen on {at} by {by}", "sc.computed": "computed from the store, not frozen",
        "sc.none_frozen": "none yet",
        "sc.no_clients": "No linked client yet: a scorecard is made for a client linked across the systems.",
        "sc.title": "Scorecard", "sc.quarter": "Quarter", "sc.show": "Show", "sc.overall": "Overall score",
        "sc.not_measured": "not measured", "sc.state": "State",
        "sc.partial": "measured until {until}: the quarter is not over",
        "sc.pdf": "Download the PDF", "sc.html": "Open the HTML", "sc.json": "Download the JSON",
        "sc.freeze": "Freeze this scorecard",
        "sc.freeze_help": "Freezing stores the scorecard as presented, with your name: later renders read it, "
                          "and next quarter's “previous” column reads it.",
        "sc.refreeze": "Replace the frozen scorecard with the figures computed now",
        "sc.refused": "The scorecard of {client} for {quarter} was already frozen on {at} by {by}; it is kept as "
                      "presented and nothing was frozen. To replace it with the figures computed now, tick "
                      "“Replace the frozen scorecard” and freeze again.",
        "sc.frozen_now": "Frozen: the scorecard of {client} for {quarter}, by {by}.",
        "sc.frame": "The scorecard as the client receives it", "sc.by": "By", "sc.at": "Frozen on",
        "sc.back": "Every client's scorecards",
        "kpi.title": "Revenue KPIs", "kpi.from": "From", "kpi.to": "To", "kpi.show": "Show",
        "kpi.csv": "Download the CSV", "kpi.json": "Download the JSON", "kpi.html": "Open the HTML",
        "kpi.figures": "{count} figures over {months} month(s).", "kpi.not_available": "Not available",
        "kpi.frame": "The KPI report",
        "mat.title": "Maturity self-assessment",
        "mat.intro": "Answer each statement from 1 (strongly disagree) to 5 (strongly agree). The answers are "
                     "recorded with today's date and your name.",
        "mat.prefilled": "The form holds the last recorded answers ({date}).",
        "mat.submit": "Record the answers",
        "mat.missing": "Not recorded: {count} statement(s) without an answer: {names}. Answer every statement "
                       "from 1 to 5.",
        "mat.recorded": "Recorded: {overall} / 5, {stage} (answered by {by}).",
        "mat.result": "The last assessment", "mat.answered": "Answered on {date} by {by}",
        "mat.overall": "Overall score", "mat.stage": "Stage", "mat.close": "close to the next stage",
        "mat.area": "Area", "mat.points": "Points", "mat.score": "Score", "mat.next_step": "Next step",
        "mat.signals": "What the data shows", "mat.no_data": "no data", "mat.how": "How it is computed",
        "mat.statement": "Statement", "mat.history": "Every assessment", "mat.date": "Date", "mat.by": "By",
        "mat.none": "No assessment recorded yet.", "mat.pdf": "Download the report (PDF)",
        "mat.html": "Open the report (HTML)", "mat.questions": "The questionnaire",
    },
    "fr": {
        "title": "Console msp-hub",
        "nav.overview": "Vue d’ensemble", "nav.runs": "Exécutions", "nav.plan": "Plan", "nav.outbox": "File d’envoi",
        "nav.clients": "Clients", "nav.reports": "Rapports",
        "signin": "Se connecter", "signin.token": "Jeton d’administration", "signin.name": "Votre nom",
        "signin.name_help": "Enregistré avec ce que vous approuvez.",
        "signin.token_help": "Le jeton de l’API d’administration ([admin] token_env ou token_file).",
        "signin.bad": "Ce jeton n’ouvre rien ici. Utilisez le jeton de l’API d’administration "
                      "([admin] token_env ou token_file).",
        "signin.no_name": "Indiquez votre nom : il est enregistré avec ce que vous approuvez.",
        "signin.ended": "Votre session a pris fin : reconnectez-vous.",
        "signout": "Se déconnecter", "signed_in_as": "Connecté en tant que", "tenant": "Locataire",
        "switch": "Changer",
        "overview": "Vue d’ensemble", "streams": "Flux", "connector": "Connecteur", "stream": "Flux",
        "last_pass": "Dernier passage", "status": "État", "age": "Âge", "max_age": "Âge maximal",
        "last_error": "Dernière erreur", "healthy": "sain", "unhealthy": "en échec", "never": "jamais",
        "resync": "Resynchroniser", "resync_all": "Tout resynchroniser", "resync_client": "Resynchroniser un client",
        "client": "Client", "actions": "Actions", "pending": "en attente", "held": "retenues", "failed": "en échec",
        "jobs": "Prochaines tâches planifiées", "job": "Tâche", "next_run": "Prochaine exécution",
        "no_jobs": "Aucune tâche planifiée.", "scheduler_stopped": "Le planificateur ne tourne pas.",
        "current_run": "Exécution en cours", "run": "Exécution", "progress": "Progression", "running": "en cours",
        "finished": "terminée", "open_run": "Ouvrir l’exécution",
        "runs": "Exécutions", "trigger": "Déclencheur", "scope": "Périmètre", "started": "Début",
        "duration": "Durée", "records": "Enregistrements", "pushes": "Envoyées", "errors": "Erreurs",
        "filter": "Filtrer", "any": "tous", "no_runs": "Aucune exécution ne correspond.", "pulled": "Lu",
        "pushed_actions": "Actions de cette exécution", "held_why": "Retenu, et pourquoi", "nothing": "Rien.",
        "mode": "Mode", "finished_at": "Fin",
        "outbox": "File d’envoi", "key": "Clé", "kind": "Type", "attempts": "Tentatives", "created": "Créée",
        "updated": "Mise à jour", "sent_at": "Envoyée", "retry": "Réessayer", "cancel": "Annuler",
        "approve": "Approuver", "why": "Motif", "approved_by": "approuvée par",
        "no_actions": "Aucune action ne correspond.", "all": "toutes", "open": "ouvertes", "summary": "Résumé",
        "everything": "tout",
        # --- reports: scorecards, KPIs, maturity (hub.console.reports) ---
        "rep.title": "Rapports", "rep.scorecards": "Tableaux de bord clients", "rep.kpis": "Indicateurs",
        "rep.maturity": "Maturité", "rep.sections": "Rapports",
        "sc.client": "Client", "sc.this_quarter": "Ce trimestre", "sc.frozen_quarters": "Tableaux figés",
        "sc.frozen_on": "figé le {at} par {by}", "sc.computed": "calculé à partir des données, non figé",
        "sc.none_frozen": "aucun pour l’instant",
        "sc.no_clients": "Aucun client relié pour l’instant : un tableau de bord se fait pour un client relié "
                         "entre les systèmes.",
        "sc.title": "Tableau de bord", "sc.quarter": "Trimestre", "sc.show": "Afficher", "sc.overall": "Score global",
        "sc.not_measured": "non mesuré", "sc.state": "État",
        "sc.partial": "mesuré jusqu’au {until} : le trimestre n’est pas terminé",
        "sc.pdf": "Télécharger le PDF", "sc.html": "Ouvrir le HTML", "sc.json": "Télécharger le JSON",
        "sc.freeze": "Figer ce tableau de bord",
        "sc.freeze_help": "Figer enregistre le tableau tel que présenté, avec votre nom : les rendus suivants le "
                          "relisent, et la colonne « précédent » du trimestre suivant aussi.",
        "sc.refreeze": "Remplacer le tableau figé par les chiffres calculés maintenant",
        "sc.refused": "Le tableau de bord de {client} pour {quarter} a déjà été figé le {at} par {by} ; il est "
                      "conservé tel que présenté et rien n’a été figé. Pour le remplacer par les chiffres calculés "
                      "maintenant, cochez « Remplacer le tableau figé » et figez de nouveau.",
        "sc.frozen_now": "Figé : le tableau de bord de {client} pour {quarter}, par {by}.",
        "sc.frame": "Le tableau de bord tel que le client le reçoit", "sc.by": "Par", "sc.at": "Figé le",
        "sc.back": "Les tableaux de bord de tous les clients",
        "kpi.title": "Indicateurs de revenus", "kpi.from": "Du mois", "kpi.to": "Au mois", "kpi.show": "Afficher",
        "kpi.csv": "Télécharger le CSV", "kpi.json": "Télécharger le JSON", "kpi.html": "Ouvrir le HTML",
        "kpi.figures": "{count} chiffres sur {months} mois.", "kpi.not_available": "Non disponible",
        "kpi.frame": "Le rapport des indicateurs",
        "mat.title": "Auto-évaluation de maturité",
        "mat.intro": "Répondez à chaque affirmation de 1 (pas du tout d’accord) à 5 (tout à fait d’accord). Les "
                     "réponses sont enregistrées avec la date du jour et votre nom.",
        "mat.prefilled": "Le formulaire reprend les dernières réponses enregistrées ({date}).",
        "mat.submit": "Enregistrer les réponses",
        "mat.missing": "Rien n’est enregistré : {count} affirmation(s) sans réponse : {names}. Répondez à chaque "
                       "affirmation de 1 à 5.",
        "mat.recorded": "Enregistré : {overall} / 5, {stage} (réponses de {by}).",
        "mat.result": "La dernière évaluation", "mat.answered": "Réponses du {date}, par {by}",
        "mat.overall": "Score global", "mat.stage": "Stade", "mat.close": "proche du stade suivant",
        "mat.area": "Domaine", "mat.points": "Points", "mat.score": "Score", "mat.next_step": "Prochaine étape",
        "mat.signals": "Ce que montrent les données", "mat.no_data": "pas de données", "mat.how": "Calcul",
        "mat.statement": "Affirmation", "mat.history": "Toutes les évaluations", "mat.date": "Date",
        "mat.by": "Par", "mat.none": "Aucune évaluation enregistrée pour l’instant.",
        "mat.pdf": "Télécharger le rapport (PDF)", "mat.html": "Ouvrir le rapport (HTML)",
        "mat.questions": "Le questionnaire",
    },
}


def label(language: str, key: str) -> str:
    """The word for ``key`` in ``language`` ("en" or "fr"); a missing key is a KeyError (a test
    renders every page in both languages)."""
    return LABELS[language if language in LABELS else "en"][key]
