"""The real-data fixture data/brfss_real_rows.csv: 39 rows of the CDC's subset file
as published (leading index column named `Column1`, `High_Confidence_Limit ` with its
trailing space, quoted commas, the QuestionID column), served by the real server
process and checked against the naive reference implementation."""

from __future__ import annotations

import csv
import json

from compute.endpoints import ENDPOINTS
from server.cli import main
from tests.reference import Reference, assert_close
from tests.support.live import ROOT

REAL = ROOT / "data" / "brfss_real_rows.csv"


def test_the_fixture_is_the_real_format():
    with open(REAL, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
        rows = sum(1 for _ in handle)
    assert header[0] == "Column1" and "High_Confidence_Limit " in header
    assert "QuestionID" in header and rows == 39


def test_the_server_answers_every_statistic_on_real_rows(live_on, capsys):
    server = live_on(REAL)
    reference = Reference(REAL)
    status, info = server.get("/api/info")
    assert status == 200 and info["synthetic"] is False
    assert (info["rows_read"], info["rows_loaded"]) == (39, len(reference.rows))
    status, listed = server.get("/api/questions")
    assert [q["text"] for q in listed["questions"]] == reference.questions
    by_id = {q["id"]: q["text"] for q in listed["questions"]}
    assert sorted(by_id) == ["Q018", "Q044"]  # the CDC's own QuestionIDs, from the file
    states = server.get("/api/states")[1]["states"]
    for endpoint, spec in ENDPOINTS.items():
        for question in reference.questions:
            for state in states if spec.needs_state else [None]:
                fields = {"question": question} | ({"state": state} if state else {})
                result = server.ask(endpoint, **fields)
                assert result["status"] == "done", result
                assert_close(
                    result["data"],
                    reference.answer(endpoint, question, state),
                    where=f"{endpoint} {state}",
                )
    # The id works in place of the text for `lestats ask`.
    assert main(["ask", "global_mean", "--question", "q018", "--json", "--url", server.url]) == 0
    assert_close(
        json.loads(capsys.readouterr().out), reference.answer("global_mean", by_id["Q018"])
    )
