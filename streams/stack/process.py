"""Start, find and stop one detached service process by the pid it was given.

Guarantees:

* ``start`` writes ``<run dir>/<name>.pid`` only after the process was spawned, and the
  service's output goes to ``<log dir>/<name>.log`` (appended, so restarts keep history).
* ``stop`` signals only a pid this module recorded, and only while that pid's command line
  still contains the service's marker: a stale pid file never ends somebody else's process.
  It sends SIGTERM, waits, then SIGKILL; calling it twice is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Services outlive the ``Popen`` that spawned them; holding it here (until ``stop`` reaps
# the child) keeps ``Popen.__del__`` from warning that a detached service still runs.
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service of the local stack failed to start or to become healthy."""


@dataclass(frozen=True)
class ManagedProcess:
    """A named service process with a pid file and a log file."""

    name: str
    run_dir: Path
    log_dir: Path
    marker: str

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded pid if that process is alive and still this service, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # Right after fork the new process's cmdline can still be empty: that is not a
        # different process, so only a non-empty cmdline without the marker disqualifies.
        if cmdline.strip() and self.marker.encode() not in cmdline:
            return None
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has exited
            return None
        return pid

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Spawn ``argv`` detached (own session) and record its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            out.write(f"\n--- starting {self.name}: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        _SPAWNED[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        log.info("started %s (pid %d), log %s", self.name, proc.pid, self.log_file)
        return proc.pid

    def wait_healthy(self, check: Callable[[], bool], timeout_s: float) -> None:
        """Poll ``check`` until true; ``ServiceError`` if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise ServiceError(
                    f"{self.name} exited during start-up; last lines of {self.log_file}:\n"
                    + self.tail()
                )
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet healthy"
                log.debug("%s not healthy yet: %s", self.name, exc)
            time.sleep(0.25)
        raise ServiceError(
            f"{self.name} not healthy after {timeout_s:.0f}s; last lines of {self.log_file}:\n"
            + self.tail()
        )

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the recorded process (SIGTERM, then SIGKILL). Returns whether one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("stopping %s (pid %d)", self.name, pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() == pid:
            _reap(pid)
            time.sleep(0.1)
        if self.pid() == pid:
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.0fs; killing it", self.name, pid, timeout_s
            )
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        _reap(pid, wait_s=5.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 20) -> str:
        """The last lines of the service's log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _reap(pid: int, wait_s: float = 0.0) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie.

    With ``wait_s`` it waits that long for a child that was just signalled to exit.
    """
    proc = _SPAWNED.get(pid)
    if proc is not None:
        if wait_s:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
        proc.poll()
        if proc.returncode is not None:
            del _SPAWNED[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
