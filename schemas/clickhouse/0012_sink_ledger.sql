-- The ClickHouse sink's ledger: before inserting a batch of one topic-partition the sink
-- records the batch's offset range here; on (re)assignment it resumes at the last recorded
-- range and rebuilds that exact batch, whose inserts carry the same deduplication tokens and
-- so add nothing if they had already succeeded (see connectors/clickhouse/sink.py). One row
-- per topic-partition survives merges: the latest range (read with FINAL).
CREATE TABLE IF NOT EXISTS sink_ledger (
    topic LowCardinality(String),
    partition UInt16,
    first_offset UInt64,
    last_offset UInt64,
    recorded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(first_offset)
ORDER BY (topic, partition);
