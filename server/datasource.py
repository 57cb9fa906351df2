"""Which CSV to serve when none is named (README "Data").

Order: the `data` setting (flag, env or config.toml); ./nutrition_activity_obesity_usa_subset.csv;
the CDC file fetched by `lestats data fetch`; the project's synthetic demo dataset,
generated into data/ the first time it is needed.
"""
from __future__ import annotations

from pathlib import Path

from compute import demo
from server.fetch import default_cache_path

PROJECT = Path(__file__).resolve().parents[1]
SUBSET = Path("nutrition_activity_obesity_usa_subset.csv")
FETCHED = default_cache_path()
DEMO = PROJECT / "data" / "demo" / "nutrition_activity_obesity_demo.csv"


def resolve(configured: str) -> Path:
    if configured:
        return Path(configured)
    for candidate in (SUBSET, FETCHED):
        if candidate.is_file():
            return candidate
    if not DEMO.is_file():
        demo.write(DEMO)
    return DEMO
