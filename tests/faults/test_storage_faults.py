"""Faults of the state dir, end to end on the real server process (issue 8, items 1, 2,
3, 10, 11 and the storage parts of 13; docs/guarantees.md).

A full disk is a real one: a small tmpfs mounted for the test and filled with a file
until the kernel says ENOSPC; a read-only file system is that tmpfs remounted
read-only. Where mounting is not allowed those tests are skipped with the reason.
Every wait is bounded in time; nothing asserts a duration.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from compute import demo
from compute.dataset import load_csv
from compute.messages import Job
from server.journal import MAX_JOB_ID, JobJournal
from tests.support.live import free_port, start_server
from tests.support.load import JobMix, http

PAGE = 4096


# -- helpers --------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real, small file system at `path` for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here to make a real full disk: "
            f"{done.stderr.strip() or done.returncode}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True, timeout=30
    )


def fill(directory: Path, leave_pages: int = 0) -> Path:
    """Write a file in `directory` until its file system is full (ENOSPC), or until
    only `leave_pages` pages are free (never full for an instant on the way)."""
    info = os.statvfs(directory)
    room = info.f_bfree * info.f_frsize - leave_pages * PAGE
    filler = directory / "filler"
    chunk = b"\xff" * PAGE
    with open(filler, "wb", buffering=0) as handle:
        for _ in range(1 << 20):  # bounded: 4 GiB, far beyond any test tmpfs
            if leave_pages and handle.tell() >= room:
                break
            try:
                handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                assert not leave_pages, "the file system filled up early"
                break
    return filler


def wait_for(predicate, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def refused_for_storage(server, words: str) -> dict:
    """A POST while the storage fails: 503, Retry-After, and a reason that says why."""
    status, body, headers = http(server.url + "/api/best5", "POST", {"question": QUESTION})
    assert status == 503 and words in body["reason"], body
    assert headers.get("Retry-After") == "1", headers
    return body


def result(server, job_id: int, timeout: float = 30.0) -> dict:
    """The final get_results body of a job (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = server.get(f"/api/get_results/{job_id}")
        assert status == 200, body
        if body["status"] != "running":
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def metric(server, name: str) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def not_ready(server) -> dict | None:
    status, body = server.get("/readyz")
    return body if status == 503 else None


def journal_lines(state_dir: Path) -> list[dict]:
    """Every line of the journal parses: nothing torn, nothing glued."""
    data = (state_dir / "journal.jsonl").read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


def one_line_refusal(server) -> str:
    """Exit code 2, no traceback, and one line that says why (only progress lines,
    INFO, may precede it when the refusal comes after the data is loaded)."""
    assert server.process.wait(60) == 2, server.text()
    text = server.text()
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert "cannot start" in lines[-1], text
    assert all(" INFO " in line for line in lines[:-1]), text
    return lines[-1]


@pytest.fixture(scope="module")
def questions(demo_csv):
    return load_csv(demo_csv).questions


@pytest.fixture(scope="module")
def mix(demo_csv):
    """The naive reference's answers on the demo data (tests/reference.py)."""
    return JobMix(demo_csv, seed=0)


QUESTION = demo.QUESTIONS[0]


# -- 1. one server per state dir --------------------------------------------------------
def test_a_second_server_on_the_same_state_dir_refuses_before_touching_it(
    tmp_path, demo_csv, questions
):
    first = start_server(tmp_path, data=demo_csv, workers=1)
    ids = [first.post("/api/best5", {"question": q})[1]["job_id"] for q in questions[:3]]
    answers = {i: result(first, i) for i in ids}
    journal = first.state_dir / "journal.jsonl"
    before = (journal.read_bytes(), os.stat(journal).st_ino, os.stat(journal).st_mtime_ns)
    # The case: same port and same state dir; then another port.
    for port in (first.port, free_port()):
        second = start_server(
            tmp_path,
            data=demo_csv,
            workers=1,
            port=port,
            state_dir=first.state_dir,
            wait_ready=False,
        )
        text = one_line_refusal(second)
        assert f"in use by another lestats server (pid {first.pid})" in text, text
        assert (
            journal.read_bytes(),
            os.stat(journal).st_ino,
            os.stat(journal).st_mtime_ns,
        ) == before
    # The first one never noticed; after a kill -9 nothing acknowledged is lost.
    late = first.post("/api/worst5", {"question": questions[0]})[1]["job_id"]
    answers[late] = result(first, late)
    first.stop(signal.SIGKILL)
    again = start_server(tmp_path, data=demo_csv, workers=1, state_dir=first.state_dir)
    for job_id, body in answers.items():
        assert result(again, job_id) == body
    assert again.post("/api/best5", {"question": questions[0]})[1]["job_id"] == late + 1
    assert again.stop() == 0


# -- 2 and 10. a full disk ----------------------------------------------------------------
def test_a_full_disk_refuses_jobs_loses_no_id_and_recovers_by_itself(
    tmp_path, demo_csv, questions, mix
):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=disk / "state")
        asked = {}
        for q in questions[:2]:
            job_id = server.post("/api/mean_by_category", {"question": q})[1]["job_id"]
            asked[job_id] = ("mean_by_category", q)
        last = max(asked)
        filler = fill(disk)
        refused = 0
        for n in range(30):
            q = questions[n % len(questions)]
            status, body = server.post("/api/mean_by_category", {"question": q})
            if status == 200:
                asked[body["job_id"]] = ("mean_by_category", q)
                continue
            refused += 1
            assert status == 503, body
            assert body["status"] == "error" and "storage is full" in body["reason"], body
        # No refusal used up an id: the accepted ones are consecutive.
        assert sorted(asked) == list(range(min(asked), min(asked) + len(asked)))
        assert refused > 0
        body = wait_for(lambda: not_ready(server), what="/readyz says the storage is full")
        assert "storage is full" in body["reason"], body
        assert server.get("/api/info")[1]["storage_fault"] == body["reason"]
        refused_for_storage(server, "storage is full")
        leftovers = [p.name for p in (disk / "state" / "jobs").iterdir() if p.name.endswith(".tmp")]
        assert leftovers == []  # no half-written temporary stays behind
        journal_lines(disk / "state")

        filler.unlink()  # space comes back: the server recovers by itself
        wait_for(lambda: server.get("/readyz")[0] == 200, what="/readyz ready again")
        assert server.get("/api/info")[1]["storage_fault"] is None
        for job_id, (endpoint, q) in asked.items():
            mix.check(endpoint, {"question": q}, result(server, job_id))
        newest = max(asked)
        assert server.post("/api/best5", {"question": questions[0]})[1]["job_id"] == newest + 1
        lines = journal_lines(disk / "state")
        assert {line["id"] for line in lines if "id" in line} >= set(asked) - {last - 1, last}

        # A kill -9, and a restart on the disk full again: the server starts (it cannot
        # compact the journal, so it appends to it as it is), serves every answer,
        # says it is not ready, and takes jobs once space comes back.
        filler = fill(disk)
        server.stop(signal.SIGKILL)
        again = start_server(tmp_path, data=demo_csv, workers=1, state_dir=disk / "state")
        for job_id, (endpoint, q) in asked.items():
            mix.check(endpoint, {"question": q}, result(again, job_id))
        assert "storage is full" in wait_for(lambda: not_ready(again))["reason"]
        refused_for_storage(again, "storage is full")
        filler.unlink()
        wait_for(lambda: again.get("/readyz")[0] == 200, what="/readyz ready again")
        assert again.post("/api/best5", {"question": questions[0]})[1]["job_id"] == newest + 2
        assert again.stop() == 0
        journal_lines(disk / "state")
        for run in (server, again):  # told in one line per episode, never a traceback
            assert "Traceback" not in run.text() + run.log_file.read_text()
            assert run.text().count("storage fault:") <= 2, run.text()


