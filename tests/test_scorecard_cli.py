"""msp-hub report scorecard: one client or every one, html/pdf/json, --freeze and --refreeze, and
the mistakes it refuses with one clear line."""

import json

from click.testing import CliRunner

from hub.cli import main
from hub.store import Store
from tests.test_scorecard import mappings_dir, seed


def setup(tmp_path, logo=True):
    folder = mappings_dir(tmp_path)
    store = Store(str(tmp_path / "hub.db"))
    seed(store)
    store.close()
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'database = "hub.db"\nmappings = "{folder.as_posix()}"\n'
                   f'[reports]\nmsp_name = "Nord Informatique"\nlanguage = "fr"\n'
                   + ('logo = "logo.png"\n' if logo else ""))
    return cfg


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_one_client_in_json_and_html_with_the_msps_name_and_logo(tmp_path):
    cfg = setup(tmp_path)
    got = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3",
              "--format", "json")
    assert got.exit_code == 0, got.output
    data = json.loads(got.output)
    assert data["language"] == "fr" and data["client_id"] == "acme"
    assert next(r for r in data["rows"] if r["key"] == "antivirus")["value"] == 50.0
    out = tmp_path / "acme.html"
    got = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3",
              "--lang", "en", "--details", "--out", str(out))
    assert got.exit_code == 0, got.output
    assert got.output.startswith(f"{out}: acme 2026-Q3, overall ")
    html = out.read_text()
    assert "Nord Informatique" in html and 'src="data:image/png;base64,' in html
    assert "Client scorecard" in html and "srv-app (102)" in html


def test_freeze_then_render_reads_the_frozen_one_and_refreeze_is_explicit(tmp_path):
    cfg = setup(tmp_path)
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    got = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3", "--freeze",
              "--out", str(first))
    assert got.exit_code == 0 and "(frozen " in got.output, got.output
    store = Store(str(tmp_path / "hub.db"))
    store.db.execute("delete from antivirus")
    store.close()
    got = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3",
              "--out", str(second))
    assert got.exit_code == 0, got.output
    assert first.read_bytes() == second.read_bytes()
    again = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3", "--freeze")
    assert again.exit_code == 2
    assert "acme for 2026-Q3 is already frozen" in again.output and "--refreeze" in again.output
    redo = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3", "--freeze",
               "--refreeze", "--format", "json")
    assert redo.exit_code == 0, redo.output
    assert next(r for r in json.loads(redo.output)["rows"] if r["key"] == "antivirus")["note"] == "no_antivirus_data"


def test_all_clients_write_one_pdf_each_into_the_folder(tmp_path):
    from pypdf import PdfReader
    cfg = setup(tmp_path, logo=False)
    folder = tmp_path / "out"
    got = run("report", "scorecard", "--config", str(cfg), "--all", "--quarter", "2026-Q3", "--format", "pdf",
              "--out", str(folder))
    assert got.exit_code == 0, got.output
    assert sorted(p.name for p in folder.iterdir()) == ["scorecard-acme-2026-Q3.pdf", "scorecard-quiet-2026-Q3.pdf"]
    text = PdfReader(str(folder / "scorecard-quiet-2026-Q3.pdf")).pages[0].extract_text()
    assert "Quiet Bakery" in text and "non mesuré" in text


def test_mistakes_are_refused_with_one_line(tmp_path):
    cfg = setup(tmp_path)
    cases = [
        (("--client", "acme", "--quarter", "2026-4"), "--quarter: quarter '2026-4' is not of the form YYYY-Qn"),
        (("--quarter", "2026-Q3"), "give --client ID or --all"),
        (("--client", "acme", "--all", "--quarter", "2026-Q3"), "give --client ID or --all"),
        (("--all", "--quarter", "2026-Q3"), "--all writes one file per client: give --out FOLDER"),
        (("--client", "nobody", "--quarter", "2026-Q3"), "unknown client 'nobody'"),
        (("--client", "acme", "--quarter", "2026-Q3", "--refreeze"), "give it with --freeze"),
    ]
    for args, fragment in cases:
        got = run("report", "scorecard", "--config", str(cfg), *args)
        assert got.exit_code == 2 and fragment in got.output, (args, got.output)
        assert "Traceback" not in got.output


def test_a_scorecard_toml_mistake_names_file_line_and_key(tmp_path):
    cfg = setup(tmp_path)
    (tmp_path / "mappings" / "scorecard.toml").write_text("[rows.tickets]\nwieght = 2\n")
    got = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3")
    assert got.exit_code == 2
    assert "scorecard.toml, line 2, key 'rows.tickets.wieght': unknown key 'wieght'" in got.output
    assert "did you mean 'weight'?" in got.output


def test_a_logo_file_that_is_not_there_is_refused_naming_the_key(tmp_path):
    cfg = setup(tmp_path)
    (tmp_path / "logo.png").unlink()
    got = run("report", "scorecard", "--config", str(cfg), "--client", "acme", "--quarter", "2026-Q3")
    assert got.exit_code == 2
    assert f"[reports] logo: {tmp_path / 'logo.png'} is not a file" in got.output and "remove the key" in got.output
