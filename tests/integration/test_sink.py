"""The sink end to end on the shared stack: every topic lands in its tables, poison rows go
to dead_letters, and replaying every topic from offset 0 (a new consumer group, i.e. a group
reset to the earliest offset) changes no count, roll-ups and latest values included."""

from __future__ import annotations

import os

import pytest

from connectors.clickhouse.batch import Limits
from tests.integration.test_sink_support import (
    Topics,
    build_load,
    figures,
    fresh_database,
    group_caught_up,
    produce,
    sink_thread,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_all_topics_land_once_and_replay_from_zero_changes_nothing(unique: str) -> None:
    bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
    url = os.environ["IOC_CLICKHOUSE_URL"]
    database = f"sink_{unique}"
    topics = Topics.create(bootstrap, unique)
    load = build_load(reading_batches=60, per_batch=50)
    g2 = f"g2-{unique}"
    try:
        produce(bootstrap, topics, load)
        client = fresh_database(url, database)
        with sink_thread(bootstrap, client, topics, f"g1-{unique}", Limits(700, 1 << 24, 0.3)):
            reader = fresh_database(url, database)
            got = wait_for("first pass", lambda: figures(reader), load.expected, 40)
        assert got == load.expected
        # a group that starts at offset 0, with other batch limits: nothing may change
        with sink_thread(bootstrap, fresh_database(url, database), topics, g2,
                         Limits(97, 1 << 24, 0.05)):  # fmt: skip
            done = wait_for("replay", lambda: _caught_up(bootstrap, g2, topics), {"up": 1.0}, 40)
        assert done == {"up": 1.0}
        assert figures(reader) == load.expected
        poison = reader.query(
            "SELECT source, detail FROM dead_letters WHERE reason = 'poison_row' ORDER BY source"
        ).result_rows
        assert [p[0] for p in poison] == [f"kafka:{topics.names['indicators']}",
                                          f"kafka:{topics.names['readings']}"]  # fmt: skip
        assert all(p[1] for p in poison)
        reader.close()
    finally:
        topics.delete(bootstrap)


def _caught_up(bootstrap: str, group: str, topics: Topics) -> dict[str, float]:
    return {"up": float(group_caught_up(bootstrap, group, topics))}
