"""What one filter stop costs the tracer: ciwatch against strace on a C program that opens
(creates, writes one byte to, closes) N files in one directory, N = 20,000 by default.

Per round, interleaved: ``ciwatch run --net off --file-events ptrace`` (tracer CPU per stop
from the record's end line: tracer_cpu_s / tracer_stops) and ``strace -f --seccomp-bpf -e
trace=<ciwatch's syscall set> -o /dev/null`` (strace's own CPU, its rusage less the program's,
which the program reports itself, over the syscalls it traced; once writing to /dev/null,
once to a file as ciwatch writes its record), and wall time per file for
both and for the bare program. ciwatch's CPU is its whole process's: it is also given
without the fixed costs (the same run with no files taken off). Stdlib only; the C program is
compiled with gcc into bench/work/. ``--loops default,python`` compares the compiled stop
loop with the Python one (CIWATCH_STOP_LOOP=python).

    python3 bench/stopcost.py [--files 20000] [--rounds 5] [--loops default,python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"

PROGRAM = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 20000;
    char name[32];
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "f%06d", i);
        int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0) { perror(name); return 1; }
        if (write(fd, "x", 1) != 1) { perror("write"); return 1; }
        close(fd);
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    /* The program's own CPU, so that strace's can be told from it. */
    fprintf(stderr, "program-cpu %.6f\n", usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
            + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6);
    return 0;
}
"""


def build_program() -> Path:
    WORK.mkdir(exist_ok=True)
    source, binary = WORK / "openmany.c", WORK / "openmany"
    source.write_text(PROGRAM)
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def ciwatch_syscalls() -> list[str]:
    """The syscalls ciwatch's base filter stops at (strace traces all of them, unfiltered)."""
    code = (
        "from ciwatch.trace.table import TABLE, When\n"
        "print(','.join(r.name for r in TABLE if r.when is not When.ENOSYS"
        " and not r.receives_only))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    names = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    # Those this strace knows (6.1 has no fchmodat2, which the program never calls).
    return [name for name in names.strip().split(",") if _strace_knows(name)]


def _strace_knows(name: str) -> bool:
    probe = subprocess.run(["strace", "-e", "trace=" + name, "-o", "/dev/null", "true"], capture_output=True)
    return probe.returncode == 0


def _program_cpu(stderr: str) -> float:
    for line in stderr.splitlines():
        if line.startswith("program-cpu "):
            return float(line.split()[1])
    raise RuntimeError(f"the program did not report its CPU: {stderr[-500:]}")


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(dir=WORK, prefix="files-"))


def run_bare(program: Path, files: int) -> float:
    where = _fresh_dir()
    started = time.perf_counter()
    subprocess.run([str(program), str(files)], cwd=where, check=True, capture_output=True)
    wall = time.perf_counter() - started
    shutil.rmtree(where)
    return wall


