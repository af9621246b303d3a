"""`ciwatch report` says what the verdict is, first.

Issue: the report printed "Anomalies and leftovers: none" for a run whose verdict.json said
`fail`, and listed every file that merely kept a tarball's 0755 mode (LICENSE, README.md,
*.d.ts) and git's *.sample hooks as "executables and scripts written". What the user did, done
here for real: `npm install` of local packages whose postinstall writes an ELF and scripts into
the project, a 0755 LICENSE, a git repository (git copies its sample hooks) and two git hooks
that would run, then `ciwatch report`.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.packages import (
    make_npm_project,
    make_python_sdist,
    make_venv,
    npm_env,
    pip_env,
    pip_install_command,
)
from tests.support.runner import ciwatch_command, run_ciwatch

pytestmark = pytest.mark.slow

#: More scripts than a capped list shows, so that `--all` has something to add.
_EXTRA_SCRIPTS = 14

_POSTINSTALL = textwrap.dedent(
    f"""\
    set -eu
    dest="$INIT_CWD/tools"
    mkdir -p "$dest"
    cp "$(command -v env)" "$dest/tool-elf"
    printf '#!/bin/sh\\necho tool\\n' > "$dest/tool.sh" && chmod +x "$dest/tool.sh"
    i=0
    while [ "$i" -lt {_EXTRA_SCRIPTS} ]; do
        printf '#!/bin/sh\\n' > "$dest/extra-$i.sh" && chmod +x "$dest/extra-$i.sh"
        i=$((i + 1))
    done
    printf 'MIT\\n' > "$INIT_CWD/LICENSE" && chmod 755 "$INIT_CWD/LICENSE"
    git init -q "$INIT_CWD/vendored"
    for hook in post-checkout pre-commit; do
        printf '#!/bin/sh\n' > "$INIT_CWD/vendored/.git/hooks/$hook" && chmod +x "$INIT_CWD/vendored/.git/hooks/$hook"
    done
    """
)

#: Shipped with the execute bit, as many published tarballs do: none of them is an executable.
_MODE_ONLY_FILES = {"LICENSE": "MIT\n", "README.md": "# pkg\n", "index.d.ts": "export {};\n"}


@dataclass(frozen=True)
class ReportedRun:
    project: Path
    out_dir: Path


def _pack(root: Path, name: str, version: str, postinstall: str, files: dict[str, str]) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    manifest = {"name": name, "version": version, "scripts": {"postinstall": postinstall}}
    (directory / "package.json").write_text(json.dumps(manifest))
    for relative, text in files.items():
        (directory / relative).write_text(text)
        if relative in _MODE_ONLY_FILES:
            (directory / relative).chmod(0o755)
    env = {**os.environ, **npm_env(root / ".npm-cache")}
    subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(root)],
        cwd=directory,
        env=env,
        check=True,
        capture_output=True,
    )
    return root / f"{name}-{version}.tgz"


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> ReportedRun:
    for tool in ("npm", "node", "git"):
        require(tool)
    base = tmp_path_factory.mktemp("report-verdict").resolve()
    tools = _pack(base / "pkgs", "reporttools", "2.0.0", "sh ./post.sh", {"post.sh": _POSTINSTALL, **_MODE_ONLY_FILES})
    quiet = _pack(base / "pkgs", "quietpkg", "1.0.0", "node -e 0", {"index.js": "module.exports = 1;\n"})
    project = make_npm_project(base / "project", allow_scripts_from=[tools, quiet])
    out_dir = base / "out"
    run = run_ciwatch(
        ["--net", "off", "--", "npm", "install", "--no-audit", "--no-fund", str(tools), str(quiet)],
        out_dir,
        cwd=project,
        env=npm_env(base / "npm-cache"),
    )
    assert run.code == 0, run.stderr  # audit mode: the verdict never fails the job
    assert json.loads((out_dir / "verdict.json").read_text())["verdict"] == "fail"
    return ReportedRun(project, out_dir)


def _report(run: ReportedRun, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ciwatch_command(), "report", "--no-color", *options, str(run.out_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=run.project,
    )


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


@pytest.mark.npm
def test_the_verdict_and_its_findings_come_first(reported: ReportedRun) -> None:
    result = _report(reported)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ciwatch verdict: fail (audit mode, policy <built-in default>, fail on high+): ")
    record_line = next(i for i, line in enumerate(lines) if line.startswith("ciwatch record: npm install"))
    findings = "\n".join(lines[1:record_line])
    # The high finding that failed the run: rule, package@version, hook, lineage, hint.
    assert "\n  [high] persistence-write · reporttools@2.0.0 · postinstall (" in "\n" + findings
    assert "      lineage: npm install > postinstall of reporttools@2.0.0 > " in findings
    assert "      hint: No install hook has a reason to change these files" in findings
    assert "verdict.json says" not in findings  # judged with the policy the run used: they agree


@pytest.mark.npm
def test_executables_are_elf_and_scripts_not_mode_only_files_or_git_samples(reported: ReportedRun) -> None:
    listed = _section(_report(reported, "--all").stdout, "Executables and scripts written")
    text = "\n".join(listed)
    tools = reported.project / "tools"
    assert f"  {tools}/tool-elf (elf, sha256 " in text
    assert f"  {tools}/tool.sh (script, sha256 " in text
    assert f"  {reported.project}/vendored/.git/hooks/post-checkout (script, sha256 " in text
    for name in ("LICENSE", "README.md", "index.d.ts", ".sample"):
        assert name not in text.replace("not listed:", ""), name
    assert listed[-1].startswith("  not listed: ")
    assert " with only an execute bit and " in listed[-1] and " git sample hooks " in listed[-1]


@pytest.mark.npm
def test_lists_are_capped_and_all_lifts_the_cap(reported: ReportedRun) -> None:
    capped = _section(_report(reported).stdout, "Executables and scripts written")
    full = _section(_report(reported, "--all").stdout, "Executables and scripts written")
    scripts = [f"extra-{i}.sh (" for i in range(_EXTRA_SCRIPTS)]
    assert all(any(script in line for line in full) for script in scripts)
    assert not all(any(script in line for line in capped) for script in scripts)
    assert any(line.endswith("more (--all shows them)") for line in capped)
    assert not any("more (--all shows them)" in line for line in full)
    # Findings of one rule by one process of a hook (each git hook git init writes) are one
    # group on a screen; --all lists every one.
    counted = json.loads(_report(reported, "--json").stdout)["verdict"]["counted"]
    messages = [f"      {f['message']}\n" for f in counted if f["rule"] == "persistence-write"]
    capped_text, full_text = _report(reported).stdout, _report(reported, "--all").stdout
    assert len([m for m in messages if m in capped_text]) < len(messages)
    assert " more by the same process (--all shows them)" in capped_text
    assert all(m in full_text for m in messages) and "by the same process" not in full_text


@pytest.mark.npm
def test_hook_narrows_to_one_package(reported: ReportedRun) -> None:
    quiet = _report(reported, "--hook", "quietpkg").stdout
    assert ": 0 findings of quietpkg (" in quiet.splitlines()[0]
    assert "[high]" not in quiet  # reporttools' findings are not quietpkg's
    assert [line.split(" -> ")[0] for line in _section(quiet, "Hooks")] == ["  npm: postinstall of quietpkg@1.0.0"]
    assert "tool-elf" not in quiet
    tools = _report(reported, "--hook", "reporttools@2.0.0").stdout
    assert "  [high] persistence-write · reporttools@2.0.0 · postinstall" in tools
    assert _section(tools, "Hooks")[0].startswith("  npm: postinstall of reporttools@2.0.0 -> ")
    assert "quietpkg@" not in tools
    missing = _report(reported, "--hook", "nosuchpkg")
    assert missing.returncode == 2
    assert "no hook of that package ran" in missing.stderr and "quietpkg@1.0.0" in missing.stderr


@pytest.mark.npm
def test_json_carries_the_same(reported: ReportedRun) -> None:
    result = _report(reported, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["report_format"] == 1
    verdict = data["verdict"]
    assert verdict["verdict"] == "fail" and verdict["stored"]["verdict"] == "fail"
    assert verdict["stored_differs"] is False
    persistence = [f for f in verdict["counted"] if f["rule"] == "persistence-write"]
    assert persistence and persistence[0]["package"] == "reporttools@2.0.0" and persistence[0]["hook"] == "postinstall"
    assert persistence[0]["lineage"].startswith("npm install > postinstall of reporttools@2.0.0")
    assert persistence[0]["hint"]
    files = {Path(item["path"]).name: item["file_type"] for item in data["executables"]["files"]}
    assert files["tool-elf"] == "elf" and files["tool.sh"] == "script"
    assert len([name for name in files if name.startswith("extra-")]) == _EXTRA_SCRIPTS  # never capped
    assert not {"LICENSE", "README.md", "index.d.ts"} & files.keys()
    assert not any(name.endswith(".sample") for name in files)
    assert data["executables"]["mode_only"] >= 1 and data["executables"]["inert_scripts"] >= 1
    hooks = {(hook["package"], hook["hook"]) for hook in data["hooks"]}
    assert hooks == {("reporttools", "postinstall"), ("quietpkg", "postinstall")}
    assert data["run"]["command"][:2] == ["npm", "install"] and data["run"]["finished"] is True


@pytest.mark.npm
def test_a_verdict_json_that_disagrees_is_said_in_one_line(reported: ReportedRun, tmp_path: Path) -> None:
    lenient = tmp_path / "lenient.yml"
    lenient.write_text("version: 1\nfail-on: critical\n")
    result = _report(reported, "--policy", str(lenient))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ciwatch verdict: warn (audit mode, policy {lenient}, fail on critical+): ")
    said = [line for line in lines if "verdict.json says" in line]
    assert said == [
        "  verdict.json says fail (audit mode, policy <built-in default>): the run may have used another policy"
    ]


@pytest.mark.pip
def test_a_pip_build_is_reported_with_its_hooks_and_a_pass(tmp_path: Path) -> None:
    sdist = make_python_sdist(tmp_path / "dist", "reportpep", "3.1.0", pep517=True)
    python = make_venv(tmp_path / "venv")
    (tmp_path / "marks").mkdir()
    out_dir = tmp_path / "out"
    run = run_ciwatch(
        ["--net", "off", "--", *pip_install_command(python, sdist)],
        out_dir,
        cwd=tmp_path,
        env=pip_env(tmp_path / "marks", tmp_path / "pip-cache"),
    )
    assert run.code == 0, run.stderr
    report = subprocess.run(
        [*ciwatch_command(), "report", "--no-color", "--hook", "reportpep", str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0].startswith("ciwatch verdict: pass (audit mode, policy <built-in default>, fail on high+): ")
    hooks = _section(report.stdout, "Hooks")
    assert "  pip: build_wheel of reportpep@3.1.0 -> sh -c" in hooks, hooks
    data = json.loads(
        subprocess.run(
            [*ciwatch_command(), "report", "--json", str(out_dir)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert {(hook["ecosystem"], hook["package"]) for hook in data["hooks"]} == {("pip", "reportpep")}
    assert data["verdict"]["verdict"] == "pass" and data["verdict"]["counted"] == []
