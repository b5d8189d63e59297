"""``msp-hub backup``: SQLite's online backup of the store, while another connection writes."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from click.testing import CliRunner

from hub.backup import backup_store, target_path
from hub.cli import main
from hub.store import Store


def _config(tmp_path, database="msp-hub.db"):
    (tmp_path / "mappings").mkdir(exist_ok=True)
    path = tmp_path / "msp-hub.toml"
    path.write_text(f'timezone = "Europe/Paris"\ndatabase = "{database}"\nmappings = "mappings"\n')
    return path


def _store(tmp_path):
    store = Store(str(tmp_path / "msp-hub.db"))
    store.db.execute("CREATE TABLE IF NOT EXISTS probe (v TEXT)")
    store.db.execute("INSERT INTO probe VALUES ('committed')")
    store.db.conn.commit()
    return store


def test_backup_while_a_writer_holds_a_transaction(tmp_path):
    config = _config(tmp_path)
    store = _store(tmp_path)
    writer = sqlite3.connect(tmp_path / "msp-hub.db", timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO probe VALUES ('in flight')")  # the daemon mid-run: not committed
    try:
        out = tmp_path / "copy.db"
        result = CliRunner().invoke(main, ["backup", "--config", str(config), str(out)])
        assert result.exit_code == 0, result.output
        assert f"to {out} (" in result.output and "bytes" in result.output
    finally:
        writer.rollback()
        writer.close()
        store.close()
    copy = sqlite3.connect(out)
    assert [r[0] for r in copy.execute("SELECT v FROM probe")] == ["committed"]
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete", "one self-contained file"
    # The copy is a store the hub opens as it is (its migrations already applied).
    tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "_sqlite_migrations" in tables or "actions" in tables
    copy.close()
    Store(str(out)).close()


def test_default_is_a_timestamped_file_next_to_the_database(tmp_path):
    config = _config(tmp_path)
    _store(tmp_path).close()
    result = CliRunner().invoke(main, ["backup", "--config", str(config)])
    assert result.exit_code == 0, result.output
    copies = list(tmp_path.glob("msp-hub-*Z.db"))
    assert len(copies) == 1 and str(copies[0]) in result.output
    when = datetime(2026, 12, 6, 23, 5, 0, tzinfo=timezone.utc)
    assert target_path(tmp_path / "msp-hub.db", tmp_path, when).name == "msp-hub-20261206T230500Z.db"


def test_never_overwrites_and_fails_non_zero(tmp_path):
    config = _config(tmp_path)
    _store(tmp_path).close()
    (tmp_path / "taken.db").write_text("keep me")
    result = CliRunner().invoke(main, ["backup", "--config", str(config), str(tmp_path / "taken.db")])
    assert result.exit_code != 0 and "already exists" in result.output
    assert (tmp_path / "taken.db").read_text() == "keep me"
    assert not list(tmp_path.glob("*.partial"))
    missing = CliRunner().invoke(main, ["backup", "--config", str(config), str(tmp_path / "nofolder" / "x.db")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_no_database_yet_names_the_key(tmp_path):
    config = _config(tmp_path, database="never.db")
    result = CliRunner().invoke(main, ["backup", "--config", str(config)])
    assert result.exit_code == 2
    assert "never.db" in result.output and "database" in result.output and "fix:" in result.output
    assert not list(tmp_path.glob("never-*"))


def test_backup_store_returns_the_copy(tmp_path):
    _store(tmp_path).close()
    copy = backup_store(tmp_path / "msp-hub.db", tmp_path / "b.db")
    assert copy == tmp_path / "b.db" and copy.stat().st_size > 0
