"""The Python client and `lestats ask`, against a real server process."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import subprocess
import sys
import time

import pytest
from aiohttp import web

from client import Client, ClientError, SyncClient
from compute import stats
from compute.dataset import load_csv
from compute.endpoints import ENDPOINTS
from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from server.cli import main
from tests.support.live import ROOT, free_port, start_server

QUESTION = LOWER_IS_BETTER[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_csv):
    """(url, csv) of one real `python -m server serve` for the whole module."""
    live = start_server(tmp_path_factory.mktemp("live"), data=demo_csv)
    yield live.url, demo_csv
    assert live.stop() == 0, live.text()


@pytest.fixture(scope="module")
def expected(server):
    """What the server must answer, computed here from the same file."""
    dataset = load_csv(server[1])

    def answer(
        endpoint: str,
        question: str,
        state: str | None = None,
        year_start: int | None = None,
        year_end: int | None = None,
    ):
        return json.loads(stats.answer(dataset, endpoint, question, state, year_start, year_end))

    answer.dataset = dataset
    return answer


def assert_same(got, want):
    """Same keys in the same order, numbers equal to 1e-9 (docs/api.md, "The nine statistics")."""
    if isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif want is None:
        assert got is None
    else:
        assert got == pytest.approx(want, abs=1e-9)


def run_cli(*argv: str) -> int:
    """`lestats …` through the real entry point."""
    return main(list(argv))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_every_endpoint_method_answers_what_the_statistic_computes(
    server, expected, endpoint
):
    spec = ENDPOINTS[endpoint]
    question = HIGHER_IS_BETTER[0]
    state_args = ("Ohio",) if spec.needs_state else ()
    async with Client(server[0], timeout=30) as client:
        got = await getattr(client, endpoint)(question, *state_args)
    assert_same(got, expected(endpoint, question, *state_args))


async def test_submit_and_result_separately_and_the_vocabularies(server, expected):
    async with Client(server[0], timeout=30) as client:
        first = await client.submit("global_mean", QUESTION)
        second = await client.submit("state_mean", QUESTION, "Guam")
        assert second > first > 0
        assert_same(await client.result(second), expected("state_mean", QUESTION, "Guam"))
        assert_same(await client.result(first, wait=10), expected("global_mean", QUESTION))
        assert await client.states() == expected.dataset.locations
        questions = await client.questions()
    assert [q["text"] for q in questions] == expected.dataset.questions
    assert {q["direction"] for q in questions} == {"lower", "higher"}


@pytest.mark.parametrize(
    "call, status, words",
    [
        (("best5", "Percent of adults who sleep"), 400, "unknown question"),
        (("state_mean", QUESTION, "Atlantis"), 400, "unknown state 'Atlantis'"),
        (("state_mean", QUESTION), 400, "'state' is missing"),
        (("best_state", QUESTION), 404, "no such route"),
    ],
)
async def test_refusals_carry_the_servers_reason(server, call, status, words):
    async with Client(server[0], timeout=30) as client:
        with pytest.raises(ClientError) as caught:
            await client.ask(*call)
    assert caught.value.status == status
    assert words in caught.value.reason


async def test_an_unknown_job_id_is_the_servers_404(server):
    async with Client(server[0], timeout=30) as client:
        with pytest.raises(ClientError) as caught:
            await client.result(10**9)
    assert (caught.value.status, caught.value.reason) == (404, "Invalid job_id")


def test_sync_client_for_scripts(server, expected):
    client = SyncClient(server[0], timeout=30)
    assert_same(client.best5(QUESTION), expected("best5", QUESTION))
    assert_same(
        client.state_diff_from_mean(QUESTION, "Ohio"),
        expected("state_diff_from_mean", QUESTION, "Ohio"),
    )
    with pytest.raises(AttributeError):
        client.close()


def test_ask_prints_an_aligned_table(server, expected, capsys):
    assert run_cli("ask", "best5", "--question", QUESTION, "--url", server[0]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = expected("best5", QUESTION)
    assert lines[0].split() == ["state", "mean"]
    assert len(lines) == 2 + 5
    for line, (state, mean) in zip(lines[2:], want.items()):
        assert line.startswith(state) and line.endswith(f"{mean:.3f}")
    assert len({len(line) for line in lines}) == 1  # right-aligned numbers


def test_ask_by_category_splits_the_tuple_keys_into_columns(server, expected, capsys):
    assert (
        run_cli(
            "ask",
            "state_mean_by_category",
            "--question",
            QUESTION,
            "--state",
            "Ohio",
            "--url",
            server[0],
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["state", "category", "stratification", "mean"]
    want = expected("state_mean_by_category", QUESTION, "Ohio")["Ohio"]
    assert len(lines) == 2 + len(want)
    for line, (key, mean) in zip(lines[2:], want.items()):
        category, stratification = ast.literal_eval(key)
        assert re.split(r"\s{2,}", line) == ["Ohio", category, stratification, f"{mean:.3f}"]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_every_endpoint_method_takes_a_year_range(server, expected, endpoint):
    years = {"year_start": 2013, "year_end": 2016}
    # A state whose answer the range changes (the demo's Total rows are sparse).
    state_args = ()
    if ENDPOINTS[endpoint].needs_state:
        state_args = next(
            (s,)
            for s in expected.dataset.locations
            if expected(endpoint, QUESTION, s, **years) != expected(endpoint, QUESTION, s)
        )
    async with Client(server[0], timeout=30) as client:
        got = await getattr(client, endpoint)(QUESTION, *state_args, **years)
        assert await client.years() == expected.dataset.year_summary()
    assert_same(got, expected(endpoint, QUESTION, *state_args, **years))
    assert got != expected(endpoint, QUESTION, *state_args)  # the range was applied


async def test_a_year_outside_the_data_is_the_servers_400(server):
    async with Client(server[0], timeout=30) as client:
        with pytest.raises(ClientError) as caught:
            await client.state_trend(QUESTION, "Ohio", year_start=1990)
    assert caught.value.status == 400 and "2011-2022" in caught.value.reason


def test_ask_a_trend_with_years(server, expected, capsys):
    assert (
        run_cli(
            "ask",
            "state_trend",
            "--question",
            QUESTION,
            "--state",
            "Ohio",
            "--year-start",
            "2014",
            "--year-end",
            "2017",
            "--url",
            server[0],
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["state", "year", "mean"]
    want = expected("state_trend", QUESTION, "Ohio", year_start=2014, year_end=2017)["Ohio"]
    assert [line.split()[1] for line in lines[2:]] == list(want)
    assert want and all(2014 <= int(year) <= 2017 for year in want)
    for line, mean in zip(lines[2:], want.values()):
        assert line.split() == ["Ohio", line.split()[1], f"{mean:.3f}"]


def test_ask_estimates_one_row_per_state(server, expected, capsys):
    assert (
        run_cli(
            "ask",
            "states_estimate",
            "--question",
            QUESTION,
            "--year-end",
            "2015",
            "--url",
            server[0],
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["state", "estimate", "ci_low", "ci_high", "rows", "sample_size"]
    want = expected("states_estimate", QUESTION, year_end=2015)
    assert len(lines) == 2 + len(want)
    for line, (state, value) in zip(lines[2:], want.items()):
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[0] == state
        assert cells[1:] == (
            ["no data"]
            if value is None
            else [
                f"{value['estimate']:.3f}",
                f"{value['ci_low']:.3f}",
                f"{value['ci_high']:.3f}",
                str(value["rows"]),
                str(value["sample_size"]),
            ]
        )


def test_ask_json_is_the_answer_itself(server, expected, capsys):
    assert (
        run_cli("ask", "mean_by_category", "--question", QUESTION, "--json", "--url", server[0])
        == 0
    )
    assert_same(json.loads(capsys.readouterr().out), expected("mean_by_category", QUESTION))


@pytest.mark.parametrize(
    "argv, words",
    [
        (("best5", "--question", "Percent of adults who sleep"), "unknown question"),
        (("state_mean", "--question", QUESTION, "--state", "Atlantis"), "unknown state"),
        (("best_state", "--question", QUESTION), "no endpoint 'best_state'; known: states_mean"),
    ],
)
def test_ask_refusals_exit_non_zero_with_the_reason(server, capsys, argv, words):
    assert run_cli("ask", *argv, "--url", server[0]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert words in captured.err


def test_ask_without_a_server_says_so(capsys):
    assert (
        run_cli("ask", "best5", "--question", QUESTION, "--url", f"http://127.0.0.1:{free_port()}")
        == 3
    )
    assert "cannot reach http://127.0.0.1:" in capsys.readouterr().err


async def test_the_timeout_bounds_the_wait(aiohttp_server):
    """A job that never finishes: the call gives up after the client's timeout."""
    polls = []

    async def running(request: web.Request) -> web.Response:
        polls.append(float(request.query["wait"]))
        return web.json_response({"status": "running"})

    async def accepted(request: web.Request) -> web.Response:
        return web.json_response({"job_id": 7})

    app = web.Application()
    app.router.add_post("/api/best5", accepted)
    app.router.add_get("/api/get_results/{job_id}", running)
    test_server = await aiohttp_server(app)
    started = time.monotonic()
    async with Client(str(test_server.make_url("")), timeout=0.5) as client:
        with pytest.raises(TimeoutError, match="job 7 is still running after 0.5 s"):
            await client.best5(QUESTION)
    assert time.monotonic() - started < 5
    assert polls and all(0 <= wait <= 0.5 for wait in polls)


