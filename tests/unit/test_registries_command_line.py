"""Registries named on the build's own command line (ciwatch/registries/command_line.py): what
the command ciwatch runs names is the job's; what runs under it names nothing ciwatch learns."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ciwatch.registries import discover_registries
from ciwatch.registries._base import Context
from ciwatch.registries.command_line import apt_options, commands, discover, option_values
from ciwatch.session.registries import RegistryDiscovery


def _ctx(tmp_path: Path, command: list[str]) -> Context:
    return Context(
        project_dir=tmp_path,
        env={"PATH": ""},
        deadline=time.monotonic() + 5,
        scratch=tmp_path,
        commands=commands(command, tmp_path),
    )


def _hosts(tmp_path: Path, command: list[str]) -> list[tuple[str, str]]:
    return sorted((source.ecosystem, source.host) for source in discover(_ctx(tmp_path, command)))


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["gem", "install", "--source", "https://gems.example/", "x"], [("gem", "gems.example")]),
        (["gem", "install", "-s", "https://gems.example/", "x"], [("gem", "gems.example")]),
        (["gem", "install", "--source=https://gems.example/", "x"], [("gem", "gems.example")]),
        (["npm", "ci", "--registry", "https://npm.example/"], [("npm", "npm.example")]),
        (["pnpm", "install", "--registry=https://npm.example/"], [("pnpm", "npm.example")]),
        (["npx", "--registry", "https://npm.example/", "create-x"], [("npm", "npm.example")]),
        (
            [
                "python3",
                "-m",
                "pip",
                "install",
                "-i",
                "https://py.example/simple",
                "--extra-index-url=https://b.example/",
            ],
            [("pip", "b.example"), ("pip", "py.example")],
        ),
        (["uv", "pip", "install", "--index", "internal=https://py.example/simple", "x"], [("uv", "py.example")]),
        (["cargo", "install", "--index", "sparse+https://crates.example/index/", "x"], [("cargo", "crates.example")]),
        # What sudo, env and a variable assignment run.
        (["sudo", "-E", "-u", "ci", "gem", "install", "-s", "https://gems.example/", "x"], [("gem", "gems.example")]),
        (["env", "-i", "A=1", "npm", "ci", "--registry", "https://npm.example/"], [("npm", "npm.example")]),
        # The commands of its shell's -c code are the job's too.
        (
            ["sh", "-c", "gem install -s https://gems.example/ x && npm i --registry=https://npm.example/;true"],
            [("gem", "gems.example"), ("npm", "npm.example")],
        ),
    ],
)
def test_registries_the_command_names(tmp_path: Path, command: list[str], expected: list[tuple[str, str]]) -> None:
    assert _hosts(tmp_path, command) == expected


@pytest.mark.parametrize(
    "command",
    [
        # A script's arguments are not its options (and this script does not exist).
        ["sh", "ci.sh", "--registry", "https://evil.example/"],
        # Only a package manager's own registry options count.
        ["curl", "--registry", "https://evil.example/"],
        ["make", "REGISTRY=https://evil.example/"],
        # After --, words are the package's arguments, not the manager's options.
        ["npm", "run", "build", "--", "--registry", "https://evil.example/"],
        # A local path names no host.
        ["gem", "install", "--source", "file:///srv/gems", "x"],
        # Code the shell can't split (an unterminated quote) names nothing.
        ["sh", "-c", "npm i --registry 'https://evil.example/"],
    ],
)
def test_what_names_no_registry(tmp_path: Path, command: list[str]) -> None:
    assert _hosts(tmp_path, command) == []


def test_a_hook_naming_a_registry_teaches_nothing(tmp_path: Path) -> None:
    """Discovery sees only the command ciwatch was given: ``npm ci`` names no registry,
    whatever its hooks will run (their own ``npm install --registry https://evil``)."""
    found = discover_registries(tmp_path, {"PATH": "", "HOME": str(tmp_path)}, commands=[["npm", "ci"]], timeout_s=5)
    assert [source.host for source in found] == []


def test_the_script_of_a_ci_step(tmp_path: Path) -> None:
    """A CI step runs its script as ``bash -eo pipefail step.sh``: the script is the job's
    words, read before the build starts (lines joined by a backslash, comments skipped)."""
    (tmp_path / "step.sh").write_text(
        "# npm ci --registry https://comment.example/\n"
        "sudo apt-get update\n"
        "if true; then gem install \\\n  --source https://gems.example/ x; fi\n"
        "echo 'unterminated\n"
        "FOO=1 pip install --index-url=https://py.example/simple y\n"
    )
    assert _hosts(tmp_path, ["bash", "--noprofile", "--norc", "-eo", "pipefail", "step.sh"]) == [
        ("gem", "gems.example"),
        ("pip", "py.example"),
    ]


def test_apt_options_from_the_build_command(tmp_path: Path) -> None:
    command = [
        "sh",
        "-c",
        "apt-get -o Dir::Etc::SourceList=/tmp/s.list -oDir::Etc::SourceParts=/dev/null update"
        " && apt-get -c /tmp/apt.conf install -y x && other -o Not::Apt=1",
    ]
    assert apt_options(_ctx(tmp_path, command)) == [
        "-o",
        "Dir::Etc::SourceList=/tmp/s.list",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-c",
        "/tmp/apt.conf",
    ]


def test_commands_split_like_the_shell(tmp_path: Path) -> None:
    code = "npm 'b c'|gem; pip&&uv x\nmake all; echo done"
    assert commands(["bash", "-ec", code], tmp_path) == [
        ["bash", "-ec", code],
        ["npm", "b c"],
        ["gem"],
        ["pip"],
        ["uv", "x"],
    ]
    assert list(option_values(["x", "-sURL", "--s", "-s"], frozenset({"-s"}))) == [("-s", "URL")]


def test_the_script_is_read_before_the_build_runs(tmp_path: Path) -> None:
    """Discovery runs alongside the build: the step's script is read when discovery is set up
    (before the build is released), so a build that rewrites it teaches nothing."""
    script = tmp_path / "step.sh"
    script.write_text("gem install --source https://gems.example/ x\n")
    discovery = RegistryDiscovery(tmp_path, {"PATH": "", "HOME": str(tmp_path)}, ["bash", "-e", "step.sh"])
    script.write_text("gem install --source https://evil.example/ x\n")
    assert [source.host for source in discovery.result()] == ["gems.example"]
