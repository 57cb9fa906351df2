"""`lestats serve --frontends N` (cluster mode): N front-end processes on one port.

One event loop serves about one core's worth of HTTP. Here each front-end is a whole
`serve` in its own interpreter, listening with SO_REUSEPORT on the same address: the
kernel spreads new connections over the N listening sockets, so a big machine serves
HTTP on N cores. They share nothing but Redis (the job space is the cluster's), which
is why this exists only in cluster mode.

This parent only supervises:
- a front-end that dies (non-zero exit, a signal) is started again, in the same slot
  (same log file); more than MAX_RESTARTS restarts within RESTART_WINDOW seconds is a
  crash loop: everything stops and the parent exits 1, for the service manager above;
- a front-end that refuses to start (exit 2: the port, the data, the settings) would
  refuse again: everything stops and the parent exits 2 with that reason on stderr;
- SIGTERM, SIGINT, SIGHUP or SIGQUIT, or a front-end stopped by
  /api/graceful_shutdown (exit 0), stops them all gracefully: each one refuses new
  jobs, finishes what it acknowledged and exits 0; the parent exits 0 once all
  have (1 if one did not end cleanly). A second signal is passed on too (the
  front-ends then skip their linger).
Each front-end dies with the parent (PR_SET_PDEATHSIG), so a killed parent never
leaves a front-end holding the port.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from server.config import Settings

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STARTUP_REFUSED = 2  # serve()'s exit code when it cannot start (see server.serve)
_PR_SET_PDEATHSIG = 1


def front_end_settings(settings: Settings, slot: int) -> Settings:
    """The settings of front-end `slot` (1-based): one process, its own log file
    (several processes rotating one file would lose records). The --workers local
    workers run once per machine, under front-end 1; the others are pure front-ends."""
    log = Path(settings.log_file)
    return replace(
        settings,
        frontends=1,
        workers=settings.workers if slot == 1 else 0,
        log_file=str(log.with_name(f"{log.stem}-{slot}{log.suffix}")),
    )


def _front_end(settings: Settings, parent: int) -> None:
    """Body of a front-end process; `parent` is the supervisor's pid."""
    os.setsid()  # a terminal's Ctrl-C reaches the parent only, which passes it on once
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's own signal handling still stops it
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    from server.serve import serve

    sys.exit(serve(settings, reuse_port=True))


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.context = mp.get_context("spawn")
        self.running: dict[int, mp.process.BaseProcess] = {}  # slot → process
        self.restarts: list[float] = []
        self.stopping = False
        self.exit_code = 0

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, self._on_signal)
        for slot in range(1, self.settings.frontends + 1):
            self._start(slot)
        _say(
            f"{self.settings.frontends} front-ends on {self.settings.host}:"
            f"{self.settings.port} (SO_REUSEPORT), supervisor pid {os.getpid()}"
        )
        while self.running:
            sentinels: dict[Any, int] = {p.sentinel: slot for slot, p in self.running.items()}
            for ready in mp.connection.wait(list(sentinels), timeout=1.0):
                self._ended(sentinels[ready])
        _say(f"all front-ends stopped; exit {self.exit_code}")
        return self.exit_code

    def _start(self, slot: int) -> None:
        process = self.context.Process(
            target=_front_end,
            name=f"lestats-frontend-{slot}",
            args=(front_end_settings(self.settings, slot), os.getpid()),
        )
        process.start()
        self.running[slot] = process

    def _ended(self, slot: int) -> None:
        process = self.running.pop(slot)
        process.join()
        code = cast(int, process.exitcode)  # set once join() has returned
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        if self.stopping:
            if code != 0:
                _say(f"front-end {slot} (pid {process.pid}) ended with {how} while stopping")
                self.exit_code = max(self.exit_code, 1)
            return
        if code == 0:
            _say(f"front-end {slot} (pid {process.pid}) shut down gracefully; stopping the others")
            self._stop_all(signal.SIGTERM)
        elif code == STARTUP_REFUSED:
            _say(
                f"front-end {slot} (pid {process.pid}) could not start (its reason is "
                f"above); stopping"
            )
            self.exit_code = STARTUP_REFUSED
            self._stop_all(signal.SIGTERM)
        elif self._crash_loop():
            _say(
                f"front-end {slot} (pid {process.pid}) ended with {how}: more than "
                f"{MAX_RESTARTS} restarts in {RESTART_WINDOW:g} s; stopping"
            )
            self.exit_code = 1
            self._stop_all(signal.SIGTERM)
        else:
            _say(f"front-end {slot} (pid {process.pid}) ended with {how}; restarting it")
            self._start(slot)

    def _crash_loop(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
        return len(self.restarts) > MAX_RESTARTS

    def _on_signal(self, signum: int, _frame) -> None:
        _say(f"received {signal.Signals(signum).name}; stopping the front-ends gracefully")
        self._stop_all(signal.SIGTERM)

    def _stop_all(self, signum: int) -> None:
        self.stopping = True
        for process in self.running.values():
            if process.pid is not None:
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass  # ended already: its sentinel is ready, run() collects it


def supervise(settings: Settings) -> int:
    return Supervisor(settings).run()


def _say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} lestats supervisor: {message}", file=sys.stderr, flush=True)
