"""yarn classic, pnpm and bun end to end: each real client installs, from the test internet's npm
registry, a package whose postinstall runs the shared payload (tests/support/ecosystems.py), under
``ciwatch run`` with the default policy and the default ``--net redirect``. The verdict must name
the client's ecosystem, the package's ``name@version`` and ``postinstall`` for every rule the
payload raises.

The clients come from the npm registry (.ci/run installs them globally with npm).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.attacks import Watched, watch
from tests.support.ecosystems import Payload, assert_findings_name_hook, assert_payload_ran
from tests.support.internet import TestInternet

pytestmark = [pytest.mark.npm, pytest.mark.root]

VERSION = "3.1.4"


def _project(directory: Path, **extra: object) -> Path:
    directory.mkdir(parents=True)
    manifest = {"name": "project", "version": "1.0.0", "private": True, **extra}
    (directory / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def _publish(internet: TestInternet, name: str, payload: Payload) -> None:
    internet.publish_npm(
        name,
        VERSION,
        package_json_extra={"scripts": {"postinstall": "sh ./hook.sh"}},
        files={"hook.sh": payload.script},
    )


def _install(internet: TestInternet, tmp_path: Path, client: str, command: list[str], **manifest: object) -> Watched:
    require(client)
    name = f"{client}-hooked"
    payload = Payload(client, tmp_path / "home" / "bin")
    _publish(internet, name, payload)
    project = _project(tmp_path / "project", **manifest)
    watched = watch(
        internet, tmp_path / "home", project, tmp_path / "out", [*command, name], env=_client_env(client, internet)
    )
    assert (project / "node_modules" / name / "package.json").is_file(), watched.output[-3000:]
    assert_payload_ran(payload, internet)
    return watched


def _client_env(client: str, internet: TestInternet) -> dict[str, str]:
    """Where each client's registry and CA come from besides npm's own settings (which the
    test internet's client environment already sets and yarn classic and pnpm read)."""
    if client == "bun":
        # bun reads neither npm's registry variable nor its cafile; NODE_EXTRA_CA_CERTS it does.
        return {"BUN_CONFIG_REGISTRY": internet.registry_url}
    return {}


def test_yarn_classic(internet: TestInternet, tmp_path: Path) -> None:
    watched = _install(internet, tmp_path, "yarn", ["yarn", "add", "--non-interactive", "--no-progress"])
    assert_findings_name_hook(watched, "yarn", "yarn-hooked", VERSION, "postinstall")


def test_pnpm(internet: TestInternet, tmp_path: Path) -> None:
    # pnpm 9 runs a dependency's install scripts only when the project allows them.
    watched = _install(internet, tmp_path, "pnpm", ["pnpm", "add"], pnpm={"onlyBuiltDependencies": ["pnpm-hooked"]})
    assert_findings_name_hook(watched, "pnpm", "pnpm-hooked", VERSION, "postinstall")


def test_bun(internet: TestInternet, tmp_path: Path) -> None:
    # bun runs a dependency's lifecycle scripts only when the project trusts it.
    watched = _install(internet, tmp_path, "bun", ["bun", "add"], trustedDependencies=["bun-hooked"])
    assert_findings_name_hook(watched, "bun", "bun-hooked", VERSION, "postinstall")


#: Where .ci/run puts yarn berry's release bundle (@yarnpkg/cli-dist, apart from yarn classic).
YARN_BERRY = Path("/usr/local/lib/yarn-berry/node_modules/@yarnpkg/cli-dist/bin/yarn.js")
YARN_BERRY_VERSION = "4.18.1"


def test_yarn_berry_through_yarn_path(internet: TestInternet, tmp_path: Path) -> None:
    """The way projects pin berry: the release checked in under .yarn/releases and named by
    ``yarnPath``; yarn classic on PATH hands over to it. The registry and CA are in .yarnrc.yml,
    where berry reads them (it ignores npm's settings)."""
    require("node")
    if not YARN_BERRY.is_file():
        pytest.fail(f"{YARN_BERRY} is missing; .ci/run installs @yarnpkg/cli-dist there")
    project = tmp_path / "project"
    release = project / ".yarn" / "releases" / f"yarn-{YARN_BERRY_VERSION}.cjs"
    release.parent.mkdir(parents=True)
    shutil.copy(YARN_BERRY, release)
    (project / ".yarnrc.yml").write_text(
        f"yarnPath: .yarn/releases/{release.name}\n"
        f"npmRegistryServer: {internet.registry_url}\n"
        f"httpsCaFilePath: {internet.ca_cert}\n"
        "nodeLinker: node-modules\n"
        "enableGlobalCache: false\n"
        "enableTelemetry: false\n"
        # Berry 4.18 holds back versions published less than a day ago; the fixture is seconds old.
        "npmMinimalAgeGate: 0\n"
        # Berry 4.18 runs no dependency's build scripts unless the project lets them.
        "enableScripts: true\n"
        # Berry makes every install --immutable when CI is set, as it is in .ci/run; this one
        # writes the lockfile it starts without.
        "enableImmutableInstalls: false\n"
    )
    (project / "yarn.lock").touch()
    name = "berry-hooked"
    payload = Payload("berry", tmp_path / "home" / "bin")
    _publish(internet, name, payload)
    (project / "package.json").write_text(
        json.dumps({"name": "project", "private": True, "dependencies": {name: VERSION}})
    )
    watched = watch(internet, tmp_path / "home", project, tmp_path / "out", ["yarn", "install"])
    assert watched.code == 0, watched.output[-3000:]
    assert_payload_ran(payload, internet)
    assert_findings_name_hook(watched, "yarn", name, VERSION, "postinstall")
