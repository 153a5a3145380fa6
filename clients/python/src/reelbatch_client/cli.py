"""`reelbatch-client`: the customer's command line over the SDK (the server's `reelbatch` is the operators').

    reelbatch-client submit prompts.csv --model veo-3 --wait --download out/
    reelbatch-client status BATCH_ID        reelbatch-client results BATCH_ID --download out/
    reelbatch-client cancel BATCH_ID        reelbatch-client retry-failed BATCH_ID --wait
    reelbatch-client credits                reelbatch-client ledger --month 2026-12
    reelbatch-client webhooks test --listen 127.0.0.1:8787

Every command takes `--json` (one JSON document on stdout) and `--api-key` / `--base-url`
(else REELBATCH_API_KEY / REELBATCH_BASE_URL, else the config file). Exit codes: see `ExitCode`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from reelbatch_client import models as m
from reelbatch_client.cli_codes import ExitCode, exit_code_of
from reelbatch_client.cli_output import BatchProgress, Output, add_common_options
from reelbatch_client.cli_webhooks import add_webhook_commands
from reelbatch_client.client import Client
from reelbatch_client.errors import APIError, ReelbatchError


def finished_code(batch: m.Batch) -> ExitCode:
    """0 when every item succeeded, 6 otherwise."""
    return ExitCode.OK if batch.status == "completed" else ExitCode.ITEMS_FAILED


def cost_summary(client: Client, batch: m.Batch) -> dict[str, Any]:
    """What the batch cost, from the batch and from the ledger (they must agree)."""
    entries = list(client.iter_ledger(batch_id=batch.batch_id))
    return {
        "frozen_credits": batch.frozen_credits,
        "credits_spent": batch.credits_spent,
        "refunded_credits": batch.refunded_credits,
        "ledger_net_credits": sum(entry.credits_delta for entry in entries),
        "ledger_entries": len(entries),
    }


def _batch_fields(batch: m.Batch) -> dict[str, Any]:
    keys = ("batch_id", "name", "status", "total_count", "success_count", "failed_count", "cancelled_count")
    money = ("pending_count", "frozen_credits", "credits_spent", "refunded_credits", "settlement_status")
    return {key: getattr(batch, key) for key in (*keys, *money)}


def _follow(client: Client, output: Output, batch_id: str, args: argparse.Namespace) -> dict[str, Any]:
    """--wait and --download of submit and retry-failed: the finished batch, its cost and files."""
    report: dict[str, Any] = {}
    bars = BatchProgress(output)
    with bars.shown():
        batch = client.wait(batch_id, poll_interval=args.poll, timeout=args.timeout, on_progress=bars.batch)
        report["batch"] = batch
        report["cost"] = cost_summary(client, batch)
        if args.download:
            summary = client.download_results(
                batch_id, args.download, fmt=args.format, on_progress=bars.videos
            )
            report["download"] = _download_report(summary)
    return report


def _download_report(summary: Any) -> dict[str, Any]:
    progress = summary.progress
    return {
        "directory": summary.directory,
        "results_file": summary.results_file,
        "errors_file": summary.errors_file,
        "videos_total": progress.videos_total,
        "videos_downloaded": progress.videos_downloaded,
        "videos_resumed": progress.videos_resumed,
        "videos_skipped": progress.videos_skipped,
        "bytes_downloaded": progress.bytes_downloaded,
    }


def _show_followed(output: Output, report: dict[str, Any]) -> ExitCode:
    if "batch" not in report:
        return ExitCode.OK
    batch: m.Batch = report["batch"]
    if not output.as_json:
        output.fields(f"batch {batch.batch_id}", _batch_fields(batch))
        output.fields("cost (credits)", report["cost"])
        if "download" in report:
            output.fields("download", report["download"])
    return finished_code(batch)


def _after_accepted(
    client: Client, output: Output, accepted: m.BatchAccepted, args: argparse.Namespace
) -> ExitCode:
    """Shows an accepted batch, or follows it with --wait / --download."""
    report = _follow(client, output, accepted.batch_id, args) if args.wait or args.download else {}
    if output.as_json:
        output.document({"accepted": accepted, **report})
        return _show_followed(output, report) if report else ExitCode.OK
    if not report:
        output.fields("accepted", accepted.model_dump())
    return _show_followed(output, report)


def _show_batch(output: Output, batch: m.Batch) -> ExitCode:
    if output.as_json:
        output.document(batch)
    else:
        output.fields(f"batch {batch.batch_id}", _batch_fields(batch))
    return ExitCode.OK


def cmd_submit(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """Submits a CSV/JSONL file; --wait follows it, --download fetches its results and videos."""
    metadata = dict(pair.split("=", 1) for pair in args.metadata)
    accepted = client.submit_file(
        args.file,
        model=args.model,
        name=args.name,
        webhook_url=args.webhook_url,
        metadata=metadata or None,
        idempotency_key=args.idempotency_key,
    )
    output.note(
        f"batch {accepted.batch_id}: {accepted.total_count} items, {accepted.required_credits} credits "
        f"frozen (of {accepted.available_credits} available)"
    )
    return _after_accepted(client, output, accepted, args)


def cmd_status(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """One batch's counts and money."""
    return _show_batch(output, client.get_batch(args.batch_id))


