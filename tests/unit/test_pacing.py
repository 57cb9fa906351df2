"""Backoff and the throttled log of the pool (server/pool/pacing.py)."""

from __future__ import annotations

import logging

from server.pool.pacing import Backoff, Throttle


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success():
    backoff = Backoff(first=0.1, most=0.5)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1


def test_a_repeated_fault_is_logged_once_then_with_the_count_left_out(caplog):
    log = logging.getLogger("test.pacing")
    throttle = Throttle(log, every=3600)
    for _ in range(5):
        throttle.error("spawn", "cannot start a worker (%s)", "EMFILE")
    throttle.error("other", "another cause")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot start a worker (EMFILE)",
        "another cause",
    ]
    throttle._seen["spawn"] = (throttle._seen["spawn"][0] - 3600, 4)  # an hour later
    throttle.error("spawn", "cannot start a worker (%s)", "EMFILE")
    assert caplog.records[-1].getMessage() == (
        "cannot start a worker (EMFILE) (4 more like this in the last 3600 s not logged)"
    )
