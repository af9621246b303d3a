"""``ciwatch summary``: the records of a CI job summed up for the CI system (the GitHub
Actions' step summary and outputs, the GitLab include's summary and dotenv report)."""

from __future__ import annotations

from pathlib import Path

import click

from ciwatch.cli_support import RULE_CATALOGUE, encodable, guarded, policy_options
from ciwatch.errors import UsageError
from ciwatch.policy.loader import resolve_policy


@click.command()
@click.argument("paths", metavar="DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@policy_options
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False, path_type=Path), help="Append here.")
@click.option("--max-bytes", type=click.IntRange(0), default=1000 * 1024, show_default=True, help="Cap (0: none).")
@click.option("--artifact", metavar="NAME", help="Where the full record is kept, named when the summary is cut.")
@click.option("--output", "output_file", type=click.Path(dir_okay=False, path_type=Path), help="Append key=value.")
@click.option("--dotenv", "dotenv_file", type=click.Path(dir_okay=False, path_type=Path), help="Append CIWATCH_*=.")
@click.option("--codequality", "codequality_file", type=click.Path(dir_okay=False, path_type=Path), help="GitLab's.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path), help="One case per rule.")
@click.pass_context
def summary(
    ctx: click.Context,
    paths: tuple[Path, ...],
    policy_file: Path | None,
    mode: str | None,
    markdown_file: Path | None,
    max_bytes: int,
    artifact: str | None,
    output_file: Path | None,
    dotenv_file: Path | None,
    codequality_file: Path | None,
    junit_file: Path | None,
) -> None:
    """Sum up the records of a CI job (each DIR a record's directory, or a directory of them):
    a Markdown summary (stdout, or appended to --markdown) and the job's verdict, findings and
    number of runs for later steps (--output: $GITHUB_OUTPUT) or jobs (--dotenv: GitLab's report);
    GitLab's merge-request reports: code quality (--codequality) and JUnit, a case per rule (--junit)."""

    def action() -> int:
        # Imported here: `ciwatch run` (every CI step) never needs it.
        from ciwatch.report.ci_summary import record_directories, summarise, write_variables
        from ciwatch.report.gitlab import code_quality, junit

        if not record_directories(list(paths)):
            raise UsageError(f"no record under {', '.join(map(str, paths))}", hint="did a step run under ciwatch?")
        policy = resolve_policy(Path.cwd(), policy_file, mode, known_rules=RULE_CATALOGUE)
        job = summarise(list(paths), policy)
        text = encodable(job.markdown(artifact, max_bytes))
        if markdown_file is None:
            click.echo(text, nl=False)
        else:
            with markdown_file.open("a", encoding="utf-8") as stream:
                stream.write(text)
        if output_file is not None:
            write_variables(output_file, job.outputs())
        if dotenv_file is not None:
            write_variables(dotenv_file, job.dotenv())
        if codequality_file is not None:
            codequality_file.write_text(code_quality(job.runs), encoding="utf-8")
        if junit_file is not None:
            junit_file.write_text(junit(job.runs), encoding="utf-8")
        return 0

    guarded(ctx.obj["verbose"], action)
