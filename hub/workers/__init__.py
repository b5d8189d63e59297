"""Distributed workers on Procrastinate (a PostgreSQL task queue): many tenants, many machines.

``settings``: the ``[workers]`` table of tenants.toml. ``app``: the Procrastinate app and its
tasks (a tenant's sync, its dry run, the schedule tick, stalled jobs retried). ``schedule``: the
scheduled jobs that fire between two ticks. ``run``: ``msp-hub worker``.

The single-machine daemon (``hub.daemon``, APScheduler) stays what one MSP on one machine runs;
Procrastinate and psycopg are needed only here (``pip install msp-hub[scale]``).
"""
