"""Build step: vendor the dashboard's browser libraries into the wheel.

Everything else is declared in pyproject.toml. The libraries come from
web/node_modules (installed by `make web` from web/package-lock.json, the one source
of their versions) and are copied to server/static/vendor/ inside the build, so an
installed wheel serves them with no checkout and no Node. The list of files is
server.paths.VENDORED, read without importing the package.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithVendored(build_py):
    def run(self) -> None:
        super().run()
        # An editable install (make run) serves the checkout's web/node_modules.
        if getattr(self, "editable_mode", False):
            return
        vendored = runpy.run_path(str(HERE / "server" / "paths.py"))["VENDORED"]
        target = Path(self.build_lib) / "server" / "static" / "vendor"
        target.mkdir(parents=True, exist_ok=True)
        for name, source in vendored.items():
            path = HERE / "web" / "node_modules" / source
            if not path.is_file():
                raise SystemExit(
                    f"{path} is missing: run `make web` (npm ci in web/) "
                    "before building the package"
                )
            shutil.copyfile(path, target / name)


setup(cmdclass={"build_py": BuildWithVendored})
