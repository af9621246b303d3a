"""``ciwatch summary`` on real records: the Markdown a CI job shows (verdict first, text the
build chose made inert, the size cap with its pointer to the artifact), the job's verdict as the
worst of its runs', and the step outputs and dotenv lines later steps and jobs read."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ciwatch.report.markdown import code, text
from tests.support.runner import ciwatch_command, run_ciwatch

#: A command line that, were it Markdown, would be a link, an image, a table cell and raw HTML.
_HOSTILE = "[click](https://evil.example.invalid) ![x](y) | <img src=x onerror=alert(1)> `tick` </details>"
#: A run that writes and runs many executables: a summary too long for a small cap.
_MANY = 'mkdir -p d && for i in $(seq 150); do printf "#!/bin/sh\\n" > "d/tool-$i" && chmod +x "d/tool-$i"; done'


def _summary(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ciwatch_command(), "summary", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of three records, as actions/setup leaves them: hostile text, a hook-less
    failing build, many executables written."""
    root = tmp_path_factory.mktemp("records")
    work = tmp_path_factory.mktemp("work")
    for name, command in (
        ("a-hostile", ["sh", "-c", "true", _HOSTILE]),
        ("b-failing", ["sh", "-c", "exit 5"]),
        ("c-many", ["sh", "-c", _MANY]),
    ):
        run = run_ciwatch(["--net", "off", "--", *command], root / name, cwd=work)
        assert run.record.end is not None, run.stderr
    return root


def test_text_and_code_are_inert() -> None:
    rendered = text(_HOSTILE)
    assert "<img" not in rendered and "</details>" not in rendered
    assert "](" not in rendered.replace("\\](", "")
    assert "|" not in rendered.replace("\\|", "")
    assert "\n" not in text("a\nb")
    assert code("a ``b`` c").startswith("``` ")  # a fence longer than any run inside


def test_summary_of_a_job_names_each_run_and_escapes_what_the_build_chose(records: Path, tmp_path: Path) -> None:
    outputs, dotenv = tmp_path / "outputs", tmp_path / "ciwatch.env"
    done = _summary(records, "--output", outputs, "--dotenv", dotenv)
    assert done.returncode == 0, done.stderr
    summary = done.stdout
    assert summary.startswith("## ")
    for name in ("a-hostile", "b-failing", "c-many"):
        assert f"| {name} |" in summary
    # The hostile command line shows only inside code spans, where Markdown and HTML are text.
    outside_code = re.sub(r"(`+) .*? \1", "", summary)
    assert "<img" not in outside_code and "[click](" not in outside_code and "</details> " not in outside_code
    assert outside_code.count("<details") == outside_code.count("</details>")
    # No finding in these runs (a failing build is not one): the job passes.
    assert outputs.read_text().splitlines() == ["verdict=pass", "findings=0", "runs=3"]
    assert dotenv.read_text().splitlines() == ["CIWATCH_VERDICT=pass", "CIWATCH_FINDINGS=0", "CIWATCH_RUNS=3"]


def test_summary_is_cut_to_its_cap_with_a_pointer_to_the_artifact(records: Path) -> None:
    whole = _summary(records / "c-many", "--max-bytes", "0")
    assert len(whole.stdout.encode()) > 6000, "the fixture must be longer than the cap"
    cut = _summary(records / "c-many", "--max-bytes", "6000", "--artifact", "ciwatch-build")
    assert cut.returncode == 0, cut.stderr
    assert len(cut.stdout.encode()) <= 6000
    assert "Summary cut to fit 6000 bytes" in cut.stdout and "ciwatch-build" in cut.stdout
    assert cut.stdout.count("<details") == cut.stdout.count("</details>")
    assert re.match(r"## \S+ ciwatch: \w+", cut.stdout)


def test_summary_without_a_record_is_a_usage_error(tmp_path: Path) -> None:
    done = _summary(tmp_path)
    assert done.returncode == 2
    assert "no record under" in done.stderr
