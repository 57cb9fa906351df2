"""The docs say what the code does: routes, settings and errors, both ways.

Read from every docs/*.md file (so that each part of the project documents itself in
its own file), the tables whose first header cell is:

- `route`: rows `` `METHOD /path` ``, compared with the router of the real
  application (server.app.init_app), HEAD left out (every GET answers it);
- `setting`: rows `` `name` | `ENVIRONMENT_VARIABLE` | `--flag` or empty ``, compared
  with server.config (Settings and ENVIRONMENT), the options of `lestats serve` and
  the keys of config.toml;
- `when`: rows `… | status | `reason` ``, compared with every error the server code
  can answer, found in its source: each `error(status, reason)` call, each raise of
  `BadRequest(reason)` (a 400) and each entry of the `*REASONS` tables, whose reason is
  a string, a module-level string constant or an f-string. A documented reason is
  the code's text with its values filled in, so each error is matched by its longest
  literal piece.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from server.app import init_app
from server.cli import parser
from server.config import ENVIRONMENT, Settings
from server.jobs import JobService
from tests.support.fixtures import write_rows
from tests.support.live import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
SERVER = ROOT / "server"


def tables(first_header: str) -> list[tuple[Path, list[str]]]:
    """(file, cells) of every body row of every table whose first header cell is
    `first_header`, in every docs/*.md file."""
    found = []
    for path in DOCS:
        header: list[str] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if header is None:
                header = cells
            elif (
                not all(re.fullmatch(r":?-+:?", c) for c in cells)
                and header[0].lower() == first_header
            ):
                found.append((path, cells))
    return found


def code_span(cell: str) -> str | None:
    """The text of a cell that is one code span: `text`, or `` text with ` ``."""
    match = re.fullmatch(r"(`+) ?(.+?) ?\1", cell)
    return match.group(2) if match else None


# Routes


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory) -> set[str]:
    from compute.dataset import load_csv

    where = tmp_path_factory.mktemp("docs")
    csv = write_rows(where / "tiny.csv", [{"question": "Q", "location": "Ohio", "value": 1}])
    service = JobService(where / "state", max_queue=1, retain=1)
    app = init_app(service, load_csv(csv), Settings())
    return {
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.method != "HEAD"
    }


def documented_routes() -> dict[str, Path]:
    routes = {}
    for path, cells in tables("route"):
        route = code_span(cells[0])
        assert route and re.fullmatch(r"[A-Z]+ /\S*", route), (
            f"{path.name}: a route row starts with `METHOD /path`, not {cells[0]!r}"
        )
        routes[route] = path
    return routes


def test_every_route_of_the_app_is_documented(app_routes):
    assert sorted(app_routes - set(documented_routes())) == []


def test_every_documented_route_exists(app_routes):
    extra = {
        route: path.name for route, path in documented_routes().items() if route not in app_routes
    }
    assert extra == {}


# Settings


def documented_settings() -> dict[str, str]:
    settings = {}
    for path, cells in tables("setting"):
        name, variable = code_span(cells[0]), code_span(cells[1])
        assert name and variable, f"{path.name}: a setting row is `name` | `VARIABLE`: {cells}"
        settings[name] = variable
    return settings


def test_every_setting_is_documented_with_its_variable_and_nothing_else():
    code = {f.name: ENVIRONMENT.get(f.name, "") for f in fields(Settings)}
    assert documented_settings() == code


def test_every_flag_of_lestats_serve_is_the_documented_one():
    """The `flag` column against `lestats serve`'s own options (--config is not a
    setting: it names the file the settings come from)."""
    serve = next(
        action for action in parser()._subparsers._actions if action.dest == "command"
    ).choices["serve"]
    flags = {
        action.dest: action.option_strings[0]
        for action in serve._actions
        if action.option_strings and action.dest not in ("help", "config")
    }
    documented = {}
    for _, cells in tables("setting"):
        flag = code_span(cells[2]) if len(cells) > 2 else None
        if flag:
            documented[code_span(cells[0])] = flag
    assert documented == flags


def test_config_toml_has_a_line_for_every_setting():
    with open(ROOT / "config.toml", "rb") as handle:
        assert sorted(tomllib.load(handle)) == sorted(f.name for f in fields(Settings))


# Errors


@dataclass(frozen=True)
class CodeError:
    status: int
    text: str  # the longest literal piece of the reason
    where: str


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments."""
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _literal(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The longest literal piece of a reason expression; None when it has none."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        pieces = [
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        ]
        return max(pieces, key=len) if pieces else None
    return None


def code_errors() -> list[CodeError]:
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            pairs: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "error" and len(node.args) >= 2:
                    pairs.append((node.args[0], node.args[1]))
                elif node.func.id == "BadRequest" and node.args:
                    pairs.append((ast.Constant(400), node.args[0]))
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id.endswith("REASONS") for t in node.targets)
            ):
                pairs += [(k, v) for k, v in zip(node.value.keys, node.value.values) if k]
            for status, reason in pairs:
                text = _literal(reason, constants)
                if isinstance(status, ast.Constant) and isinstance(status.value, int) and text:
                    found.append(CodeError(status.value, text.strip(), f"{where}:{node.lineno}"))
    return found


def documented_errors() -> list[tuple[Path, int, str]]:
    rows = []
    for path, cells in tables("when"):
        assert len(cells) >= 3 and re.fullmatch(r"\d{3}", cells[1]) and code_span(cells[2]), (
            f"{path.name}: an error row is `when | status | `reason``: {cells}"
        )
        rows.append((path, int(cells[1]), code_span(cells[2]) or ""))
    return rows


def test_the_error_scan_finds_the_errors_it_should():
    """The scan itself can fail: it must see errors of each kind it looks for."""
    texts = {e.text for e in code_errors()}
    assert {
        "Invalid job_id",
        "no such route",
        "the request body is not valid JSON",
        "unknown state",
        "internal error; it has been logged",
    } <= texts


def test_every_error_the_code_answers_is_documented():
    rows = documented_errors()
    missing = [
        e
        for e in code_errors()
        if not any(status == e.status and e.text in reason for _, status, reason in rows)
    ]
    assert missing == []


def test_every_documented_error_exists_in_the_code():
    errors = code_errors()
    extra = [
        (path.name, status, reason)
        for path, status, reason in documented_errors()
        if not any(e.status == status and e.text in reason for e in errors)
    ]
    assert extra == []
