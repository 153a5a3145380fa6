"""A fake fal.ai queue: submit, status, result, cancel."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.input_contracts import fal_problems
from tests.fakes.provider_state import FakeJob, FakeProvider, JobState, RateLimited, Rejected

FAL_KEY = "fake-fal-key"

_POLICY_DETAIL = [
    {
        "loc": ["body", "prompt"],
        "msg": "The content could not be processed: it was flagged by a content checker.",
        "type": "content_policy_violation",
    }
]


def _unauthorized() -> JSONResponse:
    return JSONResponse({"detail": "Unauthorized"}, status_code=401)


def fal_app(state: FakeProvider) -> FastAPI:
    """The app; its state must have been built by `fal_state`."""
    app = FastAPI()
    state.install(app)
    outcomes: dict[str, JobState] = {}

    def urls(owner: str, app_name: str, job: FakeJob) -> dict[str, str]:
        base = f"{state.api_url}/{owner}/{app_name}/requests/{job.id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    @app.get("/{owner}/{app_name}/requests/{request_id}/status")
    async def status(owner: str, app_name: str, request_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return _unauthorized()
        job = state.jobs.get(request_id)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        polled = state.poll(job)
        if polled is JobState.SERVER_ERROR:
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        if polled is JobState.RUNNING:
            kind = "IN_QUEUE" if job.polls <= 1 else "IN_PROGRESS"
            return JSONResponse({"status": kind, "queue_position": 0, **urls(owner, app_name, job)})
        outcomes[job.id] = polled
        body: dict[str, object] = {"status": "COMPLETED", **urls(owner, app_name, job)}
        if polled is JobState.FAILED:
            body |= {"error": "Internal server error", "error_type": "runner_server_error"}
        return JSONResponse(body)

    @app.get("/{owner}/{app_name}/requests/{request_id}")
    async def result(owner: str, app_name: str, request_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return _unauthorized()
        job = state.jobs.get(request_id)
        outcome = outcomes.get(request_id)
        if job is None or outcome is None:
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if outcome is JobState.CONTENT_POLICY:
            return JSONResponse({"detail": _POLICY_DETAIL}, status_code=422)
        if outcome is JobState.CANCELLED:
            return JSONResponse({"detail": "Request was cancelled"}, status_code=400)
        if outcome is JobState.FAILED:
            return JSONResponse({"detail": "Internal server error"}, status_code=500)
        return JSONResponse(
            {
                "video": {
                    "url": state.asset_link(job),
                    "content_type": "video/mp4",
                    "file_size": len(job.scenario.asset),
                }
            }
        )

    @app.put("/{owner}/{app_name}/requests/{request_id}/cancel")
    async def cancel(owner: str, app_name: str, request_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return _unauthorized()
        job = state.jobs.get(request_id)
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        if not state.cancel(job):
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    @app.post("/{model_path:path}")
    async def submit(model_path: str, request: Request) -> Response:
        if not state.authorized(request):
            return _unauthorized()
        body = await request.json()
        problems = fal_problems(body)
        if problems:
            detail = [{"loc": ["body"], "msg": problem, "type": "value_error"} for problem in problems]
            return JSONResponse({"detail": detail}, status_code=422)
        inputs = {k: v for k, v in body.items() if k != "prompt"}
        try:
            job = state.submit(body["prompt"], model_path, inputs)
        except RateLimited as limited:
            return JSONResponse(
                {"detail": "Rate limit exceeded"},
                status_code=429,
                headers={"Retry-After": limited.retry_after},
            )
        except Rejected as refused:
            if refused.kind == "content_policy":
                return JSONResponse({"detail": _POLICY_DETAIL}, status_code=422)
            detail = [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
            return JSONResponse({"detail": detail}, status_code=422)
        owner, app_name = model_path.split("/")[:2]
        return JSONResponse({"request_id": job.id, "queue_position": 0, **urls(owner, app_name, job)})

    return app


def fal_state() -> FakeProvider:
    """State of a fake fal expecting `Authorization: Key FAL_KEY`."""
    return FakeProvider(credential_header="authorization", credential_value=f"Key {FAL_KEY}")