def cmd_wait(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """Waits for a batch (and downloads with --download)."""
    report = _follow(client, output, args.batch_id, args)
    if output.as_json:
        output.document(report)
        return finished_code(report["batch"])
    return _show_followed(output, report)


def cmd_cancel(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """Cancels what has not started; it is refunded at once."""
    return _show_batch(output, client.cancel(args.batch_id))


def cmd_retry_failed(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """A new batch of the failed items (idempotent per source batch)."""
    accepted = client.retry_failed(args.batch_id, failure_types=args.failure_type or None)
    output.note(f"retry batch {accepted.batch_id}: {accepted.total_count} items")
    return _after_accepted(client, output, accepted, args)


def cmd_results(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """The result lines (or --errors), or with --download the files and videos."""
    if args.download:
        bars = BatchProgress(output)
        with bars.shown():
            summary = client.download_results(
                args.batch_id,
                args.download,
                fmt=args.format,
                videos=not args.no_videos,
                on_progress=bars.videos,
            )
        report = _download_report(summary)
        output.document(report) if output.as_json else output.fields("download", report)
        return ExitCode.OK
    lines = client.errors(args.batch_id) if args.errors else client.results(args.batch_id)
    if output.as_json:
        output.document(lines)
        return ExitCode.OK
    columns = ("custom_id", "batch_index", "status", "failure_type", "credits_charged", "credits_refunded")
    output.rows(
        "errors" if args.errors else "results", columns, [[getattr(x, c) for c in columns] for x in lines]
    )
    return ExitCode.OK


def cmd_credits(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """The balance."""
    credits = client.credits()
    output.document(credits) if output.as_json else output.fields("credits", credits.model_dump())
    return ExitCode.OK


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def cmd_ledger(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """Ledger entries (newest first) of a month (UTC) or a batch, with their totals by kind."""
    month = args.month or datetime.now(UTC).strftime("%Y-%m")
    start, end = _month_bounds(month)
    entries = []
    for entry in client.iter_ledger(batch_id=args.batch):
        if entry.created_at < start:
            break  # newest first: the rest is older
        if entry.created_at < end:
            entries.append(entry)
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry.ref_type] = totals.get(entry.ref_type, 0) + entry.credits_delta
    if output.as_json:
        output.document({"month": month, "entries": entries, "totals": totals})
        return ExitCode.OK
    columns = ("created_at", "ref_type", "credits_delta", "balance_after", "batch_id")
    output.rows(f"ledger {month}", columns, [[getattr(e, c) for c in columns] for e in entries])
    output.fields("totals by kind", totals)
    return ExitCode.OK


def _following(parser: argparse.ArgumentParser, *, wait: bool = True) -> None:
    if wait:
        parser.add_argument("--wait", action="store_true", help="follow the batch until it is finished")
    parser.add_argument("--download", metavar="DIR", help="then download results, errors and videos into DIR")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="of the results files")
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds (exit 8)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls (default 1)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="reelbatch-client",
        description="Reelbatch from the command line: submit a CSV, watch it, download the results.",
        epilog="Exit codes: " + ", ".join(f"{code.value} {code.name.lower()}" for code in ExitCode),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="submit a CSV or JSONL file of prompts")
    submit.add_argument("file")
    submit.add_argument("--model", help="model of the rows that name none (e.g. veo-3)")
    submit.add_argument("--name", help="the batch's name (default: the file name)")
    submit.add_argument("--webhook-url")
    submit.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--idempotency-key", help="resend safely: the same key never creates a second batch")
    _following(submit)
    submit.set_defaults(run=cmd_submit)

    for name, run, text in (
        ("status", cmd_status, "a batch's counts and money"),
        ("cancel", cmd_cancel, "cancel what has not started (refunded at once)"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("batch_id")
        sub.set_defaults(run=run)
        add_common_options(sub)

    wait = commands.add_parser("wait", help="wait for a batch to finish (and --download)")
    wait.add_argument("batch_id")
    _following(wait, wait=False)
    wait.set_defaults(run=cmd_wait)

    retry = commands.add_parser("retry-failed", help="a new batch of the failed items")
    retry.add_argument("batch_id")
    retry.add_argument("--failure-type", action="append", choices=[t for t in m.FailureType.__args__])  # type: ignore[attr-defined]
    _following(retry)
    retry.set_defaults(run=cmd_retry_failed)

    results = commands.add_parser("results", help="result lines, or --download files and videos")
    results.add_argument("batch_id")
    results.add_argument("--errors", action="store_true", help="the failed and cancelled items instead")
    results.add_argument("--download", metavar="DIR")
    results.add_argument("--no-videos", action="store_true", help="with --download: the files only")
    results.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    results.set_defaults(run=cmd_results)

    credits = commands.add_parser("credits", help="the balance")
    credits.set_defaults(run=cmd_credits)

    ledger = commands.add_parser("ledger", help="ledger entries of a month (UTC) with totals")
    ledger.add_argument("--month", help="YYYY-MM (default: this month)")
    ledger.add_argument("--batch", help="only this batch's entries")
    ledger.set_defaults(run=cmd_ledger)

    add_webhook_commands(commands)
    for sub in (submit, wait, retry, results, credits, ledger):
        add_common_options(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; answers its exit code."""
    args = build_parser().parse_args(argv)
    output = Output(as_json=args.json)
    run: Callable[[Client, Output, argparse.Namespace], ExitCode] = args.run
    try:
        with Client(api_key=args.api_key, base_url=args.base_url) as client:
            return int(run(client, output, args))
    except KeyboardInterrupt:
        output.err.print("interrupted: run the same command again to resume a download")
        return 130
    except (ReelbatchError, OSError, ValueError) as error:
        code = exit_code_of(error)
        if output.as_json:
            detail = error.detail.model_dump(mode="json") if isinstance(error, APIError) else None
            output.document(
                {"error": {"type": type(error).__name__, "message": str(error), "detail": detail}}
            )
        else:
            output.err.print(f"error: {error}", highlight=False)
        return int(code if code != ExitCode.ERROR or not isinstance(error, ValueError) else ExitCode.USAGE)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
