"""Consumer lag of the alerter, per topic (pure: the caller passes the end offsets).

The alerter reports ``iocstream_consumer_lag_records{component="alerter", topic=...}`` for
each input topic it forwards (readings, indicators, events, alert actions) and for its
internal topic (``<app id>-alert-inputs``, read by the evaluator): a backlog on the first
means the forwarders fall behind the platform, one on the second that evaluation does.

Lag is counted in Kafka records, as every ``iocstream_consumer_lag_records`` gauge: on
``ioc.readings`` a record is a batch of readings, on the internal topic one (rule,
fingerprint) group of observations. Lag of a partition = its end offset (the broker's high
watermark as of the consumer's last fetch) minus the next offset the alerter will process,
never negative; a topic's lag is the sum over the partitions this process has processed a
message of since the last rebalance. Partitions without a known end offset yet are left out;
a topic without any reports 0, so a gauge never keeps a stale value after a rebalance took
its partitions away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

#: (topic, partition)
TopicPartitionKey = tuple[str, int]


def topic_lags(
    next_offsets: Mapping[TopicPartitionKey, int],
    end_offset: Callable[[TopicPartitionKey], int | None],
    topics: Iterable[str],
) -> dict[str, int]:
    """Records behind the end, summed per topic, for every topic of ``topics`` (docstring)."""
    lags = dict.fromkeys(topics, 0)
    for key, next_offset in next_offsets.items():
        topic = key[0]
        if topic not in lags:
            continue
        end = end_offset(key)
        if end is not None:
            lags[topic] += max(0, int(end) - next_offset)
    return lags