def run_ciwatch(program: Path, files: int, loop: str) -> dict[str, float]:
    where, out = _fresh_dir(), Path(tempfile.mkdtemp(dir=WORK, prefix="out-"))
    command = [sys.executable, "-m", "ciwatch", "run", "--net", "off", "--file-events", "ptrace", "-q"]
    command += ["--out", str(out), "--", str(program), str(files)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if loop == "python":
        env["CIWATCH_STOP_LOOP"] = "python"
    started = time.perf_counter()
    subprocess.run(command, cwd=where, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    end = json.loads((out / "record.jsonl").read_text().splitlines()[-1])
    shutil.rmtree(where)
    shutil.rmtree(out)
    stops, cpu = end["tracer_stops"], end["tracer_cpu_s"]
    return {"wall": wall, "stops": stops, "cpu": cpu, "per_stop_us": cpu / stops * 1e6}


def strace_cpu(program: Path, files: int, syscalls: list[str], to_file: bool = False) -> dict[str, float]:
    """strace run with os.wait4 so that its rusage (its own and its reaped children's) is known;
    its output to /dev/null, or (``to_file``) to a file beside the files, as ciwatch's record is."""
    where = _fresh_dir()
    output = str(where / "strace.out") if to_file else "/dev/null"
    command = ["strace", "-f", "--seccomp-bpf", "-e", "trace=" + ",".join(syscalls), "-o", output]
    started = time.perf_counter()
    child = subprocess.Popen([*command, str(program), str(files)], cwd=where, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)  # wait4, not wait(): its rusage is wanted
    child.returncode = status
    wall = time.perf_counter() - started
    shutil.rmtree(where, ignore_errors=True)
    if status != 0:
        raise RuntimeError(f"strace failed: {stderr[-500:]}")
    total = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": total - _program_cpu(stderr)}


def strace_stops(program: Path, files: int, syscalls: list[str]) -> int:
    """How many syscalls strace traces for the program (each one a stop): counted once, from
    its output in a file (the timed runs write to /dev/null)."""
    with tempfile.NamedTemporaryFile(dir=WORK, suffix=".strace") as log:
        where = _fresh_dir()
        command = ["strace", "-f", "--seccomp-bpf", "-e", "trace=" + ",".join(syscalls), "-o", log.name]
        subprocess.run([*command, str(program), str(files)], cwd=where, check=True, capture_output=True)
        shutil.rmtree(where)
        lines = Path(log.name).read_text().splitlines()
    return sum(1 for line in lines if "(" in line and "resumed>" not in line and not line.startswith("+++"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", default="default", help="ciwatch stop loops to compare: default,python")
    args = parser.parse_args()
    loops = args.loops.split(",")
    program = build_program()
    syscalls = ciwatch_syscalls()
    traced = strace_stops(program, args.files, syscalls)
    bare_walls: list[float] = []
    strace_runs: list[dict[str, float]] = []
    strace_file_runs: list[dict[str, float]] = []
    ciwatch_runs: dict[str, list[dict[str, float]]] = {loop: [] for loop in loops}
    fixed_runs: dict[str, list[dict[str, float]]] = {loop: [] for loop in loops}
    for _ in range(args.rounds):
        bare_walls.append(run_bare(program, args.files))
        for loop in loops:
            ciwatch_runs[loop].append(run_ciwatch(program, args.files, loop))
            fixed_runs[loop].append(run_ciwatch(program, 0, loop))
        strace_runs.append(strace_cpu(program, args.files, syscalls))
        strace_file_runs.append(strace_cpu(program, args.files, syscalls, to_file=True))
    median = statistics.median
    per_file = 1e6 / args.files
    strace_per_stop = median(run["cpu"] for run in strace_runs) / traced * 1e6
    print(f"{args.files} files, {args.rounds} interleaved rounds, medians")
    print(f"  bare               wall/file {median(bare_walls) * per_file:6.1f} us")
    for loop in loops:
        runs, fixed = ciwatch_runs[loop], fixed_runs[loop]
        per_stop = median(run["per_stop_us"] for run in runs)
        # Without the fixed costs (start-up, end of run): the same run with no files taken off.
        marginal = median(
            (run["cpu"] - base["cpu"]) / (run["stops"] - base["stops"]) * 1e6
            for run, base in zip(runs, fixed, strict=True)
        )
        print(
            f"  ciwatch ({loop:7}) wall/file {median(r['wall'] for r in runs) * per_file:6.1f} us   "
            f"tracer CPU/stop {per_stop:6.1f} us, {marginal:6.1f} us without fixed costs "
            f"({runs[0]['stops']} stops, CPU {median(r['cpu'] for r in runs):.3f} s, "
            f"{median(r['cpu'] for r in fixed):.3f} s with no files)  {per_stop / strace_per_stop:.2f}x strace"
        )
    for label, strace_like in (("strace", strace_runs), ("strace -o file", strace_file_runs)):
        print(
            f"  {label:18} wall/file {median(r['wall'] for r in strace_like) * per_file:6.1f} us   "
            f"tracer CPU/stop {median(r['cpu'] for r in strace_like) / traced * 1e6:6.1f} us  "
            f"({traced} stops, CPU {median(r['cpu'] for r in strace_like):.3f} s)"
        )


if __name__ == "__main__":
    main()
