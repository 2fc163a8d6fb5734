"""How long ClickHouse keeps each kind of data (``IOC_RETENTION_*``), and how to change it.

Migrations that create a table with a TTL write it as a placeholder, ``{{readings_ttl_days}}``;
``iocstream db migrate`` fills it from these settings when it creates the table (the recorded
checksum is of the file as written, so a different setting never looks like an edited
migration). A table that already exists keeps its TTL until ``iocstream db ttl`` alters it to
the current settings (``ALTER TABLE ... MODIFY TTL``, which ClickHouse applies on merges).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RetentionSettings(BaseSettings):
    """Days to keep each table's rows (``IOC_RETENTION_<NAME>_DAYS``); at least 1."""

    model_config = SettingsConfigDict(env_prefix="IOC_RETENTION_", extra="ignore")

    readings_days: int = Field(90, ge=1, description="raw readings")
    windows_days: int = Field(400, ge=1, description="1-minute window statistics")
    rollup_1h_days: int = Field(730, ge=1, description="hourly roll-ups")
    rollup_1d_days: int = Field(3650, ge=1, description="daily roll-ups")
    values_days: int = Field(730, ge=1, description="derived indicators (VN_AQI, KPIs, ...)")
    alerts_days: int = Field(730, ge=1, description="alert history")
    events_days: int = Field(730, ge=1, description="city-system events")
    dead_letters_days: int = Field(30, ge=1, description="dead letters")
    notifications_days: int = Field(365, ge=1, description="notification attempts")

    def placeholders(self) -> dict[str, int]:
        """Placeholder name (as in the SQL files, without braces) -> days."""
        return {f"{t.setting.removesuffix('_days')}_ttl_days": t.days(self) for t in TTLS}


@dataclass(frozen=True)
class TableTTL:
    """The TTL of one table: ``expression + INTERVAL <days> DAY``."""

    table: str
    expression: str
    setting: str

    def days(self, settings: RetentionSettings) -> int:
        days: int = getattr(settings, self.setting)
        return days

    def alter(self, settings: RetentionSettings) -> str:
        """The ``ALTER TABLE`` statement that sets this TTL (values validated ints)."""
        return (
            f"ALTER TABLE {self.table} MODIFY TTL {self.expression} "
            f"+ INTERVAL {int(self.days(settings))} DAY"
        )


TTLS: tuple[TableTTL, ...] = (
    TableTTL("readings", "toDateTime(event_time)", "readings_days"),
    TableTTL("indicator_windows", "toDateTime(window_start)", "windows_days"),
    TableTTL("indicator_windows_1h", "window_start", "rollup_1h_days"),
    TableTTL("indicator_windows_1d", "window_start", "rollup_1d_days"),
    TableTTL("indicator_values", "toDateTime(window_start)", "values_days"),
    TableTTL("alert_events", "toDateTime(at)", "alerts_days"),
    TableTTL("events", "toDateTime(time)", "events_days"),
    TableTTL("dead_letters", "toDateTime(received_at)", "dead_letters_days"),
    TableTTL("notification_attempts", "toDateTime(at)", "notifications_days"),
)
"""Every table with a TTL; ``iocstream db ttl`` alters exactly these."""
