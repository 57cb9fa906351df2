"""GET /api/jobs: the full listing in the shape existing clients know, pagination
(?after=ID&limit=N), and a listing of many jobs never holding the event loop.

The status table's ordering is checked in-process against a plain reference while it
changes (jobs finish, are evicted, are recovered out of order); the HTTP answers
against the real server process with 20,000 jobs, where several full listings are
requested at once and /healthz must be answered while they are being built.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import urllib.error
import urllib.request

import pytest

from server.status import DONE, ERROR, RUNNING, StatusTable
from tests.support.live import shm_segments, start_server
from tests.support.load import QUESTIONS, log_text, wait_until

JOBS = 20_000
LISTINGS = 16


def _reference(table: StatusTable, after: int = 0) -> list[tuple[int, str]]:
    """What the listing was before it was built incrementally: every id, sorted."""
    ids = sorted(i for i in range(1, table.next_id) if table.state(i) in (RUNNING, DONE, ERROR))
    return [(i, table.state(i)) for i in ids if i > after]


def test_entries_follow_the_table_as_it_changes():
    rng = random.Random(8)
    table = StatusTable(retain=300)
    running: list[int] = []
    for step in range(3000):
        if rng.random() < 0.6 or not running:
            job_id = table.new_id()
            table.add_running(job_id)
            running.append(job_id)
        else:  # finish one of the running jobs, not always the oldest
            job_id = running.pop(rng.randrange(min(len(running), 5)))
            table.finish(job_id, rng.random() < 0.9)
            table.evict()
        if step % 97 == 0:
            after = rng.choice([0, table.next_id // 2, table.next_id])
            assert list(table.entries(after)) == _reference(table, after)
    assert list(table.entries()) == _reference(table)


def test_recovered_jobs_out_of_order_are_listed_in_order():
    table = StatusTable(next_id=1001)
    assert list(table.entries()) == []
    ids = list(range(1, 1001))
    random.Random(3).shuffle(ids)
    for job_id in ids:  # a journal replay: any order, after a first listing
        if job_id % 3:
            table.add_finished(job_id, job_id % 7 != 0)
        else:
            table.add_running(job_id)
    assert list(table.entries()) == _reference(table)


def test_a_listing_in_progress_sees_changes_but_no_new_ids():
    table = StatusTable(retain=10)
    for _ in range(20):
        table.add_running(table.new_id())
    entries = table.entries()
    assert next(entries) == (1, RUNNING)
    for job_id in range(1, 16):  # 1-15 finish; 1-5 are evicted (retain 10)
        table.finish(job_id, True)
    table.evict()
    table.add_running(table.new_id())  # 21: handed out after the listing began
    assert list(entries) == [(i, DONE) for i in range(6, 16)] + [
        (i, RUNNING) for i in range(16, 21)
    ]


def _pipelined_posts(port: int, count: int) -> None:
    """`count` job POSTs written down one connection without waiting (HTTP/1.1
    pipelining): the quickest way to make many real jobs."""
    requests = []
    for index in range(count):
        body = json.dumps({"question": QUESTIONS[index % len(QUESTIONS)]}).encode()
        requests.append(
            b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sender = threading.Thread(target=sock.sendall, args=(b"".join(requests),))
        sender.start()
        accepted, tail = 0, b""
        while accepted < count:
            chunk = sock.recv(1 << 20)
            assert chunk, f"connection closed after {accepted} answers"
            tail += chunk
            accepted += tail.count(b"HTTP/1.1 200 ")
            assert b"HTTP/1.1 5" not in tail and b"HTTP/1.1 4" not in tail, tail[-500:]
            tail = tail[-20:]
        sender.join(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_csv):
    live = start_server(
        tmp_path_factory.mktemp("listing"),
        data=demo_csv,
        workers=1,
        env={"LESTATS_MAX_QUEUE": str(JOBS)},
    )
    try:
        posters = [
            threading.Thread(target=_pipelined_posts, args=(live.port, JOBS // 4)) for _ in range(4)
        ]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join(120)
        assert wait_until(lambda: live.get("/api/num_jobs")[1]["num_jobs"] == 0, 120)
        yield live
    finally:
        code = live.stop()
    assert code == 0, live.text()
    assert shm_segments(live.pid) == []


def _raw(server, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_full_listing_is_the_old_shape_byte_for_byte(server):
    status, raw = _raw(server, "/api/jobs")
    assert status == 200
    expected = {"status": "done", "data": [{f"job_id_{i}": "done"} for i in range(1, JOBS + 1)]}
    assert raw == json.dumps(expected).encode()  # as web.json_response wrote it


@pytest.mark.parametrize("limit", [1, 777, 10_000])
def test_pages_add_up_to_the_full_listing(server, limit):
    full = server.get("/api/jobs")[1]["data"]
    pages, after = [], 0
    for _ in range(JOBS // limit + 2):
        status, page = server.get(f"/api/jobs?after={after}&limit={limit}")
        assert status == 200 and page["status"] == "done"
        assert 1 <= len(page["data"]) <= limit
        pages += page["data"]
        if page["next_after"] is None:
            break
        assert page["next_after"] == int(next(iter(page["data"][-1])).split("_")[-1])
        after = page["next_after"]
    assert pages == full
    if limit == 1:  # the bound above stops a walk that never ends
        return
    assert len(pages) == JOBS


def test_after_alone_and_past_the_end(server):
    assert server.get(f"/api/jobs?after={JOBS - 3}")[1] == {
        "status": "done",
        "data": [{f"job_id_{i}": "done"} for i in range(JOBS - 2, JOBS + 1)],
    }
    assert server.get(f"/api/jobs?after={JOBS}&limit=5")[1] == {
        "status": "done",
        "data": [],
        "next_after": None,
    }


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=10001",
        "limit=-1",
        "limit=x",
        "after=-1",
        "after=job_id_3",
        "after=1.5",
        "limit=",
    ],
)
def test_bad_page_parameters_are_400(server, query):
    status, answer = server.get(f"/api/jobs?{query}")
    assert status == 400 and answer["status"] == "error", answer
    assert "'after'" in answer["reason"] or "'limit'" in answer["reason"]


def test_healthz_is_answered_while_large_listings_are_built(server):
    """Ordering, not timing: LISTINGS full listings are started and each has sent
    its headers (so each is being built); then /healthz. Built in one go (the old
    way), every listing was complete before /healthz could even be read, so the
    access log shows all of them before it; built in chunks, /healthz is answered
    between chunks, while listings are still being built."""
    listings = [
        socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(LISTINGS)
    ]
    health = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    try:
        for sock in listings:
            sock.sendall(b"GET /api/jobs?listing HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in listings:  # each one's headers: its listing has begun
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)
                assert chunk
                head += chunk
            assert head.startswith(b"HTTP/1.1 200 "), head
        health.sendall(b"GET /healthz?during-listings HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b'{"status": "alive"}' not in answer:
            chunk = health.recv(65536)
            assert chunk, answer
            answer += chunk
        for sock in listings:  # read every listing to its end
            body = b""  # chunked (ends with the 0 chunk), or not (ends with "]}")
            while not body.endswith((b"0\r\n\r\n", b"]}")):
                chunk = sock.recv(1 << 20)
                assert chunk
                body += chunk
            # Whole entries per chunk: the last id is never split by chunk framing.
            assert b'{"job_id_%d": "done"}' % JOBS in body[-300:], body[-300:]
    finally:
        for sock in (*listings, health):
            sock.close()
    assert wait_until(
        lambda: log_text(server.log_file).count('"GET /api/jobs?listing"') == LISTINGS, 30
    )
    lines = [
        line
        for line in log_text(server.log_file).splitlines()
        if '"GET /api/jobs?listing"' in line or '"GET /healthz?during-listings"' in line
    ]
    before = lines.index(next(line for line in lines if "during-listings" in line))
    assert before < LISTINGS, f"all {LISTINGS} listings were complete before /healthz was answered"
