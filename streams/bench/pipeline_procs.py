"""The pipeline's own processes in a benchmark: start, watch, scrape and stop them.

A benchmark that measures the real pipeline runs each component (``iocstream bridge``,
``alerter``, ``notifier``, a load publisher...) as a subprocess of its own. This module gives:

* :class:`Proc`: one subprocess of this interpreter, its stdout and stderr in a log file
  of the benchmark's scratch directory. :meth:`Proc.stop` sends SIGTERM, then SIGKILL after
  60 s, and always waits for the process, so no zombie or ``ResourceWarning`` is left;
  :meth:`Proc.check` raises (with the log's tail) as soon as the process has exited.
* :func:`wait_until`: polls a condition while checking that every given process is still
  running, so a crashed component fails the run at once instead of at the timeout.
* :func:`free_port` and :func:`scrape`: a loopback port for a component's ``/metrics``
  server, and one sample read from that page;
* :func:`background_main` (started by :func:`start_background`): the background MQTT load,
  a process of its own so that publishing does not compete with this process's stamping.
  It publishes at a steady rate until SIGTERM, then prints one JSON line with the readings
  the broker acknowledged and the seconds it ran (the rate it really sustained).

Every wait is bounded (``WAIT_S`` by default); it bounds a broken run only and is no timing
threshold: a timeout raises ``RuntimeError``, never a figure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from connectors.settings import MqttSettings

WAIT_S = 600  # bounds a broken (or hopelessly overloaded) run only


class Proc:
    """A subprocess with its log file; stopped with SIGTERM (then SIGKILL) and waited for."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")

    def wait_for_log(self, text: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace"):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never logged {text!r}:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> int:
        return stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """End a process this benchmark started: SIGTERM by pid, up to ``timeout_s`` for it to
    exit, then SIGKILL. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode


def wait_until(
    what: str, done: Callable[[], bool], procs: Sequence[Proc], timeout_s: float = WAIT_S
) -> None:
    """Return once ``done()`` holds; raise if one of ``procs`` exits or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        for p in procs:
            p.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (for a component's metrics server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, sample: str) -> float:
    """The value of one sample (name with its labels, as exposed) on a /metrics page; NaN if
    the page does not have it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def background_main() -> int:
    """Publish non-crossing readings at ``BENCH_RATE`` readings/s until SIGTERM; print the
    readings acknowledged by the broker and the seconds as one JSON line.

    Devices ``<BENCH_PREFIX>-bg-0000``... (``BENCH_DEVICES`` of them, in turn), air-quality
    devices of ``BENCH_DISTRICT``; each message is ThingsBoard's list form of
    ``BENCH_OBJECTS`` timestamped objects with pm25 (20..79) and pm10, at QoS 1."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    rate, prefix = float(os.environ["BENCH_RATE"]), os.environ["BENCH_PREFIX"]
    devices, objects = int(os.environ["BENCH_DEVICES"]), int(os.environ["BENCH_OBJECTS"])
    district = os.environ["BENCH_DISTRICT"]
    settings = MqttSettings()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-publisher")
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    client.connect(settings.host, settings.port)
    client.loop_start()
    per_message = objects * 2
    sent = 0
    started = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate / per_message)
            while sent < due and not stop.is_set():
                now_ms = int(time.time() * 1000)
                body = [
                    {
                        "ts": now_ms - (objects - 1 - j) * 50,
                        "values": {"pm25": float(20 + (sent + j) % 60), "pm10": 40.0 + j},
                    }
                    for j in range(objects)
                ]
                device = f"{prefix}-bg-{sent % devices:04d}"
                topic = f"ioc/{district}/air_quality/{device}/telemetry"
                client.publish(topic, orjson.dumps(body), qos=1)
                sent += 1
            time.sleep(0.002)
        took = time.monotonic() - started
    finally:
        client.disconnect()
        client.loop_stop()
    print(orjson.dumps({"readings": acked[0] * per_message, "seconds": took}).decode())
    return 0


def start_background(env: dict[str, str], workdir: Path) -> Proc:
    """Start :func:`background_main` as the process ``background`` (``BENCH_*`` in ``env``);
    after :meth:`Proc.stop`, the last line of its log is its JSON summary."""
    code = "import sys; from streams.bench.pipeline_procs import background_main as m; " + (
        "sys.exit(m())"
    )
    return Proc("background", ["-c", code], env, workdir)
