"""The installed package, not the checkout: `pip install` of a built wheel, then
`lestats serve` from a directory that has nothing of the project.

The wheel is built from this checkout with `pip wheel` (setup.py copies the vendored
browser libraries from web/node_modules into it) and installed into a fresh virtual
environment that borrows the pinned dependencies of the running one through a .pth
file, so nothing is downloaded but the build backend. The server then runs with no
PYTHONPATH, from an empty temp dir, on the generated demo data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from pathlib import Path

import pytest

from server import paths
from tests.support.live import ROOT, start_server


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a venv that has the wheel installed."""
    for source in paths.VENDORED.values():
        assert (ROOT / "web" / "node_modules" / source).is_file(), (
            "run `make web` first: the wheel vendors the dashboard's libraries"
        )
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy: an in-tree build leaves build/ behind, whose stale files
    # would end up in later wheels.
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "node_modules",
            "results",
            "data",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            "bench-profile",
            "webserver.log*",
        ),
    )
    (source / "web" / "node_modules").symlink_to(ROOT / "web" / "node_modules")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(base / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((base / "dist").glob("lestats-*.whl"))
    environment = base / "venv"
    venv.create(environment, with_pip=False)
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(environment), "platbase": str(environment)})
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(environment / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=bare_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Only now, and with no PYTHONPATH: pip must not see this checkout's own install
    # (it would skip the wheel as "already satisfied").
    (site / "pinned-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return environment / "bin"


def bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_installed_wheel_serves_the_dashboard_from_any_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [installed / "python", "-c", "import server; print(server.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        env=bare_env(),
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(installed.parent)), where.stdout  # not the checkout

    server = start_server(tmp_path, program=[str(installed / "lestats")], cwd=elsewhere, workers=1)
    with urllib.request.urlopen(f"{server.url}/static/chart.umd.min.js", timeout=10) as r:
        assert r.status == 200
        served = r.read()
    library = ROOT / "web" / "node_modules" / paths.VENDORED["chart.umd.min.js"]
    assert hashlib.sha256(served).digest() == hashlib.sha256(library.read_bytes()).digest()
    status, info = server.get("/api/info")
    assert status == 200 and info["synthetic"] is True
    assert Path(info["file"]) == elsewhere / "data" / "demo" / paths.DEMO_NAME
    assert Path(info["file"]).is_file()
    assert server.ask("global_mean", question=info["questions"][0])["status"] == "done"
    assert server.stop() == 0, server.text()
    site = installed.parent / "lib"
    assert not list(site.rglob("*.csv")), "nothing may be written into the installed package"
