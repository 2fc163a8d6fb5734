"""Migration files and their rendering, without a server: names, placeholders, statements."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.clickhouse.migrate import Migration, MigrationError, load_migrations, render
from connectors.clickhouse.retention import TTLS, RetentionSettings


def test_every_migration_renders_with_default_retention() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    values = RetentionSettings().placeholders()
    for m in migrations:
        for statement in m.statements(values):
            assert "{{" not in statement
            assert "IF NOT EXISTS" in statement, f"{m.name}: not idempotent: {statement[:60]}"


def test_placeholders_take_settings_and_unknown_ones_fail() -> None:
    assert render("TTL x + INTERVAL {{readings_ttl_days}} DAY", {"readings_ttl_days": 7}) == (
        "TTL x + INTERVAL 7 DAY"
    )
    with pytest.raises(MigrationError, match="unknown placeholder"):
        render("{{nope}}", {})


def test_retention_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_RETENTION_READINGS_DAYS", "14")
    settings = RetentionSettings()
    assert settings.placeholders()["readings_ttl_days"] == 14
    readings = next(t for t in TTLS if t.table == "readings")
    assert readings.alter(settings) == (
        "ALTER TABLE readings MODIFY TTL toDateTime(event_time) + INTERVAL 14 DAY"
    )
    monkeypatch.setenv("IOC_RETENTION_READINGS_DAYS", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RetentionSettings()


def test_checksum_is_of_the_file_as_written(tmp_path: Path) -> None:
    m = Migration(1, "x", "CREATE TABLE IF NOT EXISTS t (a UInt8) TTL {{readings_ttl_days}};\n")
    assert m.statements({"readings_ttl_days": 1}) != m.statements({"readings_ttl_days": 2})
    assert m.checksum == Migration(1, "x", m.sql).checksum
    (tmp_path / "1_bad.sql").write_text("SELECT 1", encoding="utf-8")
    with pytest.raises(MigrationError, match="name must look like"):
        load_migrations(tmp_path)
