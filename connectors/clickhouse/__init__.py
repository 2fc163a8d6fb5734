"""ClickHouse edges over HTTP (clickhouse-connect): client factory, migrations, sink."""
