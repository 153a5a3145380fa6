"""A fake Gemini API for Veo: predictLongRunning, operations (get, cancel), file download."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from tests.fakes.input_contracts import veo_problems
from tests.fakes.provider_state import FakeProvider, JobState, RateLimited, Rejected

API_KEY = "fake-gemini-key"


def _error(
    code: int, status: str, message: str, details: list[dict[str, object]] | None = None
) -> JSONResponse:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code)


def _operation(name: str, state: JobState, state_of: FakeProvider, job_id: str) -> dict[str, Any]:
    if state is JobState.RUNNING:
        return {"name": name}
    if state is JobState.SUCCEEDED:
        uri = f"{state_of.api_url}/v1beta/files/{job_id}:download?alt=media"
        samples = {"generatedSamples": [{"video": {"uri": uri}}]}
        return {"name": name, "done": True, "response": {"generateVideoResponse": samples}}
    if state is JobState.CONTENT_POLICY:
        filtered = {
            "raiMediaFilteredCount": 1,
            "raiMediaFilteredReasons": [
                "The prompt could not be submitted: it violates our usage guidelines."
            ],
        }
        return {"name": name, "done": True, "response": {"generateVideoResponse": filtered}}
    if state is JobState.CANCELLED:
        return {"name": name, "done": True, "error": {"code": 1, "message": "Operation cancelled."}}
    return {"name": name, "done": True, "error": {"code": 13, "message": "Video generation failed."}}


def veo_app(state: FakeProvider) -> FastAPI:
    """The app; its state must have been built by `veo_state`."""
    app = FastAPI()
    state.install(app)

    @app.post("/v1beta/models/{model_action}")
    async def predict(model_action: str, request: Request) -> Response:
        if not state.authorized(request):
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        model, _, action = model_action.partition(":")
        body = await request.json()
        if action != "predictLongRunning":
            return _error(404, "NOT_FOUND", f"unknown action {action}")
        problems = veo_problems(body)
        if problems:
            return _error(400, "INVALID_ARGUMENT", "; ".join(problems))
        instance = body["instances"][0]
        inputs = {**{k: v for k, v in instance.items() if k != "prompt"}, **body.get("parameters", {})}
        try:
            job = state.submit(instance["prompt"], model, inputs)
        except RateLimited as limited:
            # The Gemini API puts the wait in the body (google.rpc.RetryInfo), with no Retry-After.
            return _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{"quotaMetric": "generativelanguage.googleapis.com/predict_requests"}],
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{limited.retry_after}s",
                    },
                ],
            )
        except Rejected as refused:
            message = (
                "The prompt violates the safety policy."
                if refused.kind == "content_policy"
                else "Invalid prompt: too long."
            )
            return _error(400, "INVALID_ARGUMENT", message)
        return JSONResponse({"name": f"models/{model}/operations/{job.id}"})

    @app.api_route("/v1beta/models/{model}/operations/{operation_action}", methods=["GET", "POST"])
    async def operation(model: str, operation_action: str, request: Request) -> Response:
        if not state.authorized(request):
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        job_id, _, action = operation_action.partition(":")
        job = state.jobs.get(job_id)
        if job is None:
            return _error(404, "NOT_FOUND", "Operation not found.")
        if request.method == "POST" and action == "cancel":
            state.cancel(job)
            return JSONResponse({})
        polled = state.poll(job)
        if polled is JobState.SERVER_ERROR:
            return _error(500, "INTERNAL", "An internal error has occurred.")
        return JSONResponse(_operation(f"models/{model}/operations/{job_id}", polled, state, job_id))

    @app.get("/v1beta/files/{file_action}")
    async def download(file_action: str, request: Request) -> Response:
        if not state.authorized(request):
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        job = state.jobs.get(file_action.partition(":")[0])
        if job is None:
            return _error(404, "NOT_FOUND", "File not found.")
        # Google redirects downloads to signed storage URLs on another host.
        return RedirectResponse(state.asset_link(job), status_code=302)

    return app


def veo_state() -> FakeProvider:
    """State of a fake Veo expecting `API_KEY` in `x-goog-api-key`."""
    return FakeProvider(credential_header="x-goog-api-key", credential_value=API_KEY)
