"""What every report shares: the self-contained page, its charts and the PDF made from it."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pypdf

from hub.reports.render import bar_chart, data_uri, line_chart, page, table, to_pdf

PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def test_a_page_carries_its_logo_and_escapes_what_it_is_given(tmp_path):
    (tmp_path / "logo.png").write_bytes(PIXEL)
    html = page("Bilan <T1>", table(["Client", "Score"], [["A & B", 75]], numeric=[1]), lang="fr",
                msp_name="Acme & Co", logo=data_uri(tmp_path / "logo.png"))
    assert html.startswith("<!DOCTYPE html>") and '<html lang="fr">' in html
    assert "Bilan &lt;T1&gt;" in html and "A &amp; B" in html and "Acme &amp; Co" in html
    assert 'src="data:image/png;base64,' in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_charts_draw_not_measured_as_a_dash_never_as_zero():
    svg = bar_chart(["Q3", "Q4"], [("score", [50.0, None])], max_value=100, unit="%")
    assert svg.count("<rect") == 1 + 1          # one bar, one legend square
    assert "—" in svg and "Q4" in svg
    line = line_chart(["a", "b", "c"], [("s", [1.0, None, 3.0])])
    assert line.count("<circle") == 2 and "<polyline" not in line   # a gap breaks the line


def test_the_pdf_is_the_page_and_fetches_nothing_from_outside(tmp_path):
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(PIXEL)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "logo.png").write_bytes(PIXEL)
        html = page("Bilan trimestriel", f'<p>Gestion des actifs</p><img src="http://127.0.0.1:{server.server_port}/x.png">',
                    lang="fr", msp_name="Acme", logo=data_uri(tmp_path / "logo.png"))
        pdf = pypdf.PdfReader(io.BytesIO(to_pdf(html)))
    finally:
        server.shutdown()
    assert len(pdf.pages) == 1
    text = pdf.pages[0].extract_text()
    assert "Bilan trimestriel" in text and "Gestion des actifs" in text and "Acme" in text
    assert asked == []