async def test_a_server_that_answers_html_is_a_clear_error(aiohttp_server):
    async def proxy_error(request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy error</html>", content_type="text/html", status=502)

    app = web.Application()
    app.router.add_post("/api/best5", proxy_error)
    test_server = await aiohttp_server(app)
    async with Client(str(test_server.make_url("")), timeout=5) as client:
        with pytest.raises(ClientError, match="did not answer a JSON object") as caught:
            await client.best5(QUESTION)
    assert caught.value.status == 502


def test_questions_and_states_list_what_the_server_knows(server, expected, capsys):
    assert run_cli("questions", "--url", server[0]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(expected.dataset.questions)
    for line, question, cdc_id in zip(
        lines, expected.dataset.questions, expected.dataset.question_ids
    ):
        assert line.endswith(question)
        assert line.split()[:2] == [cdc_id, expected.dataset.direction(question) or "-"]
    assert run_cli("states", "--url", server[0], "--json") == 0
    assert json.loads(capsys.readouterr().out) == expected.dataset.locations


def test_ask_takes_an_unambiguous_beginning_of_the_question(server, expected, capsys):
    beginning = QUESTION[:-3].upper()  # and ignores case
    assert sum(q.upper().startswith(beginning) for q in expected.dataset.questions) == 1
    assert run_cli("ask", "global_mean", "--question", beginning, "--json", "--url", server[0]) == 0
    assert_same(json.loads(capsys.readouterr().out), expected("global_mean", QUESTION))


def test_ask_takes_the_cdc_question_id(server, expected, capsys):
    cdc_id = expected.dataset.question_ids[expected.dataset.questions.index(QUESTION)]
    assert run_cli("ask", "best5", "--question", cdc_id.lower(), "--json", "--url", server[0]) == 0
    assert_same(json.loads(capsys.readouterr().out), expected("best5", QUESTION))


def test_an_ambiguous_beginning_lists_the_candidates(server, expected, capsys):
    candidates = [q for q in expected.dataset.questions if q.startswith("Percent of adults")]
    assert len(candidates) > 1
    assert run_cli("ask", "best5", "--question", "Percent of adults", "--url", server[0]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"begins {len(candidates)} questions" in captured.err
    assert all(question in captured.err for question in candidates)


def test_output_into_a_closed_pipe_is_no_traceback(server):
    """`lestats ask … | head -1`: the reader leaves after one line of ~1,500."""
    command = [
        sys.executable,
        "-m",
        "server",
        "ask",
        "mean_by_category",
        "--question",
        QUESTION,
        "--url",
        server[0],
    ]
    # A pipe smaller than the answer (the default 64 KiB could hold all of it, and
    # the command would finish before the reader leaves): the write must meet EPIPE.
    reader, writer = os.pipe()
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)
    with subprocess.Popen(
        command,
        stdout=writer,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as process:
        os.close(writer)
        with os.fdopen(reader, "rb") as output:
            assert output.readline().split() == [
                b"state",
                b"category",
                b"stratification",
                b"mean",
            ]
        errors = process.stderr.read().decode()
        assert process.wait(60) == 141
    assert errors == ""


def test_the_client_package_imports_with_aiohttp_alone():
    """No numpy, pandas, pyarrow or orjson: a client machine needs aiohttp only."""
    code = (
        "import sys, client, client.cli; "
        "print(sorted({'numpy', 'pandas', 'pyarrow', 'orjson'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
