"""What ``ciwatch run`` says once its build has run: the verdict, GitHub's annotations, the
processes left running, the closing line. A module of its own, imported then: none of it (the
verdict's text, the rules behind the verdict) is needed on the way to the build's exec."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ciwatch.modes import LeftoverAction
from ciwatch.policy import Mode
from ciwatch.report.verdict_text import render_verdict, summary_line
from ciwatch.session import RunResult
from ciwatch.verdict import Verdict, VerdictKind


def say_outcome(result: RunResult, leftovers: LeftoverAction, out_dir: Path, quiet: bool) -> None:
    if result.launch_error:
        click.secho(f"ciwatch: {result.launch_error}", fg="red", err=True)
    for program, pid in {program: pid for pid, program in reversed(result.nested_tracers)}.items():
        click.secho(NESTED_TRACER.format(program=program, pid=pid), fg="yellow", err=True)
    verdict = result.verdict
    if verdict.counted or verdict.verdict is not VerdictKind.PASS:
        click.echo(render_verdict(verdict, color=sys.stderr.isatty()), err=True)
        if os.environ.get("GITHUB_ACTIONS") == "true" and verdict.mode is not Mode.AUDIT:
            from ciwatch.report import github

            for line in github.workflow_commands(verdict):
                click.echo(line)  # workflow commands are read from stdout
    if result.record_problem is not None or result.verdict_error is not None:
        say_record_incomplete(result.record_problem, result.verdict_error, result.verdict)
    if result.leftovers:
        followed = (
            "; ciwatch follows them: what they do is appended to the record, and verdict.json is "
            "replaced when they have exited"
            if result.follow is not None
            else ""
        )
        click.echo(
            f"ciwatch: {len(result.leftovers)} process(es) still running after the build "
            f"({leftovers}): {', '.join(map(str, result.leftovers))}{followed}",
            err=True,
        )
    if not quiet or verdict.verdict is not VerdictKind.PASS:
        # Never silent: one line says how it went and where the record is.
        click.echo(summary_line(verdict, out_dir, color=sys.stderr.isatty()), err=True)


NESTED_TRACER = (
    "ciwatch: {program} (pid {pid}) tried to trace a process with ptrace, which fails under ciwatch: "
    "every process of the build already has ciwatch as its tracer, and a process has only one. "
    "Run debuggers and strace outside ciwatch; for a sanitizer's leak check (LeakSanitizer, part of "
    "AddressSanitizer) set ASAN_OPTIONS=detect_leaks=0 or LSAN_OPTIONS for that step."
)


def say_record_incomplete(problem: str | None, verdict_error: str | None, verdict: Verdict) -> None:
    """One clear line: the build ran on, but its record (or verdict.json) could not be written."""
    if problem is None:
        click.secho(f"ciwatch: verdict.json could not be written ({verdict_error})", fg="red", err=True)
        return
    if verdict.mode is Mode.BLOCK and verdict.verdict is VerdictKind.FAIL:
        outcome = "the record could not be written: fail closed, the verdict is fail"
    else:
        outcome = f"the build ran on ({verdict.mode} mode) and its exit code is passed on, but the record is incomplete"
    written = f"; verdict.json could not be written either ({verdict_error})" if verdict_error else ""
    click.secho(f"ciwatch: {problem}: {outcome}{written}", fg="red", err=True)
