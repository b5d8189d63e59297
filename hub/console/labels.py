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
        # --- Plan and review (plan.html), Clients (clients.html) ---
        "plan.title": "Plan and review", "plan.intro": "What a sync would push, from the data already pulled "
        "(msp-hub plan --details). Held items wait for a fix or for a person to approve them.",
        "plan.period": "Period", "plan.show": "Show",
        "plan.period_help": "Empty: the last ended period and the current one.",
        "plan.approved_title": "Approved", "plan.pushed_by_next_sync": "What you approved is pushed by the next sync.",
        "plan.next_job": "Next scheduled job:", "plan.no_next_job": "No job is scheduled: resync to push it now.",
        "plan.resync_now": "Resync now", "plan.held": "Held", "plan.why_help": "why it may go (recorded)",
        "plan.approve_selected": "Approve selected",
        "plan.cause.error": "Error: fix the contract, mapping or record", "plan.cause.incomplete":
        "Completeness gate: a stream it needs failed, is stale or suspect", "plan.cause.guardrail":
        "Guardrail: a surprising change", "plan.cause.veto": "Vetoed by a plugin",
        "plan.cause.review": "Review window: waiting for approval",
        "plan.outbox_status": "outbox", "plan.not_in_outbox": "not in the outbox yet",
        "plan.this_invoice": "This invoice", "plan.previous_invoice": "Previous invoice",
        "plan.no_previous": "No invoice was sent to this client before.",
        "plan.already": "Already approved; outbox status:",
        "plan.fix_first": "Approving does not help here: fix the cause, then sync again.",
        "plan.sync_first": "Not in the outbox yet: the next sync records it, then it can be approved.",
        "plan.no_held": "Nothing is held.", "plan.quantities": "Agreement quantities: PSA, RMM, reconciled",
        "plan.addition": "Addition", "plan.psa": "PSA quantity", "plan.rmm": "RMM count",
        "plan.reconciled": "Reconciled", "plan.by_client": "The plan, client by client",
        "plan.excluded": "Excluded", "plan.not_billed": "Not billed", "plan.nothing": "Nothing to plan.",
        "plan.discrepancies": "Discrepancies and errors", "plan.line": "Line", "plan.quantity": "Qty",
        "plan.unit": "Unit price", "plan.amount": "Amount", "plan.rule": "rule", "plan.counts": "counts",
        "plan.held_by_sync": "Held by the last sync:", "plan.approve_and_fix": "An approval lets a guardrail "
        "through; what this plan also names (an error, data to pull again) is for the sync or a fix.",
        "plan.and_more": "and %d more", "plan.total": "Total before tax", "plan.pick": "Select",
        "clients.title": "Clients", "clients.intro": "How each client is linked across systems (msp-hub clients). "
        "A client linked to no hub client is never billed.",
        "clients.suggestions": "Suggested links", "clients.accept_writes": "Accepting a link writes it to",
        "clients.reject_records": "Rejecting one is recorded (who, when, why) in the store, and it is not "
        "suggested again:", "clients.confidence": "Confidence", "clients.accept": "Accept",
        "clients.writes_to": "writes to", "clients.reject": "Reject",
        "clients.recorded_in_store": "recorded in the store", "clients.no_suggestions": "No suggestion.",
        "clients.rejected": "Rejected suggestions", "clients.links": "Links", "clients.systems": "Systems",
        "clients.contract": "Contract", "clients.how.explicit": "written in mappings",
        "clients.how.master": "client master", "clients.how.name": "same name", "clients.devices": "device(s)",
        "clients.no_contract": "no contract",
        "clients.how_help": "written in mappings: links.toml or contracts.toml; client master: a company of the "
        "PSA; same name: the names match once normalised (case, accents, legal suffixes).",
        "clients.unmapped": "Unmapped clients", "clients.see_suggestion": "a link is suggested above",
        "clients.unmapped_help": "Link them in mappings/links.toml (or a contract in mappings/contracts.toml).",
        "clients.discrepancies": "Discrepancies", "clients.kind.link_conflict": "Link conflict",
        "clients.kind.contract_conflict": "Contract conflict", "clients.kind.revenue_found": "Revenue found",
        "clients.kind.client_without_contract": "Client without contract",
        "clients.kind.unknown_company": "Unknown company", "clients.kind.contract_error": "Contract error",
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
        # --- Plan and review (plan.html), Clients (clients.html) ---
        "plan.title": "Plan et validation", "plan.intro": "Ce qu’une synchronisation enverrait, d’après les "
        "données déjà lues (msp-hub plan --details). Les éléments retenus attendent une correction ou une approbation.",
        "plan.period": "Période", "plan.show": "Afficher",
        "plan.period_help": "Vide : la dernière période terminée et la période en cours.",
        "plan.approved_title": "Approuvé", "plan.pushed_by_next_sync":
        "Ce que vous avez approuvé part à la prochaine synchronisation.",
        "plan.next_job": "Prochaine tâche planifiée :", "plan.no_next_job":
        "Aucune tâche planifiée : resynchronisez pour l’envoyer maintenant.",
        "plan.resync_now": "Resynchroniser maintenant", "plan.held": "Retenus",
        "plan.why_help": "pourquoi il peut partir (enregistré)", "plan.approve_selected": "Approuver la sélection",
        "plan.cause.error": "Erreur : corrigez le contrat, la correspondance ou l’enregistrement",
        "plan.cause.incomplete": "Contrôle d’exhaustivité : un flux nécessaire a échoué, est ancien ou suspect",
        "plan.cause.guardrail": "Garde-fou : un changement inhabituel", "plan.cause.veto": "Refusé par un plugin",
        "plan.cause.review": "Fenêtre de relecture : en attente d’approbation",
        "plan.outbox_status": "file d’envoi", "plan.not_in_outbox": "pas encore dans la file d’envoi",
        "plan.this_invoice": "Cette facture", "plan.previous_invoice": "Facture précédente",
        "plan.no_previous": "Aucune facture n’a encore été envoyée à ce client.",
        "plan.already": "Déjà approuvé ; état dans la file :",
        "plan.fix_first": "Approuver n’y change rien : corrigez la cause, puis synchronisez.",
        "plan.sync_first": "Pas encore dans la file : la prochaine synchronisation l’enregistre, puis il pourra être "
        "approuvé.",
        "plan.no_held": "Rien n’est retenu.", "plan.quantities": "Quantités des contrats : PSA, RMM, rapprochée",
        "plan.addition": "Ajout", "plan.psa": "Quantité PSA", "plan.rmm": "Nombre RMM",
        "plan.reconciled": "Rapprochée", "plan.by_client": "Le plan, client par client",
        "plan.excluded": "Exclus", "plan.not_billed": "Non facturé", "plan.nothing": "Rien à planifier.",
        "plan.discrepancies": "Écarts et erreurs", "plan.line": "Ligne", "plan.quantity": "Qté",
        "plan.unit": "Prix unitaire", "plan.amount": "Montant", "plan.rule": "règle", "plan.counts": "compte",
        "plan.held_by_sync": "Retenu par la dernière synchronisation :", "plan.approve_and_fix": "Une approbation "
        "laisse passer un garde-fou ; ce que ce plan signale en plus (une erreur, des données à relire) relève de la "
        "synchronisation ou d’une correction.",
        "plan.and_more": "et %d de plus", "plan.total": "Total HT", "plan.pick": "Sélectionner",
        "clients.title": "Clients", "clients.intro": "Comment chaque client est relié d’un système à l’autre "
        "(msp-hub clients). Un client relié à aucun client du hub n’est jamais facturé.",
        "clients.suggestions": "Liens suggérés", "clients.accept_writes": "Accepter un lien l’écrit dans",
        "clients.reject_records": "En refuser un est enregistré (qui, quand, pourquoi) dans la base, et il n’est "
        "plus suggéré :", "clients.confidence": "Confiance", "clients.accept": "Accepter",
        "clients.writes_to": "écrit dans", "clients.reject": "Refuser",
        "clients.recorded_in_store": "enregistré dans la base", "clients.no_suggestions": "Aucune suggestion.",
        "clients.rejected": "Suggestions refusées", "clients.links": "Liens", "clients.systems": "Systèmes",
        "clients.contract": "Contrat", "clients.how.explicit": "écrit dans mappings",
        "clients.how.master": "référentiel clients", "clients.how.name": "même nom", "clients.devices": "appareil(s)",
        "clients.no_contract": "sans contrat",
        "clients.how_help": "écrit dans mappings : links.toml ou contracts.toml ; référentiel clients : une société "
        "du PSA ; même nom : les noms sont égaux une fois normalisés (casse, accents, formes juridiques).",
        "clients.unmapped": "Clients non reliés", "clients.see_suggestion": "un lien est suggéré plus haut",
        "clients.unmapped_help": "Reliez-les dans mappings/links.toml (ou un contrat dans mappings/contracts.toml).",
        "clients.discrepancies": "Écarts", "clients.kind.link_conflict": "Conflit de lien",
        "clients.kind.contract_conflict": "Conflit de contrat", "clients.kind.revenue_found": "Revenu trouvé",
        "clients.kind.client_without_contract": "Client sans contrat",
        "clients.kind.unknown_company": "Société inconnue", "clients.kind.contract_error": "Erreur de contrat",
    },
}


def label(language: str, key: str) -> str:
    """The word for ``key`` in ``language`` ("en" or "fr"); a missing key is a KeyError (a test
    renders every page in both languages)."""
    return LABELS[language if language in LABELS else "en"][key]
