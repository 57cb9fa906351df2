"""The typed messages survive the trip between processes unchanged."""
from __future__ import annotations

import pickle

from compute.messages import Batch, Done, Job, Outcome, Taken, Waiting


def test_every_message_round_trips():
    messages = [
        Job(1, "best5", "q"), Job(2, "state_mean", "q", "Ohio"),
        Batch((Job(1, "best5", "q"), Job(3, "global_mean", "r"))),
        Taken(0, (1, 3)), Done(1, (Outcome(1, True, b"{}"), Outcome(3, True, None),
                                   Outcome(4, False, b"x", "trace", stored=False))),
        Waiting(2),
    ]
    for message in messages:
        copy = pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        assert copy == message and type(copy) is type(message)
