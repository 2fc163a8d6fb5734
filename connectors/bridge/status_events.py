"""Device status messages to ``vn.longxuyen.device.status`` events on ``ioc.events`` (pure).

A device publishes ``online``/``offline`` on ``ioc/<district>/<kind>/<device-id>/status``,
retained and as its MQTT will (:mod:`connectors.mqtt.status` decodes it). The bridge turns a
status *change* into one canonical CloudEvent on ``ioc.events``, keyed by the device id (so
every status event of a device is on one partition, in order)::

    {"specversion": "1.0", "type": "vn.longxuyen.device.status",
     "source": "/ioc/long-xuyen/air_quality/aq-lx-001", "id": "offline@2026-11-28T09:00:00.000Z",
     "subject": "aq-lx-001", "time": "2026-11-28T09:00:00.000Z",
     "iocreceivedat": "...", "iocorigin": "mqtt:ioc/long-xuyen/air_quality/aq-lx-001/status",
     "data": {"device_id": "aq-lx-001", "kind": "air_quality", "district": "long-xuyen",
              "ward": "my-binh", "status": "offline", "since": "2026-11-28T09:00:00.000Z",
              "time_source": "device", "retained": false}}

Decisions:

* ``time``/``since`` is the device's ``ts`` when it sent one, else the receive time
  (``time_source`` says which). ``id`` is ``<status>@<time>``, so a redelivered message with a
  device time gives the same (source, id) and consumers that de-duplicate drop it; without a
  device time a redelivery may give a second event with the same status. Status events are
  state, not counts: applying one twice is harmless.
* ``retained: true`` marks a snapshot: the broker's last known state, delivered when the
  bridge's subscription is created, not a change that happened at receive time.
* :class:`StatusChanges` suppresses a status equal to the last one this bridge published for
  that device (a device re-announcing ``online`` is not a change). It is per process memory,
  bounded by the registry (unknown devices are dead letters and never tracked): after a
  restart the first status of each device is published again. The bridge does not use it
  with a share group: a replica sees only some of a device's messages there, so every
  status message becomes an event (see :mod:`connectors.bridge.bridge`).
* There is no JSON Schema for this type in ``schemas/json`` (ingest's types only): it is
  produced here, never validated by ingest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from connectors.mqtt.status import DeviceStatus, Status
from connectors.registry import Device
from schemas.events import Event
from schemas.readings import format_time

DEVICE_STATUS: Final = "vn.longxuyen.device.status"


def status_event(
    status: DeviceStatus, device: Device | None, received_at: datetime, retained: bool
) -> Event:
    """The canonical event for one decoded status message (layout in the module docstring)."""
    topic_base = f"ioc/{status.district}/{status.kind}/{status.device_id}"
    since = format_time(status.time)
    return Event(
        id=f"{status.status}@{since}",
        source=f"/{topic_base}",
        type=DEVICE_STATUS,
        subject=status.device_id,
        time=status.time,
        data={
            "device_id": status.device_id,
            "kind": status.kind,
            "district": status.district,
            "ward": device.ward if device is not None else "",
            "status": status.status,
            "since": since,
            "time_source": status.time_source,
            "retained": retained,
        },
        received_at=received_at,
        origin=f"mqtt:{topic_base}/status",
    )


class StatusChanges:
    """The last status published per device; says whether a new one is a change."""

    def __init__(self) -> None:
        self._last: dict[str, Status] = {}

    def is_change(self, status: DeviceStatus) -> bool:
        """True if ``status`` differs from the last one :meth:`published` for its device."""
        return self._last.get(status.device_id) != status.status

    def published(self, status: DeviceStatus) -> None:
        """Record that ``status`` was handed to Kafka."""
        self._last[status.device_id] = status.status

    def __len__(self) -> int:
        return len(self._last)
