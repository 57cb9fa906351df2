"""ResultFiles on a real file system: a result appears whole under its name, with no
temporary left beside it, whichever way it was written; a repeated answer is a hard
link to the file that already holds it."""

from __future__ import annotations

import os
import shutil

from compute.dataset import load_csv
from compute.messages import Job
from compute.questions import LOWER_IS_BETTER
from compute.shared import SharedDataset
from server.pool.worker import JobRunner
from server.results import ResultFiles


def test_a_result_appears_under_its_name_and_nothing_else(tmp_path):
    files = ResultFiles(str(tmp_path / "jobs"))
    files.scan()
    files.write(7, True, b'{"status": "done", "data": 1}')
    files.write(8, False, b'{"status": "error", "reason": "x"}')
    assert sorted(os.listdir(files.dir)) == ["7.json", "8.error.json"]
    assert files.read(7, True) == b'{"status": "done", "data": 1}'
    assert files.scan() == {7: True, 8: False}


def test_a_job_run_again_replaces_its_result(tmp_path):
    files = ResultFiles(str(tmp_path / "jobs"), fsync=True)
    files.scan()
    files.write(3, True, b"first")
    files.write(3, True, b"second" * 20_000)  # larger than one write() may take
    files.commit()
    assert files.read(3, True) == b"second" * 20_000
    assert os.listdir(files.dir) == ["3.json"]


def test_a_directory_removed_and_made_again_is_written_to(tmp_path):
    files = ResultFiles(str(tmp_path / "jobs"))
    files.scan()
    files.write(1, True, b"one")
    shutil.rmtree(files.dir)
    files.scan()  # makes it again
    files.write(2, True, b"two")
    files.write(3, True, b"three")
    assert sorted(os.listdir(files.dir)) == ["2.json", "3.json"]
    assert files.read(3, True) == b"three"


def test_a_link_names_the_same_bytes_or_declines(tmp_path):
    files = ResultFiles(str(tmp_path / "jobs"))
    files.scan()
    files.write(1, True, b'{"status": "done", "data": 1}')
    assert files.link(1, 2) is True
    assert files.read(2, True) == files.read(1, True)
    assert os.stat(files.path(2, True)).st_ino == os.stat(files.path(1, True)).st_ino
    assert files.scan() == {1: True, 2: True}
    # the source evicted: nothing to link to, the caller writes
    os.unlink(files.path(1, True))
    assert files.link(1, 3) is False
    assert not os.path.exists(files.path(3, True))
    # the job's file exists already (a re-run): left alone, the caller's write replaces it
    files.write(4, True, b'{"status": "done", "data": 4}')
    assert files.link(2, 4) is False
    assert files.read(4, True) == b'{"status": "done", "data": 4}'


def test_a_worker_links_repeated_answers_and_writes_again_after_an_eviction(tmp_path, demo_csv):
    shared = SharedDataset.create(load_csv(demo_csv))
    try:
        runner = JobRunner(shared)
        files = ResultFiles(str(tmp_path / "jobs"))
        files.scan()
        question = LOWER_IS_BETTER[0]

        def persist(job_id: int, endpoint: str = "best5") -> int:
            job = Job(job_id, endpoint, question)
            outcome = runner.persist(files, job, runner.run(job))
            assert outcome.stored
            return os.stat(files.path(job_id, outcome.ok)).st_ino

        first = persist(1)
        assert persist(2) == first  # the same question: a link, no new file
        os.unlink(files.path(1, True))  # 1 evicted; 2 still has the bytes
        third = persist(3)  # nothing to link to: a new file, linked to from now on
        assert third != first
        assert persist(4) == third
        assert files.read(4, True) == files.read(2, True)
        assert persist(5, "worst5") not in (first, third)  # another question
        # errors are never linked: each failed job has its own file
        assert persist(6, "no_such_statistic") != persist(7, "no_such_statistic")
    finally:
        shared.release()
