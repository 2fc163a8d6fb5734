"""``iocstream kafka init``: create the platform's topics and check their partition counts."""

from __future__ import annotations

import argparse
import sys

from connectors.kafka.admin import ensure_topics, platform_topics
from connectors.settings import KafkaSettings, TopicSettings


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream kafka",
        description="Create the platform's Kafka topics (names, partitions and replication "
        "from IOC_TOPIC_*); existing topics are kept and their partition counts checked.",
    )
    parser.add_argument("action", choices=["init"])
    parser.parse_args(argv)
    try:
        counts = ensure_topics(KafkaSettings(), platform_topics(TopicSettings()))
    except ValueError as exc:
        print(f"iocstream kafka init: {exc}", file=sys.stderr)
        return 1
    for name, n in sorted(counts.items()):
        print(f"{name:<24} {n} partitions")
    return 0
