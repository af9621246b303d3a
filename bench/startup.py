#!/usr/bin/env python3
"""What ciwatch adds to the shortest build there is: ``true`` bare, under ``--net off`` and
under the default mode (redirect, with the proxy), interleaved, N rounds.

Each round runs every configuration once, starting one further along each round, so that a
slow moment of the machine spreads over all of them. The report gives, per configuration, the
median wall time, its spread (min, quartiles, max), and the median of the per-round
differences to bare ``true`` ("adds"), which is steadier than the difference of medians on a
noisy machine. For the ciwatch runs it also splits the time from the record's own clock:

- ``start``: from the bench's fork to the record's header (Python, imports, the policy,
  ``--out``'s checks, the tracer process forked);
- ``set-up``: header to the build's exec (the build's root forked and seized, the proxy's
  listeners, CA and trust files; the proxy itself starts alongside the build);
- ``build``: exec to the build's exit;
- ``end``: exit to the record's end line;
- ``after``: end line to the exit code in the bench's hands (the verdict, verdict.json, exit).

``python -c pass`` and ``python -c "import ciwatch.cli"`` are measured too: the floors that
Python's own start and ciwatch's imports set. ``cpu`` is the CPU time (user + system) of the
command and of every process it started, including those that outlive it (the tracer process
after the front has returned, the package managers registry discovery asked): the bench is
their subreaper and waits for them all before the next run. It is steadier than wall time on
a busy machine.

    python3 bench/startup.py                  # 15 rounds
    python3 bench/startup.py --rounds 30 --markdown
    python3 bench/startup.py --nice -10       # on a machine shared with other work (root)

It measures the ciwatch of the tree it is in (``PYTHONPATH``), not an installed one, or of the
directories given with ``--tree`` (interleaved with each other).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PHASES = ("start", "set-up", "build", "end", "after")


@dataclass(frozen=True)
class Configuration:
    name: str
    command: Callable[[Path], list[str]]
    """The command to time, given a fresh --out directory."""
    records: bool = False
    tree: Path | None = None
    """The directory whose ``ciwatch`` package it runs (PYTHONPATH)."""


def _ciwatch(*options: str) -> Callable[[Path], list[str]]:
    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "ciwatch", "run", "--quiet", "--out", str(out), *options, "--", "true"]

    return command


def configurations(trees: list[Path]) -> list[Configuration]:
    """``true``, then for each tree: its imports, ``--net off`` and the default mode."""
    found = [
        Configuration("true", lambda out: ["true"]),
        Configuration("python -c pass", lambda out: [sys.executable, "-c", "pass"]),
    ]
    for tree in trees:
        label = f" [{tree.name}]" if len(trees) > 1 else ""
        found += [
            Configuration(
                f"python + ciwatch imports{label}", lambda out: [sys.executable, "-c", "import ciwatch.cli"], tree=tree
            ),
            Configuration(f"ciwatch --net off{label}", _ciwatch("--net", "off"), records=True, tree=tree),
            Configuration(f"ciwatch (default: redirect){label}", _ciwatch(), records=True, tree=tree),
        ]
    return found


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    adds: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)


def _phases(record: Path, launched: float, returned: float) -> dict[str, float]:
    """The time split, from the events' wall-clock stamps (``t``) in the record."""
    first: dict[str, float] = {}
    for line in record.read_text().splitlines():
        event = json.loads(line)
        first.setdefault(event["kind"], event["t"])
    marks = [launched, first["header"], first["process-exec"], first["process-exit"], first["end"], returned]
    return {phase: marks[i + 1] - marks[i] for i, phase in enumerate(PHASES)}


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Orphans of the measured commands become our children, so their CPU time is counted."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_all() -> None:
    """Wait for every process the last command left (the tracer, discovery's queries)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(
    configuration: Configuration, scratch: Path, env: dict[str, str]
) -> tuple[float, float, dict[str, float]]:
    out = Path(tempfile.mkdtemp(prefix="out-", dir=scratch))
    if configuration.tree is not None:
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(configuration.tree), env.get("PYTHONPATH")]))}
    launched = time.time()
    cpu_before = _children_cpu()
    started = time.perf_counter()
    # Run in the scratch directory: ``python -m`` puts the working directory first on sys.path,
    # and a checkout's own ``ciwatch`` there would be measured instead of the tree's.
    done = subprocess.run(
        configuration.command(out), cwd=scratch, env=env, stdin=subprocess.DEVNULL, capture_output=True
    )
    wall = time.perf_counter() - started
    _reap_all()
    cpu = _children_cpu() - cpu_before
    returned = time.time()
    if done.returncode != 0:
        raise SystemExit(f"bench: {configuration.name} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    phases = _phases(out / "record.jsonl", launched, returned) if configuration.records else {}
    return wall, cpu, phases


def measure(rounds: int, warmup: int, trees: list[Path]) -> dict[str, Samples]:
    env = dict(os.environ)
    # As installed: byte-compiled (the warm-up runs write the .pyc files), not compiled from
    # source at every start, which is what PYTHONDONTWRITEBYTECODE in a shell would measure.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    _become_subreaper()
    measured = configurations(trees)
    samples = {c.name: Samples() for c in measured}
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as scratch:
        for configuration in measured:
            for _ in range(warmup):
                _run_once(configuration, Path(scratch), env)
        for number in range(rounds):
            count = len(measured)
            order = [measured[(number + i) % count] for i in range(count)]
            walls: dict[str, float] = {}
            for configuration in order:
                wall, cpu, phases = _run_once(configuration, Path(scratch), env)
                walls[configuration.name] = wall
                samples[configuration.name].cpu.append(cpu)
                for phase, seconds in phases.items():
                    samples[configuration.name].phases.setdefault(phase, []).append(seconds)
            for name, wall in walls.items():
                samples[name].wall.append(wall)
                samples[name].adds.append(wall - walls["true"])
    return samples


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def report(samples: dict[str, Samples], markdown: bool) -> str:
    lines = []
    if markdown:
        lines += [
            "| configuration | median | min / q1 / q3 / max | adds to `true` (median of rounds) | cpu | "
            + " | ".join(PHASES)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(PHASES),
        ]
    for name, data in samples.items():
        q1, q3 = _quartiles(data.wall)
        spread = f"{min(data.wall):.3f} / {q1:.3f} / {q3:.3f} / {max(data.wall):.3f}"
        adds = "" if name == "true" else f"{statistics.median(data.adds):+.3f} s"
        phases = [f"{statistics.median(data.phases[p]):.3f}" if p in data.phases else "" for p in PHASES]
        cpu = f"{statistics.median(data.cpu):.3f} s"
        if markdown:
            lines.append(
                f"| {name} | {statistics.median(data.wall):.3f} s | {spread} | {adds} | {cpu} | "
                + " | ".join(phases)
                + " |"
            )
        else:
            split = "  ".join(f"{p} {v}" for p, v in zip(PHASES, phases, strict=True) if v)
            wall = statistics.median(data.wall)
            lines.append(f"{name:30s} median {wall:.3f} s  [{spread}]  {adds:>9s}  cpu {cpu}  {split}".rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each configuration first (default 1)")
    parser.add_argument("--markdown", action="store_true", help="a table as bench/README.md shows it")
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        help="measure the ciwatch package in this directory (default: this repository); repeat it to compare "
        "trees in one interleaved run (e.g. a commit exported with `git archive REV ciwatch | tar -x -C DIR`)",
    )
    parser.add_argument("--nice", type=int, default=0, help="run at this niceness increment (e.g. -10; root)")
    args = parser.parse_args(argv)
    if args.nice:
        from run import run_at_niceness  # bench/run.py: a session of our own, its autogroup niced too

        run_at_niceness(args.nice)
    load = os.getloadavg()
    samples = measure(args.rounds, args.warmup, [tree.resolve() for tree in args.tree or [REPO]])
    after = os.getloadavg()
    print(f"{args.rounds} rounds on {os.cpu_count()} CPUs; load average {load[0]:.2f} before, {after[0]:.2f} after")
    print(report(samples, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
