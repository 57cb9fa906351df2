"""`lestats data fetch`: download the CDC dataset so that `lestats serve` can use it.

The file appears at its final path complete and loadable, or not at all: the
download goes to a temporary file in the same directory, is checked with the very
loader the server uses, and only then renamed over the target (os.replace is atomic
within one file system). Any failure — HTTP error, HTML instead of CSV, a connection
cut half-way, a file the loader refuses, Ctrl-C — removes the temporary file and
leaves an earlier download untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import aiohttp

from compute.dataset import DataError, Dataset, load_csv
from server import paths

DEFAULT_URL = "https://data.cdc.gov/api/views/hn4x-zwk7/rows.csv?accessType=DOWNLOAD"
CHUNK = 1 << 16
# No total limit (the file is tens of MiB on any connection), but a stalled
# connection must not hang the command forever.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
HTML_TYPES = ("text/html", "application/xhtml+xml")


class FetchError(Exception):
    """The download cannot be used; the message is one sentence for the user."""


def default_cache_path() -> Path:
    """Where `lestats data fetch` writes and `lestats serve` looks: ./data/cache/
    under the working directory (server.paths; git-ignored in the checkout)."""
    return paths.fetched_file()


class Progress:
    """One line on a terminal, redrawn at most ten times a second.

    On a stream that is not a terminal (CI logs, a pipe) only the final line is
    written, so logs are not flooded with carriage returns.
    """

    WIDTH = 30

    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.done = 0
        self.started = self.drawn = time.monotonic()

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.interactive and now - self.drawn >= 0.1:
            self.drawn = now
            self.stream.write("\r" + self._line(now))
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write(("\r" if self.interactive else "") + self._line(time.monotonic()) + "\n")
        self.stream.flush()

    def _line(self, now: float) -> str:
        mib = self.done / 2**20
        rate = mib / max(now - self.started, 1e-6)
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            return (
                f"[{bar}] {share:4.0%} {mib:6.1f} / {self.total / 2**20:.1f} MiB {rate:5.1f} MiB/s"
            )
        return f"{mib:6.1f} MiB {rate:5.1f} MiB/s"


async def fetch(
    url: str = DEFAULT_URL,
    out: str | os.PathLike | None = None,
    progress_stream: TextIO | None = None,
) -> tuple[Path, Dataset]:
    """Download `url` to `out` (default_cache_path()); the path and the loaded data."""
    target = Path(out) if out is not None else default_cache_path()
    # Same directory, so the rename is atomic; a dot name, so nothing takes it for data.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            await _download(url, temporary, progress_stream)
            # In a thread so that Ctrl-C (a task cancellation) is not held up by it.
            dataset = await asyncio.to_thread(load_csv, temporary)
            os.replace(temporary, target)
        except DataError as exc:
            raise FetchError(
                f"the file from {url} is not usable: {str(exc).replace(f'{temporary}: ', '')}"
            ) from None
        except OSError as exc:  # aiohttp's OSErrors are FetchErrors by now: this is disk
            raise FetchError(f"cannot write {target} ({exc.strerror or exc})") from None
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the failure that got us here
            os.unlink(temporary)
        raise
    dataset.file = str(target)
    return target, dataset


async def _download(url: str, path: Path, progress_stream: TextIO | None) -> None:
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url) as response:
            if response.status != 200:
                raise FetchError(f"{url} answered HTTP {response.status} {response.reason}")
            if response.content_type in HTML_TYPES:
                raise FetchError(f"{url} sent an HTML page, not CSV (is the URL right?)")
            # Content-Length counts the bytes on the wire, compressed or not.
            progress = Progress(response.content_length, progress_stream)
            with open(path, "wb") as file:
                first = True
                async for chunk in response.content.iter_chunked(CHUNK):
                    if first:
                        _check_start(url, chunk)
                        first = False
                    # A blocking write of 64 KiB is fine here: this command has no
                    # other work for the event loop to do meanwhile.
                    file.write(chunk)
                    progress.update(response.content.total_raw_bytes)
                if first:
                    raise FetchError(f"{url} sent an empty file")
                file.flush()
                os.fsync(file.fileno())  # the rename must not outlive lost data
            progress.finish()
    except aiohttp.ClientPayloadError:
        raise FetchError(
            f"the download from {url} broke off before the end; nothing was saved, try again"
        ) from None
    except aiohttp.ClientError as exc:  # timeouts included: they are ClientErrors too
        raise FetchError(
            f"cannot download {url} ({exc or type(exc).__name__}); nothing was saved"
        ) from None


def _check_start(url: str, chunk: bytes) -> None:
    """Refuse an HTML page (a login wall, an error page) sent with a CSV type."""
    start = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"<":
        raise FetchError(f"{url} sent an HTML or XML page, not CSV (is the URL right?)")
