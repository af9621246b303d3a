"""One vocabulary each: ecosystems (and their Package URLs), the allowlist's host form."""

from __future__ import annotations

import pytest

from ciwatch.attribution import hooks
from ciwatch.facts import programs
from ciwatch.facts.ecosystems import Ecosystem, purl
from ciwatch.gate.allowlist import RuntimeAllowlist, normalise_host
from ciwatch.policy.model import Allowlist, HostPattern, PackageSpec, Policy
from ciwatch.policy.values import ECOSYSTEMS
from ciwatch.record.events import DnsAnswer, RegistryAllowed
from ciwatch.registries import ECOSYSTEMS as REGISTRY_ECOSYSTEMS


def test_every_ecosystem_named_anywhere_is_a_member() -> None:
    assert set(programs.PACKAGE_MANAGERS.values()) <= set(Ecosystem.package_ecosystems())
    assert set(REGISTRY_ECOSYSTEMS) == {str(member) for member in Ecosystem}
    assert set(ECOSYSTEMS) == {str(member) for member in Ecosystem.package_ecosystems()}
    assert hooks.HookAttribution(Ecosystem.NPM, "a", "1", "postinstall", 1, 2).ecosystem == "npm"


def test_tools_map_to_their_package_ecosystem() -> None:
    assert Ecosystem.UV.packages is Ecosystem.PIP
    assert Ecosystem.APT.packages is Ecosystem.DPKG
    assert not Ecosystem.POETRY.is_package_ecosystem
    assert PackageSpec.parse("pip:requests").matches("uv", "requests", "2.0")
    assert PackageSpec.parse("npm:esbuild").matches("pnpm", "esbuild", "0.19.0")
    assert not PackageSpec.parse("yarn:esbuild").matches("npm", "esbuild", "0.19.0")


@pytest.mark.parametrize(
    ("ecosystem", "name", "version", "expected"),
    [
        ("npm", "esbuild", "0.24.2", "pkg:npm/esbuild@0.24.2"),
        ("yarn", "@swc/core", "1.3.0", "pkg:npm/%40swc/core@1.3.0"),
        ("pip", "Foo_Bar", "1.0", "pkg:pypi/foo-bar@1.0"),
        ("cargo", "serde", "1.0.0", "pkg:cargo/serde@1.0.0"),
        ("gem", "nokogiri", "1.16.0", "pkg:gem/nokogiri@1.16.0"),
        ("dpkg", "curl", "", "pkg:deb/curl"),
        ("go", "github.com/x/y", "v1.0.0", "pkg:golang/github.com/x/y@v1.0.0"),
        ("maven", "org.example:lib", "2.0", "pkg:maven/org.example/lib@2.0"),
        ("unknown", "x", "1", None),
        (None, "x", "1", None),
    ],
)
def test_purl(ecosystem: str | None, name: str, version: str, expected: str | None) -> None:
    assert purl(ecosystem, name, version) == expected


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("Registry.Example.Internal.", "registry.example.internal"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:0db8:0:0::1", "2001:db8::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:C000:0201", "192.0.2.1"),
        ("host.example.internal:8080", "host.example.internal"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_normalise_host(text: str, normal: str) -> None:
    assert normalise_host(text) == normal


def _answer(name: str, address: str) -> DnsAnswer:
    return DnsAnswer(
        pid=None,
        name=name,
        qtype="AAAA" if ":" in address else "A",
        rcode="NOERROR",
        answers=[address],
        server="127.0.0.53",
    )


def _allowlist(*hosts: str) -> RuntimeAllowlist:
    return RuntimeAllowlist(Policy(allow=Allowlist(hosts=tuple(HostPattern(host) for host in hosts))))


@pytest.mark.parametrize("answer", ["2001:DB8::1", "2001:db8:0::1"])
@pytest.mark.parametrize("asked", ["2001:db8::1", "2001:DB8::1", "[2001:db8::1]:443"])
def test_an_address_learned_in_one_spelling_is_allowed_in_another(answer: str, asked: str) -> None:
    allowlist = _allowlist("Registry.Example.Internal")
    allowlist.observe(_answer("REGISTRY.example.internal.", answer))
    assert allowlist.allows(asked)
    assert allowlist.names_of(asked) == {"registry.example.internal"}


def test_v4_mapped_addresses_are_their_v4_address() -> None:
    allowlist = _allowlist("registry.example.internal")
    allowlist.observe(_answer("registry.example.internal", "192.0.2.1"))
    assert allowlist.allows("::ffff:192.0.2.1")
    assert not allowlist.allows("::ffff:192.0.2.2")


def test_registries_are_normalised_when_added_and_asked() -> None:
    allowlist = _allowlist()
    allowlist.observe(RegistryAllowed(host="Registry.Example.Internal.", ecosystem="npm", source="npm config"))
    assert allowlist.allows("registry.example.internal")
    assert allowlist.allows("REGISTRY.EXAMPLE.INTERNAL:443")
    assert not allowlist.allows("other.example.internal")
