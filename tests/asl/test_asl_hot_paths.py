"""What the runtime's hot paths promise after their speed-ups."""

from __future__ import annotations

import uuid

from scones.asl.resources import request_id


def test_lambda_request_ids_are_distinct_version_4_uuids() -> None:
    ids = [request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for text in ids[:50]:
        value = uuid.UUID(text)
        assert value.version == 4 and value.variant == uuid.RFC_4122 and str(value) == text
