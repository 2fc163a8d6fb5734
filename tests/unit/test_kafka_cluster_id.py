"""KRaft cluster ids must be usable as a command-line argument of kafka-storage."""

from __future__ import annotations

import base64

from streams.stack.kafka import _cluster_id


def test_cluster_ids_are_16_bytes_and_never_look_like_an_option() -> None:
    ids = [_cluster_id() for _ in range(5000)]  # P(no '-' start by chance) is about 1e-34
    assert all(not i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
