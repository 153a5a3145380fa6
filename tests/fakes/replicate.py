"""A fake Replicate API: create (by model or version), get and cancel predictions."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.input_contracts import replicate_problems
from tests.fakes.provider_state import FakeJob, FakeProvider, JobState, RateLimited, Rejected

API_TOKEN = "r8_fake_token"

_STATUS = {
    JobState.RUNNING: "processing",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CONTENT_POLICY: "failed",
    JobState.CANCELLED: "canceled",
    JobState.ABORTED: "aborted",
}


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"title": title, "detail": detail, "status": status}, status_code=status, headers=headers
    )


def _prediction(state: FakeProvider, job: FakeJob, polled: JobState | None) -> dict[str, Any]:
    urls = {
        "get": f"{state.api_url}/v1/predictions/{job.id}",
        "cancel": f"{state.api_url}/v1/predictions/{job.id}/cancel",
    }
    body: dict[str, Any] = {
        "id": job.id,
        "model": job.model,
        "input": {"prompt": job.prompt},
        "status": "starting" if polled is None else _STATUS[polled],
        "output": None,
        "error": None,
        "urls": urls,
    }
    if polled is JobState.SUCCEEDED:
        body["output"] = state.asset_link(job)
    elif polled is JobState.CONTENT_POLICY:
        body["error"] = "The input or output was flagged as sensitive. Please try again (E005)"
    elif polled is JobState.FAILED:
        body["error"] = "CUDA error: out of memory"
    return body


def replicate_app(state: FakeProvider) -> FastAPI:
    """The app; its state must have been built by `replicate_state`."""
    app = FastAPI()
    state.install(app)

    async def create(request: Request, model: str) -> Response:
        if not state.authorized(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        body = await request.json()
        problems = replicate_problems(body.get("input"))
        if problems:
            return _problem(422, "Input validation failed", "; ".join(problems))
        inputs = {k: v for k, v in body["input"].items() if k != "prompt"}
        try:
            job = state.submit(body["input"]["prompt"], model, inputs)
        except RateLimited as limited:
            return _problem(
                429,
                "Too Many Requests",
                "Request was throttled. Expected available in 1 second.",
                {"Retry-After": limited.retry_after},
            )
        except Rejected as refused:
            detail = (
                "The input was flagged as sensitive (E005)"
                if refused.kind == "content_policy"
                else "- input.prompt: String length must be at most 2000"
            )
            return _problem(422, "Input validation failed", detail)
        return JSONResponse(_prediction(state, job, None), status_code=201)

    @app.post("/v1/models/{owner}/{name}/predictions")
    async def create_for_model(owner: str, name: str, request: Request) -> Response:
        return await create(request, f"{owner}/{name}")

    @app.post("/v1/predictions")
    async def create_for_version(request: Request) -> Response:
        return await create(request, "version")

    @app.get("/v1/predictions/{prediction_id}")
    async def get(prediction_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        job = state.jobs.get(prediction_id)
        if job is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        polled = state.poll(job)
        if polled is JobState.SERVER_ERROR:
            return _problem(500, "Internal Server Error", "Something went wrong")
        return JSONResponse(_prediction(state, job, polled))

    @app.post("/v1/predictions/{prediction_id}/cancel")
    async def cancel(prediction_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        job = state.jobs.get(prediction_id)
        if job is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        state.cancel(job)
        return JSONResponse(_prediction(state, job, JobState.CANCELLED))

    return app


def replicate_state() -> FakeProvider:
    """State of a fake Replicate expecting `Authorization: Bearer API_TOKEN`."""
    return FakeProvider(credential_header="authorization", credential_value=f"Bearer {API_TOKEN}")
