"""Checking the values a policy names: hosts, package specs, version ranges (the parts of a
policy that a JSON Schema's patterns can't explain well)."""

from __future__ import annotations

import ipaddress
import re

from ciwatch.facts.ecosystems import ALIASES, Ecosystem
from ciwatch.policy.model import PackageSpec
from ciwatch.policy.problems import printable, quote
from ciwatch.policy.versions import parse_range, syntax_for

#: The ecosystem prefixes a package spec may carry (``pip:cryptography``), as hook attributions name them.
ECOSYSTEMS: tuple[str, ...] = tuple(Ecosystem.package_ecosystems())

HOST_EXPECTED = (
    "expected a host name (artifacts.example.internal), a wildcard pattern (*.example.internal) "
    "or a CIDR (10.0.0.0/8, fd00::/8)"
)
PACKAGE_EXPECTED = (
    'expected NAME or NAME@RANGE, optionally after an ecosystem (esbuild, "@scope/pkg@^1.3", pip:cryptography@>=41)'
)
_RANGE_EXPECTED = (
    "expected an npm range (1.2.3, ^1.2, ~1.2.3, >=1 <2, 1.x, 1.2 - 1.4, ^1 || ^2) "
    "or PEP 440 specifiers (>=1.2,<2, ==1.*, ~=1.4)"
)

_ALSO_EXPECTED = {
    "gem": ", or a RubyGems requirement (~> 1.2, >= 1.0, < 2)",
    "maven": ", or a Maven range ([1.0,2.0), (,1.0], [1.2], (,1.0],[1.2,))",
}

_LABEL = re.compile(r"^[a-z0-9_*?]([a-z0-9_*?-]{0,61}[a-z0-9_*?])?$", re.IGNORECASE)
_PACKAGE_NAME = re.compile(r"^(@[a-z0-9*?][a-z0-9*?._~-]*/)?[a-z0-9*?_][a-z0-9*?._~+-]*$", re.IGNORECASE)
#: Maven's (and Gradle's) GROUP:ARTIFACT.
_MAVEN_NAME = re.compile(r"^[a-z0-9*?_][a-z0-9*?._-]*:[a-z0-9*?_][a-z0-9*?._-]*$", re.IGNORECASE)
_VERSION_OPERATOR = re.compile(r"[=<>!~^]")


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    import difflib  # here: only a typo needs it

    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"? ' if close else ""


def host_problem(text: str) -> str | None:
    """What is wrong with ``text`` as an allowlist entry, or None."""
    shown = quote(text)
    plain = text.strip()
    if not plain:
        return f"is empty; {HOST_EXPECTED}"
    if "://" in plain:
        host = plain.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        return f"{shown} is a URL; expected the host name alone: {printable(host)}"
    if "/" in plain:
        try:
            ipaddress.ip_network(plain)
        except ValueError:
            try:
                network = ipaddress.ip_network(plain, strict=False)
            except ValueError:
                return f"{shown} is not a host name, wildcard pattern or CIDR; {HOST_EXPECTED}"
            return f"{shown} has bits set after the prefix length; expected the network address: {network}"
        return _too_wide(shown, ipaddress.ip_network(plain))
    if plain.startswith("[") and plain.endswith("]"):
        return f"{shown} has brackets; expected the address alone: {printable(plain[1:-1])}"
    if ":" in plain:
        try:
            ipaddress.IPv6Address(plain)
        except ValueError:
            host, _, port = plain.rpartition(":")
            if port.isdigit() and host and ":" not in host:
                return f"{shown} has a port; expected the host name alone (any port is allowed): {printable(host)}"
            return f"{shown} is not a host name, wildcard pattern or CIDR; {HOST_EXPECTED}"
        return None
    name = plain.removesuffix(".")
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return f"{shown} is not an IP address; {HOST_EXPECTED}"
        return None
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"{shown} is not a host name, wildcard pattern or CIDR; {HOST_EXPECTED}"
    if any(ch in labels[-1] for ch in "*?"):
        return (
            f"{shown} matches every domain; expected a pattern under a fixed domain (*.example.internal) "
            "(to stop judging egress, set `rules: {unfamiliar-egress: off}` instead)"
        )
    return None


