"""Settings of the local stack (``IOC_STACK_*``, plus the shared service URLs).

The stack's data lives under ``IOC_DATA_DIR`` (default ``./.data``) and survives ``down``/``up``;
downloaded Kafka jars live under ``IOC_CACHE_DIR`` (default ``./.cache``) and are fetched once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


class StackSettings(BaseSettings):
    """Where the local stack keeps its files and how it runs its services."""

    model_config = SettingsConfigDict(env_prefix="IOC_", extra="ignore")

    data_dir: Path = Field(Path(".data"), description="stack data, logs and pid files")
    cache_dir: Path = Field(Path(".cache"), description="downloaded Kafka jars")
    stack_kafka_controller_port: int = 9093
    stack_kafka_heap: str = "768m"
    stack_kafka_partitions: int = 6
    stack_kafka_retention_hours: int = 168
    stack_start_timeout_s: float = 90.0
    stack_mosquitto_bin: str | None = None

    @property
    def run_dir(self) -> Path:
        return self.data_dir.resolve() / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir.resolve() / "logs"
