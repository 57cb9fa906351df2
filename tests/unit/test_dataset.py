"""Loading both real CSV variants, and refusing every broken file with one sentence."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from compute.dataset import DataError, load_csv
from tests.support.fixtures import FULL_HEADER, SUBSET_HEADER, write_rows

OBESITY = "Percent of adults aged 18 years and older who have obesity"


def _rows():
    return [
        {"location": "Ohio", "question": OBESITY, "value": "30.5"},
        {"location": "Ohio", "question": OBESITY, "value": ""},
        {"location": "Iowa", "question": OBESITY, "value": "abc"},
        {
            "location": "Iowa",
            "question": OBESITY,
            "value": "20",
            "category": "Income",
            "stratification": "$15,000 - $24,999",
        },
    ]


def test_subset_variant_with_index_column_and_trailing_space(tmp_path):
    ds = load_csv(write_rows(tmp_path / "subset.csv", _rows(), SUBSET_HEADER))
    assert (ds.rows_read, ds.rows_loaded, ds.rows_ignored) == (4, 2, 2)
    assert ds.locations == ["Iowa", "Ohio"]
    assert ds.stratifications == ["$15,000 - $24,999", "Total"]
    assert sorted(ds.arrays["value"].tolist()) == [20.0, 30.5]


def test_full_variant_without_index_and_with_sex(tmp_path):
    rows = [dict(r, category="Sex", stratification="Female") for r in _rows()]
    ds = load_csv(write_rows(tmp_path / "full.csv", rows, FULL_HEADER))
    assert ds.categories == ["Sex"] and ds.rows_loaded == 2


def test_resaved_index_column_named_column1(tmp_path):
    header = ["Column1", *SUBSET_HEADER[1:]]
    assert load_csv(write_rows(tmp_path / "c1.csv", _rows(), header)).rows_loaded == 2


def test_arrays_are_sorted_by_question_then_location(demo_csv):
    ds = load_csv(demo_csv)
    for q in range(len(ds.questions)):
        location = ds.arrays["location"][ds.question_slice(q)]
        assert np.all(np.diff(location) >= 0)
    assert ds.arrays["question_offsets"][-1] == ds.rows_loaded


def _refused(path, *fragments):
    with pytest.raises(DataError) as caught:
        load_csv(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.csv", "no such file")


def test_directory(tmp_path):
    _refused(tmp_path, "directory")


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    _refused(tmp_path / "empty.csv", "empty")


def test_header_only(tmp_path):
    (tmp_path / "h.csv").write_text(",".join(SUBSET_HEADER) + "\n")
    _refused(tmp_path / "h.csv", "no data rows")


def test_missing_columns(tmp_path):
    (tmp_path / "m.csv").write_text("Question,LocationDesc\nq,Ohio\n")
    _refused(tmp_path / "m.csv", "StratificationCategory1", "Data_Value")


def test_truncated_row(tmp_path):
    path = write_rows(tmp_path / "t.csv", _rows() * 50)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1] + [lines[-1][:20]]) + "\n")
    _refused(path, f"line {len(lines)}", "field")


def test_bad_row_in_the_middle(tmp_path):
    path = write_rows(tmp_path / "b.csv", _rows() * 50)
    lines = path.read_text().splitlines()
    lines.insert(100, "a stray line,with,too,few")
    path.write_text("\n".join(lines) + "\n")
    _refused(path, "line 101")


def test_not_a_csv(tmp_path):
    path = tmp_path / "picture.csv"
    path.write_bytes(bytes(range(256)) * 40)
    _refused(path)


def test_permission_denied(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod 000 changes nothing: make open() refuse.
    path = write_rows(tmp_path / "p.csv", _rows())
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    _refused(path, "permission denied")