def test_a_write_cut_short_by_a_full_disk_leaves_no_torn_line(tmp_path):
    """The journal on its own, on a real full file system: the kernel writes part of a
    line into the last free bytes of a page, then says ENOSPC."""
    with tmpfs(tmp_path / "disk", "64k") as disk:
        journal = JobJournal(disk)
        journal.open(set(), 0)
        job_id = 1
        while (disk / "journal.jsonl").stat().st_size % PAGE < PAGE - 40:
            journal.append(Job(job_id, "best5", "q" * 20))
            job_id += 1  # until the page has fewer free bytes than a line needs
        filler = fill(disk)
        size = (disk / "journal.jsonl").stat().st_size
        with pytest.raises(OSError) as refused:
            journal.append(Job(job_id, "best5", "q" * 20))
        assert refused.value.errno == errno.ENOSPC
        assert (disk / "journal.jsonl").stat().st_size == size  # the part was cut away
        filler.unlink()
        journal.append(Job(job_id, "best5", "q" * 20))  # the same id: it was never given
        journal.close()
        lines = journal_lines(disk)
        assert [line["id"] for line in lines[1:]] == list(range(1, job_id + 1))


def test_a_torn_journal_tail_never_lets_an_id_be_handed_out_twice(
    tmp_path, demo_csv, questions, mix
):
    state = tmp_path / "state"
    state.mkdir()
    whole = json.dumps(
        {"id": 5, "endpoint": "best5", "question": questions[0], "state": None},
        separators=(",", ":"),
    )
    (state / "journal.jsonl").write_text('{"next_id":5}\n' + whole + '\n{"id":6,"endpo')
    server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=state)
    mix.check("best5", {"question": questions[0]}, result(server, 5))
    new = server.post("/api/worst5", {"question": questions[1]})[1]["job_id"]
    assert new == 7  # 6 may have reached a client before the tear: never again
    journal_lines(state)
    server.stop(signal.SIGKILL)
    again = start_server(tmp_path, data=demo_csv, workers=1, state_dir=state)
    mix.check("worst5", {"question": questions[1]}, result(again, 7))
    assert again.post("/api/best5", {"question": questions[0]})[1]["job_id"] == 8
    assert again.stop() == 0


