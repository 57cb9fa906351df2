"""The synthetic demo dataset has the real file's shape and coverage."""

from __future__ import annotations

from compute import demo
from compute.dataset import load_csv
from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from server import datasource, paths


def test_default_demo_covers_everything(tmp_path):
    path = demo.write(tmp_path / "demo.csv")
    ds = load_csv(path)
    assert ds.rows_read == demo.DEFAULT_ROWS
    assert 0.01 < ds.rows_ignored / ds.rows_read < 0.06  # some rows without a value
    assert len(ds.locations) == 55 and "National" in ds.locations
    assert sorted(ds.questions) == sorted(LOWER_IS_BETTER + HIGHER_IS_BETTER)
    pairs = set(zip(ds.arrays["category"].tolist(), ds.arrays["stratification"].tolist()))
    assert len(pairs) == len(demo.STRATIFICATIONS) == 28
    years = ds.arrays["year"]
    assert (int(years.min()), int(years.max())) == (2011, 2022)
    assert demo.is_synthetic(path)
    header = path.read_text().splitlines()[0]
    assert header.startswith(",YearStart") and "High_Confidence_Limit ," in header


def test_same_seed_same_file(tmp_path):
    a = demo.write(tmp_path / "a.csv", 300, seed=5).read_bytes()
    b = demo.write(tmp_path / "b.csv", 300, seed=5).read_bytes()
    assert a == b and a != demo.write(tmp_path / "c.csv", 300, seed=6).read_bytes()


def test_data_order_falls_back_to_generated_demo_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generated = tmp_path / "data" / "demo" / paths.DEMO_NAME
    assert datasource.resolve("") == generated
    assert demo.is_synthetic(generated)
    fetched = tmp_path / "data" / "cache" / paths.FETCHED_NAME
    fetched.parent.mkdir(parents=True)
    fetched.write_text("x")
    assert datasource.resolve("") == fetched
    (tmp_path / paths.SUBSET_NAME).write_text("x")
    assert datasource.resolve("").resolve() == tmp_path / paths.SUBSET_NAME
    assert datasource.resolve("/given.csv").as_posix() == "/given.csv"
