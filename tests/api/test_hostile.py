"""Hostile input against the real server process (docs/api.md, "Errors" and "Security").

Property-based (hypothesis, bounded, no deadline): random JSON values and bytes as
bodies, wrong content types, control and unicode characters in the fields, huge and
deeply nested bodies, odd job ids and query values. Every answer must be a 200 job for
valid input and otherwise a JSON error of docs/api.md, "Errors" with a 4xx code; nothing may reach
a file path; the server must keep serving. Then raw malformed HTTP over a socket
(answered by aiohttp's parser before any handler: JSON too), and schemathesis against
the server's own /openapi.json.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.endpoints import ENDPOINTS
from tests.support.live import assert_clean_stop, start_server
from tests.support.live import http as call
from tests.support.load import QUESTIONS, log_text

STATES = ("Ohio", "Alabama", "National", "Guam", "Virgin Islands")
BOUNDED = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_csv):
    root = tmp_path_factory.mktemp("hostile")
    live = start_server(root, data=demo_csv, workers=1, env={"LESTATS_CLIENT_TIMEOUT": "2"})
    try:
        yield live
        # Nothing a request said became a file: the state dir holds the journal and
        # integer-named results only, and the server's working directory nothing new.
        assert sorted(os.listdir(live.state_dir)) == ["jobs", "journal.jsonl"]
        for name in os.listdir(live.state_dir / "jobs"):
            assert re.fullmatch(r"[1-9][0-9]*\.json", name), name
        for name in os.listdir(root):
            assert name.startswith(("state", "webserver.log", "server-")), name
        assert "Traceback" not in live.text() + log_text(live.log_file)
    finally:
        assert_clean_stop(live)


def send(
    server, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    """One request exactly as given (http.client does not normalise the path)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_json_error(status: int, headers: dict, raw: bytes, *codes: int) -> dict:
    assert status in codes, (status, raw[:300])
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    body = json.loads(raw)
    assert set(body) == {"status", "reason"} and body["status"] == "error", body
    assert isinstance(body["reason"], str) and body["reason"], body
    assert "Traceback" not in body["reason"] and "<html" not in raw.decode(errors="replace")
    return body


def _valid(endpoint: str, body) -> bool:
    if not isinstance(body, dict) or body.get("question") not in QUESTIONS:
        return False
    return not ENDPOINTS[endpoint].needs_state or body.get("state") in STATES


def _expect_answer(endpoint: str, body, status, headers, raw):
    if _valid(endpoint, body):
        assert status == 200, (body, raw)
        answer = json.loads(raw)
        assert set(answer) == {"job_id"} and answer["job_id"] >= 1
    else:
        assert_json_error(status, headers, raw, 400)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
odd_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60
) | st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\n",
        "Ohio\x00",
        "Ohio\n",
        "\u202eoihO",
        "ＯＨＩＯ",
        "../../etc/passwd",
        "%2e%2e%2f",
        "<script>",
        "' OR 1=1 --",
        "Oh\u0301io",
    ]
)
field = st.sampled_from(QUESTIONS) | st.sampled_from(STATES) | odd_text | json_values
endpoints = st.sampled_from(sorted(ENDPOINTS))


