"""Topic-exchange routing of the Postgres bus, which must route exactly as RabbitMQ does."""

from __future__ import annotations

import pytest

from libs.messaging.contract import routing_key_matches


@pytest.mark.parametrize(
    ("pattern", "routing_key", "expected"),
    [
        ("task.failed", "task.failed", True),
        ("task.failed", "task.succeeded", False),
        ("task.*", "task.failed", True),
        ("task.*", "task", False),
        ("task.*", "task.failed.late", False),
        ("#", "task.failed", True),
        ("task.#", "task", True),
        ("task.#", "task.failed.late", True),
        ("#.failed", "task.failed", True),
        ("#.failed", "batch.finished", False),
        ("*.finished", "batch.finished", True),
        ("batch.#.settled", "batch.settled", True),
        ("batch.#.settled", "batch.a.b.settled", True),
    ],
)
def test_routing_keys_match_like_a_rabbitmq_topic_exchange(
    pattern: str, routing_key: str, expected: bool
) -> None:
    assert routing_key_matches(pattern, routing_key) is expected
