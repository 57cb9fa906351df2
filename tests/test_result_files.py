"""ResultFiles on a real file system: a result appears whole under its name, with no
temporary left beside it, whichever way it was written."""

from __future__ import annotations

import os
import shutil

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
