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
    },
}


def label(language: str, key: str) -> str:
    """The word for ``key`` in ``language`` ("en" or "fr"); a missing key is a KeyError (a test
    renders every page in both languages)."""
    return LABELS[language if language in LABELS else "en"][key]
