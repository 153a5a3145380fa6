"""The issue's scenario through the `reelbatch-client` command against the real system: a 500-line
spreadsheet with `#fail`, `#flaky` and `#timeout` prompts submitted, waited on and downloaded in one
command; the results sheets account for every row by custom_id, every succeeded row's video is on
disk, and the cost summary equals the ledger (read independently over REST)."""

from __future__ import annotations

import csv
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from tests.rest_api import Api, Customer
from tests.sdk.conftest import CLI

ROWS = 500
VEO_3_CREDITS = 20


def _prompt(index: int) -> str:
    marker = {7: " #fail", 13: " #flaky", 21: " #timeout"}.get(index % 50, "")
    return f"shot {index}: a paper boat crossing a lake at dawn{marker}"


def write_sheet(path: Path, rows: int = ROWS) -> dict[str, str]:
    """A CSV of `rows` prompts (custom ids shot-000..), answering custom_id -> prompt."""
    prompts = {f"shot-{i:03d}": _prompt(i) for i in range(rows)}
    with path.open("w", newline="") as sheet:
        writer = csv.writer(sheet)
        writer.writerow(["custom_id", "prompt", "metadata.scene"])
        for index, (custom_id, prompt) in enumerate(prompts.items()):
            writer.writerow([custom_id, prompt, f"scene-{index % 5}"])
    return prompts


def test_submit_wait_download_of_500_rows_accounts_for_every_row_and_every_credit(
    api: Api, customer: Customer, cli_env: dict[str, str], tmp_path: Path
) -> None:
    prompts = write_sheet(tmp_path / "prompts.csv")
    out = tmp_path / "out"
    command = [CLI, "submit", str(tmp_path / "prompts.csv"), "--model", "veo-3", "--wait"]
    run = subprocess.run(
        [*command, "--download", str(out), "--poll", "0.3", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    # Exit 6: the batch finished with failed items (#fail and #timeout), as scripts are told.
    assert run.returncode == 6, run.stdout + run.stderr
    report = json.loads(run.stdout)
    failing = [cid for cid, prompt in prompts.items() if "#fail" in prompt or "#timeout" in prompt]
    batch = report["batch"]
    assert (batch["status"], batch["total_count"], batch["failed_count"]) == ("partial", ROWS, len(failing))
    assert report["accepted"]["required_credits"] == ROWS * VEO_3_CREDITS

    with (out / "results.csv").open() as sheet:
        results = {row["custom_id"]: row for row in csv.DictReader(sheet)}
    with (out / "errors.csv").open() as sheet:
        errors = {row["custom_id"]: row for row in csv.DictReader(sheet)}
    assert set(results) | set(errors) == set(prompts) and not set(results) & set(errors)
    assert set(errors) == set(failing)
    for custom_id, row in errors.items():
        expected = "content_policy" if "#fail" in prompts[custom_id] else "timeout"
        assert (row["failure_type"], row["credits_refunded"]) == (expected, str(VEO_3_CREDITS)), row
    for custom_id, row in results.items():
        assert int(row["batch_index"]) == int(custom_id.removeprefix("shot-"))
        assert json.loads(row["metadata"]) == {"scene": f"scene-{int(row['batch_index']) % 5}"}
        # #flaky fails twice then succeeds (a busy machine may add a retry to any item).
        assert int(row["attempts"]) >= (3 if "#flaky" in prompts[custom_id] else 1), row
        video = out / "videos" / f"{custom_id}.mp4"
        assert video.read_bytes()[4:8] == b"ftyp", custom_id
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(f"{c}.mp4" for c in results)
    download = report["download"]
    assert (download["videos_total"], download["videos_downloaded"]) == (len(results), len(results))

    # The cost summary equals the ledger, read here over REST, and the sheets' own figures.
    ledger = api.ledger(customer, batch["batch_id"])
    cost = report["cost"]
    assert cost["ledger_net_credits"] == sum(entry["credits_delta"] for entry in ledger)
    assert cost["credits_spent"] == -cost["ledger_net_credits"] == VEO_3_CREDITS * len(results)
    assert cost["refunded_credits"] == sum(int(row["credits_refunded"]) for row in errors.values())
    assert cost["credits_spent"] == sum(int(row["credits_charged"]) for row in results.values())
    assert api.credits(customer)["available_credits"] == 100_000 - cost["credits_spent"]

    # retry-failed of the timeouts only: a new batch of exactly those rows, which time out again.
    retry = subprocess.run(
        [
            CLI,
            "retry-failed",
            batch["batch_id"],
            "--failure-type",
            "timeout",
            "--wait",
            "--poll",
            "0.3",
            "--json",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert retry.returncode == 6, retry.stdout + retry.stderr
    retried = json.loads(retry.stdout)
    timeouts = [cid for cid in failing if "#timeout" in prompts[cid]]
    assert (retried["batch"]["total_count"], retried["batch"]["failed_count"]) == (
        len(timeouts),
        len(timeouts),
    )
    assert retried["batch"]["retry_of"] == batch["batch_id"]


def test_status_credits_ledger_and_errors_answer_json_and_exit_codes(
    customer: Customer, cli_env: dict[str, str], tmp_path: Path
) -> None:
    write_sheet(tmp_path / "small.csv", rows=3)

    def cli(*args: str) -> tuple[int, object]:
        done = subprocess.run([CLI, *args, "--json"], env=cli_env, capture_output=True, text=True, timeout=60)
        return done.returncode, json.loads(done.stdout) if done.stdout else done.stderr

    code, submitted = cli(
        "submit", str(tmp_path / "small.csv"), "--model", "sora-2", "--wait", "--poll", "0.2"
    )
    assert code == 0, submitted
    assert isinstance(submitted, dict)
    batch_id = submitted["batch"]["batch_id"]
    assert cli("status", batch_id)[1]["status"] == "completed"  # type: ignore[index]
    assert cli("credits")[1] == {"available_credits": 100_000 - 30, "held_credits": 0, "debt_credits": 0}
    code, ledger = cli("ledger", "--batch", batch_id)
    assert code == 0 and ledger["totals"] == {"batch_upfront": -30}  # type: ignore[index]
    code, month = cli("ledger", "--month", datetime.now(UTC).strftime("%Y-%m"))
    assert code == 0 and sum(month["totals"].values()) == 100_000 - 30  # type: ignore[index]
    assert cli("ledger", "--month", "2001-01")[1]["entries"] == []  # type: ignore[index]
    assert cli("results", batch_id)[0] == 0
    # A batch nobody has: exit 3 (refused) with the API's code; a bad key: exit 4.
    code, missing = cli("status", "00000000-0000-4000-8000-000000000000")
    assert (code, missing["error"]["detail"]["code"]) == (3, "not_found")  # type: ignore[index]
    code, _ = cli("credits", "--api-key", "rb_live_wrong")
    assert code == 4
    code, broke = cli(
        "submit", str(tmp_path / "small.csv"), "--model", "sora-2", "--api-key", _poor_key(cli_env)
    )
    assert code == 5 and broke["error"]["detail"]["required_credits"] == 30  # type: ignore[index]


def _poor_key(env: dict[str, str]) -> str:
    api = Api(env["REELBATCH_BASE_URL"])
    try:
        return api.new_customer(credits=10).api_key
    finally:
        api.http.close()
