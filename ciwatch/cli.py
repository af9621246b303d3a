"""The command line: parse options, call the core, render errors, map outcomes to exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ciwatch import __version__, capabilities, cli_support, session, supervise
from ciwatch.cli_summary import summary
from ciwatch.cli_support import encodable, fail_exit_code_option, guarded, policy_options, render_error, tracing_lines
from ciwatch.errors import UsageError
from ciwatch.exitcodes import ENVIRONMENT_ERROR
from ciwatch.modes import FileEvents, LeftoverAction, NetMode
from ciwatch.policy.loader import resolve_policy

# The rules, verdict, reports and record reader are imported where used: `ciwatch run` needs them
# after its build has run, and each import on the way to the build's exec delays every CI step.

log = logging.getLogger("ciwatch")
#: ``ciwatch report --format``: kept here so that `ciwatch run` doesn't import the report's modules.
REPORT_FORMATS = ("terminal", "json", "markdown", "html", "sarif", "codequality", "junit", "dotenv", "intoto")


class _CommandAfterDoubleDash(click.Command):
    """``ciwatch run`` takes the build command only after ``--``, so that an option meant
    for the build is never taken for one of ciwatch's (or the other way round)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        before_command = args[: args.index("--")] if "--" in args else args
        if any(arg in ctx.help_option_names for arg in before_command):
            click.echo(self.get_help(ctx))
            ctx.exit(0)
        if "--" not in args:
            if not args or args[0].startswith("-"):
                raise click.UsageError("missing `--` before the command, e.g.: ciwatch run -- npm ci", ctx)
            raise click.UsageError(
                f"missing `--` before the command; write: ciwatch run [OPTIONS] -- {' '.join(args)}", ctx
            )
        return super().parse_args(ctx, args)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ciwatch")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Trace a CI build step: what it ran, wrote and talked to."""
    logging.basicConfig(level=logging.WARNING, format="ciwatch: %(name)s: %(message)s")
    logging.getLogger("ciwatch").setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = {"verbose": verbose}


