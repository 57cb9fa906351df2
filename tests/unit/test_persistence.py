"""The journal, the result store and the status table on their own."""

from __future__ import annotations

import asyncio

from compute.messages import Job
from server.journal import JobJournal
from server.results import ResultStore
from server.status import StatusTable


def test_journal_recovers_unfinished_and_next_id(tmp_path):
    journal = JobJournal(tmp_path)
    assert journal.open(set(), 0).next_id == 1
    for i in (1, 2, 3):
        journal.append(Job(i, "best5", "q", None))
    journal.close()
    with open(tmp_path / "journal.jsonl", "ab") as handle:
        handle.write(b'{"id": 4, "endp')  # a torn line: that job never got its id
    again = JobJournal(tmp_path)
    recovery = again.open({2}, 2)
    assert recovery.next_id == 4
    assert [job.id for job in recovery.unfinished] == [1, 3]
    again.close()
    # compacted: the next start sees the same, without the torn line
    third = JobJournal(tmp_path).open({1, 2, 3}, 3)
    assert third.next_id == 4 and third.unfinished == []


def test_journal_keeps_the_year_range(tmp_path):
    journal = JobJournal(tmp_path)
    journal.open(set(), 0)
    jobs = [
        Job(1, "best5", "q"),
        Job(2, "state_trend", "q", "Ohio", 2013, 2016),
        Job(3, "states_estimate", "q", None, None, 2015),
    ]
    for job in jobs:
        journal.append(job)
    journal.close()
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert "year" not in lines[1]  # the original statistics' lines are unchanged
    assert JobJournal(tmp_path).open(set(), 0).unfinished == jobs


def test_next_id_never_goes_back_below_results(tmp_path):
    assert JobJournal(tmp_path).open({41}, 41).next_id == 42


def test_fsync_mode_groups_commits(tmp_path):
    async def run():
        journal = JobJournal(tmp_path, fsync=True)
        journal.open(set(), 0)
        for i in range(1, 6):
            journal.append(Job(i, "best5", "q"))
        await asyncio.gather(*(journal.durable() for _ in range(5)))
        assert journal._synced == 5
        journal.close()

    asyncio.run(run())


def test_results_are_atomic_and_scanned(tmp_path):
    store = ResultStore(tmp_path, recent=1)
    files = store.files
    store.scan()
    files.write(7, True, b'{"status": "done", "data": 1}')
    files.write(8, False, b'{"status": "error", "reason": "x"}')
    (tmp_path / "jobs" / ".9.123.tmp").write_bytes(b"half")
    assert store.scan() == ({7: True, 8: False}, set())
    assert not (tmp_path / "jobs" / ".9.123.tmp").exists()
    assert store.read(7, True) == b'{"status": "done", "data": 1}'
    store.delete([(7, True)])
    assert store.scan() == ({8: False}, set())


def test_bodies_are_shared_by_question_and_recent_ids_bounded(tmp_path):
    store = ResultStore(tmp_path, recent=2, answer_bytes=100)
    key = ("best5", "q", None)
    body = b'{"status": "done", "data": {}}'
    store.remember(1, key, body)
    store.remember(2, key, None)  # a worker sent this body before
    assert store.cached(2) is store.cached(1) is body
    store.remember(3, ("x", "q", None), b"y" * 200)  # over the answers' byte bound
    assert store.cached(1) is None  # only the 2 newest ids are kept
    store.remember(4, ("x", "q", None), None)
    assert store.cached(4) is None  # not in memory any more: read from its file


def test_status_table_states_and_eviction():
    table = StatusTable(next_id=1, retain=2)
    ids = [table.new_id() for _ in range(4)]
    for job_id in ids:
        table.add_running(job_id)
    assert table.running_count == 4 and table.state(1) == "running"
    for job_id in ids[:3]:
        assert table.finish(job_id, job_id != 2)
    assert not table.finish(1, True)  # a duplicate outcome changes nothing
    assert table.evict() == [(1, True)]
    assert [table.state(i) for i in (1, 2, 3, 4, 5)] == [
        "evicted",
        "error",
        "done",
        "running",
        "unknown",
    ]


def test_long_poll_wakes_on_finish():
    async def run():
        table = StatusTable()
        table.add_running(table.new_id())
        waiter = asyncio.create_task(table.wait(1, 10))
        await asyncio.sleep(0.01)
        table.finish(1, True)
        await asyncio.wait_for(waiter, 1)
        started = asyncio.get_running_loop().time()
        table.add_running(table.new_id())
        await table.wait(2, 0.05)
        assert asyncio.get_running_loop().time() - started >= 0.05
        assert table._waiters == {}

    asyncio.run(run())


def test_evicted_jobs_are_not_run_again(tmp_path):
    journal = JobJournal(tmp_path)
    journal.open(set(), 0)
    for i in (1, 2, 3):
        journal.append(Job(i, "best5", "q", None))
    journal.evicted([1, 2])  # finished, then their result files deleted
    journal.close()
    recovery = JobJournal(tmp_path).open({3}, 3)
    assert recovery.unfinished == [] and recovery.next_id == 4


def test_an_error_is_never_shared_as_the_answer_to_its_question(tmp_path):
    store = ResultStore(tmp_path)
    key = ("best5", "q", None)
    answer = b'{"status": "done", "data": {}}'
    store.remember(1, key, answer)
    store.remember(2, key, b'{"status": "error", "reason": "x"}', ok=False)
    store.remember(3, key, None)  # the worker sent this question's answer before
    assert store.cached(2) != answer and store.cached(3) is answer
