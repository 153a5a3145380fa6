"""`make bench-soak`'s two benchmarks at tiny sizes, so they never rot: each runs to its end on a
whole distributed stack, leaves no backlog and the money right (I1-I5 are checked by the bench
harness before its stack goes). Figures are never asserted: at these sizes they mean nothing."""

from __future__ import annotations

from bench import soak_provider_bound, soak_sustained


def test_the_sustained_soak_runs_every_task_and_leaves_no_backlog() -> None:
    result = soak_sustained.main(
        ["--quick", "--tasks", "400", "--batch-items", "100", "--open-batches", "2", "--celery-tasks", "50"]
    )
    assert result["tasks"] == 400
    backlog = result["backlog_end"]
    assert isinstance(backlog, dict)
    assert backlog and set(backlog.values()) == {0}
    rss = result["rss_mb_end"]
    assert isinstance(rss, dict)
    assert set(rss) == {"billing", "batch", "webhook", "gateway", "worker-0", "worker-1"}


def test_the_provider_bound_soak_settles_every_job_made_once_at_the_fake_provider() -> None:
    result = soak_provider_bound.main(
        ["--jobs", "20", "--job-seconds", "1", "--poll-seconds", "0.2", "--poll-max-seconds", "0.5"]
    )
    # Every job was created once at the fake (asserted inside) and every task succeeded.
    assert result["jobs"] == 20
    requests = result["fake_requests"]
    assert isinstance(requests, float | int)
    assert requests >= 20 * 3  # a create, at least one poll and a download per job
