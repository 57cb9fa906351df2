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
import socket
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
from server.jobs import JobService, Service
from server.pool import LocalPool
from server.statelock import StateDirError, StateLock

log = logsetup.get("serve")


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


def serve(settings: Settings, reuse_port: bool = False) -> int:
    """Run until shut down; the process exit code. `reuse_port`: listen with
    SO_REUSEPORT, beside the other front-ends of `--frontends N` (cluster mode)."""
    if settings.frontends > 1:
        from server.cluster.frontends import supervise

        return supervise(settings)
    try:
        writer = logsetup.configure(settings.log_file)
    except OSError as exc:
        print(
            f"lestats: cannot open the log file {settings.log_file} ({exc.strerror or exc})",
            file=sys.stderr,
        )
        return 2
    try:
        try:  # libuv's loop: less CPU per request (docs/design.md, "Dependencies")
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        return runner(_serve(settings, reuse_port))
    except (DataError, StartupError, StateDirError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        writer.stop()


async def _serve(settings: Settings, reuse_port: bool) -> int:
    if settings.broker:  # cluster mode (docs/cluster.md); Redis is imported only here
        from server.cluster.service import ClusterJobService

        return await _serve_with(
            ClusterJobService(
                settings.broker, max_queue=settings.max_queue, retain=settings.max_results
            ),
            settings,
            reuse_port,
        )
    # First of all: a second server on this state dir stops here, having touched nothing.
    lock = StateLock.take(settings.state_dir)
    try:
        return await _serve_with(
            JobService(
                settings.state_dir,
                max_queue=settings.max_queue,
                retain=settings.max_results,
                fsync=settings.fsync,
            ),
            settings,
            reuse_port,
        )
    finally:
        lock.release()


async def _serve_with(service: Service, settings: Settings, reuse_port: bool) -> int:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    # From the first moment: a signal during start-up shuts down gracefully once up.
    _on_signals(loop, service)
    _raise_file_limit()
    for name in reclaim_stale_segments():
        log.warning("removed shared memory %s left by a process that no longer runs", name)
    path = datasource.resolve(settings.data)
    dataset = load_csv(path)
    synthetic = demo.is_synthetic(path)
    fingerprint = dataset.fingerprint
    loaded = time.monotonic()
    log.info(
        "loaded %s in %.2f s: %d rows read, %d used, %d ignored (no numeric "
        "Data_Value), %d questions, %d locations%s",
        path,
        loaded - started,
        dataset.rows_read,
        dataset.rows_loaded,
        dataset.rows_ignored,
        len(dataset.questions),
        len(dataset.locations),
        " — SYNTHETIC demo data, not real CDC figures" if synthetic else "",
        extra=logsetup.CONSOLE,
    )
    if not dataset.year_end_column:
        log.warning(
            "%s has no YearEnd column: each row's YearEnd is taken to be its "
            "YearStart (docs/analytics.md)",
            path,
            extra=logsetup.CONSOLE,
        )
    async with contextlib.AsyncExitStack() as stack:
        shared = SharedDataset.create(dataset)
        stack.callback(shared.release)
        dataset = shared.dataset  # the parent, too, reads the one shared copy
        release_memory()
        if isinstance(service, JobService):
            workers = start_embedded(service, shared, settings, stack, fingerprint)
        else:
            from server.cluster.service import start

            await start(service, shared, settings, stack, fingerprint)
            workers = settings.workers  # 0: a pure front-end
        info = {
            "file": str(path),
            "synthetic": synthetic,
            "rows_read": dataset.rows_read,
            "rows_loaded": dataset.rows_loaded,
            "rows_ignored": dataset.rows_ignored,
            "dataset_fingerprint": fingerprint,
            "questions": dataset.questions,
            "states": dataset.locations,
            "years": dataset.year_summary(),
            "workers": workers,
            "shared_memory_bytes": shared.nbytes,
            "load_seconds": round(loaded - started, 4),
        }
        app = init_app(service, dataset, settings, info)
        # keepalive_timeout also closes a connection whose request line and headers
        # have not all arrived by then (aiohttp arms it when the connection opens).
        runner = JsonAppRunner(
            app,
            handle_signals=False,
            access_log_class=logsetup.AccessLogger,
            keepalive_timeout=settings.client_timeout,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        try:
            await _site(runner, settings.host, settings.port, reuse_port).start()
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = (
                    "; is another server running there? Choose another port: "
                    "--port N, LESTATS_PORT=N or `make run PORT=N`"
                )
            raise StartupError(
                f"cannot listen on {_address(settings.host)}:{settings.port} "
                f"({exc.strerror or exc}){hint}"
            ) from None
        info["startup_seconds"] = round(time.monotonic() - started, 4)
        log.info(
            "serving on http://%s:%d with %d worker processes (ready in %.2f s)",
            _address(settings.host),
            settings.port,
            workers,
            info["startup_seconds"],
            extra=logsetup.CONSOLE,
        )
        await service.shutdown_requested.wait()
        if not await _drain(service, settings.job_timeout):
            return 1
        if service.idle_at_shutdown:
            log.info("no job was in flight; stopping without the linger", extra=logsetup.CONSOLE)
        elif settings.shutdown_linger > 0:
            log.info(
                "all accepted jobs finished; serving results for %g s more "
                "(a second Ctrl-C skips this)",
                settings.shutdown_linger,
                extra=logsetup.CONSOLE,
            )
            await _linger(service, settings.shutdown_linger)
    log.info("stopped cleanly", extra=logsetup.CONSOLE)
    return 0


def start_embedded(
    service: JobService,
    shared: SharedDataset,
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    fingerprint: str | None,
) -> int:
    """Recover what an earlier run left, start the worker pool; its size. Whatever it
    starts is stopped by `stack` (tests/support/inprocess.py assembles an app the same
    way, in a test's own event loop)."""
    stack.callback(service.close)
    unfinished = service.open(fingerprint)
    pool = LocalPool(
        shared.handle,
        settings.worker_count,
        service.results.files,
        service.on_done,
        job_timeout=settings.job_timeout,
    )
    pool.start()
    stack.push_async_callback(pool.stop)
    service.start(pool, unfinished)
    return settings.worker_count


def _site(runner: web.AppRunner, host: str, port: int, reuse_port: bool) -> web.BaseSite:
    """Where to listen. `::` (every IPv6 address) is dual-stack, IPv4 included, as
    operators expect of it; asyncio would make it IPv6-only (IPV6_V6ONLY)."""
    if host not in ("::", "[::]"):
        return web.TCPSite(runner, host, port, backlog=2048, reuse_port=reuse_port or None)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return web.SockSite(runner, sock, backlog=2048)


def _address(host: str) -> str:
    """The host as it is written in a URL (IPv6 in brackets)."""
    return f"[{host.strip('[]')}]" if ":" in host else host


async def _drain(service: Service, patience: float) -> bool:
    """Wait until every accepted job has finished — but not for a service that cannot
    run them (a pool that is not ready; in cluster mode also Redis unreachable): after
    `patience` seconds in a row of that, give up (False). The jobs left are in the
    journal (cluster mode: in Redis) and run at the next start or on another node; the
    exit code (1) tells a supervisor to start it again."""
    unready_since: float | None = None
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.wait_drained(), 1.0)
            return True
        reason = service.unready()
        if reason is None:
            unready_since = None
            continue
        now = time.monotonic()
        unready_since = now if unready_since is None else unready_since
        if now - unready_since >= patience:
            log.error(
                "stopping with %d unfinished job(s): not ready for %.0f s (%s); they "
                "stay in the journal (cluster mode: in Redis) and run at the next start",
                service.running_count,
                now - unready_since,
                reason,
                extra=logsetup.CONSOLE,
            )
            return False


def _raise_file_limit() -> None:
    """Every connection is a file descriptor; the usual soft limit (1024) would refuse
    connections long before the event loop is busy. Raise it to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _on_signals(loop: asyncio.AbstractEventLoop, service: Service) -> None:
    def requested(signum: int) -> None:
        if service.shutdown_requested.is_set():
            service.linger_cut.set()  # a second signal: do not wait for the linger
        log.info("received %s", signal.Signals(signum).name, extra=logsetup.CONSOLE)
        service.begin_shutdown()

    # SIGHUP (the terminal or an SSH session went away) and SIGQUIT (Ctrl-\\) would
    # otherwise end the process at once, dropping jobs in flight: all drain the same way.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        loop.add_signal_handler(signum, requested, signum)


async def _linger(service: Service, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(service.linger_cut.wait(), seconds)
