"""A Python client for the job API (docs/api.md), built on aiohttp's client alone.

    async with Client("http://127.0.0.1:5000") as client:
        top = await client.best5("Percent of adults who have obesity ...")

    SyncClient("http://127.0.0.1:5000").best5(question)   # from a plain script

Every statistic is one method named like its endpoint, generated from
compute.endpoints.ENDPOINTS (the table the server's routes come from), so a new endpoint
needs no client change. Each method submits the job and waits for the answer with
long polling. `ask(endpoint, question, state)` is the same call with the endpoint as
a string; it is the one to use where a type checker must see the signature. Every
statistic also takes the keyword-only `year_start` and `year_end` (an inclusive range
of years, docs/analytics.md); None, the default, sends no such field.

Whatever the server refuses raises `ClientError(status, reason)` with the server's
own sentence; a job that ran and failed raises `JobFailed`; no answer within the
client's timeout raises `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

import aiohttp

from compute.endpoints import ENDPOINTS, Endpoint

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_TIMEOUT = 60.0
# The server caps ?wait= at 30 s (docs/api.md, "Jobs"); longer waits are several polls.
MAX_SERVER_WAIT = 30.0
# A long poll answers within its wait; this covers the round trip on top of it.
REPLY_GRACE = 5.0

Answer = dict[str, Any]


class QuestionInfo(TypedDict):
    text: str
    direction: str | None  # "lower" or "higher" is better; None: not for best5/worst5
    id: NotRequired[str]  # the CDC QuestionID ("Q036"), when the data file has one


class ClientError(Exception):
    """The server refused a request, or could not be reached (`status` None).

    `reason` is the server's own sentence from its JSON error body when it sent one.
    """

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason if status is None else f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class JobFailed(ClientError):
    """The job was accepted but failed while running ({"status": "error"})."""

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(200, reason)
        self.job_id = job_id


class Client:
    """Asynchronous client; one aiohttp session, opened on first use.

    Use it as `async with Client(url) as client:`, or call `await client.close()`.
    `timeout` bounds every call as a whole, waiting for a job's answer included
    (plus at most REPLY_GRACE when a server stops answering in the middle of a poll).
    """

    def __init__(self, url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def submit(
        self,
        endpoint: str,
        question: str,
        state: str | None = None,
        *,
        year_start: int | None = None,
        year_end: int | None = None,
    ) -> int:
        """POST the job; its id. The server, not the client, decides what is valid."""
        body: dict[str, Any] = {"question": question}
        for name, value in (("state", state), ("year_start", year_start), ("year_end", year_end)):
            if value is not None:
                body[name] = value
        answer = await self._call("POST", f"/api/{endpoint}", body)
        return int(answer["job_id"])

    async def result(self, job_id: int, wait: float | None = None) -> Answer:
        """The job's `data`, long-polling for up to `wait` seconds (default: the
        client's timeout); TimeoutError if it is still running by then."""
        budget = self.timeout if wait is None else wait
        return await self._result_by(job_id, asyncio.get_running_loop().time() + budget, budget)

    async def ask(
        self,
        endpoint: str,
        question: str,
        state: str | None = None,
        *,
        year_start: int | None = None,
        year_end: int | None = None,
    ) -> Answer:
        """Submit and wait for the answer, both within the client's timeout."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        job_id = await self.submit(
            endpoint, question, state, year_start=year_start, year_end=year_end
        )
        return await self._result_by(job_id, deadline, self.timeout)

    async def _result_by(self, job_id: int, deadline: float, budget: float) -> Answer:
        loop = asyncio.get_running_loop()
        while True:
            poll = min(max(deadline - loop.time(), 0.0), MAX_SERVER_WAIT)
            answer = await self._call(
                "GET", f"/api/get_results/{int(job_id)}?wait={poll:.3f}", within=poll + REPLY_GRACE
            )
            if answer.get("status") == "done":
                return answer["data"]
            if answer.get("status") == "error":
                raise JobFailed(job_id, str(answer.get("reason", "the job failed")))
            if loop.time() >= deadline:
                raise TimeoutError(f"job {job_id} is still running after {budget:g} s")

    async def questions(self) -> list[QuestionInfo]:
        return (await self._call("GET", "/api/questions"))["questions"]

    async def states(self) -> list[str]:
        return (await self._call("GET", "/api/states"))["states"]

    async def years(self) -> dict[str, Any]:
        """The years the data covers: {"first", "last", "years", "year_end_column"}."""
        return await self._call("GET", "/api/years")

    async def _call(
        self, method: str, path: str, body: dict | None = None, within: float | None = None
    ) -> dict:
        seconds = self.timeout if within is None else within
        try:
            async with asyncio.timeout(seconds):
                return await self._request(method, path, body)
        except TimeoutError:
            raise TimeoutError(
                f"{method} {self.url}{path}: no answer within {seconds:g} s"
            ) from None

    async def _request(self, method: str, path: str, body: dict | None) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(method, self.url + path, json=body) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
        except aiohttp.ClientError as exc:
            raise ClientError(None, f"cannot reach {self.url} ({exc})") from None
        if not isinstance(answer, dict):
            raise ClientError(
                response.status,
                f"{method} {path} did not answer a JSON "
                f"object (HTTP {response.status} {response.reason}); "
                f"is {self.url} a Le Stats Sportif server?",
            )
        if response.status != 200:
            raise ClientError(response.status, str(answer.get("reason") or response.reason))
        return answer


def _endpoint_method(spec: Endpoint) -> Callable[..., Any]:
    """`Client.<spec.name>(question[, state], *, year_start, year_end)`: submit and
    wait, like `ask`."""
    if spec.needs_state:

        async def method(
            self: Client,
            question: str,
            state: str,
            *,
            year_start: int | None = None,
            year_end: int | None = None,
        ) -> Answer:
            return await self.ask(
                spec.name, question, state, year_start=year_start, year_end=year_end
            )
    else:

        async def method(  # type: ignore[misc]
            self: Client,
            question: str,
            *,
            year_start: int | None = None,
            year_end: int | None = None,
        ) -> Answer:
            return await self.ask(spec.name, question, year_start=year_start, year_end=year_end)

    method.__name__ = spec.name
    method.__qualname__ = f"Client.{spec.name}"
    method.__doc__ = f"{spec.summary} (POST /api/{spec.name}, then wait for the answer)."
    return method


for _spec in ENDPOINTS.values():
    setattr(Client, _spec.name, _endpoint_method(_spec))


class SyncClient:
    """Blocking façade for scripts and notebooks without an event loop.

    Every method of Client is here with the same arguments; each call opens a
    session, runs under asyncio.run and closes it, so it is for a handful of
    questions, not for load (use Client and asyncio.gather for that).
    """

    def __init__(self, url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout

    def __getattr__(self, name: str) -> Callable[..., Any]:
        target = getattr(Client, name, None)
        if name.startswith("_") or name == "close" or not inspect.iscoroutinefunction(target):
            raise AttributeError(f"SyncClient has no method {name!r}")

        async def run(*args: Any, **kwargs: Any) -> Any:
            async with Client(self.url, self.timeout) as client:
                return await getattr(client, name)(*args, **kwargs)

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(run(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = target.__doc__
        return call
