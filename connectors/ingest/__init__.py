"""City-system events over Kafka: ``iocstream ingest``.

Pure parts (no I/O): ``catalog`` (compiled JSON Schema validators for ``schemas/json``),
``parse`` (one inbound record, structured or binary CloudEvents mode -> ``Event`` or
``DeadLetter``), ``dedup`` (the time-windowed, bounded (source, id) memory). Wiring:
``tail`` (reads ``ioc.events`` back into that memory), ``service`` (consume, produce, commit)
and ``cli`` (``iocstream ingest``).
"""

from connectors.ingest.catalog import Catalog
from connectors.ingest.dedup import SeenSet, digest
from connectors.ingest.parse import Limits, origin_of, parse_record

__all__ = ["Catalog", "Limits", "SeenSet", "digest", "origin_of", "parse_record"]
