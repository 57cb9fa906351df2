"""Data faults at start-up, end to end on the real process (docs/api.md, "Data";
docs/operations.md, "Data").

Each bad input must stop start-up with exit code 2 and one line naming the file and
the problem — no traceback, no server on part of the data (it never listened), and no
shared memory left behind.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from tests.support.live import shm_segments, start_server

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def _lines(csv_path):
    return csv_path.read_bytes().splitlines(keepends=True)


def truncated(src, out):
    data = src.read_bytes()
    cut = data.index(b"\n", len(data) * 2 // 3) + 40
    out.write_bytes(data[:cut])  # a download cut in the middle of a row


def cut_in_the_last_field(src, out):
    data = src.read_bytes()
    out.write_bytes(data[: data.index(b"\n", len(data) // 2) - 2])  # the row's width is intact


def cut_in_a_quote(src, out):
    data = src.read_bytes()
    out.write_bytes(data[: data.index(b'"(', len(data) // 2) + 5])


def bad_row_in_the_middle(src, out):
    lines = _lines(src)
    middle = len(lines) // 2
    out.write_bytes(b"".join(lines[:middle] + [b"1,2,3\r\n"] + lines[middle:]))


def nul_bytes_in_the_middle(src, out):
    data = src.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 30
    out.write_bytes(data[:cut] + b"\0" * 8 + data[cut:])  # what a torn write can leave


def not_csv(src, out):
    out.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))


def text_not_csv(src, out):
    out.write_text("Dear diary,\ntoday I loaded a CSV file.\n")


def header_only(src, out):
    out.write_bytes(_lines(src)[0])


def empty(src, out):
    out.write_bytes(b"")


def a_directory(src, out):
    out.mkdir()


def a_fifo(src, out):
    os.mkfifo(out)  # nobody writes: opening it for reading would block for ever


def missing(src, out):
    pass


@pytest.mark.parametrize(
    "make, words",
    [
        (truncated, "field(s), the header has"),
        (cut_in_the_last_field, "may be cut short"),
        (cut_in_a_quote, "field(s), the header has"),
        (bad_row_in_the_middle, "has 3 field(s)"),
        (nul_bytes_in_the_middle, "NUL byte"),
        (not_csv, "not UTF-8"),
        (text_not_csv, "missing column(s)"),
        (header_only, "no data rows"),
        (empty, "is empty"),
        (a_directory, "is a directory"),
        (a_fifo, "not a regular file"),
        (missing, "no such file"),
    ],
)
def test_bad_data_stops_start_up_with_one_line(tmp_path, demo_csv, make, words):
    bad = tmp_path / "bad.csv"
    make(demo_csv, bad)
    _refused(tmp_path, bad, words)


def _refused(tmp_path, bad, words, **kw):
    server = start_server(tmp_path, data=bad, wait_ready=False, **kw)
    try:
        assert server.process.wait(60) == 2, server.text()
    finally:
        server.stop(9)
    text = server.text()
    assert len(text.strip().splitlines()) == 1, text
    assert str(bad) in text and words in text, text
    assert "Traceback" not in text and "serving on" not in server.log_file.read_text()
    assert shm_segments(server.pid) == []


def _drop_file_override():
    """In the child before exec: a root process without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH is bound by file permissions like anyone else (dropped from
    the bounding set, they are not in the new program's capabilities)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file_stops_start_up(tmp_path, demo_csv):
    """chmod 000 does not stop root (CAP_DAC_OVERRIDE), and the tests run as root in
    CI. So when root, the server runs as root *without* the capabilities that bypass
    file permissions: everything it needs is owned by root and readable by its owner,
    but the data file, mode 000, is not — an honest "permission denied"."""
    bad = tmp_path / "secret.csv"
    bad.write_bytes(demo_csv.read_bytes())
    bad.chmod(0)
    preexec = _drop_file_override if os.geteuid() == 0 else None
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(bad)!r})"],
        preexec_fn=preexec,
        capture_output=True,
        text=True,
    )
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"cannot make a file unreadable here: {probe.stderr or 'readable'}")
    _refused(tmp_path, bad, "permission denied", preexec_fn=preexec)
