"""Delivery of one notification to one receiver: one attempt per call (I/O).

:meth:`Senders.attempt` makes exactly one attempt and returns an :class:`Attempt` saying
whether it worked and, if not, whether trying again may help (connection errors, timeouts,
HTTP 408/429/5xx: yes; other HTTP 4xx: no). Retries with backoff are the caller's
(``connectors/notify/service.py``).

Every HTTP request carries ``Idempotency-Key: <key>`` (and the body has ``idempotencyKey``);
e-mails carry it as ``Message-ID``; PagerDuty de-duplicates by ``dedup_key``. Delivery is
at-least-once: a receiver may see the same key more than once and should drop repeats.

Secrets (webhook/chat tokens, SMTP password, PagerDuty routing key) are read once from the
environment variables the routing file names, kept as :class:`pydantic.SecretStr`, and never
logged: errors name the receiver, never a URL that may embed a token.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr

from connectors.notify.config import NotifyConfig, Receiver
from connectors.notify.dispatch import Notification
from connectors.notify.payloads import email_message, pagerduty_events, telegram_body, webhook_body


class MissingSecretError(ValueError):
    """A receiver names an environment variable that is not set."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one delivery attempt."""

    ok: bool
    retryable: bool
    status: int = 0  # HTTP status, or SMTP reply code, 0 if none
    error: str = ""
    duration_ms: float = 0.0


def load_secrets(config: NotifyConfig, environ: Mapping[str, str]) -> dict[str, SecretStr]:
    """The secrets every receiver needs, by env var name; :class:`MissingSecretError` lists
    the unset ones (names only)."""
    names = set()
    for r in config.receivers.values():
        names |= {n for n in (r.token_env, r.password_env, r.routing_key_env) if n}
    missing = sorted(n for n in names if not environ.get(n))
    if missing:
        raise MissingSecretError(f"environment variable(s) not set: {', '.join(missing)}")
    return {n: SecretStr(environ[n]) for n in names}


def _retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class Senders:
    """Makes delivery attempts for every receiver type over one aiohttp session."""

    def __init__(self, secrets: Mapping[str, SecretStr], session: aiohttp.ClientSession) -> None:
        self.secrets = secrets
        self.session = session

    def _secret(self, name: str | None) -> str:
        return self.secrets[name].get_secret_value() if name else ""

    async def attempt(self, receiver: Receiver, n: Notification) -> Attempt:
        """One attempt; never raises for delivery problems."""
        start = time.perf_counter()
        try:
            if receiver.type == "email":
                result = await asyncio.to_thread(self._email, receiver, n)
            elif receiver.type == "pagerduty":
                key = self._secret(receiver.routing_key_env)
                result = Attempt(True, False, 202)
                for event in pagerduty_events(n, key):
                    result = await self._post(receiver, receiver.url, event, n)
                    if not result.ok:
                        break
            elif receiver.type == "telegram":
                url = receiver.url.replace("{token}", self._secret(receiver.token_env))
                result = await self._post(receiver, url, telegram_body(n, receiver.chat_id), n)
            else:
                result = await self._post(receiver, receiver.url, webhook_body(n), n)
        except (aiohttp.ClientError, TimeoutError, OSError, smtplib.SMTPException) as exc:
            result = Attempt(
                False,
                not isinstance(exc, smtplib.SMTPRecipientsRefused),
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        elapsed = (time.perf_counter() - start) * 1000
        return Attempt(result.ok, result.retryable, result.status, result.error, elapsed)

    async def _post(
        self, receiver: Receiver, url: str, body: dict[str, Any], n: Notification
    ) -> Attempt:
        headers = {"Idempotency-Key": n.idempotency_key, "User-Agent": "iocstream-notifier"}
        if receiver.type == "webhook" and receiver.token_env:
            headers["Authorization"] = f"Bearer {self._secret(receiver.token_env)}"
        timeout = aiohttp.ClientTimeout(total=receiver.timeout.total_seconds())
        async with self.session.post(url, json=body, headers=headers, timeout=timeout) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return Attempt(True, False, resp.status)
            return Attempt(False, _retryable(resp.status), resp.status, f"HTTP {resp.status}")

    def _email(self, receiver: Receiver, n: Notification) -> Attempt:
        host, _, port = receiver.smarthost.rpartition(":")
        message = email_message(n, receiver.sender, receiver.to)
        timeout = receiver.timeout.total_seconds()
        with smtplib.SMTP(host or receiver.smarthost, int(port or 25), timeout=timeout) as smtp:
            if receiver.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if receiver.username and receiver.password_env:
                smtp.login(receiver.username, self._secret(receiver.password_env))
            refused = smtp.send_message(message)
        if refused:
            return Attempt(False, False, 550, f"refused: {sorted(refused)}")
        return Attempt(True, False, 250)
