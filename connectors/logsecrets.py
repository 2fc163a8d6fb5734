"""Keep secrets out of the logs, whoever logs them.

Our own code never logs a secret (settings are :class:`pydantic.SecretStr`, printed as
``**********``). Libraries are another matter: at DEBUG, kafka-python's clients log their whole
configuration, SASL password included. :class:`SecretFilter`, installed on the root handlers by
:func:`install`, replaces every occurrence of a secret's value in a log record's final message
(and in its exception text) by ``**********`` before any handler writes it.

Which values are secrets: those of the environment variables whose name contains
``PASSWORD``, ``TOKEN``, ``SECRET``, ``ROUTING_KEY`` or ``API_KEY`` (the platform's and the
receivers' credentials are passed that way), at least :data:`MIN_SECRET_LEN` characters long
(shorter values would redact ordinary words). Guarantee: a record whose message contains such
a value is written with the value masked; nothing else about the record changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Final

MASK: Final = "**********"
MIN_SECRET_LEN: Final = 4
SECRET_MARKERS: Final = ("PASSWORD", "TOKEN", "SECRET", "ROUTING_KEY", "API_KEY")


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The secret values of an environment, longest first (so no partial masking)."""
    found = {
        value
        for name, value in environ.items()
        if any(marker in name.upper() for marker in SECRET_MARKERS) and len(value) >= MIN_SECRET_LEN
    }
    return sorted(found, key=lambda v: (-len(v), v))


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by :data:`MASK`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """Masks secret values in each record's message and exception text (never drops one)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = mask(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        return True


def install(environ: Mapping[str, str] | None = None) -> SecretFilter:
    """Add a :class:`SecretFilter` for the environment's secrets to every root handler."""
    secret_filter = SecretFilter(secret_values(os.environ if environ is None else environ))
    for handler in logging.getLogger().handlers:
        handler.addFilter(secret_filter)
    return secret_filter
