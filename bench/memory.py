#!/usr/bin/env python3
"""What a large record costs ciwatch in memory: the events the writer keeps for the live
verdict (and the paths the tracer remembers), the record made of them, and the verdict's
evaluation.

    python3 bench/memory.py                   # 1,000,000 events
    python3 bench/memory.py --events 200000 --json
    python3 bench/memory.py --real            # a real `ciwatch run` creating 1,000,000 files

The events are what an install of many packages with hooks makes (about 100 a package: its
hook's processes, its files written by npm and by the hook, the download), each string made
afresh as the tracer decodes it from the tracee's memory. Each phase's resident set size is
read from /proc/self/status; bytes per event are over the baseline after the imports.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ciwatch.modes import NetMode
from ciwatch.policy.loader import default_policy
from ciwatch.record.events import (
    EgressFlow,
    Event,
    FileWrite,
    Header,
    NetConnect,
    ProcessExec,
    ProcessExit,
    ProcessStart,
)
from ciwatch.record.reader import Record, record_from_events
from ciwatch.record.vocabulary import ConnectVia, FileOp, TlsHandling, Transport
from ciwatch.rules import ALL_RULES, RULE_CATALOGUE
from ciwatch.verdict import evaluate

PROJECT = "/home/runner/work/app/app"
FILES_PER_PACKAGE = 46
"""Files npm writes for a package, and as many its hook writes: with the processes and the
download, about 100 events a package."""


def fresh(text: str) -> str:
    """A new string object, as decoding one from a tracee's memory makes."""
    return (text + "\0")[:-1]


def fresh_int(number: int) -> int:
    """A new int object, as a register or a JSON line gives one (above 256, ints are not shared)."""
    return int(str(number))


def package_events(index: int, npm_pid: int, next_pid: int, unique_names: bool = False) -> Iterator[Event]:
    name = f"pkg-{index}"
    directory = f"{PROJECT}/node_modules/{name}"
    shell, node = next_pid, next_pid + 1
    suffix = f"-{index}" if unique_names else ""  # a file name no other package has
    env = {fresh("npm_package_name"): fresh(name), fresh("npm_package_version"): fresh("1.0.0")}
    env[fresh("npm_lifecycle_event")] = fresh("postinstall")
    yield NetConnect(
        npm_pid, fresh("inet"), fresh("198.18.0.10"), 443, Transport.TCP, -115, ConnectVia.PROXY, 1000 + index
    )
    yield EgressFlow(
        pid=npm_pid,
        host=fresh("registry.npm.test"),
        sni=fresh("registry.npm.test"),
        server_address=fresh("198.18.0.10"),
        server_port=443,
        scheme=fresh("https"),
        method=fresh("GET"),
        url=fresh(f"https://registry.npm.test/{name}/-/{name}-1.0.0.tgz"),
        status=200,
        bytes_out=0,
        bytes_in=12345 + index,
        sha256=fresh(f"{index:064x}"),
        content_type=fresh("application/octet-stream"),
        tls=TlsHandling.INTERCEPTED,
        sha512=fresh(f"{index:0128x}"),
        connected_to=fresh("198.18.0.10"),
    )
    for number in range(FILES_PER_PACKAGE):
        yield FileWrite(
            fresh_int(npm_pid), FileOp.OPEN, fresh(f"{directory}/lib/file{number}{suffix}.js"), flags=fresh_int(577)
        )
    yield ProcessStart(shell, npm_pid)
    yield ProcessExec(
        shell,
        fresh("/bin/sh"),
        fresh("/bin/sh"),
        [fresh("sh"), fresh("-c"), fresh("node install.js")],
        fresh(directory),
        env,
    )
    yield ProcessStart(node, shell)
    yield ProcessExec(
        node, fresh("/usr/bin/node"), fresh("/usr/bin/node"), [fresh("node"), fresh("install.js")], fresh(directory)
    )
    for number in range(FILES_PER_PACKAGE):
        yield FileWrite(
            fresh_int(node), FileOp.OPEN, fresh(f"{directory}/build/out{number}{suffix}.o"), flags=fresh_int(577)
        )
    yield ProcessExit(node, 0, None)
    yield ProcessExit(shell, 0, None)


def build_events(count: int, unique_names: bool = False) -> Iterator[Event]:
    yield Header(
        schema=1,
        ciwatch_version="bench",
        host="bench",
        command=["npm", "install"],
        cwd=PROJECT,
        started_at="2026-01-01T00:00:00Z",
        job_context={},
        capabilities={},
        net_mode=NetMode.REDIRECT,
        home="/home/runner",
        out_dir=f"{PROJECT}/ciwatch-out",
    )
    npm_pid = 100
    yield ProcessStart(npm_pid, 1)
    yield ProcessExec(npm_pid, "/usr/bin/npm", "/usr/bin/node", ["npm", "install"], PROJECT)
    made, index = 3, 0
    while made < count:
        for event in package_events(index, npm_pid, 1000 + 2 * index, unique_names):
            yield event
            made += 1
        index += 1


