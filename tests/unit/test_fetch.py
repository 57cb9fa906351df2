"""`lestats data fetch` against loopback servers: a good file, a download cut
half-way, HTML instead of CSV, and Ctrl-C. The target appears complete or not at all."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
from aiohttp import web

from compute import demo
from compute.dataset import load_csv
from server import fetch
from server.cli import main
from server.fetch import FetchError

ROOT = Path(__file__).resolve().parents[2]
OLD = b"an earlier download that must survive a failed one\n"


@pytest.fixture(scope="module")
def csv_bytes(tmp_path_factory) -> bytes:
    return demo.write(tmp_path_factory.mktemp("src") / "source.csv", count=500).read_bytes()


@pytest.fixture
def target(tmp_path) -> Path:
    """The file to write, with an earlier version already in place."""
    path = tmp_path / "cache" / "brfss.csv"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


def only_the_old_file_is_left(target: Path) -> bool:
    return os.listdir(target.parent) == [target.name] and target.read_bytes() == OLD


async def serve(aiohttp_server, handler) -> str:
    app = web.Application()
    app.router.add_get("/rows.csv", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/rows.csv"))


def half_then(csv_bytes: bytes, after):
    """A handler that promises the whole file, sends half, then calls `after`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.content_length = len(csv_bytes)
        await response.prepare(request)
        await response.write(csv_bytes[: len(csv_bytes) // 2])
        await after(request)
        return response

    return handler


@pytest.mark.parametrize("compressed", [False, True], ids=["content-length", "chunked-gzip"])
async def test_a_good_file_is_saved_checked_and_summarised(
    aiohttp_server, csv_bytes, target, compressed
):
    async def handler(request: web.Request) -> web.StreamResponse:
        if not compressed:
            return web.Response(body=csv_bytes, content_type="text/csv")
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.enable_compression()
        await response.prepare(request)
        for start in range(0, len(csv_bytes), 10_000):
            await response.write(csv_bytes[start : start + 10_000])
        return response

    url = await serve(aiohttp_server, handler)
    progress = io.StringIO()
    path, dataset = await fetch.fetch(url, target, progress_stream=progress)
    assert path == target and target.read_bytes() == csv_bytes
    assert os.listdir(target.parent) == [target.name]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # an ordinary file
    assert (dataset.rows_read, len(dataset.questions)) == (500, 9)
    assert dataset.rows_loaded == load_csv(target).rows_loaded
    final = progress.getvalue()
    assert final.count("\n") == 1 and "MiB" in final  # not a terminal: one line
    assert ("100%" in final) != compressed  # a percentage only with a known size


async def test_a_download_cut_half_way_leaves_nothing_half_written(
    aiohttp_server, csv_bytes, target
):
    async def cut(request: web.Request) -> None:
        request.transport.close()
        raise ConnectionResetError("cut by the test")

    url = await serve(aiohttp_server, half_then(csv_bytes, cut))
    with pytest.raises(FetchError, match="broke off before the end; nothing was saved"):
        await fetch.fetch(url, target, progress_stream=io.StringIO())
    assert only_the_old_file_is_left(target)


@pytest.mark.parametrize("content_type", ["text/html", "text/csv"])
async def test_html_instead_of_csv_is_refused(aiohttp_server, target, content_type):
    async def login_wall(request: web.Request) -> web.Response:
        return web.Response(
            text="\n<!DOCTYPE html><html><body>Sign in</body></html>", content_type=content_type
        )

    url = await serve(aiohttp_server, login_wall)
    with pytest.raises(FetchError, match="HTML.* not CSV"):
        await fetch.fetch(url, target, progress_stream=io.StringIO())
    assert only_the_old_file_is_left(target)


@pytest.mark.parametrize(
    "status, body, words",
    [
        (404, b"", "answered HTTP 404 Not Found"),
        (200, b"", "sent an empty file"),
        (200, b"a,b\n1,2\n", "is not usable: missing column(s) Question, LocationDesc"),
    ],
)
async def test_other_unusable_answers_are_refused(aiohttp_server, target, status, body, words):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="text/csv")

    url = await serve(aiohttp_server, handler)
    with pytest.raises(FetchError) as caught:
        await fetch.fetch(url, target, progress_stream=io.StringIO())
    assert words in str(caught.value) and ".part" not in str(caught.value)
    assert only_the_old_file_is_left(target)


async def test_an_unwritable_target_is_a_clear_error(aiohttp_server, csv_bytes, tmp_path):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=csv_bytes, content_type="text/csv")

    url = await serve(aiohttp_server, handler)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FetchError, match=r"cannot write .*a-file/brfss.csv \("):
        await fetch.fetch(url, tmp_path / "a-file" / "brfss.csv", progress_stream=io.StringIO())
    assert os.listdir(tmp_path) == ["a-file"]