# -- 3 and 10. results that cannot be stored -------------------------------------------
def test_a_result_that_cannot_be_stored_is_run_again_not_cached_as_an_error(
    tmp_path, demo_csv, questions, mix
):
    state = tmp_path / "state"
    with tmpfs(state / "jobs", "1m") as jobs:  # results full, journal fine
        server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=state)
        question, other = questions[0], questions[1]
        first = server.post("/api/mean_by_category", {"question": other})[1]["job_id"]
        mix.check("mean_by_category", {"question": other}, result(server, first))
        filler = fill(jobs, leave_pages=1)  # not "full", but no room for an answer
        assert os.statvfs(jobs).f_bfree == 1
        # An answer already stored needs no room: the new job's file is a link to it.
        repeated = server.post("/api/mean_by_category", {"question": other})[1]["job_id"]
        assert result(server, repeated) == result(server, first)
        assert os.stat(jobs / f"{repeated}.json").st_ino == os.stat(jobs / f"{first}.json").st_ino
        status, body = server.post("/api/mean_by_category", {"question": question})
        assert status == 200, body  # journaled; its ~22 KB result then fails to be written
        stuck = body["job_id"]
        body = wait_for(lambda: not_ready(server), what="/readyz says results cannot be stored")
        assert "storage is full" in body["reason"], body
        assert server.get(f"/api/get_results/{stuck}")[1] == {"status": "running"}
        assert metric(server, "lestats_storage_writable") == 0
        refused_for_storage(server, "storage is full")
        assert [p.name for p in jobs.iterdir() if p.name.endswith(".tmp")] == []

        filler.unlink()
        want = result(server, stuck)  # run again, not frozen as an error
        mix.check("mean_by_category", {"question": question}, want)
        wait_for(lambda: server.get("/readyz")[0] == 200, what="/readyz ready again")
        again = server.post("/api/mean_by_category", {"question": question})[1]["job_id"]
        assert result(server, again) == want  # and no error answer was cached
        assert metric(server, "lestats_storage_writable") == 1
        assert metric(server, "lestats_storage_faults") == 1

        # A read-only file system: the same story, told within a second.
        remount(jobs, "ro")
        body = wait_for(lambda: not_ready(server), what="/readyz says the results are read-only")
        assert "read-only" in body["reason"], body
        refused_for_storage(server, "read-only")
        remount(jobs, "rw")
        wait_for(lambda: server.get("/readyz")[0] == 200, what="/readyz ready again")
        late = server.post("/api/best5", {"question": question})[1]["job_id"]
        mix.check("best5", {"question": question}, result(server, late))
        assert server.stop() == 0
        assert "Traceback" not in server.text() + server.log_file.read_text()


# -- 11. a restart on other data ---------------------------------------------------------
def test_a_restart_on_other_data_answers_old_jobs_with_an_error(tmp_path, demo_csv, questions):
    other = demo.write(tmp_path / "other.csv", count=4000, seed=4)
    other_mix = JobMix(other, seed=0)
    server = start_server(tmp_path, data=demo_csv, workers=1)
    fingerprint = server.get("/api/info")[1]["dataset_fingerprint"]
    stopped = server.get("/api/info")[1]["pids"]["workers"]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # accepted, never finished
    held = [server.post("/api/best5", {"question": q})[1]["job_id"] for q in questions[:3]]
    server.stop(signal.SIGKILL)
    for pid in stopped:  # one stopped before it had asked to die with its parent
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    moved = start_server(tmp_path, data=other, workers=1, state_dir=server.state_dir)
    changed = moved.get("/api/info")[1]["dataset_fingerprint"]
    assert changed != fingerprint
    for job_id in held:
        body = result(moved, job_id)
        assert body["status"] == "error" and "data changed" in body["reason"], body
        assert fingerprint in body["reason"] and changed in body["reason"]
    new = moved.post("/api/best5", {"question": questions[0]})[1]["job_id"]
    other_mix.check("best5", {"question": questions[0]}, result(moved, new))
    assert moved.stop() == 0
    back = start_server(tmp_path, data=demo_csv, workers=1, state_dir=server.state_dir)
    assert back.get("/api/info")[1]["dataset_fingerprint"] == fingerprint  # stable
    assert result(back, held[0])["status"] == "error"  # decided once, for good
    assert back.stop() == 0


