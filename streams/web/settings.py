"""Settings of the live alert feed (``IOC_WEB_*``), in the style of :mod:`connectors.settings`.

``IOC_WEB_TOKEN`` is the access token operators type in (or open the page with as
``#token=...``, a URL fragment browsers never send to the server). It is a
:class:`~pydantic.SecretStr`: it prints as ``**********`` and is never logged. Without it the
server refuses to start (an IOC page must not be open to anyone on the network).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    """The web server (``IOC_WEB_*``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_WEB_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8088, ge=0, le=65_535, description="HTTP port (0: any free port)")
    token: SecretStr | None = Field(None, description="access token (secret)")
    metrics_port: int = Field(9407, ge=0, le=65_535, description="Prometheus /metrics (0: off)")
    history_per_alert: int = Field(200, ge=1, description="events kept per alert fingerprint")
    recent_events: int = Field(1000, ge=1, description="events kept in the global history")
    tiles_refresh_s: float = Field(15.0, gt=0, description="seconds between tile refreshes")

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with the token replaced by ``**********``."""
        out: dict[str, Any] = {}
        for name, value in self:
            out[name] = "**********" if isinstance(value, SecretStr) and value else value
        return out
