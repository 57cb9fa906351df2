"""Which CSV to serve when none is named (docs/operations.md, "Data").

Order: the `data` setting (flag, env or config.toml); ./nutrition_activity_obesity_usa_subset.csv;
the CDC file fetched by `lestats data fetch`; the project's synthetic demo dataset,
generated under ./data the first time it is needed (server.paths).
"""

from __future__ import annotations

from pathlib import Path

from compute import demo
from server import paths


def resolve(configured: str) -> Path:
    if configured:
        return Path(configured)
    for candidate in (paths.subset_file(), paths.fetched_file()):
        if candidate.is_file():
            return candidate
    generated = paths.demo_file()
    if not generated.is_file():
        demo.write(generated)
    return generated
