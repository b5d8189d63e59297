"""The tests' PostgreSQL server: a server whose owner died (a run killed by a timeout) is reaped."""

import subprocess

import psycopg
import pytest

from hub.pgserver import PostgresServer, reap_orphans


def test_a_server_whose_owner_died_is_stopped_and_removed_by_the_next_start():
    server = PostgresServer().start()
    try:
        psycopg.connect(server.url).close()
        dead = subprocess.Popen(["true"])
        dead.wait()
        (server.folder / "owner.pid").write_text(str(dead.pid))
        assert str(server.folder) in reap_orphans()
        assert not server.folder.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, connect_timeout=2).close()
    finally:
        server.stop()


def test_a_live_owners_server_is_left_alone(postgres):
    assert str(postgres.folder) not in reap_orphans()
    psycopg.connect(postgres.url).close()