#: The shortest prefix an allowed CIDR may have: a /8 of IPv4 (16 million addresses, one of the
#: old class A blocks) and a /16 of IPv6 are already more than any registry or mirror needs; a
#: shorter one (0.0.0.0/0, ::/0, 0.0.0.0/1 + 128.0.0.0/1...) allows a large part of the internet,
#: which is what `*` would say, and `*` is refused. A wider network that is private as a whole
#: (fd00::/8) opens nothing on the internet and is allowed.
MIN_PREFIX = {4: 8, 6: 16}
#: IPv6 blocks that spell IPv4 addresses (mapped, NAT64, 6to4) and the bit at which the IPv4
#: address starts: ::ffff:0:0/96 is every IPv4 address again, so it is judged as 0.0.0.0/0.
_IPV4_IN_IPV6 = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), 96),
    (ipaddress.IPv6Network("64:ff9b::/96"), 96),
    (ipaddress.IPv6Network("2002::/16"), 16),
)


def _too_wide(shown: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    version, prefix = network.version, network.prefixlen
    if isinstance(network, ipaddress.IPv6Network):
        for block, start in _IPV4_IN_IPV6:
            if network.subnet_of(block):
                version, prefix = 4, max(0, prefix - start)
    shortest = MIN_PREFIX[version]
    if prefix >= shortest or (network.is_private and version == network.version):
        return None
    share = f"every IPv{version} address" if prefix == 0 else f"1/{1 << prefix} of all IPv{version} addresses"
    return (
        f"{shown} covers {share}, as `*` would; expected the network of the hosts the build needs, "
        f"/{MIN_PREFIX[network.version]} or narrower (e.g. 10.0.0.0/8, fd00::/16), or a private network "
        "(to stop judging egress, set `rules: {unfamiliar-egress: off}` instead)"
    )


def parse_package(text: str) -> tuple[PackageSpec | None, str | None]:
    """The spec ``text`` names, or what is wrong with it."""
    shown = quote(text)
    if not text:
        return None, f"is empty; {PACKAGE_EXPECTED}"
    spec = PackageSpec.parse(text)
    if spec.ecosystem is not None and spec.ecosystem not in ECOSYSTEMS:
        alias = ALIASES.get(spec.ecosystem.lower())
        close = f'did you mean "{alias}"? ' if alias else _suggest(spec.ecosystem, ECOSYSTEMS)
        expected = f"expected one of {', '.join(ECOSYSTEMS)}"
        return None, f"{shown}: {quote(spec.ecosystem)} is not an ecosystem; {close}{expected}"
    maven = syntax_for(spec.ecosystem) == "maven" and _MAVEN_NAME.match(spec.name)
    if not _PACKAGE_NAME.match(spec.name) and not maven:
        operator = _VERSION_OPERATOR.search(spec.name)
        if operator is not None and spec.version_range is None and operator.start() > 0:
            prefix = f"{spec.ecosystem}:" if spec.ecosystem else ""
            name, version = spec.name[: operator.start()], spec.name[operator.start() :]
            return (
                None,
                f"{shown} has no @ before its version range; expected {printable(f'{prefix}{name}@{version}')}",
            )
        return None, f"{shown} is not a package name; {PACKAGE_EXPECTED}"
    if spec.version_range is None and text.endswith("@") and len(text) > 1:
        return None, f"{shown} has nothing after @; expected a version range, or the name alone for any version"
    if spec.version_range is not None:
        try:
            syntax = syntax_for(spec.ecosystem)
            parse_range(spec.version_range, syntax)
        except ValueError as error:
            return None, f"{shown}: {error}; {_RANGE_EXPECTED}{_ALSO_EXPECTED.get(syntax, '')}"
    return spec, None
