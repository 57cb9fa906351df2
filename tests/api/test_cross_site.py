"""Cross-site requests against the real server process, with the headers a browser sends.

A page on another site can make the operator's browser send GET and "simple" POST
requests to a loopback server (an <img>, a form, a no-cors fetch with a text/plain
body). Such requests carry `Sec-Fetch-Site: cross-site` / `same-site` (another port
of the same host is the same site) and, for POSTs, the page's `Origin`. The admin
action and job submission must refuse them (403 JSON) and accept nothing; HEAD must
not shut the server down; job POSTs need a JSON content type (415 otherwise); clients
that are not browsers (no such headers) and the server's own page keep working.
tests/browser/test_cross_site.py does the same with a real Chromium.
"""

from __future__ import annotations

import http.client
import json

import pytest

from tests.support.live import free_port, shm_segments, start_server
from tests.support.load import QUESTIONS, log_text, wait_until

BODY = json.dumps({"question": QUESTIONS[0]}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_csv):
    live = start_server(tmp_path_factory.mktemp("cross_site"), data=demo_csv, workers=1)
    try:
        yield live
    finally:
        code = live.stop()
    assert code == 0, live.text()
    assert shm_segments(live.pid) == []


def _accepted(server) -> int:
    """Jobs this server ever accepted (its ids are handed out from 1)."""
    status, listing = server.get("/api/jobs")
    assert status == 200
    return len(listing["data"])


def _still_serving(server) -> None:
    assert server.get("/readyz") == (200, {"status": "ready"})
    assert server.get("/api/info")[1]["accepting"] is True


# What a browser sends for a request another site's page made it send.
OTHER_PORT = free_port()
CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
    {"Sec-Fetch-Site": "same-site", "Origin": f"http://127.0.0.1:{OTHER_PORT}"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.example"},
    {"Origin": f"http://127.0.0.1:{OTHER_PORT}"},  # a browser without Fetch Metadata
    {"Origin": "http://localhost"},
    {"Origin": "null"},  # a sandboxed frame, a data: URL
    {"Origin": "not a url at all"},
    {"Sec-Fetch-Site": "something-new"},  # only known own-site values pass
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(h.values()))
def test_cross_site_job_submission_is_refused(server, headers):
    before = _accepted(server)
    for content_type in ("text/plain", "application/json"):
        status, answer = server.post(
            "/api/best5", raw=BODY, headers={**headers, "Content-Type": content_type}
        )
        assert status == 403, answer
        assert answer["status"] == "error" and "cross-site" in answer["reason"], answer
    assert _accepted(server) == before
    _still_serving(server)


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(h.values()))
def test_cross_site_shutdown_is_refused(server, headers):
    status, answer = server.get("/api/graceful_shutdown", headers=headers)
    assert status == 403, answer
    assert "cross-site" in answer["reason"], answer
    _still_serving(server)


def test_the_refusal_is_logged_with_its_reason(server):
    server.get("/api/graceful_shutdown", headers={"Origin": "http://evil.example:81"})
    line = (
        "refused cross-site GET /api/graceful_shutdown from 127.0.0.1 "
        "('Origin: http://evil.example:81')"
    )
    assert wait_until(lambda: line in log_text(server.log_file), 10), log_text(server.log_file)[
        -2000:
    ]


def test_head_never_shuts_down(server):
    for headers in ({}, {"Sec-Fetch-Site": "same-origin"}):
        status, answer_headers, _ = _exactly(server, "HEAD", "/api/graceful_shutdown", headers)
        assert status == 405 and answer_headers["Allow"] == "GET", answer_headers
    _still_serving(server)


def _exactly(
    server, method: str, path: str, headers: dict, body: bytes | None = None
) -> tuple[int, dict, bytes]:
    """A request with exactly these headers (LiveServer.request adds a JSON type)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/json",
        "application/jsonp",
        "application/json-seq",
    ],
)
def test_job_posts_need_a_json_content_type(server, content_type):
    before = _accepted(server)
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, raw = _exactly(server, "POST", "/api/best5", headers, BODY)
    answer = json.loads(raw)
    assert status == 415, answer
    assert answer["reason"] == "a job is submitted with 'Content-Type: application/json'"
    assert _accepted(server) == before


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts, locust
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "Application/JSON"},
        {"Content-Type": "application/vnd.lestats+json"},  # RFC 6839 +json suffix
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:{port}"},  # dashboard
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {"Origin": "http://127.0.0.1:{port}"},
        {"Origin": "http://LOCALHOST:{port}", "Host": "localhost:{port}"},
    ],
)
def test_own_origin_and_non_browser_clients_keep_working(server, headers):
    headers = {k: v.format(port=server.port) for k, v in headers.items()}
    before = _accepted(server)
    status, answer = server.post("/api/best5", raw=BODY, headers=headers)
    assert status == 200, answer
    assert _accepted(server) == before + 1
    assert server.get(f"/api/get_results/{answer['job_id']}?wait=10")[1]["status"] == "done"


def test_same_origin_shutdown_still_works(tmp_path, demo_csv):
    """Last, on its own server: the dashboard's origin may still stop the server."""
    live = start_server(tmp_path, data=demo_csv, workers=1)
    status, answer = live.get(
        "/api/graceful_shutdown", headers={"Sec-Fetch-Site": "same-origin", "Origin": live.url}
    )
    assert (status, answer) == (200, {"status": "done"})
    assert live.process.wait(30) == 0
