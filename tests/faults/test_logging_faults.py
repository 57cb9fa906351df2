"""The log's own faults must not sink the server (server/logsetup.py).

Against the real server process: its stderr is a pipe the test closes (the reader
went away: broken pipe) or never reads (the reader stalled), or its log file is on a
full device (/dev/full answers every write with ENOSPC, as a full disk does). Then
many requests, some of which log warnings: the server must keep serving, the log
file must keep growing, its memory stay bounded, and dropped records be counted in
/metrics. In-process, the writer itself: its queue bound and the collapsing of a
repeated fault into one line.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from server import logsetup
from tests.support.live import shm_segments, start_server
from tests.support.load import log_text, wait_until

REQUESTS = 6000  # each of the second half logs a warning: several pipes' worth of lines


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _hammer(server, count: int, marker: str) -> None:
    """`count` requests on one keep-alive connection; every other one is a refused
    cross-site request, which logs a warning (a stderr line); the last is `marker`."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for index in range(count):
            if index % 2:
                connection.request(
                    "GET", "/api/graceful_shutdown", headers={"Origin": "http://elsewhere.example"}
                )
                expected = 403
            else:
                connection.request("GET", "/healthz")
                expected = 200
            response = connection.getresponse()
            response.read()
            assert response.status == expected
        connection.request("GET", f"/healthz?{marker}")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def _dropped(server) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        m[0]: float(m[1])
        for m in re.findall(
            r'^lestats_log_records_dropped_total\{sink="(\w+)"\} (\S+)$', text, re.M
        )
    }


def _read_until(pipe, text: bytes, timeout: float) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        if select.select([pipe], [], [], 0.2)[0]:
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    assert text in seen, seen[-2000:]
    return seen


@pytest.mark.parametrize("reader", ["gone", "stalled"])
def test_stderr_reader_gone_or_stalled(tmp_path, demo_csv, reader):
    server = start_server(tmp_path, data=demo_csv, workers=1, console=subprocess.PIPE)
    _read_until(server.process.stdout, b"serving on http://", 10)
    if reader == "gone":
        server.process.stdout.close()  # the next stderr write is a broken pipe
    rss_before = _rss_kib(server.pid)
    try:
        _hammer(server, REQUESTS, "after-the-fault")
        # The file is written whatever stderr does: the last request is logged.
        assert wait_until(
            lambda: "GET /healthz?after-the-fault" in log_text(server.log_file), 15
        ), log_text(server.log_file)[-2000:]
        log = log_text(server.log_file)
        assert log.count("refused cross-site GET /api/graceful_shutdown") == REQUESTS // 2
        if reader == "gone":
            assert "stderr cannot be written (BrokenPipeError)" in log, log[-3000:]
        dropped = _dropped(server)
        assert set(dropped) == {"queue", "console"}, dropped
        assert dropped["console"] > 0  # what stderr could not take was dropped, counted
        # Bounded memory: nothing piles up (the old writer died and kept every record).
        assert _rss_kib(server.pid) - rss_before < 64 * 1024
        assert server.get("/readyz")[0] == 200
    finally:
        if reader == "stalled":  # let the children's own last words out at exit
            server.process.stdout.close()
        assert server.stop() == 0
    assert shm_segments(server.pid) == []
    assert "stopped cleanly" in log_text(server.log_file)


def test_log_file_on_a_full_disk(tmp_path, demo_csv):
    """Every log write fails with ENOSPC: one line about it per window on stderr, not
    one per batch or per request, and the server serves on."""
    full = tmp_path / "full.log"  # a link: nothing can ever rename /dev/full itself
    full.symlink_to("/dev/full")
    server = start_server(tmp_path, data=demo_csv, workers=1, env={"LESTATS_LOG_FILE": str(full)})
    started = time.monotonic()
    _hammer(server, 2000, "full")
    assert server.get("/readyz")[0] == 200
    assert server.stop() == 0, server.text()[-3000:]
    seconds = time.monotonic() - started
    output = server.text()
    faults = output.count(
        f"ERROR lestats.log cannot write the log file {full} (No space left on device)"
    )
    # One per REPEAT_WINDOW, plus one for the summary written at the end, each
    # window's repeats summed up in one line; the old writer wrote one per 20 ms
    # batch: hundreds here.
    assert 1 <= faults <= 2 + seconds / logsetup.REPEAT_WINDOW, output[-3000:]
    assert re.search(
        r"\d+ more like this in the last [\d.]+ s, not logged one by one: "
        r"cannot write the log file " + re.escape(str(full)),
        output,
    ), output[-3000:]
    assert "Traceback" not in output
    assert "stopped cleanly" in output


def _writer(path: Path, **kw) -> tuple[logsetup.LogWriter, logging.Logger]:
    writer = logsetup.LogWriter(str(path), **kw)
    logger = logging.Logger(f"test-{path.name}")  # not the root: pytest's stays as is
    logger.addHandler(logsetup._EnqueueHandler(writer))
    return writer, logger


def test_queue_is_bounded_and_drops_are_counted(tmp_path):
    """A writer that cannot keep up (here: not started yet) holds at most `limit`
    records; the rest are dropped, counted, and the count is written to the file."""
    writer, logger = _writer(tmp_path / "bounded.log", limit=100)
    for index in range(250):
        logger.info("record %d", index)
    assert writer.dropped == {"queue": 150, "console": 0}
    writer.start()
    writer.stop()
    lines = (tmp_path / "bounded.log").read_text().splitlines()
    assert [line.split()[-1] for line in lines[:100]] == [str(i) for i in range(100)]
    assert "dropped 150 log records" in lines[100], lines[100:]


def test_a_repeated_fault_is_one_traceback_and_one_summary(tmp_path):
    writer, logger = _writer(tmp_path / "repeats.log", window=60.0)
    writer.start()
    for index in range(300):
        try:
            raise OSError(28, "No space left on device", f"/state/jobs/{index}.json")
        except OSError:
            logger.exception("cannot store the result of job %d", index)
    logger.warning("a warning is never collapsed")
    logger.warning("a warning is never collapsed")
    writer.stop()  # the end of the window: the summary is written
    text = (tmp_path / "repeats.log").read_text()
    assert text.count("Traceback") == 1
    assert text.count("cannot store the result of job") == 2, text[-2000:]
    assert "299 more like this in the last" in text
    assert "not logged one by one: cannot store the result of job 0" in text
    assert text.count("a warning is never collapsed") == 2


def test_a_log_that_is_not_a_regular_file_is_never_rotated(tmp_path):
    """Rotation renames the file: never a device. (Through a link in tmp_path, so a
    regression renames the link, not the machine's /dev/null.)"""
    link = tmp_path / "webserver.log"
    link.symlink_to(os.devnull)
    writer, logger = _writer(link)
    writer.start()
    for index in range(30_000):  # several MiB: past the rotation size many times
        logger.info("record %d %s", index, "x" * 100)
    writer.stop()
    assert link.is_symlink() and list(tmp_path.iterdir()) == [link]
