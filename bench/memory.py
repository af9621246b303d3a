#!/usr/bin/env python3
"""What a large record costs ciwatch in memory: the events the writer keeps for the live
verdict, the record made of them, and the verdict's evaluation.

    python3 bench/memory.py                   # 1,000,000 events
    python3 bench/memory.py --events 200000 --json

The events are what an install of many packages with hooks makes (about 100 a package: its
hook's processes, its files written by npm and by the hook, the download), each string made
afresh as the tracer decodes it from the tracee's memory. Each phase's resident set size is
read from /proc/self/status; bytes per event are over the baseline after the imports.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from ciwatch.record.reader import Record, RecordedEvent, record_from_events
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


def package_events(index: int, npm_pid: int, next_pid: int) -> Iterator[Event]:
    name = f"pkg-{index}"
    directory = f"{PROJECT}/node_modules/{name}"
    shell, node = next_pid, next_pid + 1
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
            fresh_int(npm_pid), FileOp.OPEN, fresh(f"{directory}/lib/file{number}.js"), flags=fresh_int(577)
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
        yield FileWrite(fresh_int(node), FileOp.OPEN, fresh(f"{directory}/build/out{number}.o"), flags=fresh_int(577))
    yield ProcessExit(node, 0, None)
    yield ProcessExit(shell, 0, None)


def build_events(count: int) -> Iterator[Event]:
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
        for event in package_events(index, npm_pid, 1000 + 2 * index):
            yield event
            made += 1
        index += 1


def rss() -> tuple[int, int]:
    """(current, peak) resident set size in bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


@dataclass(frozen=True, slots=True)
class KeptEvent:
    """What the writer could keep instead of a tuple: the record's own item (slotted), shared
    by the record the live verdict judges rather than copied into it."""

    seq: int
    t: float
    event: Event


class KeptView:
    """The record's events read through the writer's arrays: each ``RecordedEvent`` is made as
    a rule reaches it and dropped after."""

    def __init__(self, seqs: array[int], times: array[float], events: list[Event]) -> None:
        self.seqs, self.times, self.events = seqs, times, events

    def __iter__(self) -> Iterator[RecordedEvent]:
        for index in range(1, len(self.events)):  # the header is the record's own
            yield RecordedEvent(self.seqs[index], self.times[index], self.events[index])


def keep(events: Iterator[Event], how: str) -> tuple[object, Callable[[], Record]]:
    """The events as the writer keeps them (``how``), and how the live verdict's record is
    made of them."""
    started = time.time()
    numbered = ((seq, round(started + seq * 1e-5, 6), event) for seq, event in enumerate(events, 1))
    if how == "tuples":  # the writer today: (seq, time, event), then record_from_events copies
        kept = list(numbered)
        return kept, lambda: record_from_events(kept)
    if how == "arrays":  # seq and time in arrays, the events in a list
        seqs, times, objects = array("q"), array("d"), []
        for seq, t, event in numbered:
            seqs.append(seq)
            times.append(t)
            objects.append(event)
        return (seqs, times, objects), lambda: record_from_events(list(zip(seqs, times, objects, strict=True)))
    if how == "view":  # arrays, and the record reads through them: no object kept per event
        seqs, times, objects = array("q"), array("d"), []
        for seq, t, event in numbered:
            seqs.append(seq)
            times.append(t)
            objects.append(event)
        header = objects[0]
        assert isinstance(header, Header)
        view = KeptView(seqs, times, objects)
        return view, lambda: Record(header=header, events=view)  # type: ignore[arg-type]
    assert how == "shared"
    items = [KeptEvent(seq, t, event) for seq, t, event in numbered]
    header = items[0].event
    assert isinstance(header, Header)
    return items, lambda: Record(header=header, events=items[1:])  # type: ignore[arg-type]


def measure(count: int, how: str) -> dict[str, float | int | str]:
    policy = default_policy(known_rules=RULE_CATALOGUE)
    assert ALL_RULES
    gc.collect()
    base, _ = rss()
    kept, make_record = keep(build_events(count), how)
    kept_rss, _ = rss()
    record = make_record()
    record_rss, _ = rss()
    began = time.process_time()
    verdict = evaluate(record, policy, today=datetime.date(2026, 1, 1))
    evaluate_s = time.process_time() - began
    _, peak = rss()
    assert kept is not None  # held to the end, as the writer holds it
    per_event = {
        "kept": (kept_rss - base) / count,
        "record": (record_rss - kept_rss) / count,
        "evaluate": (peak - record_rss) / count,
        "peak": (peak - base) / count,
    }
    return {
        "events": count,
        "kept_as": how,
        "baseline_mb": base / 1e6,
        "peak_mb": peak / 1e6,
        "peak_over_baseline_mb": (peak - base) / 1e6,
        **{f"{name}_bytes_per_event": value for name, value in per_event.items()},
        "evaluate_cpu_s": evaluate_s,
        "findings": len(verdict.findings),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--kept",
        choices=["tuples", "arrays", "shared", "view"],
        default="tuples",
        help="how the writer keeps events: as today (tuples), seq/time in arrays, slotted items the record "
        "shares, or arrays the record reads through (view)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object (for tests)")
    options = parser.parse_args()
    result = measure(options.events, options.kept)
    if options.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value:,.1f}" if isinstance(value, float) else f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
