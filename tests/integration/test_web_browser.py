"""The live alert feed in a real headless Chromium (Selenium), against real Kafka.

``iocstream web`` runs as a subprocess on uuid-named alert and action topics. A stand-in for
the alert evaluator (a thread here) applies operator actions exactly as ``iocstream alerter``
does — with the pure ``streams.alerts.actions.apply_action`` — and publishes the resulting
alert events, so the test covers the whole loop: click → ``ioc.alert-actions`` → evaluator →
``ioc.alerts`` → SSE → every open page.

Checks: an alert that existed before the server started is on the page (the book is rebuilt
from the topic); a new alert appears without reload; acknowledging it in one tab updates that
tab, a second tab and the API, with the operator's name in the alert's history; the page
switches to English. A screenshot is saved under the test's ``tmp_path``.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium`` package; the
test fails (never skips) when they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.settings import KafkaSettings
from schemas.alerts import AlertEvent, AlertState, decode_action, encode_event
from streams.alerts.actions import ActionRejected, apply_action
from tests.unit.test_web_support import event

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token-7f3a"
OPERATOR = "Nguyễn Văn An"
WAIT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class StandInEvaluator(threading.Thread):
    """Applies actions from the actions topic to the alert states it was told about."""

    def __init__(self, actions_topic: str, alerts_topic: str) -> None:
        super().__init__(daemon=True, name="stand-in-evaluator")
        self.actions_topic, self.alerts_topic = actions_topic, alerts_topic
        self.states: dict[str, AlertState] = {}
        self.applied: list[Any] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def publish(self, producer: KafkaProducer, events: list[AlertEvent]) -> None:
        with self.lock:
            for ev in events:
                self.states[ev.fingerprint] = ev.state
        for ev in events:
            producer.send(self.alerts_topic, key=ev.fingerprint.encode(), value=encode_event(ev))
        producer.flush(timeout=30)

    def run(self) -> None:
        options = KafkaSettings().client_options()
        consumer = KafkaConsumer(
            self.actions_topic, **options, auto_offset_reset="earliest", enable_auto_commit=False
        )
        producer = KafkaProducer(**options, acks="all")
        try:
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    for record in records:
                        self._apply(producer, record.value)
        except Exception as exc:  # noqa: BLE001  # reported by the test
            self.errors.append(repr(exc))
        finally:
            consumer.close()
            producer.close(timeout=10)

    def _apply(self, producer: KafkaProducer, value: bytes) -> None:
        action = decode_action(value)
        self.applied.append(action)
        with self.lock:
            state = self.states[action.fingerprint]
        try:
            _, events = apply_action(state, action)
        except ActionRejected as exc:
            self.errors.append(str(exc))
            return
        self.publish(producer, events)


@pytest.fixture
def topics(stack: dict[str, str], unique: str) -> tuple[str, str]:
    del stack
    alerts, actions = f"test-alerts-{unique}", f"test-alert-actions-{unique}"
    ensure_topics(KafkaSettings(), [TopicSpec(alerts, 2, 1), TopicSpec(actions, 2, 1)])
    return alerts, actions


@pytest.fixture
def evaluator(topics: tuple[str, str]) -> Iterator[StandInEvaluator]:
    alerts, actions = topics
    thread = StandInEvaluator(actions, alerts)
    thread.start()
    yield thread
    thread.stopping.set()
    thread.join(timeout=30)


@pytest.fixture
def producer() -> Iterator[KafkaProducer]:
    p = KafkaProducer(**KafkaSettings().client_options(), acks="all")
    yield p
    p.close(timeout=10)


@pytest.fixture
def web_server(topics: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    alerts, actions = topics
    port = _free_port()
    env = {**os.environ, "IOC_WEB_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "web.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.web", "--port", str(port), "--metrics-port", "0",
             "--alerts-topic", alerts, "--actions-topic", actions,
             "--silences-topic", f"{alerts}-silences"],
            env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"web exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                health = _get(f"{base}/healthz")
                if health["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"web not ready in 60 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"web ignored SIGTERM:\n{log_path.read_text()}")
        log_text = log_path.read_text()
        assert TOKEN not in log_text, "the access token reached the log"
        assert code == 0, log_text


def _get(url: str) -> Any:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310  # loopback only
        return orjson.loads(resp.read())


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    assert Path(chromium).exists(), "install Debian's chromium: apt-get install chromium"
    assert Path(driver_path).exists(), "install chromium-driver: apt-get install chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--lang=vi-VN",
    ):
        options.add_argument(arg)  # fmt: skip
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def _card(driver: webdriver.Chrome, fingerprint: str) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, f'#feed li.alert[data-fp="{fingerprint}"]')
    return found[0] if found else None


def _acknowledged(driver: webdriver.Chrome) -> tuple[str, list[str]] | None:
    card = _card(driver, "new-aqi")
    marks = card.find_elements(By.CSS_SELECTOR, ".ack-by") if card else []
    if not marks:
        return None
    buttons = card.find_elements(By.CSS_SELECTOR, "button[data-action]")
    return marks[0].text, [b.get_attribute("data-action") for b in buttons]


def _wait(driver: webdriver.Chrome, what: str, check: Any) -> Any:
    # the page re-renders cards on every change: a stale element just means "look again"
    return WebDriverWait(
        driver, WAIT_S, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    ).until(check, message=f"waited {WAIT_S:.0f} s for {what}")


def test_alert_feed_in_chromium(
    web_server: str,
    browser: webdriver.Chrome,
    evaluator: StandInEvaluator,
    producer: KafkaProducer,
    tmp_path: Path,
    topics: tuple[str, str],
) -> None:
    del topics
    # an alert that existed before the server started is there from the topic
    old = event("old-river", 1, rule="river_level_alarm", district="chau-doc", severity="minor")
    evaluator.publish(producer, [old])
    _wait_api(web_server, "old-river")

    fragment = urllib.parse.urlencode({"token": TOKEN, "operator": OPERATOR})
    browser.get(f"{web_server}/#{fragment}")
    _wait(browser, "the old alert", lambda d: _card(d, "old-river"))
    assert "token" not in browser.current_url  # the fragment is cleared after login
    assert not browser.find_element(By.ID, "login").is_displayed()
    assert browser.find_element(By.ID, "conn").get_attribute("class") == "conn conn-on"
    first_tab = browser.current_window_handle

    # a new alert appears without reload
    browser.execute_script("window.__noReload = true")
    new = event("new-aqi", 1, rule="vn_aqi_station", district="long-xuyen", severity="critical")
    evaluator.publish(producer, [new])
    card = _wait(browser, "the new alert", lambda d: _card(d, "new-aqi"))
    assert browser.execute_script("return window.__noReload") is True
    assert "sev-critical" in card.get_attribute("class")
    assert card.get_attribute("data-state") == "firing"
    feed = [
        li.get_attribute("data-fp") for li in browser.find_elements(By.CSS_SELECTOR, "#feed li")
    ]
    assert feed[:2] == ["new-aqi", "old-river"]  # newest first

    # a second tab (same session) shows it too
    browser.switch_to.new_window("tab")
    browser.get(f"{web_server}/")
    _wait(browser, "the new alert in tab 2", lambda d: _card(d, "new-aqi"))
    second_tab = browser.current_window_handle

    # acknowledge in tab 1
    browser.switch_to.window(first_tab)
    _card(browser, "new-aqi").find_element(
        By.CSS_SELECTOR, 'button[data-action="acknowledge"]'
    ).click()
    for handle in (first_tab, second_tab):
        browser.switch_to.window(handle)
        ack_text, buttons = _wait(browser, "the acknowledgement", _acknowledged)
        assert OPERATOR in ack_text
        assert "acknowledge" not in buttons  # an acknowledged alert offers no second ack
    api = _get(f"{web_server}/api/alerts/new-aqi")
    assert api["alert"]["acknowledged_by"] == OPERATOR
    assert [(h["kind"], h["actor"]) for h in api["history"]] == [
        ("acknowledged", OPERATOR),
        ("firing", "system"),
    ]
    assert [(a.action, a.actor) for a in evaluator.applied] == [("acknowledge", OPERATOR)]
    assert evaluator.errors == []

    # tiles per district (from the registry, filled from ClickHouse) and the district filter
    tiles = _wait(browser, "the tiles", lambda d: d.find_elements(By.CSS_SELECTOR, "#tiles .tile"))
    assert "long-xuyen" in [t.get_attribute("data-district") for t in tiles]
    Select(browser.find_element(By.ID, "f-district")).select_by_value("chau-doc")
    shown = [
        li.get_attribute("data-fp") for li in browser.find_elements(By.CSS_SELECTOR, "#feed li")
    ]
    assert shown == ["old-river"]
    Select(browser.find_element(By.ID, "f-district")).select_by_value("")

    # history panel and the English labels
    browser.switch_to.window(first_tab)
    _card(browser, "new-aqi").find_element(By.CSS_SELECTOR, 'button[data-action="history"]').click()
    _wait(
        browser,
        "the history panel",
        lambda d: d.find_elements(By.CSS_SELECTOR, "#detail-history li.ev-acknowledged"),
    )
    browser.find_element(By.ID, "lang").click()
    _wait(browser, "English labels", lambda d: "Acknowledged by" in _card(d, "new-aqi").text)
    assert browser.find_element(By.CSS_SELECTOR, "h1").text.startswith("City Operations Centre")
    shot = tmp_path / "alert-feed.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0


def _wait_api(base: str, fingerprint: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not any(a["fingerprint"] == fingerprint for a in _get(f"{base}/api/alerts")["alerts"]):
        assert time.monotonic() < deadline, f"{fingerprint} never reached the web server"
        time.sleep(0.2)