@main.command(cls=_CommandAfterDoubleDash)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ciwatch-out"),
    show_default=True,
    help="Directory for record.jsonl (created if missing).",
)
@click.option(
    "--leftovers",
    type=click.Choice([a.value for a in LeftoverAction]),
    default=LeftoverAction.LEAVE.value,
    show_default=True,
    help="Processes still running when the build's root exits: leave them running, kill them, or wait for them.",
)
@click.option(
    "--net",
    type=click.Choice([m.value for m in NetMode]),
    default=NetMode.REDIRECT.value,
    show_default=True,
    help="How outbound traffic reaches the proxy: redirect (the tracer rewrites connect(), no privilege), "
    "sandbox (a network namespace, needs root), env (proxy variables only), off (no proxy).",
)
@click.option(
    "--upstream-ca",
    "upstream_cas",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, readable=True, path_type=Path),
    help="Also trust this CA bundle for upstream servers (a corporate TLS proxy); repeatable.",
)
@click.option(
    "--file-events",
    type=click.Choice([f.value for f in FileEvents]),
    default=FileEvents.AUTO.value,
    show_default=True,
    help="Where file writes are learned: fanotify (needs root; writers never stop), ptrace (the seccomp "
    "filter stops each write), auto (fanotify where allowed; `ciwatch doctor` says which).",
)
@click.option(
    "--user",
    metavar="USER",
    help="Run the build as this user (name or uid). Default: as ciwatch, or, when ciwatch runs as root "
    "under sudo, as the user who called sudo (`--user root` keeps root).",
)
@click.option(
    "--no-discovery-cache",
    "no_discovery_cache",
    is_flag=True,
    help="Ask the package managers for their registries at every run (by default an answer is reused "
    "while their config files, programs and variables are unchanged).",
)
@policy_options
@fail_exit_code_option
@click.option("-q", "--quiet", is_flag=True, help="No closing line when the verdict is pass (findings still show).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]...")
@click.pass_context
def run(
    ctx: click.Context,
    out_dir: Path,
    leftovers: str,
    net: str,
    upstream_cas: tuple[Path, ...],
    file_events: str,
    user: str | None,
    no_discovery_cache: bool,
    policy_file: Path | None,
    mode: str | None,
    fail_exit_code: int,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with its whole process tree traced; write DIR/record.jsonl.

    The build's stdin, stdout, stderr and exit code pass through untouched. ciwatch's options
    come before `--`, the build's command after it:

    \b
        ciwatch run -- npm ci
        ciwatch run --mode block --out ciwatch-out -- pip install -r requirements.txt
    """
    verbose = ctx.obj["verbose"]
    try:
        # Everything that can be wrong with the input is found before the build starts.
        policy = resolve_policy(Path.cwd(), policy_file, mode, known_rules=cli_support.RULE_CATALOGUE)
        plan = session.prepare(
            session.RunOptions(
                command=list(command),
                out_dir=out_dir,
                leftovers=LeftoverAction(leftovers),
                net=NetMode(net),
                policy=policy,
                extra_cas=list(upstream_cas),
                verbose=verbose,
                fail_exit_code=fail_exit_code,
                file_events=FileEvents(file_events),
                user=user,
                env=dict(os.environ),
                discovery_cache=not no_discovery_cache,
            )
        )
    except Exception as error:  # noqa: BLE001
        sys.exit(render_error(error, verbose))

    def in_tracer(report_root: Callable[[int], None]) -> tuple[int, Callable[[], None] | None]:
        try:
            result = session.run(plan, dict(os.environ), on_root_started=report_root)
        except Exception as error:  # noqa: BLE001
            return render_error(error, verbose), None
        # Imported once the build has run: the verdict's text and the reports (tests/test_startup_imports.py).
        from ciwatch.cli_outcome import say_outcome

        say_outcome(result, plan.leftovers, out_dir, quiet)
        return result.exit_code, result.follow

    group = plan.fanotify_group
    supervise.exit_front(supervise.run_split(in_tracer, group.drop_copy if group is not None else lambda: None))


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("ciwatch-out"))
@policy_options
@click.option("--hook", "hook_package", metavar="PKG", help="Only this package's hooks (name or name@version).")
@click.option("--all", "full", is_flag=True, help="Every item of every list (by default each is cut to a screen).")
@click.option(
    "--format",
    "report_format",
    type=click.Choice(REPORT_FORMATS),
    default=None,
    help="terminal (default), json, markdown, html, sarif, codequality, junit, dotenv, intoto (docs/report-format.md).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--subjects", multiple=True, metavar="GLOB", help="intoto: the written files to attest (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--color/--no-color", default=None, help="Colour (default: only on a terminal).")
@click.pass_context
def report(
    ctx: click.Context,
    path: Path,
    policy_file: Path | None,
    mode: str | None,
    hook_package: str | None,
    full: bool,
    report_format: str | None,
    output: Path | None,
    subjects: tuple[str, ...],
    as_json: bool,
    color: bool | None,
) -> None:
    """Summarise a record: the verdict and its findings, hooks and what they ran, executables
    written, hosts contacted, in the form asked. The verdict is judged as `ciwatch check` judges it."""

    def action() -> int:
        if as_json and report_format not in (None, "json"):
            raise UsageError(f"--json and --format {report_format}: choose one")
        policy = resolve_policy(Path.cwd(), policy_file, mode, known_rules=cli_support.RULE_CATALOGUE)
        # Imported here: `ciwatch run` never needs the report's model.
        from ciwatch.report.command import OutputRequest, show_report
        from ciwatch.report.model import ReportOptions

        chosen = report_format or ("json" if as_json else "terminal")
        request = OutputRequest(chosen, output, full, color, subjects)
        return show_report(path, policy, ReportOptions(hook=hook_package), request)

    guarded(ctx.obj["verbose"], action)


@main.command()
@click.argument("record_path", metavar="RECORD", type=click.Path(path_type=Path))
@policy_options
@fail_exit_code_option
@click.option("--json", "as_json", is_flag=True, help="Print verdict.json instead of the summary.")
@click.pass_context
def check(
    ctx: click.Context,
    record_path: Path,
    policy_file: Path | None,
    mode: str | None,
    fail_exit_code: int,
    as_json: bool,
) -> None:
    """Judge a stored record against a policy, offline: the verdict the live run would give.

    Exits 3 (or --fail-exit-code) when the verdict is fail, or when the record was changed; 0 otherwise.
    """

    def action() -> int:
        from ciwatch.record import read_record
        from ciwatch.record.integrity import verify_record
        from ciwatch.report.verdict_text import render_verdict
        from ciwatch.verdict import VerdictKind, evaluate

        policy = resolve_policy(Path.cwd(), policy_file, mode, known_rules=cli_support.RULE_CATALOGUE)
        # First: a record changed after ciwatch wrote it can't pass, whatever it now says
        # (exit 3), and one changed beyond reading is still said to be changed.
        integrity = verify_record(record_path)
        for line in integrity.lines():
            click.secho(f"ciwatch: {line}", fg="red" if integrity.changed else "yellow", err=True)
        verdict = evaluate(read_record(record_path), policy)
        if as_json:
            click.echo(json.dumps(verdict.to_json(), indent=2))
        else:
            click.echo(encodable(render_verdict(verdict, color=sys.stdout.isatty())))
        return fail_exit_code if verdict.verdict is VerdictKind.FAIL or not integrity.intact else 0

    guarded(ctx.obj["verbose"], action)


@main.command()
@click.argument("records", metavar="RECORD...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout.")
@click.pass_context
def baseline(ctx: click.Context, records: tuple[Path, ...], output: Path | None) -> None:
    """Propose a policy from clean runs: the hosts they reached and the packages that ran
    hooks, each entry commented with where it came from."""

    def action() -> int:
        from ciwatch.record import read_record
        from ciwatch.report.baseline import propose_policy

        text = encodable(propose_policy([(path, read_record(path)) for path in records]))
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text)
            click.echo(f"wrote {output}; review it, then run: ciwatch policy check {output}", err=True)
        return 0

    guarded(ctx.obj["verbose"], action)


@main.group(name="policy")
def policy_group() -> None:
    """Work with policy files."""


@policy_group.command(name="check")
@click.argument("path", metavar="FILE", type=click.Path(path_type=Path))
@click.pass_context
def policy_check(ctx: click.Context, path: Path) -> None:
    """Validate a policy file; errors name the file, line and key."""

    def action() -> int:
        from ciwatch.policy import load_policy

        policy = load_policy(path, known_rules=cli_support.RULE_CATALOGUE)
        hooks = "any package" if policy.hooks_allowed is None else f"{len(policy.hooks_allowed)} package(s)"
        click.echo(
            f"{path}: ok (mode {policy.mode}, {len(policy.allow.hosts)} allowed host pattern(s), "
            f"registries {'auto' if policy.allow.registries_auto else 'none'}, hooks allowed for {hooks}, "
            f"{len(policy.exceptions)} exception(s))"
        )
        return 0

    guarded(ctx.obj["verbose"], action)


@main.command()
@click.argument("project", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--no-discovery-cache", "no_cache", is_flag=True, help="Ask the package managers, not the cache.")
@click.pass_context
def registries(ctx: click.Context, project: Path, no_cache: bool) -> None:
    """The registries this project's package managers are configured for, and where each
    came from: what `registries: auto` allows."""

    def action() -> int:
        from ciwatch.registries import discover_registries, render_registries
        from ciwatch.registries.cache import cache_dir

        found = discover_registries(project, dict(os.environ), cache_directory=None if no_cache else cache_dir())
        click.echo(render_registries(found))
        return 0

    guarded(ctx.obj["verbose"], action)


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """What this machine allows, which modes therefore work, and how to fix the rest."""

    def action() -> int:
        probes = capabilities.probe_all()
        for probe in probes:
            mark = click.style("ok ", fg="green") if probe.ok else click.style("no ", fg="red")
            click.echo(f"{mark} {probe.name}: {probe.detail}")
            if not probe.ok and probe.fix:
                click.echo(f"     fix: {probe.fix}")
        for line in tracing_lines():
            click.echo(line)
        click.echo("")
        available = capabilities.modes_available(probes)
        for mode, works in available.items():
            mark = click.style("works", fg="green") if works else click.style("unavailable", fg="red")
            click.echo(f"--net {mode:<9} {mark}")
        if not any(available.values()):
            click.secho("ciwatch: no --net mode works on this machine; see the fixes above", fg="red", err=True)
            return ENVIRONMENT_ERROR
        return 0

    guarded(ctx.obj["verbose"], action)


main.add_command(summary)
