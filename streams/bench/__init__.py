"""Benchmarks behind ``make bench`` / ``iocstream bench``.

Every benchmark is a module in this package that defines ``BENCHMARK``, a :class:`Benchmark`.
Its ``run`` gets a :class:`BenchContext` (the running benchmark stack and a scratch
directory) and returns one or more :class:`Figure` — each with the value measured, the
baseline measured *in the same run* (machines are noisy; only ratios compare across runs)
and their ratio. ``iocstream bench`` prints them as a table and writes
``bench-results.json`` (DESIGN.md's format). Benchmarks are never timed tests: they measure
and report, they do not pass or fail on speed. A benchmark must still check that what it
measured was correct (rows counted, messages received) and raise if not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured figure and its same-run baseline (higher is better unless said)."""

    name: str
    value: float
    unit: str
    baseline: float
    baseline_label: str
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


@dataclass
class BenchContext:
    """What a benchmark runs against: the ``IOC_*`` environment of the stack and a scratch dir."""

    env: dict[str, str]
    workdir: Path
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def unique(prefix: str) -> str:
        """A fresh name for a topic, consumer group or table."""
        return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: ``run`` returns its figures; ``needs_stack`` starts the services."""

    name: str
    description: str
    run: Callable[[BenchContext], list[Figure]]
    needs_stack: bool = True
