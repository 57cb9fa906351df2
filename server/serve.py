"""The server's life: load, share, start the pool, serve, and shut down gracefully.

Every resource is entered into one AsyncExitStack as soon as it exists, so whatever
way start-up fails or the server stops, the workers are stopped and the shared
memory segment is unlinked.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import signal
import sys
import time

from aiohttp import web

from compute import demo
from compute.dataset import DataError, load_csv, release_memory
from compute.shared import SharedDataset, reclaim_stale_segments
from server import datasource, logsetup
from server.app import init_app
from server.config import Settings
from server.errors import JsonAppRunner
from server.jobs import JobService
from server.pool import LocalPool

log = logsetup.get("serve")


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


def serve(settings: Settings) -> int:
    """Run until shut down; the process exit code."""
    try:
        writer = logsetup.configure(settings.log_file)
    except OSError as exc:
        print(f"lestats: cannot open the log file {settings.log_file} "
              f"({exc.strerror or exc})", file=sys.stderr)
        return 2
    try:
        try:  # libuv's loop: less CPU per request (docs/design.md, "Dependencies")
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        return runner(_serve(settings))
    except (DataError, StartupError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        writer.stop()


async def _serve(settings: Settings) -> int:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    service = JobService(settings.state_dir, max_queue=settings.max_queue,
                         retain=settings.max_results, fsync=settings.fsync)
    # From the first moment: a signal during start-up shuts down gracefully once up.
    _on_signals(loop, service)
    _raise_file_limit()
    for name in reclaim_stale_segments():
        log.warning("removed shared memory %s left by a process that no longer runs", name)
    path = datasource.resolve(settings.data)
    dataset = load_csv(path)
    synthetic = demo.is_synthetic(path)
    loaded = time.monotonic()
    log.info("loaded %s in %.2f s: %d rows read, %d used, %d ignored (no numeric "
             "Data_Value), %d questions, %d locations%s", path, loaded - started,
             dataset.rows_read, dataset.rows_loaded, dataset.rows_ignored,
             len(dataset.questions), len(dataset.locations),
             " — SYNTHETIC demo data, not real CDC figures" if synthetic else "",
             extra=logsetup.CONSOLE)
    async with contextlib.AsyncExitStack() as stack:
        shared = SharedDataset.create(dataset)
        stack.callback(shared.release)
        dataset = shared.dataset  # the parent, too, reads the one shared copy
        release_memory()
        stack.callback(service.close)
        unfinished = service.open()
        pool = LocalPool(shared.handle, settings.worker_count, service.results.files,
                         service.on_done)
        pool.start()
        stack.push_async_callback(pool.stop)
        service.start(pool, unfinished)
        info = {"file": str(path), "synthetic": synthetic,
                "rows_read": dataset.rows_read, "rows_loaded": dataset.rows_loaded,
                "rows_ignored": dataset.rows_ignored, "questions": dataset.questions,
                "states": dataset.locations, "workers": settings.worker_count,
                "shared_memory_bytes": shared.nbytes,
                "load_seconds": round(loaded - started, 4)}
        app = init_app(service, dataset, settings, info)
        # keepalive_timeout also closes a connection whose request line and headers
        # have not all arrived by then (aiohttp arms it when the connection opens).
        runner = JsonAppRunner(app, handle_signals=False,
                               access_log_class=logsetup.AccessLogger,
                               keepalive_timeout=settings.client_timeout)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.host, settings.port, backlog=2048)
        try:
            await site.start()
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = ("; is another server running there? Choose another port: "
                        "--port N, LESTATS_PORT=N or `make run PORT=N`")
            raise StartupError(f"cannot listen on {settings.host}:{settings.port} "
                               f"({exc.strerror or exc}){hint}") from None
        info["startup_seconds"] = round(time.monotonic() - started, 4)
        log.info("serving on http://%s:%d with %d worker processes (ready in %.2f s)",
                 settings.host, settings.port, settings.worker_count,
                 info["startup_seconds"], extra=logsetup.CONSOLE)
        await service.shutdown_requested.wait()
        await service.wait_drained()
        if service.idle_at_shutdown:
            log.info("no job was in flight; stopping without the linger",
                     extra=logsetup.CONSOLE)
        elif settings.shutdown_linger > 0:
            log.info("all accepted jobs finished; serving results for %g s more "
                     "(a second Ctrl-C skips this)", settings.shutdown_linger,
                     extra=logsetup.CONSOLE)
            await _linger(service, settings.shutdown_linger)
    log.info("stopped cleanly", extra=logsetup.CONSOLE)
    return 0


def _raise_file_limit() -> None:
    """Every connection is a file descriptor; the usual soft limit (1024) would refuse
    connections long before the event loop is busy. Raise it to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _on_signals(loop: asyncio.AbstractEventLoop, service: JobService) -> None:
    def requested(signum: int) -> None:
        if service.shutdown_requested.is_set():
            service.linger_cut.set()  # a second signal: do not wait for the linger
        log.info("received %s", signal.Signals(signum).name, extra=logsetup.CONSOLE)
        service.begin_shutdown()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, requested, signum)


async def _linger(service: JobService, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(service.linger_cut.wait(), seconds)
