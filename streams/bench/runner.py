"""``iocstream bench``: discover, run and report the benchmarks of :mod:`streams.bench`.

The runner starts one ephemeral stack (its own ports and data directory, see
:mod:`streams.stack.ephemeral`) for all benchmarks that need services, runs the selected
benchmarks one after the other, prints a table of value, baseline and ratio, and writes
every figure to ``bench-results.json`` as ``{"<figure>": {"value", "unit", "baseline",
"ratio"}}``. A benchmark that raises is reported as failed and makes the exit code 1; the
others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import pkgutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import streams.bench
from streams.bench import BenchContext, Benchmark, Figure
from streams.stack.ephemeral import ephemeral_stack

log = logging.getLogger(__name__)

BENCH_PORT_BASE = 40000  # 49092 Kafka, 41883 MQTT, 48123 ClickHouse


def discover() -> dict[str, Benchmark]:
    """Every ``BENCHMARK`` defined by a module of :mod:`streams.bench`, by name."""
    found: dict[str, Benchmark] = {}
    for info in pkgutil.iter_modules(streams.bench.__path__):
        if info.name == "runner" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"streams.bench.{info.name}")
        bench = getattr(module, "BENCHMARK", None)
        if isinstance(bench, Benchmark):
            found[bench.name] = bench
    return dict(sorted(found.items()))


@contextlib.contextmanager
def _maybe_stack(needed: bool, base: int) -> Iterator[dict[str, str]]:
    if not needed:
        yield {}
        return
    with ephemeral_stack(base, prefix="iocstream-bench-") as env:
        yield env


def _table(figures: list[Figure]) -> str:
    head = f"{'figure':<34} {'value':>14} {'baseline':>14} {'ratio':>7}  unit (baseline)"
    lines = [head, "-" * len(head)]
    for f in figures:
        lines.append(
            f"{f.name:<34} {f.value:>14,.1f} {f.baseline:>14,.1f} {f.ratio:>7.2f}  "
            f"{f.unit} ({f.baseline_label})"
        )
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    benches = discover()
    parser = argparse.ArgumentParser(
        prog="iocstream bench",
        description="Run the benchmarks against a throw-away local stack and print value, "
        "same-run baseline and ratio. Writes bench-results.json.",
    )
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (all: {', '.join(benches)})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    parser.add_argument(
        "--port-base", type=int, default=BENCH_PORT_BASE, help="offset of the stack's ports"
    )
    args = parser.parse_args(argv)
    if args.list:
        for b in benches.values():
            print(f"{b.name:<24} {b.description}")
        return 0
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benches)}")
    selected = [benches[n] for n in (args.names or benches)]
    figures: list[Figure] = []
    failed: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="iocstream-bench-work-") as work,
        _maybe_stack(any(b.needs_stack for b in selected), args.port_base) as env,
    ):
        for bench in selected:
            log.info("benchmark %s: %s", bench.name, bench.description)
            started = time.monotonic()
            ctx = BenchContext(env=env, workdir=Path(work) / bench.name, quick=args.quick)
            ctx.workdir.mkdir(parents=True)
            try:
                got = bench.run(ctx)
            except Exception:
                log.exception("benchmark %s failed", bench.name)
                failed.append(bench.name)
                continue
            log.info("benchmark %s done in %.0fs", bench.name, time.monotonic() - started)
            for note in ctx.notes:
                log.info("%s: %s", bench.name, note)
            figures.extend(got)
    print(_table(figures))
    results = {
        f.name: {"value": f.value, "unit": f.unit, "baseline": f.baseline, "ratio": f.ratio}
        for f in figures
    }
    previous: dict[str, object] = {}
    if args.output.exists() and args.names:
        with contextlib.suppress(ValueError):
            previous = json.loads(args.output.read_text())
    args.output.write_text(json.dumps({**previous, **results}, indent=2) + "\n")
    print(f"wrote {args.output}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0
