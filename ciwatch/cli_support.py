"""What every ``ciwatch`` command shares: how errors are rendered and turned into exit codes,
the policy options, and text the build chose made printable. Commands live in ``cli.py`` and
modules of their own (``cli_summary.py``), each thin."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import click

from ciwatch.errors import CiwatchError, exit_code_of
from ciwatch.exitcodes import INTERNAL_ERROR, POLICY_FAILED
from ciwatch.policy import Mode
from ciwatch.policy.model import Severity


class _RuleCatalogueOnFirstUse(Mapping[str, Severity]):
    """``ciwatch.rules.RULE_CATALOGUE``, imported when it is first read.

    A policy loader reads it only to check a policy file's rule ids (the built-in policy is
    known to fit), so that ``ciwatch run`` with the built-in policy imports the rules, the
    analysis and the verdict after the build has run, not on the way to its exec
    (tests/test_startup_imports.py)."""

    @staticmethod
    def _loaded() -> Mapping[str, Severity]:
        from ciwatch.rules import RULE_CATALOGUE

        return RULE_CATALOGUE

    def __getitem__(self, rule_id: str) -> Severity:
        return self._loaded()[rule_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


#: What ``known_rules`` the commands give the policy loader.
RULE_CATALOGUE: Mapping[str, Severity] = _RuleCatalogueOnFirstUse()


def render_error(error: BaseException, verbose: bool) -> int:
    if verbose:
        traceback.print_exception(error)
    if isinstance(error, CiwatchError):
        click.secho(f"ciwatch: error: {error}", fg="red", err=True)
        if error.hint:
            click.echo(f"  hint: {error.hint}", err=True)
        return exit_code_of(error)
    click.secho(f"ciwatch: internal error: {type(error).__name__}: {error}", fg="red", err=True)
    click.echo("  hint: run again with -v for the traceback, and please report it.", err=True)
    return INTERNAL_ERROR


def guarded(verbose: bool, action: Callable[[], int]) -> NoReturn:
    try:
        code = action()
    except Exception as error:  # noqa: BLE001 - every failure is rendered, none escapes
        code = render_error(error, verbose)
    sys.exit(code)


def policy_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option(
        "--mode",
        type=click.Choice([m.value for m in Mode]),
        default=None,
        help="Override the policy's mode: audit, warn or block.",
    )(function)
    return click.option(
        "--policy",
        "policy_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Policy file (default: .ciwatch/policy.yml if present, else the built-in audit policy).",
    )(function)


def fail_exit_code_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--fail-exit-code",
        type=click.IntRange(1, 255),
        default=POLICY_FAILED,
        show_default=True,
        help="Exit code when the verdict fails a successful build (block mode for `run`): choose one your "
        "build never uses (mocha exits 3 when 3 tests fail). verdict.json says which it was.",
    )(function)


def encodable(text: str) -> str:
    """A record keeps bytes that weren't UTF-8 as lone surrogates (PEP 383: a file or package
    name): shown as ``\\udcXX``, never an encoding error at the last step."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def tracing_lines() -> list[str]:
    """What ``ciwatch doctor`` says of how a run here will be traced: where file writes are
    learned, and which stop loop runs."""
    from ciwatch.trace.batch import compiled_loop_state
    from ciwatch.trace.fanotify import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        events = "file events: fanotify (writes are reported while the writer runs on)"
    else:
        events = f"file events: ptrace stops at each write ({reason})"
    return [events, f"stop loop: {compiled_loop_state()}"]
