"""The pool's rules (server/pool/ledger.py, docs/pool.md), one test each, with no
process, thread or clock: the tests drive the ledger as LocalPool does and pass the
time themselves."""

from __future__ import annotations

from compute.messages import Job, Outcome
from server.pool.ledger import (
    IDLE_SECONDS,
    MAX_ATTEMPTS,
    MAX_BATCH,
    START_SECONDS,
    Ledger,
)

TIMEOUT = 30.0


def jobs(first: int, count: int) -> list[Job]:
    return [Job(i, "global_mean", f"question {i}") for i in range(first, first + count)]


def ok(*ids: int) -> list[Outcome]:
    return [Outcome(i, True, b"{}") for i in ids]


def ids(batches) -> list[list[int]]:
    return [[job.id for job in batch] for batch in batches]


def ledger(workers: int = 2) -> Ledger:
    book = Ledger(workers, TIMEOUT)
    for worker in range(workers):
        book.started(worker, 0.0)
    return book


def test_jobs_spread_over_the_workers_and_at_most_two_batches_per_worker_wait():
    book = ledger(2)
    book.submit(jobs(1, 10))
    assert ids(book.next_batches(1.0)) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    book.submit(jobs(11, 300))  # the workers are busy: bigger batches
    assert [len(b) for b in book.next_batches(1.0)] == [MAX_BATCH, MAX_BATCH]
    assert book.next_batches(1.0) == []  # no credit: four batches wait
    book.taken(0, [1, 2, 3, 4, 5], 1.1)
    assert ids(book.next_batches(1.1)) == [list(range(139, 139 + MAX_BATCH))]


def test_batches_are_at_most_max_batch_jobs():
    book = Ledger(1, TIMEOUT, max_batch=4)
    book.submit(jobs(1, 10))
    assert ids(book.next_batches(0.0)) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert [job.id for job in book.pending] == [9, 10]


def test_the_first_outcome_counts_and_a_second_is_ignored():
    book = ledger(2)
    book.submit(jobs(1, 1))
    book.next_batches(0.0)
    book.taken(0, [1], 0.1)
    assert [job.id for job, _ in book.done(0, ok(1), 0.2)] == [1]
    assert book.done(1, ok(1), 0.3) == []  # a re-run's outcome
    assert book.inflight == {}


def test_jobs_of_a_worker_that_died_are_run_again():
    book = ledger(2)
    book.submit(jobs(1, 1))
    book.next_batches(0.0)
    book.taken(0, [1], 0.1)
    lost = book.died(0)
    assert [job.id for job in lost] == [1]
    assert book.retry(lost) == []
    assert book.reruns == 1 and book.attempts == {1: 1}
    assert ids(book.next_batches(0.2)) == [[1]]


def test_what_a_worker_finished_before_dying_is_not_run_again():
    book = ledger(1)
    book.submit(jobs(1, 3))
    book.next_batches(0.0)
    book.taken(0, [1, 2, 3], 0.1)
    book.done(0, ok(1, 2), 0.2)
    assert [job.id for job in book.died(0)] == [3]


def test_jobs_of_a_bigger_batch_that_died_are_run_again_alone_without_counting():
    book = ledger(1)
    book.submit(jobs(1, 3))
    book.next_batches(0.0)
    book.taken(0, [1, 2, 3], 0.1)
    book.submit(jobs(4, 2))
    book.retry(book.died(0))
    assert book.attempts == {} and book.alone == {1, 2, 3}
    # lost jobs go first, each in a batch of its own; then the others
    book.size = 4
    assert ids(book.next_batches(0.2)) == [[1], [2], [3], [4, 5]]


def test_a_job_that_dies_alone_max_attempts_times_is_abandoned():
    book = ledger(1)
    poison = jobs(1, 1)
    book.submit(poison)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert ids(book.next_batches(float(attempt))) == [[1]]
        book.taken(0, [1], float(attempt))
        abandoned = book.retry(book.died(0))
        book.started(0, float(attempt))
        if attempt < MAX_ATTEMPTS:
            assert abandoned == [] and book.attempts == {1: attempt}
    assert [(a.job, a.attempts) for a in abandoned] == [(poison[0], MAX_ATTEMPTS)]
    assert book.inflight == {} and book.next_batches(9.0) == []
    assert book.reruns == MAX_ATTEMPTS - 1


def test_a_job_that_finishes_forgets_its_deaths():
    book = ledger(1)
    book.submit(jobs(1, 1))
    book.next_batches(0.0)
    book.taken(0, [1], 0.0)
    book.retry(book.died(0))
    book.started(0, 0.0)
    book.next_batches(0.1)
    book.taken(0, [1], 0.1)
    book.done(0, ok(1), 0.2)
    assert book.attempts == {} and book.alone == set()


def test_a_batch_that_vanished_before_a_later_one_was_taken_runs_again_after_two_sweeps():
    """FIFO: batch 1 was queued before batch 2, which a live worker took; batch 1 left
    the queue but nobody reported it."""
    book = ledger(2)
    book.submit(jobs(1, 2))
    book.next_batches(0.0)  # batches [1] and [2]
    book.taken(1, [2], 0.1)
    assert book.sweep(0.6) == [] and book.suspects == {1}  # only suspected
    assert [job.id for job in book.sweep(1.1)] == [1]  # still unreported: lost
    book.retry([book.inflight[1]])
    assert ids(book.next_batches(1.2)) == [[1]]


