"""``iocstream sink --processes 2``: two sink processes share the group's partitions and
together write every record exactly once; SIGTERM stops both cleanly (exit code 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_sink_support import (
    Topics,
    build_load,
    figures,
    fresh_database,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_two_processes_write_everything_once_and_stop_on_sigterm(
    unique: str, tmp_path: Path
) -> None:
    bootstrap = os.environ["IOC_KAFKA_BOOTSTRAP"]
    url = os.environ["IOC_CLICKHOUSE_URL"]
    database = f"procs_{unique}"
    topics = Topics.create(bootstrap, unique)
    load = build_load(reading_batches=200, per_batch=50)
    log = tmp_path / "sink.log"
    env = {**os.environ, **topics.env(), "IOC_CLICKHOUSE_DATABASE": database}
    argv = [sys.executable, "-m", "streams.cli.main", "sink", "--group", f"g-{unique}",
            "--metrics-port", "0", "--max-rows", "1000", "--max-age", "0.3",
            "--processes", "2"]  # fmt: skip
    try:
        reader = fresh_database(url, database)
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            produce(bootstrap, topics, load)
            got = wait_for("both processes", lambda: figures(reader), load.expected, 50)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=90)
        text = log.read_text(errors="replace")
        assert got == load.expected, text[-3000:]
        assert code == 0, text[-3000:]
        assert "2 processes started" in text
        assert text.count("sink stopped after writing") == 2  # each child stopped cleanly
        assert figures(reader) == load.expected  # stopping wrote nothing twice
        reader.close()
    finally:
        topics.delete(bootstrap)