async def test_cancelling_mid_download_removes_the_partial_file(aiohttp_server, csv_bytes, target):
    """Ctrl-C under asyncio.run is a cancellation of the running task."""

    async def stall(request: web.Request) -> None:
        await asyncio.Event().wait()

    url = await serve(aiohttp_server, half_then(csv_bytes, stall))
    task = asyncio.create_task(fetch.fetch(url, target, progress_stream=io.StringIO()))
    await until(lambda: partial_size(target) > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert only_the_old_file_is_left(target)


async def test_ctrl_c_in_the_command_exits_130_and_saves_nothing(aiohttp_server, csv_bytes, target):
    async def stall(request: web.Request) -> None:
        await asyncio.Event().wait()

    url = await serve(aiohttp_server, half_then(csv_bytes, stall))
    code = (
        "import argparse, sys\nfrom server import cli\n"
        f"args = argparse.Namespace(url={url!r}, out={str(target)!r})\n"
        "sys.exit(cli.run_fetch(args))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: partial_size(target) > 0)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, err.decode()
    assert b"interrupted; nothing was saved" in err
    assert only_the_old_file_is_left(target)


async def test_the_command_prints_the_summary(aiohttp_server, csv_bytes, tmp_path, capsys):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=csv_bytes, content_type="text/csv")

    url = await serve(aiohttp_server, handler)
    out = tmp_path / "new" / "dir" / "brfss.csv"
    # In a thread: the command runs its own event loop, this one serves the file.
    assert await asyncio.to_thread(run_cli, "data", "fetch", "--url", url, "--out", str(out)) == 0
    dataset = load_csv(out)
    years = dataset.arrays["year"]
    assert capsys.readouterr().out.splitlines() == [
        f"saved {out}",
        f"rows: 500 read, {dataset.rows_loaded} with a value, "
        f"{dataset.rows_ignored} ignored (no numeric Data_Value)",
        "questions: 9",
        f"states: {len(dataset.locations)}",
        f"years: {years.min()}–{years.max()}",
    ]


async def test_the_command_reports_a_failure_and_exits_1(aiohttp_server, target, capsys):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy")

    url = await serve(aiohttp_server, handler)
    assert (
        await asyncio.to_thread(run_cli, "data", "fetch", "--url", url, "--out", str(target)) == 1
    )
    assert capsys.readouterr().err == f"lestats: {url} answered HTTP 503 Service Unavailable\n"
    assert only_the_old_file_is_left(target)


def test_the_default_cache_is_under_the_working_directory_and_gitignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fetch.default_cache_path().parent == tmp_path / "data" / "cache"
    assert "/data/cache/" in (ROOT / ".gitignore").read_text().splitlines()


def run_cli(*argv: str) -> int:
    """`lestats …` through the real entry point."""
    return main(list(argv))


def partial_size(target: Path) -> int:
    return sum(p.stat().st_size for p in target.parent.glob(f".{target.name}.*.part"))


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
