"""A fake OpenAI videos API: create, retrieve, download content, delete."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.input_contracts import openai_problems
from tests.fakes.provider_state import FakeJob, FakeProvider, JobState, OutOfQuota, RateLimited, Rejected

API_KEY = "sk-fake-openai-key"

_STATUS = {
    JobState.RUNNING: "in_progress",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "failed",
    JobState.CONTENT_POLICY: "failed",
}


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _video(job: FakeJob, polled: JobState | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": "queued" if polled is None else _STATUS[polled],
        "progress": 100 if polled is JobState.SUCCEEDED else 0,
        "created_at": int(time.time()),
        "size": "720x1280",
        "seconds": "4",
        "error": None,
    }
    if polled is JobState.CONTENT_POLICY:
        body["error"] = {"code": "moderation_blocked", "message": "Blocked by our moderation system."}
    elif polled is JobState.FAILED:
        body["error"] = {"code": "internal_error", "message": "Video generation failed."}
    return body


def openai_videos_app(state: FakeProvider) -> FastAPI:
    """The app; its state must have been built by `openai_videos_state`."""
    app = FastAPI()
    state.install(app)

    def unauthorized() -> JSONResponse:
        return _error(401, "Incorrect API key provided.", "invalid_api_key")

    def live_job(video_id: str) -> FakeJob | None:
        job = state.jobs.get(video_id)
        return None if job is None or job.cancelled else job

    @app.post("/v1/videos")
    async def create(request: Request) -> Response:
        if not state.authorized(request):
            return unauthorized()
        files: dict[str, tuple[str, bytes]] = {}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            body = {}
            for name, value in form.multi_items():
                if isinstance(value, str):
                    body[name] = value
                else:
                    files[name] = (value.content_type or "", await value.read())
        else:
            body = await request.json()
        problems = openai_problems({k: v for k, v in body.items()}, files)
        if problems:
            return _error(400, "; ".join(problems), "invalid_value")
        inputs: dict[str, object] = {k: v for k, v in body.items() if k not in ("prompt", "model")}
        inputs.update(files)
        try:
            job = state.submit(body["prompt"], body["model"], inputs)
        except RateLimited as limited:
            return _error(
                429,
                "Rate limit reached for requests.",
                "rate_limit_exceeded",
                {"retry-after": limited.retry_after},
            )
        except OutOfQuota:
            # OpenAI's answer when the account's credit or budget is spent: a 429 that no wait fixes.
            quota: dict[str, dict[str, str | None]] = {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            }
            return JSONResponse(quota, status_code=429)
        except Rejected as refused:
            if refused.kind == "content_policy":
                return _error(400, "Your request was blocked by our moderation system.", "moderation_blocked")
            return _error(400, "Invalid value for 'prompt'.", "invalid_value")
        return JSONResponse(_video(job, None))

    @app.get("/v1/videos/{video_id}")
    async def retrieve(video_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return unauthorized()
        job = live_job(video_id)
        if job is None:
            return _error(404, "Video not found.", "not_found")
        polled = state.poll(job)
        if polled is JobState.SERVER_ERROR:
            return _error(500, "The server had an error processing your request.", "server_error")
        return JSONResponse(_video(job, polled))

    @app.get("/v1/videos/{video_id}/content")
    async def content(video_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return unauthorized()
        job = live_job(video_id)
        if job is None or job.scenario.asset_status != 200:
            return _error(
                404 if job is None else job.scenario.asset_status, "Video content not found.", "not_found"
            )
        return Response(job.scenario.asset, media_type="video/mp4")

    @app.delete("/v1/videos/{video_id}")
    async def delete(video_id: str, request: Request) -> Response:
        if not state.authorized(request):
            return unauthorized()
        job = live_job(video_id)
        if job is None:
            return _error(404, "Video not found.", "not_found")
        state.cancel(job)
        return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})

    return app


def openai_videos_state() -> FakeProvider:
    """State of a fake OpenAI expecting `Authorization: Bearer API_KEY`."""
    return FakeProvider(credential_header="authorization", credential_value=f"Bearer {API_KEY}")
