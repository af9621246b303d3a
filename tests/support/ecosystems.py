"""What every package manager's end-to-end test shares (tests/test_e2e_*_clients.py and friends):
the payload a fixture package's hook runs, and the check that the verdict pins it on that hook.

The payload is the same whatever runs it (an npm lifecycle script, a setup.py, a build.rs, an
extconf.rb, a dpkg postinst): a shell spawns another shell that writes an executable, runs it,
then fetches from evil.test, a host of the test internet that no registry discovery knows. Under
``policies/default.yaml`` that is four findings, each of which must name the fixture's ecosystem,
``name@version`` and hook: that is what a reviewer reads to know which package did it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.attacks import Watched
from tests.support.internet import EVIL, TestInternet

#: The rules the payload must raise, each attributed to the hook that ran it.
PAYLOAD_RULES = frozenset({"hook-shell", "executable-write", "exec-written-file", "unfamiliar-egress"})


@dataclass(frozen=True)
class Payload:
    """The payload of one fixture: ``tag`` names its executable and its request path, so that
    one test's traces never match another's."""

    tag: str
    bindir: Path
    """In the home directory of the run, where a dropped executable is an executable-write."""

    @property
    def dropped(self) -> Path:
        return self.bindir / f"dropped-{self.tag}"

    @property
    def path(self) -> str:
        """The path it requests from evil.test."""
        return f"/{self.tag}"

    @property
    def script(self) -> str:
        """A POSIX shell script (paths baked in: package managers don't all pass the
        environment to their hooks)."""
        bindir, tag = shlex.quote(str(self.bindir)), shlex.quote(self.tag)
        return (
            "set -eu\n"
            # Piped into a shell, as ``curl ... | sh`` is (hook-shell).
            'printf \'%s\\n\' \'mkdir -p "$1" && printf "#!/bin/sh\\necho dropped %s\\n" "$2" > "$1/dropped-$2"'
            ' && chmod +x "$1/dropped-$2"\''
            f" | sh -s {bindir} {tag}\n"
            f"{shlex.quote(str(self.dropped))}\n"
            f"curl -fsS -o /dev/null https://{EVIL}{self.path} || true\n"
        )


def assert_payload_ran(payload: Payload, internet: TestInternet) -> None:
    """The hook really ran: the executable is there and evil.test was asked for the path."""
    assert payload.dropped.is_file(), f"{payload.dropped} was not written"
    paths = [request.path for request in internet.requests_to(EVIL)]
    assert payload.path in paths, paths


def assert_findings_name_hook(
    watched: Watched, ecosystem: str, package: str, version: str, hook: str | frozenset[str]
) -> None:
    """Each payload rule was raised, and every finding of those rules names ``ecosystem``,
    ``package@version`` and ``hook`` (or one of ``hook``: a PEP 517 build runs the payload in
    whichever of its hooks comes first); the egress one names evil.test."""
    hooks = frozenset({hook}) if isinstance(hook, str) else hook
    ref = f"{package}@{version}"
    for rule in sorted(PAYLOAD_RULES):
        found: list[dict[str, Any]] = [f for f in watched.findings if f["rule"] == rule]
        assert found, f"no {rule} finding; the findings are:\n{watched.described()}"
        wrong = [f for f in found if (f["ecosystem"], f["package"]) != (ecosystem, ref) or f["hook"] not in hooks]
        assert not wrong, (
            f"{rule} not all about {sorted(hooks)} of {package}@{version} ({ecosystem}):\n{watched.described()}"
        )
    hosts = {f["host"] for f in watched.findings if f["rule"] == "unfamiliar-egress"}
    assert hosts == {EVIL}, hosts
