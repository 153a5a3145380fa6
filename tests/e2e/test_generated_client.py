"""The customer OpenAPI document is one an SDK generator can use (issue 25): a Python client
generated from the live `/openapi.json` by openapi-python-client submits a batch with settings
and collects every item's result (video links and refunds), with no hand-written HTTP."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.rest_api import Api

_GENERATOR = Path(sys.executable).parent / "openapi-python-client"


def _generated_client(api: Api, workdir: Path) -> str:
    """Generates a client package from the live document; answers its importable name."""
    (workdir / "openapi.json").write_bytes(api.http.get("/openapi.json").content)
    package = f"reelbatch_sdk_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [str(_GENERATOR), "generate", "--path", "openapi.json", "--output-path", package, "--meta", "none"],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(workdir))
    return package


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_a_generated_client_submits_a_batch_and_collects_its_results(api: Api, tmp_path: Path) -> None:
    customer = api.new_customer(credits=500)
    package = _generated_client(api, tmp_path)
    try:
        client_module = _module(package, "client")
        models: Any = _module(package, "models")
        create = _module(package, "api.customer.create_video_batch")
        get_batch = _module(package, "api.customer.get_video_batch")
        list_tasks = _module(package, "api.customer.list_video_batch_tasks")
        list_models = _module(package, "api.models.list_models")
        results_file = _module(package, "api.customer.get_batch_results")
        errors_file = _module(package, "api.customer.get_batch_errors")
        client = client_module.AuthenticatedClient(
            base_url=str(api.http.base_url), token=customer.api_key, prefix="", auth_header_name="X-API-Key"
        )

        catalogue = list_models.sync(client=client)
        assert "veo-3" in {model.model for model in catalogue.items}
        body = models.CreateBatchRequest(
            items=[
                models.BatchItemIn(prompt="a paper boat", model="sora-2"),
                models.BatchItemIn(prompt="a paper boat #fail", model="sora-2"),
                models.BatchItemIn(
                    prompt="a paper plane",
                    model="veo-3",
                    settings=models.GenerationSettingsIn(aspect_ratio="9:16", resolution="1080p", seed=3),
                ),
            ]
        )
        accepted = create.sync(client=client, body=body)
        # veo-3 at 1080p costs 5 more than its 20.
        assert (accepted.total_count, accepted.required_credits) == (3, 10 + 10 + 25)

        deadline = time.monotonic() + 60
        batch = get_batch.sync(accepted.batch_id, client=client)
        while batch.settlement_status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            batch = get_batch.sync(accepted.batch_id, client=client)
        assert (batch.status, batch.settlement_status) == ("partial", "refunded")

        page = list_tasks.sync(accepted.batch_id, client=client, limit=1000)
        results = {task.batch_index: task for task in page.items}
        assert results[0].status == "succeeded" and results[0].video_url
        assert (results[1].failure_type, results[1].credits_refunded) == ("content_policy", 10)
        assert (results[2].credits_charged, results[2].settings.resolution) == (25, "1080p")
        assert api.http.get(results[0].video_url).status_code == 200
        # The results and errors files (JSONL) through the generated client: one line per item.
        succeeded = results_file.sync_detailed(accepted.batch_id, client=client)
        failed = errors_file.sync_detailed(accepted.batch_id, client=client)
        assert succeeded.status_code == 200 and failed.status_code == 200
        assert len(succeeded.content.splitlines()) == 2
        assert len(failed.content.splitlines()) == 1
    finally:
        sys.path.remove(str(tmp_path))
