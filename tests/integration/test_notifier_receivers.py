"""Each receiver type against a real local server: SMTP (a minimal server started by the test),
Telegram and PagerDuty formats over HTTP (aiohttp on loopback); secrets come from the
environment, reach the server, and never appear in logs or results."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import aiohttp
import pytest

from connectors.notify.config import parse_config
from connectors.notify.dispatch import Dispatcher, Notification
from connectors.notify.senders import MissingSecretError, Senders, load_secrets
from schemas.alerts import AlertState
from tests.integration.test_notifier import Receiver

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-smtp-pa55"
TOKEN = "123456:telegram-token"
ROUTING_KEY = "pd-routing-key-xyz"


class SmtpServer:
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive messages."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.auth: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        lines: list[bytes] = []
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    self.messages.append(b"".join(lines))
                    lines = []
                    writer.write(b"250 queued\r\n")
                else:
                    lines.append(line[1:] if line.startswith(b"..") else line)
            else:
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-test\r\n250 AUTH PLAIN\r\n")
                elif verb == b"AUTH":
                    self.auth.append(base64.b64decode(line.split()[2]).decode())
                    writer.write(b"235 ok\r\n")
                elif verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go on\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()
        await writer.wait_closed()


def _config(http_port: int, smtp_port: int) -> Any:
    return parse_config(
        {
            "version": 1,
            "receivers": [
                {
                    "name": "mail",
                    "type": "email",
                    "to": ["ops@ioc.local"],
                    "from": "ioc@ioc.local",
                    "smarthost": f"127.0.0.1:{smtp_port}",
                    "username": "ioc",
                    "password_env": "TEST_SMTP_PASSWORD",
                },
                {
                    "name": "chat",
                    "type": "telegram",
                    "chat_id": "-100",
                    "url": f"http://127.0.0.1:{http_port}/bot{{token}}/sendMessage",
                    "token_env": "TEST_TELEGRAM_TOKEN",
                },
                {
                    "name": "pd",
                    "type": "pagerduty",
                    "url": f"http://127.0.0.1:{http_port}/pd",
                    "routing_key_env": "TEST_PD_KEY",
                },
            ],
            "route": {"receiver": "mail"},
        }
    )


def _notification(config: Any) -> Notification:
    d = Dispatcher(config)
    now = datetime.now(UTC)
    d.observe(
        AlertState(
            "fp1",
            "river_level_alarm",
            {"alertname": "river_level_alarm", "station": "long-xuyen"},
            "firing",
            "critical",
            annotations={"summary_vi": "Mực nước BĐ III", "summary_en": "Level at alarm III"},
            episode=1,
            revision=2,
            fired_at=now,
            active_since=now,
        ),
        now,
    )
    [n] = d.due(now.replace(year=now.year + 1))
    return n


def test_email_telegram_and_pagerduty_receivers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"TEST_SMTP_PASSWORD": PASSWORD, "TEST_TELEGRAM_TOKEN": TOKEN, "TEST_PD_KEY": ROUTING_KEY}
    smtp = SmtpServer()
    with Receiver() as http:

        async def main() -> list[Any]:
            await smtp.start()
            try:
                config = _config(http.port, smtp.port)
                n = _notification(config)
                async with aiohttp.ClientSession() as session:
                    senders = Senders(load_secrets(config, env), session)
                    return [
                        await senders.attempt(config.receivers[r], n)
                        for r in ("mail", "chat", "pd")
                    ]
            finally:
                await smtp.stop()

        results = asyncio.run(main())
    assert [r.ok for r in results] == [True, True, True]
    assert smtp.auth == [f"\0ioc\0{PASSWORD}"]
    [raw] = smtp.messages
    mail = message_from_bytes(raw)
    assert mail["Subject"] == "[FIRING:1] alertname=river_level_alarm"
    assert mail["Message-ID"].startswith("<")
    assert "Mực nước BĐ III" in mail.get_payload(decode=True).decode("utf-8")
    [(_, chat)] = http.requests[f"/bot{TOKEN}/sendMessage"]
    assert chat["chat_id"] == "-100"
    assert "Level at alarm III" in chat["text"]
    [(headers, pd)] = http.requests["/pd"]
    assert pd["routing_key"] == ROUTING_KEY
    assert pd["event_action"] == "trigger"
    assert pd["dedup_key"] == "fp1:1"
    assert pd["payload"]["severity"] == "critical"
    assert headers["Idempotency-Key"]
    logged = caplog.text + repr(results)
    for secret in (PASSWORD, TOKEN, ROUTING_KEY):
        assert secret not in logged


def test_missing_secret_names_the_variable_only() -> None:
    config = _config(1, 1)
    with pytest.raises(MissingSecretError) as err:
        load_secrets(config, {"TEST_SMTP_PASSWORD": PASSWORD})
    assert "TEST_PD_KEY" in str(err.value)
    assert "TEST_TELEGRAM_TOKEN" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_an_unreachable_receiver_is_a_retryable_failure() -> None:
    config = _config(1, 1)  # nothing listens on port 1
    n = _notification(config)

    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            env = {"TEST_SMTP_PASSWORD": "x", "TEST_TELEGRAM_TOKEN": "x", "TEST_PD_KEY": "x"}
            senders = Senders(load_secrets(config, env), session)
            return [await senders.attempt(config.receivers[r], n) for r in ("mail", "pd")]

    for result in asyncio.run(main()):
        assert not result.ok
        assert result.retryable
        assert result.error
