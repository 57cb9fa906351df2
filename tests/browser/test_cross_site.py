"""A page on another loopback origin, in a real Chromium, attacks the real server.

The attacker's page is served by a plain HTTP server on another loopback port (to the
browser the same *site* as the API, a different *origin*): it embeds
`<img src=".../api/graceful_shutdown">` and sends the job POSTs a page may send
without asking (a no-cors fetch with a text/plain body, a form), plus a JSON fetch
(which needs a CORS preflight the server never grants). The server must keep running,
accept no job, and log each refusal; the dashboard's own origin must still submit
jobs with fetch. tests/api/test_cross_site.py covers the same rules header by header.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from tests.browser.conftest import BROWSER_MS
from tests.support.live import start_server
from tests.support.load import QUESTIONS, log_text, wait_until

ATTACK = """<!doctype html><title>cute cats</title>
<img id="img" src="{api}/api/graceful_shutdown">
<form id="form" method="post" action="{api}/api/best5" enctype="text/plain" target="sink">
  <input name='{{"question": "{question}", "x": "' value='"}}'>
</form>
<iframe name="sink"></iframe>
<script>
const body = JSON.stringify({{question: "{question}"}});
const settled = (p) => p.then(() => "sent", (e) => "failed: " + e);
Promise.all([
  settled(fetch("{api}/api/best5", {{method: "POST", mode: "no-cors", body,
                                     headers: {{"Content-Type": "text/plain"}}}})),
  settled(fetch("{api}/api/best5", {{method: "POST", body,
                                     headers: {{"Content-Type": "application/json"}}}})),
  settled(fetch("{api}/api/graceful_shutdown", {{mode: "no-cors"}})),
]).then((outcomes) => {{
  document.getElementById("form").submit();
  window.outcomes = outcomes;
}});
</script>"""


@pytest.fixture
def server(tmp_path, demo_csv):
    live = start_server(tmp_path, data=demo_csv, workers=1)
    yield live
    assert live.stop() == 0, live.text()


@pytest.fixture
def attacker(server):
    """The attacker's site: one page on a free loopback port, from a plain server."""
    page = ATTACK.format(api=server.url, question=QUESTIONS[0]).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()
    thread.join(10)


def test_a_page_on_another_origin_can_neither_stop_the_server_nor_submit(browser, server, attacker):
    context = browser.new_context()
    context.set_default_timeout(BROWSER_MS)
    try:
        tab = context.new_page()
        tab.goto(f"{attacker}/")
        tab.wait_for_function("() => window.outcomes !== undefined")
        outcomes = tab.evaluate("() => window.outcomes")
        # The no-cors requests were sent (their answers are opaque); the JSON fetch
        # died at its preflight (OPTIONS is not routed, no CORS header is ever sent).
        assert outcomes[0] == "sent" and outcomes[2] == "sent", outcomes
        assert outcomes[1].startswith("failed"), outcomes
        log = lambda: log_text(server.log_file)  # noqa: E731
        # Each attempt reached the server and was refused there, not by the browser.
        assert wait_until(
            lambda: (
                log().count("refused cross-site GET /api/graceful_shutdown") >= 2
                and log().count("refused cross-site POST /api/best5") >= 2
            ),
            15,
        ), log()[-3000:]
    finally:
        context.close()
    assert server.get("/readyz") == (200, {"status": "ready"})
    assert server.get("/api/jobs")[1]["data"] == []  # no job was accepted
    assert server.process.poll() is None


def test_the_servers_own_page_still_submits_jobs(browser, server):
    context = browser.new_context()
    context.set_default_timeout(BROWSER_MS)
    try:
        tab = context.new_page()
        tab.goto(f"{server.url}/")
        answer = tab.evaluate(
            """async (question) => {
            const response = await fetch("/api/best5", {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({question})});
            return [response.status, await response.json()];
        }""",
            QUESTIONS[0],
        )
    finally:
        context.close()
    status, body = answer
    # The page itself submits the preselected question's jobs as it loads, so this
    # job's id is whatever comes next; that the POST was accepted is the point.
    assert status == 200 and isinstance(body["job_id"], int), answer
    result = server.get(f"/api/get_results/{body['job_id']}?wait=10")[1]
    assert result["status"] == "done", json.dumps(result)[:300]
