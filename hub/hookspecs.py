"""Every hook of msp-hub: each docstring is the plugin author's whole contract.

Call hooks with keyword arguments only. An implementation takes just the arguments it uses, with
no default values (pluggy does not pass arguments that have defaults). The last registered plugin
runs first: never depend on that order.

Isolation: a plugin whose import raises, whose hooks do not match these specs (a misspelt hook
name), or whose ``register_connectors`` raises anything but a ``hub.errors.HubError`` is left out
as *broken*: none of its hooks runs, the failure is logged once naming the entry point, its
distribution and the fix, ``msp-hub plugins`` marks it, and a sync runs the other connectors and
exits 3; its new billing actions wait (held, cause ``incomplete``) until the plugin is fixed,
since the broken plugin's hooks might have changed or held them. A stream whose ``iter_pages`` raises anything fails only that stream's pass; a connector's
``push`` raising anything fails only that action (an unexpected exception counts as "outcome
unknown": the action is retried by the next sync with the same key, so push idempotently).
Entry points are read once per process: a running daemon keeps the plugins it started with.
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("msp_hub")
hookimpl = HookimplMarker("msp_hub")


# --- discovery ---------------------------------------------------------------------------------

@hookspec
def register_connectors(config):
    """Return the connectors this plugin provides; ``[]`` when it is not configured.

    Called once per hub, before any request. Every plugin contributes; the hub refuses two
    connectors with the same ``name``.

    :param config: the whole ``hub.config.HubConfig``; read your own section with
        ``config.connector_section("<name>")`` (None when absent) and secrets with
        ``config.secret(section, "<key>")``. Raise ``hub.errors.ConfigError`` naming the key and
        the fix when your section is wrong: it stops the hub with that message. Any other
        exception marks your plugin broken (see the module docstring), the other plugins go on.
    :return: a list of objects following ``hub.connectors.Connector``.
    """


# --- billing -----------------------------------------------------------------------------------

@hookspec
def add_billing_lines(client_id, contract, period, lines):
    """Return extra billing lines for one client's invoice of one period (e.g. a fixed fee).

    Called once per (client, period) after the hub computed its own lines, during plan (so a
    dry run shows them). Every plugin contributes; the hub appends all results, sorted by
    ``code``, and then applies the contract's monthly minimum to the total.

    :param client_id: the hub's client id (the key of the client in ``mappings/contracts.toml``).
    :param contract: the client's ``hub.mappings.Contract``.
    :param period: the billing period, ``"YYYY-MM"``.
    :param lines: the lines computed so far (a tuple of ``hub.records.BillingLine``; read only).
    :return: a list of ``BillingLine`` (``[]`` or None to add nothing).
    """


# --- alerts ------------------------------------------------------------------------------------

@hookspec(firstresult=True)
def alert_rule(alert, client_id):
    """Choose the rule that turns an RMM alert into a ticket, instead of ``alert_rules.toml``.

    Called once for each new alert during plan (so a dry run shows the choice), after maintenance
    windows are applied. Stops at the first non-None result; with none, the first matching rule of
    ``mappings/alert_rules.toml`` applies.

    :param alert: the ``hub.records.Alert``.
    :param client_id: the hub client the alert's device belongs to, or None when unmapped.
    :return: a ``hub.alerting.AlertRule`` (``action="ignore"`` drops the alert, logged), or None.
    """


# --- before push -------------------------------------------------------------------------------

@hookspec(firstresult=True)
def amend_action(action):
    """Return a changed copy of an action before it is stored and pushed, or None to leave it.

    Called once for each new action during plan (so a dry run shows the amended action). Stops
    at the first non-None result. The key may not change: an amended action with another key is
    refused with an error.

    :param action: the planned ``hub.records.Action``.
    :return: a ``hub.records.Action`` with the same ``key``, or None.
    """


@hookspec
def veto_action(action):
    """Return a reason (a string) to hold an action back from being pushed, or None to allow it.

    Called for each action about to be pushed (and during a dry run, to show what would be held).
    Every plugin is asked; any reason holds the action, which stays ``held`` in the outbox with
    every reason given, and is pushed on a later run once no plugin objects.

    :param action: the ``hub.records.Action`` about to be pushed.
    :return: a short reason, or None.
    """


# --- after a run -------------------------------------------------------------------------------

@hookspec
def sync_finished(run):
    """Be told that a sync run ended (successfully or not); return nothing.

    Called once at the end of every ``sync`` and ``plan``, after everything was committed.
    Every plugin is called; an exception raised here is logged and does not fail the run.

    :param run: the ``hub.engine.RunReport`` (run id, counts per stream, actions pushed, errors).
    """