# -- 13. a damaged state dir at start-up ----------------------------------------------------
def _state_is_a_file(state: Path) -> None:
    state.write_text("not a directory\n")


def _journal_is_a_directory(state: Path) -> None:
    (state / "journal.jsonl").mkdir(parents=True)


def _next_id_beyond_18_digits(state: Path) -> None:
    state.mkdir()
    (state / "journal.jsonl").write_text(f'{{"next_id":{MAX_JOB_ID + 2}}}\n')


@pytest.mark.parametrize(
    "damage, words",
    [
        (_state_is_a_file, "is not a directory"),
        (_journal_is_a_directory, "journal.jsonl is not a file"),
        (_next_id_beyond_18_digits, "beyond the largest id"),
    ],
)
def test_an_unusable_state_dir_stops_start_up_with_one_line(tmp_path, demo_csv, damage, words):
    damage(tmp_path / "state")
    server = start_server(tmp_path, data=demo_csv, workers=1, wait_ready=False)
    assert words in one_line_refusal(server)
    assert os.path.exists(tmp_path / "state")


def test_a_read_only_state_dir_stops_start_up_with_one_line(tmp_path, demo_csv):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        remount(disk, "ro")
        server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=disk, wait_ready=False)
        assert "is not writable (Read-only file system)" in one_line_refusal(server)
        assert server.text().count("\n") == 1  # refused before the data was loaded


def test_garbage_in_the_journal_is_skipped_without_a_traceback(tmp_path, demo_csv, questions, mix):
    state = tmp_path / "state"
    state.mkdir()
    good = {"id": 3, "endpoint": "best5", "question": questions[0], "state": None}
    (state / "journal.jsonl").write_bytes(
        b"\n".join(
            [
                b'{"next_id": 1e999}',
                b'{"id": 1e999, "endpoint": "best5", "question": "q"}',
                b'{"id": "9", "endpoint": "best5", "question": "q"}',
                b"[" * 100_000,
                b'"just a string"',
                b"\xff\xfe not utf-8",
                b'{"evicted": [true]}',
                json.dumps(good).encode(),
                b"",
            ]
        )
    )
    server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=state)
    mix.check("best5", {"question": questions[0]}, result(server, 3))
    assert server.post("/api/best5", {"question": questions[0]})[1]["job_id"] == 4
    assert server.stop() == 0
    text = server.text() + server.log_file.read_text()
    assert "Traceback" not in text and "skipped 7 unreadable line(s)" in text


def test_the_largest_id_is_served_and_then_ids_are_refused(tmp_path, demo_csv, questions, mix):
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal.jsonl").write_text(f'{{"next_id":{MAX_JOB_ID}}}\n')
    server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=state)
    status, body = server.post("/api/best5", {"question": questions[0]})
    assert body == {"job_id": MAX_JOB_ID}
    mix.check("best5", {"question": questions[0]}, result(server, MAX_JOB_ID))
    status, body = server.post("/api/best5", {"question": questions[0]})
    assert status == 503 and "no job ids are left" in body["reason"], body
    assert server.stop() == 0


def test_empty_or_garbage_result_files_are_never_served_as_answers(
    tmp_path, demo_csv, questions, mix
):
    state = tmp_path / "state"
    (state / "jobs").mkdir(parents=True)
    journal = [
        {"next_id": 1},
        {"id": 1, "endpoint": "best5", "question": questions[0], "state": None},
    ]
    (state / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in journal))
    (state / "jobs" / "1.json").write_bytes(b"")  # still in the journal: run again
    (state / "jobs" / "2.json").write_bytes(b"")  # question unknown: an error
    (state / "jobs" / "3.json").write_bytes(b"garbage")  # found when read: an error
    (state / "jobs" / "4.json").write_bytes(b'{"status": "done", "data": {"x": 1}}')
    (state / "jobs" / "5.json").write_bytes(b"\0" * 300)  # data lost by a power cut
    server = start_server(tmp_path, data=demo_csv, workers=1, state_dir=state)
    mix.check("best5", {"question": questions[0]}, result(server, 1))
    for job_id in (2, 3, 5):
        status, body = server.get(f"/api/get_results/{job_id}")
        assert status == 200 and body["status"] == "error", body
        assert "damaged" in body["reason"], body
    assert server.get("/api/get_results/4")[1] == {"status": "done", "data": {"x": 1}}
    assert server.post("/api/best5", {"question": questions[0]})[1]["job_id"] == 6
    assert server.stop() == 0
