"""Where the tracer's CPU goes at a write stop, phase by phase: bench/stopcost.py's C program
(N files created, written, closed) run under ``ciwatch run --net off --file-events ptrace`` in
this process, with the tracer's phases wrapped to add up their thread CPU
(``time.thread_time``: CPU, not wall, so other work on the machine moves it little). Prints
microseconds per stop for each phase; the wrappers cost ~0.3 us a call themselves.

    python3 bench/stopphases.py [--files 20000] [--tree DIR]   (DIR: another checkout, built in place)

Phases: the compiled loop's call (wait, reads, resume, the events built in C), Python's handling
of a batch (a Snapshot and the row's decoder where C didn't build the event, FileWatch), the
recording (scrubbing, the runtime allowlist, the event log, the lines), writing the record, and
the end of the run's look at every written file (hash_written: is it an executable?).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_ORDER = (
    "C: wait, read, resume, build",
    "Python: a batch handled",
    "  Snapshot (decoded in Python)",
    "  FileWatch.on_file",
    "Python: recording (sink_all)",
    "  scrubbing",
    "  runtime allowlist",
    "  writer.append_all (log, lines)",
    "writing the record",
    "end: written files looked at",
    "(the tracer thread's CPU, all of it)",
)
_cpu: collections.Counter[str] = collections.Counter()
_calls: collections.Counter[str] = collections.Counter()


def _timed(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            _cpu[label] += time.thread_time() - started
            _calls[label] += 1

    setattr(owner, name, timed)


class _TimedLoop:
    """The compiled loop's module with next_batch timed."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def next_batch(self, *args: Any) -> Any:
        started = time.thread_time()
        try:
            return self._module.next_batch(*args)
        finally:
            _cpu["C: wait, read, resume, build"] += time.thread_time() - started
            _calls["C: wait, read, resume, build"] += 1


def _instrument() -> None:
    from ciwatch.gate import allowlist
    from ciwatch.job import scrub
    from ciwatch.record import writer
    from ciwatch.trace import batch, filewatch, tracer

    batch._stoploop = _TimedLoop(batch._stoploop)  # type: ignore[assignment]
    _timed(batch.CompiledLoop, "_handle", "Python: a batch handled")
    _timed(batch.Snapshot, "__init__", "  Snapshot (decoded in Python)")
    _timed(filewatch.FileWatch, "on_file", "  FileWatch.on_file")
    _timed(tracer.Tracer, "flush", "Python: recording (sink_all)")
    _timed(scrub.Scrubber, "events", "  scrubbing")
    _timed(allowlist.RuntimeAllowlist, "observe_all", "  runtime allowlist")
    _timed(writer.RecordWriter, "append_all", "  writer.append_all (log, lines)")
    _timed(writer.RecordWriter, "flush", "writing the record")
    _timed(filewatch.FileWatch, "hash_written", "end: written files looked at")


def _print(files: int, out: Path, report: Path) -> None:
    for _ in range(200):  # the tracer process writes it as it exits
        if report.exists() and report.stat().st_size:
            break
        time.sleep(0.05)
    phases = json.loads(report.read_text())
    stops = json.loads((out / "record.jsonl").read_text().splitlines()[-1])["tracer_stops"]
    print(f"{files} files, {stops} stops: tracer thread CPU per stop, by phase")
    for label in _ORDER:
        cpu, calls = phases.get(label, (0.0, 0))
        print(f"  {label:40} {cpu / stops * 1e6:7.2f} us   ({calls} calls)")
    sys.stdout.flush()


def _report_at_exit(front: int, files: int, out: Path) -> Callable[[int], None]:
    """os._exit, which both of ciwatch's processes end with: the tracer writes its phases, the
    front prints them."""
    real_exit = os._exit
    report = out / "phases.json"

    def exit_reporting(code: int) -> None:
        if os.getpid() != front:
            phases = {label: (_cpu[label], _calls[label]) for label in _cpu}
            phases["(the tracer thread's CPU, all of it)"] = (time.thread_time(), 1)
            report.write_text(json.dumps(phases))
        else:
            _print(files, out, report)
        real_exit(code)

    return exit_reporting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the ciwatch checkout to measure")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    os.environ["PYTHONPATH"] = str(args.tree.resolve())
    import stopcost

    from ciwatch import supervise
    from ciwatch.cli import main as ciwatch_main

    program = stopcost.build_program()
    _instrument()
    supervise._set_parent_death_signal = lambda sig: None  # type: ignore[assignment]  # the report outlives the front
    out = Path(tempfile.mkdtemp(prefix="stopphases-"))
    where = Path(tempfile.mkdtemp(prefix="stopphases-files-"))
    os._exit = _report_at_exit(os.getpid(), args.files, out)  # type: ignore[assignment]
    sys.argv = ["ciwatch", "run", "--net", "off", "--file-events", "ptrace", "-q", "--out", str(out)]
    sys.argv += ["--", str(program), str(args.files)]
    os.chdir(where)
    ciwatch_main()


if __name__ == "__main__":
    main()
