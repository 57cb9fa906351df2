"""Crash safety of the parent process (docs/guarantees.md).

The real server is killed with SIGKILL at a random moment while client threads post
and poll, four times in a row, and started again each time on the same state dir (and
the same port). Every job id a client was given must be known after the restart and
end `done` with the reference answer; nothing on disk may be torn; no id may be handed
out twice; the killed run's workers, manager and shared memory must not outlive it.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time

from tests.support.live import assert_clean_stop, http, shm_segments, start_server
from tests.support.load import ClientLoad, JobMix, alive, children, wait_until

CYCLES = 4
SEED = int(os.environ.get("LESTATS_CRASH_SEED", "20240611"))


def _files_are_whole(state_dir, temporaries: bool) -> int:
    """Every result file parses as a finished job and the state dir holds nothing
    else; `temporaries`: also allow the `.<id>.<pid>.tmp` a result is written to before its
    rename (a crash leaves them; the next start removes them)."""
    names = os.listdir(state_dir)
    assert set(names) <= {"journal.jsonl", "jobs"}, names
    count = 0
    for entry in os.scandir(state_dir / "jobs"):
        if temporaries and re.fullmatch(r"\.[1-9][0-9]*\.[0-9]+\.tmp", entry.name):
            continue
        assert re.fullmatch(r"[1-9][0-9]*\.json", entry.name), entry.name
        body = json.loads(open(entry.path, "rb").read())  # raises on torn or empty
        assert body["status"] == "done", (entry.name, body)
        count += 1
    for line in open(state_dir / "journal.jsonl", "rb"):
        json.loads(line)
    return count


def test_kill_9_under_load_loses_nothing(tmp_path, demo_csv):
    rng = random.Random(SEED)
    mix = JobMix(demo_csv, SEED)
    state_dir = tmp_path / "state"
    acknowledged: dict[int, tuple[str, dict]] = {}
    handed_out: list[int] = []
    port = None
    # Figures of the previous cycle's kill, reported by the next cycle.
    killed_pid = unfinished = previous_acknowledged = 0
    previous_fsync = False
    print(f"\nseed {SEED}")
    for cycle in range(CYCLES + 1):
        fsync = cycle % 2 == 1  # the fsync mode in half of the runs
        server = start_server(
            tmp_path,
            data=demo_csv,
            state_dir=state_dir,
            port=port,
            env={"LESTATS_FSYNC": "1" if fsync else "0"},
        )
        port = server.port
        try:
            # The start after a kill: nothing of the killed run remains.
            if cycle:
                assert shm_segments(killed_pid) == [], "the killed run's shared memory"
            reran = re.search(r"running again (\d+) job", server.text())
            recovered = int(reran.group(1)) if reran else 0

            # Every id ever acknowledged is known and ends done with the right answer.
            lost = []
            for job_id, (endpoint, body) in acknowledged.items():
                status, result, _ = http(
                    f"{server.url}/api/get_results/{job_id}?wait=20", timeout=30
                )
                if status != 200 or result["status"] != "done":
                    lost.append((job_id, status, result))
                    continue
                mix.check(endpoint, body, result)
            if cycle:
                print(
                    f"run {cycle} (fsync {'on' if previous_fsync else 'off'}): "
                    f"{previous_acknowledged} acknowledged, {unfinished} not finished "
                    f"at the kill, {recovered} recovered by the restart, "
                    f"{len(lost)} lost"
                )
            assert lost == []
            idle = f"{server.url}/api/num_jobs"
            assert wait_until(lambda idle=idle: http(idle)[1]["num_jobs"] == 0, 30), (
                "recovered jobs do not finish"
            )
            assert _files_are_whole(state_dir, temporaries=False) >= len(acknowledged)
            if cycle == CYCLES:
                break

            # Load, then kill -9 at a random moment.
            load = ClientLoad(server.url, mix, clients=6, seed=rng.randrange(1 << 30))
            load.start()
            time.sleep(rng.uniform(0.4, 1.6))
            family = children(server.pid)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(10)
            killed_pid = server.pid
            load.stop()
        except BaseException:
            server.stop(signal.SIGKILL)
            raise

        _files_are_whole(state_dir, temporaries=True)  # what the kill left: nothing torn
        assert load.acknowledged, "the load got no job in before the kill"
        new_ids = sorted(load.acknowledged)
        assert not handed_out or new_ids[0] > max(handed_out), "an id went backwards"
        handed_out += new_ids
        assert len(handed_out) == len(set(handed_out)), "an id was handed out twice"
        acknowledged.update(load.acknowledged)
        done_files = {int(p.stem) for p in (state_dir / "jobs").glob("*.json")}
        unfinished = len(set(new_ids) - done_files)
        previous_acknowledged, previous_fsync = len(new_ids), fsync
        # Workers and manager die with the parent (PR_SET_PDEATHSIG); the resource
        # tracker follows once they are gone.
        assert len(family) >= 3, family
        assert wait_until(lambda family=family: not any(alive(p) for p in family), 15), [
            p for p in family if alive(p)
        ]

    assert_clean_stop(server)
    print(f"{len(acknowledged)} jobs acknowledged over {CYCLES} kills, all done")
