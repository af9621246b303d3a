"""What ``ciwatch run`` does on the way to its build's exec, which every CI step waits for
(issue 14, item 4): the rules, the analysis, the verdict and the reports are imported once the
build has run, and the package managers are asked for their registries only when the build
runs one."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

from ciwatch.record.events import ProcessExec, RegistryAllowed
from ciwatch.session.registries import JobRegistries, RegistryDiscovery
from tests.support.runner import run_ciwatch

MARKER = "the-build-ran"
#: Imported only once the build has run: judging and telling what it did.
AFTER_THE_BUILD = ("ciwatch.rules", "ciwatch.analysis", "ciwatch.verdict", "ciwatch.report", "ciwatch.cli_outcome")


def _imports_around_the_build(tmp_path: Path, *options: str) -> tuple[list[str], list[str]]:
    """The modules ``python -X importtime`` saw imported (front and tracer process alike) before
    the build wrote its marker and after. The build writes to the same stderr, and the tracer
    judges only once the build's root has exited, so what it imports then comes after the marker."""
    ciwatch = [sys.executable, "-X", "importtime", "-m", "ciwatch", "run", "--quiet", "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [*ciwatch, *options, "--", "sh", "-c", f"echo {MARKER} >&2"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines.count(MARKER) == 1, done.stderr[-3000:]
    split = lines.index(MARKER)

    def modules(part: list[str]) -> list[str]:
        return [m[1] for line in part if (m := re.match(r"import time:.*\|\s*(\S+)$", line))]

    return modules(lines[:split]), modules(lines[split + 1 :])


def _judging(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(AFTER_THE_BUILD)]


def test_net_off_imports_the_rules_and_reports_only_after_the_build_ran(tmp_path: Path) -> None:
    before, after = _imports_around_the_build(tmp_path, "--net", "off", "--file-events", "ptrace")
    assert _judging(before) == []
    assert "yaml" not in before  # the built-in policy is data (policy/builtin.py), no package.json here
    # Nor the readers of a policy file's hosts, package specs and version ranges: it has none.
    assert not {"ciwatch.policy.values", "ciwatch.policy.versions"} & set(before)
    # Nor subprocess, which only `ciwatch doctor`'s probes and the sandbox's set-up use.
    assert "ciwatch.egress.sandbox" not in before
    assert "subprocess" not in before[before.index("ciwatch") :]
    # The check sees the tracer's imports: the verdict is judged after the build, by the rules.
    assert "ciwatch.verdict" in after and "ciwatch.rules" in after
    # Nothing of the proxy without one.
    assert not [m for m in before + after if m.startswith(("mitmproxy", "ciwatch.egress.proxy"))]


def test_the_default_mode_imports_the_rules_and_reports_only_after_the_build_ran(tmp_path: Path) -> None:
    before, after = _imports_around_the_build(tmp_path)
    assert _judging(before) == []
    assert "ciwatch.verdict" in after


def _fake_npm(tmp_path: Path, registry: str = "npm.registry.test", exit_code: int = 0) -> tuple[Path, Path]:
    """A directory whose ``npm`` answers discovery's ``config list --json`` with a registry of
    the test internet (and then exits with ``exit_code``) and notes each time it runs; and that note."""
    bin_dir, log = tmp_path / "bin", tmp_path / "npm-ran"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n'
        f'if [ "$1" = config ]; then echo \'{{"registry": "https://{registry}/"}}\'; exit {exit_code}; fi\n'
    )
    npm.chmod(0o755)
    return bin_dir, log


