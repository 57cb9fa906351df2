"""The OpenAPI 3 document of the service, built from the same endpoint table as the
routes (a test checks that every route is described and every description routed)."""

from __future__ import annotations

import copy
import functools

from compute.endpoints import ENDPOINTS, YEAR_FIELDS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    texts = {
        400: "invalid request",
        401: "missing or wrong admin token",
        403: "refused: a cross-site browser request, or an admin action from a non-loopback client",
        404: "not found",
        408: "the request body did not arrive within client_timeout",
        410: "the job's result was evicted",
        413: "request body too large",
        415: "the body is not declared as JSON (Content-Type)",
        417: "an Expect header other than 100-continue",
        503: "shutting down, the job queue is full or the storage cannot be "
        "written (see Retry-After), or the chart library is not installed",
    }
    return {str(c): _json(_ERROR, texts[c]) for c in codes}


def _statistic(name: str) -> dict:
    endpoint = ENDPOINTS[name]
    required = ["question", "state"] if endpoint.needs_state else ["question"]
    years = {
        f: {
            "type": ["integer", "null"],
            "description": "optional, inclusive: rows with YearStart ≥ year_start and "
            "YearEnd ≤ year_end (docs/analytics.md)",
        }
        for f in YEAR_FIELDS
    }
    body = {
        "type": "object",
        "required": required,
        "properties": {**{f: {"type": "string"} for f in required}, **years},
    }
    accepted = _json({"$ref": "#/components/schemas/JobId"}, "job accepted")
    accepted["links"] = {
        "result": {"operationId": "get_results", "parameters": {"job_id": "$response.body#/job_id"}}
    }
    return {
        "post": {
            "operationId": name,
            "summary": endpoint.summary,
            "tags": ["statistics"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": accepted, **_errors(400, 403, 408, 413, 415, 417, 503)},
        }
    }


def _get(operation: str, summary: str, schema: dict, *errors: int, **extra) -> dict:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "responses": {"200": _json(schema, "OK"), **_errors(*errors)},
            **extra,
        }
    }


_OBJECT = {"type": "object"}
_STRINGS = {"type": "array", "items": {"type": "string"}}


