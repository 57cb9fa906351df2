"""/metrics, /healthz and /readyz on the real application with real workers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from compute.questions import LOWER_IS_BETTER
from tests.support.inprocess import running_app

QUESTION = LOWER_IS_BETTER[1]


def _samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_jobs_requests_and_latency(tmp_path, demo_csv, aiohttp_client):
    async with running_app(demo_csv, tmp_path / "s") as running:
        client = await aiohttp_client(running.app)
        for _ in range(3):
            job = await (await client.post("/api/best5", json={"question": QUESTION})).json()
            assert (await (await client.get(f"/api/get_results/{job['job_id']}?wait=10")).json())[
                "status"
            ] == "done"
        await client.post("/api/best5", json={"question": "nope"})
        await client.get("/api/get_results/999")
        response = await client.get("/metrics")
        assert response.status == 200 and response.content_type == "text/plain"
        samples = _samples(await response.text())
        assert samples[("lestats_jobs_submitted_total", (("endpoint", "best5"),))] == 3
        assert (
            samples[("lestats_jobs_finished_total", (("endpoint", "best5"), ("outcome", "done")))]
            == 3
        )
        assert samples[("lestats_job_seconds_count", (("endpoint", "best5"),))] == 3
        assert samples[("lestats_jobs_running", ())] == 0
        assert (
            samples[
                (
                    "lestats_http_requests_total",
                    (("method", "POST"), ("route", "/api/best5"), ("status", "400")),
                )
            ]
            == 1
        )
        assert (
            samples[
                (
                    "lestats_http_requests_total",
                    (("method", "GET"), ("route", "/api/get_results/{job_id}"), ("status", "404")),
                )
            ]
            == 1
        )
        assert samples[("lestats_accepting_jobs", ())] == 1


async def test_health_and_readiness_follow_shutdown(tmp_path, demo_csv, aiohttp_client):
    async with running_app(demo_csv, tmp_path / "s") as running:
        client = await aiohttp_client(running.app)
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200
        await client.get("/api/graceful_shutdown")
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        samples = _samples(await (await client.get("/metrics")).text())
        assert samples[("lestats_accepting_jobs", ())] == 0