@BOUNDED
@given(
    endpoint=endpoints,
    body=json_values
    | st.fixed_dictionaries({}, optional={"question": field, "state": field, "extra": json_values}),
)
def test_any_json_body(server, endpoint, body):
    status, headers, raw = send(
        server,
        "POST",
        f"/api/{endpoint}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    _expect_answer(endpoint, body, status, headers, raw)


def _says_json(content_type: str | None) -> bool:
    """application/json or application/<x>+json, any parameters (docs/api.md)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return re.fullmatch(r"application/(json|[^/]+\+json)", kind) is not None


@BOUNDED
@given(
    endpoint=endpoints,
    raw_body=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            None,
            "application/json",
            "text/plain",
            "application/problem+json",
            "APPLICATION/JSON",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "image/png",
            "application/json; charset=latin-1",
            "\x7f/\x7f",
        ]
    )
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
def test_any_bytes_any_content_type(server, endpoint, raw_body, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, answer_headers, raw = send(server, "POST", f"/api/{endpoint}", raw_body, headers)
    if not _says_json(content_type):
        # A control character makes the header itself invalid HTTP: 400 from the parser.
        invalid_header = any(ord(c) < 32 or ord(c) == 127 for c in content_type or "")
        assert_json_error(status, answer_headers, raw, 400 if invalid_header else 415)
        return
    try:
        body = json.loads(raw_body)
    except ValueError:
        assert_json_error(status, answer_headers, raw, 400)
    else:
        _expect_answer(endpoint, body, status, answer_headers, raw)


@BOUNDED
@given(endpoint=endpoints, question=odd_text, state=odd_text)
def test_control_and_unicode_characters_in_fields(server, endpoint, question, state):
    body = {"question": question, "state": state}
    status, headers, raw = send(
        server,
        "POST",
        f"/api/{endpoint}",
        json.dumps(body, ensure_ascii=False).encode(),
        {"Content-Type": "application/json; charset=utf-8"},
    )
    _expect_answer(endpoint, body, status, headers, raw)


def test_lone_surrogates_and_escapes(server):
    for raw_body in (
        b'{"question": "\\ud800"}',
        b'{"question": "\\u0000"}',
        b'{"question": "\\udfff\\ud800", "state": "\\ud83d"}',
        b'{"question": "caf\xc3\xa9 \xff"}',
        b"\xef\xbb\xbf{}",
        b"NaN",
        b'{"question": Infinity}',
        b'{"question": 1e999}',
    ):
        status, headers, raw = send(
            server, "POST", "/api/state_mean", raw_body, {"Content-Type": "application/json"}
        )
        assert_json_error(status, headers, raw, 400)


@pytest.mark.parametrize(
    "body, headers, code",
    [
        (b"x" * (64 * 1024 + 1), {}, 413),
        (b'{"question": "' + b"a" * 200_000 + b'"}', {}, 413),
        (b"[" * 60_000 + b"]" * 60_000, {}, 413),
        (b"[" * 30_000 + b"]" * 30_000, {}, 400),  # deep nesting under the size limit
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, {}, 400),
        (gzip.compress(b" " * 20_000_000), {"Content-Encoding": "gzip"}, 413),  # a bomb
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400),
        (b"", {}, 400),
    ],
)
def test_huge_deep_and_encoded_bodies(server, body, headers, code):
    status, answer_headers, raw = send(
        server, "POST", "/api/best5", body, {"Content-Type": "application/json", **headers}
    )
    assert_json_error(status, answer_headers, raw, code)


def test_huge_chunked_body_is_cut_off(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        chunks = (b"x" * 16384 for _ in range(1000))  # 16 MB, no Content-Length
        connection.request(
            "POST",
            "/api/best5",
            body=chunks,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert_json_error(response.status, dict(response.getheaders()), response.read(), 413)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed while we were still sending: also fine
    finally:
        connection.close()
    assert call(f"{server.url}/healthz")[0] == 200


def _id_form(text: str) -> int | None:
    match = re.fullmatch(r"(?:job_id_)?([1-9][0-9]{0,17})", text)
    return int(match.group(1)) if match else None


@BOUNDED
@given(
    job_id=st.integers(-(10**30), 10**30).map(str)
    | st.integers(-(10**30), 10**30).map("job_id_{}".format)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "../journal.jsonl",
            "..%2Fjournal.jsonl",
            "1/../2",
            "%00",
            "1\n",
            "job_id_",
            "job_id_job_id_1",
            "0x1",
            "1e3",
            " 1",
            "+1",
            "01",
            "١٢",
            "1.0",
            "jobs/1.json",
            "job_id_-1",
            "job_id_0",
            "0",
        ]
    )
)
def test_odd_job_ids(server, job_id):
    status, headers, raw = send(
        server, "GET", "/api/get_results/" + urllib.parse.quote(job_id, safe="")
    )
    number = _id_form(job_id)
    known = call(f"{server.url}/api/jobs")[1]["data"]
    if number is not None and {f"job_id_{number}": "done"} in known:
        assert status == 200 and json.loads(raw)["status"] == "done"
    else:
        body = assert_json_error(status, headers, raw, 404)
        assert body["reason"] in ("Invalid job_id", "no such route")


@pytest.mark.parametrize(
    "path, code",
    [
        ("/api/get_results/../../journal.jsonl", 404),
        ("/api/get_results/%2e%2e/%2e%2e/journal.jsonl", 404),
        ("/api/get_results/..%2f..%2fjournal.jsonl", 404),
        ("//state/journal.jsonl", 404),
        ("/state/jobs/1.json", 404),
        ("/api/get_results/1?wait=nan", 400),
        ("/api/get_results/1?wait=-1", 400),
        ("/api/get_results/1?wait=1e999", 400),
        ("/api/get_results/1?wait=31", 400),
        ("/api/get_results/1?wait=%00", 400),
        ("/api/../api/jobs/../../etc/passwd", 404),
    ],
)
def test_paths_never_reach_files(server, path, code):
    status, headers, raw = send(server, "GET", path)
    assert b"next_id" not in raw and b"root:" not in raw
    if status != 200:  # a `..` may normalise to a route; then its JSON answer is fine
        assert_json_error(status, headers, raw, code)


RAW = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # TLS on the HTTP port
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /heal\x01thz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n Host: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
    b"GET /healthz HTTP/1.1\nHost: x\n\n",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ZZZ\r\nabc\r\n0\r\n\r\n",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabcdef\r\n0\r\n\r\n",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffffff\r\n",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n{}",
    b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: 5\r\n\r\nhello",
]


def _exchange(port: int, data: bytes, *later: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        for part in later:  # sent after the server has read the headers
            time.sleep(0.2)
            sock.sendall(part)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return bool(length) and len(body) >= int(length.group(1))


@pytest.mark.parametrize("data", RAW, ids=[repr(d[:24]) for d in RAW])
def test_malformed_http_is_answered_in_json(server, data):
    _check_raw_answer(_exchange(server.port, data))
    assert call(f"{server.url}/healthz")[0] == 200


def test_chunked_body_broken_after_the_headers(server):
    """The C parser drops a payload it cannot parse once the headers are through, so
    the handler would wait for ever: the body deadline (client_timeout) answers."""
    answer = _exchange(
        server.port,
        b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b'5\r\n{"que\r\nZZZ\r\nabc\r\n0\r\n\r\n',
    )
    status = _check_raw_answer(answer)
    assert status in (400, 408)


def _check_raw_answer(answer: bytes) -> int:
    assert answer, "no answer at all"
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert 400 <= status < 500, answer[:300]
    assert re.search(rb"(?i)content-type: application/json", head), head
    parsed = json.loads(body[: int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))])
    assert parsed["status"] == "error" and parsed["reason"], parsed
    return status


def test_keeps_serving(server):
    assert call(f"{server.url}/healthz")[0] == 200
    code, answer, _ = call(f"{server.url}/api/best5", "POST", {"question": QUESTIONS[1]})
    assert code == 200
    assert call(f"{server.url}/api/get_results/{answer['job_id']}?wait=10")[1]["status"] == "done"


SCHEMATHESIS = shutil.which("schemathesis", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed")
def test_schemathesis_against_openapi(tmp_path, demo_csv):
    """Every check schemathesis has, against the document the server serves. With an
    admin token set, so the fuzzer's GET /api/graceful_shutdown is refused (401, as
    documented) instead of stopping the server mid-run."""
    live = start_server(
        tmp_path,
        data=demo_csv,
        workers=1,
        env={"LESTATS_ADMIN_TOKEN": "not-for-the-fuzzer", "LESTATS_CLIENT_TIMEOUT": "2"},
    )
    try:
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{live.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        print(run.stdout[-1500:])
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert call(f"{live.url}/healthz")[0] == 200
    finally:
        assert live.stop() == 0, live.text()
    assert "Traceback" not in log_text(live.log_file)