def test_a_suspect_that_is_reported_in_time_is_not_run_again():
    book = ledger(2)
    book.submit(jobs(1, 2))
    book.next_batches(0.0)
    book.taken(1, [2], 0.1)
    book.sweep(0.6)
    book.taken(0, [1], 0.7)  # a slow report
    assert book.sweep(1.1) == [] and book.suspects == set()


def test_a_batch_still_in_the_queue_is_not_suspected():
    book = ledger(2)
    book.submit(jobs(1, 2))
    book.next_batches(0.0)
    book.counted(2, book.handed, 0.1)  # both still waiting
    assert book.sweep(0.6) == [] and book.sweep(1.1) == []


def test_an_empty_queue_proves_every_earlier_batch_gone():
    book = ledger(2)
    book.submit(jobs(1, 1))
    book.next_batches(0.0)
    book.counted(0, book.handed, 0.3)
    book.sweep(0.6)
    assert [job.id for job in book.sweep(1.1)] == [1]


def test_an_empty_count_says_nothing_of_batches_handed_after_it_was_asked():
    book = ledger(2)
    book.submit(jobs(1, 1))
    upto = book.handed  # the count is asked before the batch is handed
    book.next_batches(0.0)
    book.counted(0, upto, 0.3)
    assert book.sweep(0.6) == [] and book.sweep(1.1) == []


def test_a_stalled_credit_is_replaced_by_the_queue_count():
    """Two batches vanished with dead workers: without the count no credit is left and
    nothing more would ever be sent."""
    book = ledger(2)
    book.submit(jobs(1, 300))
    assert len(book.next_batches(0.0)) == 4 and book.next_batches(1.0) == []
    assert book.stalled(1.0)
    book.counted(0, book.handed, 1.0)
    assert ids(book.next_batches(1.0)) == [list(range(257, 279)), list(range(279, 301))]


def test_a_count_does_not_touch_the_credit_while_batches_are_taken():
    book = ledger(2)
    book.submit(jobs(1, 300))
    first = book.next_batches(0.0)[0]
    book.taken(0, [job.id for job in first], 0.9)
    assert len(book.next_batches(0.9)) == 1
    book.counted(0, book.handed, 1.0)  # taken recently enough: not stalled
    assert book.waiting_batches == 4 and book.next_batches(1.0) == []


def test_a_worker_holding_a_batch_past_job_timeout_is_overdue():
    book = ledger(2)
    book.submit(jobs(1, 1))
    book.next_batches(0.0)
    book.taken(0, [1], 1.0)
    assert book.overdue(1.0 + TIMEOUT, manager_answers=False) == []
    assert book.overdue(1.1 + TIMEOUT, manager_answers=False) == [0]
    lost = book.died(0)  # killed: the usual rules
    assert book.retry(lost) == [] and book.attempts == {1: 1}


def test_a_silent_idle_worker_is_overdue_only_while_the_manager_answers():
    book = ledger(1)
    late = START_SECONDS + TIMEOUT + IDLE_SECONDS + 0.1
    assert book.overdue(late - 0.2, manager_answers=True) == []  # starting up
    assert book.overdue(late, manager_answers=False) == []  # all wait for the manager
    assert book.overdue(late, manager_answers=True) == [0]
    book.heard(0, late)  # it said Waiting
    assert book.overdue(late + 1, manager_answers=True) == []


def test_a_dead_manager_sends_every_unfinished_job_again_without_counting():
    book = ledger(2)
    book.submit(jobs(1, 6))
    book.next_batches(0.0)  # [1, 2, 3] and [4, 5, 6]
    book.taken(0, [1, 2, 3], 0.1)
    book.done(0, ok(1), 0.2)
    book.submit(jobs(7, 1))  # still pending
    book.manager_lost()
    assert book.workers == {} and book.waiting_batches == 0 and book.queued == {}
    assert book.attempts == {} and book.reruns == 0
    for worker in (5, 6):  # the new manager's workers
        book.started(worker, 1.0)
    assert ids(book.next_batches(1.0)) == [[2, 3, 4], [5, 6, 7]]
    assert book.died(0) == []  # an old worker's death loses nothing more
    assert book.sweep(2.0) == [] and book.sweep(3.0) == []  # old batch numbers: gone


def test_an_old_workers_outcome_after_a_manager_death_still_counts_once():
    book = ledger(1)
    book.submit(jobs(1, 1))
    book.next_batches(0.0)
    book.taken(0, [1], 0.1)
    book.manager_lost()
    book.started(1, 0.2)
    book.submit(jobs(2, 1))
    book.next_batches(0.2)  # jobs 1 and 2 in the new queue
    book.taken(0, [1], 0.25)  # an old worker's last word: not this queue's
    assert book.waiting_batches == 1 and 1 in book.queued
    assert [job.id for job, _ in book.done(0, ok(1), 0.3)] == [1]
    assert book.next_batches(0.4) == []  # finished: not sent again
    assert book.done(1, ok(1), 0.5) == []
