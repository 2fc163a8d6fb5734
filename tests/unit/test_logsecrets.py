"""Secrets in the environment never reach a log line, whoever logs them."""

from __future__ import annotations

import io
import logging

from connectors.logsecrets import MASK, SecretFilter, install, mask, secret_values

ENV = {
    "IOC_KAFKA_SASL_PASSWORD": "kafka-pa55word",
    "IOC_WEB_TOKEN": "tok-123456",
    "PD_ROUTING_KEY": "R0UT1NGKEY",
    "IOC_MQTT_PASSWORD": "abc",  # too short to be told from ordinary words: left alone
    "IOC_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
}


def test_secret_values_come_from_secret_names_only() -> None:
    assert secret_values(ENV) == ["kafka-pa55word", "R0UT1NGKEY", "tok-123456"]
    assert mask("user=x password=kafka-pa55word", secret_values(ENV)) == f"user=x password={MASK}"


def test_a_library_debug_line_is_masked_and_other_lines_are_untouched() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    # loggers of their own: other tests (the CLI's) set the "kafka" logger's level
    library = logging.getLogger("test_logsecrets.kafka.admin.client")
    ours = logging.getLogger("test_logsecrets.iocstream")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    library.setLevel(logging.DEBUG)
    installed = install(ENV)
    try:
        assert isinstance(installed, SecretFilter)
        config = {"sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_password": "kafka-pa55word"}
        library.debug("Starting with configuration: %s", config)
        ours.info("bootstrap %s", ENV["IOC_KAFKA_BOOTSTRAP"])
        try:
            raise ValueError("bad token tok-123456")
        except ValueError:
            ours.exception("login failed")
    finally:
        for h in root.handlers:
            h.removeFilter(installed)
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = out.getvalue()
    assert "kafka-pa55word" not in text
    assert "tok-123456" not in text
    assert f"'sasl_plain_password': '{MASK}'" in text
    assert "bootstrap 127.0.0.1:9092" in text
    assert f"ValueError: bad token {MASK}" in text