@functools.cache
def document() -> dict:
    paths = {f"/api/{name}": _statistic(name) for name in ENDPOINTS}
    paths["/api/get_results/{job_id}"] = _get(
        "get_results",
        "State of a job, and its answer once done",
        {"$ref": "#/components/schemas/Result"},
        400,
        404,
        410,
        parameters=[
            {
                "name": "job_id",
                "in": "path",
                "required": True,
                "description": "the id, or `job_id_<id>`",
                "schema": {"type": "string"},
            },
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "long poll: answer when done or after this many seconds; "
                "without it a running job is waited for poll_grace seconds "
                "(0.05 by default), with wait=0 not at all",
                "schema": {"type": "number", "minimum": 0, "maximum": 30},
            },
        ],
    )
    paths["/api/jobs"] = _get(
        "jobs",
        "Every retained job and its state, or one page",
        {
            "type": "object",
            "required": ["status", "data"],
            "properties": {
                "status": {"type": "string"},
                "data": {
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "next_after": {
                    "type": ["integer", "null"],
                    "description": "with limit: the after= of the next page, null on the last",
                },
            },
        },
        400,
        parameters=[
            {
                "name": "after",
                "in": "query",
                "required": False,
                "description": "only jobs with a greater id",
                "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": "at most this many jobs, and next_after in the answer",
                "schema": {"type": "integer", "minimum": 1, "maximum": 10_000},
            },
        ],
    )
    paths["/api/num_jobs"] = _get(
        "num_jobs",
        "Jobs queued or running",
        {
            "type": "object",
            "required": ["num_jobs"],
            "properties": {"num_jobs": {"type": "integer", "minimum": 0}},
        },
    )
    paths["/api/graceful_shutdown"] = _get(
        "graceful_shutdown",
        "Stop accepting jobs, finish the accepted ones, exit (admin)",
        {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["running", "done"]}},
        },
        401,
        403,
        security=[{}, {"bearer": []}],
    )
    paths["/api/info"] = _get("info", "The loaded dataset and the server's processes", _OBJECT)
    paths["/api/questions"] = _get(
        "questions",
        "The questions and their better direction",
        {
            "type": "object",
            "required": ["questions"],
            "properties": {
                "questions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["text", "direction"],
                        "properties": {
                            "text": {"type": "string"},
                            "direction": {
                                "type": ["string", "null"],
                                "enum": ["lower", "higher", None],
                            },
                            "id": {"type": "string"},
                        },
                    },
                }
            },
        },
    )
    paths["/api/states"] = _get(
        "states",
        "The locations in the data",
        {"type": "object", "required": ["states"], "properties": {"states": _STRINGS}},
    )
    paths["/api/years"] = _get(
        "years",
        "The years the data covers (the valid year range)",
        {
            "type": "object",
            "required": ["first", "last", "years", "year_end_column"],
            "properties": {
                "first": {"type": ["integer", "null"]},
                "last": {"type": ["integer", "null"]},
                "years": {"type": "array", "items": {"type": "integer"}},
                "year_end_column": {"type": "boolean"},
            },
        },
    )
    paths["/healthz"] = _get("healthz", "The process is alive", _OBJECT)
    paths["/readyz"] = _get(
        "readyz", "Data loaded, accepting jobs and the state dir writable", _OBJECT, 503
    )
    paths["/openapi.json"] = _get("openapi", "This document", _OBJECT)
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (text exposition format)",
            "responses": {
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/"] = {
        "get": {
            "operationId": "dashboard",
            "summary": "The dashboard page",
            "responses": {
                "200": {
                    "description": "HTML page",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/static/{name}"] = {
        "get": {
            "operationId": "static",
            "summary": "The dashboard's script, style and chart library",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "the file"}, **_errors(404, 503)},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Le Stats Sportif",
            "version": "1.0.0",
            "description": "Asynchronous job API over the CDC BRFSS nutrition, "
            "physical activity and obesity data.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "LESTATS_ADMIN_TOKEN; without one set, loopback clients only",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "reason"],
                    "properties": {"status": {"const": "error"}, "reason": {"type": "string"}},
                },
                "JobId": {
                    "type": "object",
                    "required": ["job_id"],
                    "properties": {"job_id": {"type": "integer", "minimum": 1}},
                },
                "Result": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string", "enum": ["running", "done", "error"]},
                        "data": {},
                        "reason": {"type": "string"},
                    },
                },
            },
        },
    }


def served(dataset) -> dict:
    """The document as this server serves it: the request bodies name the questions
    and states of the loaded data (enums), so a client or a fuzzer knows which values
    are valid; best5/worst5 list only the questions with a direction; the year fields
    carry the data's range."""
    doc = copy.deepcopy(document())
    directed = [q for q in dataset.questions if dataset.direction(q) is not None]
    for name, endpoint in ENDPOINTS.items():
        body = doc["paths"][f"/api/{name}"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]
        schema = body["properties"]
        schema["question"]["enum"] = (
            directed if endpoint.needs_direction else list(dataset.questions)
        )
        if endpoint.needs_state:
            schema["state"]["enum"] = list(dataset.locations)
        if dataset.years:
            first, last = dataset.years[0], dataset.years[-1]
            for field in YEAR_FIELDS:
                schema[field].update(minimum=first, maximum=last)
            body["anyOf"] = _ordered_years(first, last)
    return doc


def _ordered_years(first: int, last: int) -> list[dict]:
    """year_start ≤ year_end, in the only way JSON Schema can say it (it cannot compare
    two fields): some year y of the data's range lies between them. A field that is
    absent or null satisfies its half, as it is no bound."""
    return [
        {"properties": {"year_start": {"maximum": year}, "year_end": {"minimum": year}}}
        for year in range(first, last + 1)
    ]