def rss() -> tuple[int, int]:
    """(current, peak) resident set size in bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def as_the_tracer_sees(events: Iterator[Event], written: dict[str, int]) -> Iterator[Event]:
    """The events, with every path written remembered as the tracer remembers it (path -> pid,
    ``ciwatch/trace/filewatch.py``: it hashes the executables among them at the end), sharing
    the path strings with the events."""
    for event in events:
        if isinstance(event, FileWrite):
            written[event.path] = event.pid
        yield event


def keep(events: Iterator[Event], how: str) -> tuple[object, Callable[[], Record]]:
    """The events as the writer keeps them (``how``), and how the live verdict's record is
    made of them."""
    started = time.time()
    numbered = ((seq, round(started + seq * 1e-5, 6), event) for seq, event in enumerate(events, 1))
    if how == "tuples":  # the writer before the event log: (seq, time, event), copied into the record
        kept = list(numbered)
        return kept, lambda: record_from_events(kept)
    assert how == "log"  # the writer now: the record itself, its events in an EventLog, shared
    _, _, header = next(numbered)
    assert isinstance(header, Header)
    record = Record(header=header)
    for seq, t, event in numbered:
        record.take(seq, t, event)
    return record, record.as_now


def measure(
    count: int, how: str, unique_names: bool = False, tracer_paths: bool = True
) -> dict[str, float | int | str]:
    policy = default_policy(known_rules=RULE_CATALOGUE)
    assert ALL_RULES
    gc.collect()
    base, _ = rss()
    written: dict[str, int] = {}
    events = build_events(count, unique_names)
    kept, make_record = keep(as_the_tracer_sees(events, written) if tracer_paths else events, how)
    kept_rss, _ = rss()
    record = make_record()
    record_rss, _ = rss()
    began = time.process_time()
    verdict = evaluate(record, policy, today=datetime.date(2026, 1, 1))
    evaluate_s = time.process_time() - began
    _, peak = rss()
    assert kept is not None and (written or not tracer_paths)  # held to the end, as the writer and tracer do
    per_event = {
        "kept": (kept_rss - base) / count,
        "of_which_tracer_paths": sys.getsizeof(written) / count,
        "record": (record_rss - kept_rss) / count,
        "evaluate": (peak - record_rss) / count,
        "peak": (peak - base) / count,
    }
    return {
        "events": count,
        "kept_as": how,
        "unique_names": unique_names,
        "tracer_paths": tracer_paths,
        "baseline_mb": base / 1e6,
        "peak_mb": peak / 1e6,
        "peak_over_baseline_mb": (peak - base) / 1e6,
        **{f"{name}_bytes_per_event": value for name, value in per_event.items()},
        "evaluate_cpu_s": evaluate_s,
        "findings": len(verdict.findings),
    }


_REAL_BUILD = """
import os, sys
base, count = sys.argv[1], int(sys.argv[2])
for index in range(count):
    if index % 50 == 0:
        os.makedirs(f"{base}/pkg{index // 50}", exist_ok=True)
    os.close(os.open(f"{base}/pkg{index // 50}/file{index}.js", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
"""


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(found for child in children for found in _tree(int(child)))]


def measure_real(count: int) -> dict[str, float | int | str]:
    """A real ``ciwatch run`` (``--net redirect``, mitmproxy loaded) of a build that creates
    ``count`` files, 50 a directory: the peak RSS of its largest process (the tracing one),
    sampled from /proc (VmHWM: the verdict at the end included, unless after the last sample)."""
    with tempfile.TemporaryDirectory() as scratch:
        build = [sys.executable, "-c", _REAL_BUILD, f"{scratch}/files", str(count)]
        command = [sys.executable, "-m", "ciwatch", "run", "--quiet", "--out", f"{scratch}/out", "--", *build]
        started = time.monotonic()
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peaks: dict[int, int] = {}
        while run.poll() is None:
            for pid in _tree(run.pid):  # the front, the tracing process (the largest), the build
                with contextlib.suppress(OSError, KeyError, ValueError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                    peaks[pid] = max(peaks.get(pid, 0), int(fields["VmHWM"].split()[0]) * 1024)
            time.sleep(0.1)
        assert run.returncode == 0, run.stderr.read() if run.stderr else run.returncode
    return {
        "events": count,
        "tracer_peak_mb": max(peaks.values(), default=0) / 1e6,
        "seconds": time.monotonic() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--kept",
        choices=["log", "tuples"],
        default="log",
        help="how the writer keeps events: the record's compact event log, shared by the live verdict "
        "(log), or as before it, (seq, time, event) tuples copied into the record (tuples)",
    )
    parser.add_argument(
        "--unique-names",
        action="store_true",
        help="no file name repeats across packages (the worst case: names are shared when they repeat)",
    )
    parser.add_argument(
        "--no-tracer-paths",
        action="store_true",
        help="leave out the paths the tracer remembers (as measured before they were modelled)",
    )
    parser.add_argument(
        "--real", action="store_true", help="measure a real `ciwatch run` of a build that creates --events files"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object (for tests)")
    options = parser.parse_args()
    if options.real:
        result = measure_real(options.events)
    else:
        result = measure(options.events, options.kept, options.unique_names, not options.no_tracer_paths)
    if options.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value:,.1f}" if isinstance(value, float) else f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