def test_a_build_that_runs_no_package_manager_asks_none(tmp_path: Path) -> None:
    bin_dir, log = _fake_npm(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    run = run_ciwatch(["--net", "off", "--no-discovery-cache", "--", "true"], tmp_path / "out", cwd=tmp_path, env=env)
    assert run.code == 0, run.stderr
    assert not log.exists()
    assert run.events(RegistryAllowed) == []


def test_a_build_that_runs_a_package_manager_is_allowed_its_registries(tmp_path: Path) -> None:
    bin_dir, log = _fake_npm(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    command = ["--net", "off", "--no-discovery-cache", "--", "sh", "-c", "npm ci"]
    run = run_ciwatch(command, tmp_path / "out", cwd=tmp_path, env=env)
    assert run.code == 0, run.stderr
    assert "config list --json" in log.read_text()  # discovery asked it, besides the build's `npm ci`
    assert [(e.host, e.ecosystem) for e in run.events(RegistryAllowed)] == [("npm.registry.test", "npm")]


def _exec(pid: int, *argv: str) -> ProcessExec:
    return ProcessExec(pid=pid, path=f"/usr/bin/{argv[0]}", exe=f"/usr/bin/{argv[0]}", argv=list(argv), cwd="/")


def test_discovery_starts_at_the_first_package_manager_the_build_runs(tmp_path: Path) -> None:
    discovery = RegistryDiscovery(tmp_path, {"PATH": "/nonexistent"}, ["make"], use_cache=False)
    registries = JobRegistries(lambda event: None)
    registries.discover_when_used(discovery)
    registries.saw_exec(_exec(10, "make", "all"))
    registries.saw_exec(_exec(11, "sh", "-c", "cc -o x x.c"))
    assert not discovery.started
    registries.saw_exec(_exec(12, "npm", "ci"))
    assert discovery.started
    assert discovery.result() == []  # nothing on its PATH to ask


def test_discovery_asked_for_its_answer_starts_then(tmp_path: Path) -> None:
    """Block mode settles the allowlist before the release; leftovers at the build's end."""
    discovery = RegistryDiscovery(tmp_path, {"PATH": "/nonexistent"}, ["true"], use_cache=False)
    assert not discovery.started
    assert discovery.result() == []
    assert discovery.started


def test_every_event_kind_can_be_read_back() -> None:
    """The codec makes a kind's field readers at its first line read (not at import, which every
    run pays): each kind's type hints still resolve to readers."""
    from ciwatch.record import codec

    for kind, cls in codec.EVENT_TYPES.items():
        readers = codec._readers_of(cls)
        assert readers, kind
        assert {r.name for r in readers} == {f.name for f in dataclasses.fields(cls)}


def test_the_run_ca_written_by_hand_is_the_certificate_cryptography_would_make() -> None:
    """egress/runca.py writes the run's CA without cryptography.x509 (its import delayed every
    build): read back, it is a valid self-signed v3 CA certificate of the run's key, with the
    extensions CertificateBuilder gave it, whose signature verifies."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from ciwatch.egress.trust import generate_run_ca

    authority = generate_run_ca()
    cert = x509.load_pem_x509_certificate(authority.cert_pem)
    key = authority.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.public_key() == key.public_key()
    # The key's SubjectPublicKeyInfo written by hand is cryptography's.
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert (
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        == spki
        and spki in cert.tbs_certificate_bytes
    )
    assert cert.version is x509.Version.v3
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "ciwatch"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"ciwatch run CA {os.getpid()}"
    cert.verify_directly_issued_by(cert)  # the signature, by its own key
    assert 0 < cert.serial_number < 2**159
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days == 3
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value == x509.BasicConstraints(ca=True, path_length=None)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature and not usage.value.key_encipherment
    key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert key_id.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert len(cert.extensions) == 3


def test_openssl_takes_the_run_ca_as_a_ca(tmp_path: Path) -> None:
    from ciwatch.egress.trust import generate_run_ca

    ca = tmp_path / "ca.pem"
    ca.write_bytes(generate_run_ca().cert_pem)
    done = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(ca), str(ca)], capture_output=True, text=True
    )
    assert done.returncode == 0 and ": OK" in done.stdout, done.stdout + done.stderr


def test_the_run_ca_is_made_without_cryptographys_backend_or_serialization_package() -> None:
    """The CA exists before the build's first instruction; cryptography's OpenSSL backend (its
    cffi library built at import) and the package ``serialization`` (its SSH, PKCS7 and PKCS12
    code and the ciphers) are mitmproxy's to load once it starts, after a short build has ended."""
    code = (
        "import sys\n"
        "from ciwatch.egress.trust import generate_run_ca\n"
        "generate_run_ca()\n"
        "prefixes = ('cryptography.hazmat.primitives.serialization', 'cryptography.hazmat.backends.openssl')\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_built_in_policy_is_default_yaml_read() -> None:
    """policy/builtin.py is default.yaml's data, read without PyYAML at every start; a
    policy file of the same text is the same policy."""
    import yaml

    import ciwatch.policy
    from ciwatch.cli_support import RULE_CATALOGUE
    from ciwatch.policy.builtin import DEFAULT_POLICY
    from ciwatch.policy.document import Core12Loader, to_data
    from ciwatch.policy.loader import default_policy, parse_policy

    text = (Path(ciwatch.policy.__file__).parent / "default.yaml").read_text()
    problems: list[object] = []
    assert to_data(yaml.compose(text, Loader=Core12Loader), problems) == DEFAULT_POLICY  # type: ignore[arg-type]
    assert problems == []
    built_in = default_policy(known_rules=RULE_CATALOGUE)
    assert built_in == dataclasses.replace(parse_policy(text, "x", known_rules=RULE_CATALOGUE), source=built_in.source)
    assert built_in.source == "<built-in default>"


def test_discovery_sees_a_failing_tool_fail(tmp_path: Path) -> None:
    """Discovery's tools are children of the tracer process, as the build is: the tracer's wait
    must leave them to discovery's own. Reaped by the tracer, a tool that failed (here after
    printing a registry) was taken for one that succeeded, its exit code lost."""
    bin_dir, log = _fake_npm(tmp_path, "failed.registry.test", exit_code=1)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    # The build keeps the tracer waiting (in waitpid) while discovery's tool ends.
    command = ["--net", "off", "--no-discovery-cache", "--", "sh", "-c", "npm ci; sleep 2"]
    run = run_ciwatch(command, tmp_path / "out", cwd=tmp_path, env=env)
    assert run.code == 0, run.stderr
    assert "config list --json" in log.read_text()
    assert "failed.registry.test" not in [event.host for event in run.events(RegistryAllowed)]
