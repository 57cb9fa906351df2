"""Every file and directory the program reads or writes, in one place.

Two kinds of place (docs/operations.md, "Where files go"):

- What ships with the code (the dashboard page, the vendored browser libraries) is
  found next to this module, so it works the same from a checkout and from an
  installed wheel.
- What the program makes (the demo dataset, the fetched CDC file, the job state, the
  log) goes under the *working directory* of `lestats`, as the state dir and the log
  always did: `make run` in the checkout keeps everything in the checkout, and
  `lestats serve` elsewhere keeps it where it was started. Nothing is ever written
  next to the code (an installed package's directory may be read-only, and is
  shared by every user).

This module needs only the standard library: setup.py reads VENDORED from it.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
STATIC = PACKAGE / "static"
# Browser libraries copied from web/node_modules into the package when a wheel is
# built (setup.py); web/package-lock.json stays the one source of their versions.
VENDOR = STATIC / "vendor"
# The source checkout's npm install, used by an editable install (`make run`).
NODE_MODULES = PACKAGE.parent / "web" / "node_modules"

# name served under /static/ -> its path inside web/node_modules. A library the
# dashboard needs is added here, and nowhere else.
VENDORED = {
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "topojson-client.min.js": "topojson-client/dist/topojson-client.min.js",
    # The 50 states and DC, already projected (Albers USA) into a 975x610 box.
    "states-albers-10m.json": "us-atlas/states-albers-10m.json",
}

SUBSET_NAME = "nutrition_activity_obesity_usa_subset.csv"
FETCHED_NAME = "nutrition_activity_obesity.csv"
DEMO_NAME = "nutrition_activity_obesity_demo.csv"


def vendored(name: str) -> Path:
    """Where the vendored library `name` is: in the package (a built wheel), else in
    the checkout's web/node_modules (an editable install after `make web`)."""
    packaged = VENDOR / name
    return packaged if packaged.is_file() else NODE_MODULES / VENDORED[name]


def data_dir() -> Path:
    """Generated and downloaded data: ./data under the working directory."""
    return Path.cwd() / "data"


def subset_file() -> Path:
    """The subset file a user drops into the working directory."""
    return Path(SUBSET_NAME)


def fetched_file() -> Path:
    """Where `lestats data fetch` writes and `lestats serve` looks."""
    return data_dir() / "cache" / FETCHED_NAME


def demo_file() -> Path:
    """The synthetic demo dataset, generated the first time it is needed."""
    return data_dir() / "demo" / DEMO_NAME
