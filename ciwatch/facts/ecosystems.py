"""The package ecosystems: one vocabulary for registry discovery, hook attribution, records,
policies and Package URLs.

Two kinds of name share it. A *package ecosystem* is where a package comes from and what a
policy names (``pip:cryptography``, ``npm:esbuild``); hook attributions in records carry these.
A *tool* (uv, poetry, apt) is a client of another ecosystem's packages; registry discovery
names the tool it asked. :attr:`Ecosystem.packages` maps a tool to its package ecosystem.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALIASES", "Ecosystem", "purl"]


class Ecosystem(StrEnum):
    """In the order reports list them."""

    NPM = "npm"
    YARN = "yarn"
    PNPM = "pnpm"
    BUN = "bun"
    PIP = "pip"
    UV = "uv"
    POETRY = "poetry"
    CARGO = "cargo"
    GO = "go"
    GEM = "gem"
    MAVEN = "maven"
    GRADLE = "gradle"
    APT = "apt"
    DPKG = "dpkg"

    @property
    def packages(self) -> Ecosystem:
        """The package ecosystem whose packages this one installs (uv -> pip, apt -> dpkg)."""
        return _PACKAGES.get(self, self)

    @property
    def is_package_ecosystem(self) -> bool:
        """Whether policies and hook attributions use this name (uv, poetry and apt are tools)."""
        return self.packages is self

    @property
    def npm_family(self) -> bool:
        """npm's packages, whichever client installs them."""
        return self in (Ecosystem.NPM, Ecosystem.YARN, Ecosystem.PNPM, Ecosystem.BUN)

    @property
    def purl_type(self) -> str:
        """The Package URL type of its packages (github.com/package-url/purl-spec)."""
        return _PURL_TYPES[self.packages]

    @classmethod
    def package_ecosystems(cls) -> tuple[Ecosystem, ...]:
        return tuple(member for member in cls if member.is_package_ecosystem)

    @classmethod
    def named(cls, text: str | None) -> Ecosystem | None:
        """The member named ``text``, or None."""
        try:
            return cls(text) if text else None
        except ValueError:
            return None


_PACKAGES = {Ecosystem.UV: Ecosystem.PIP, Ecosystem.POETRY: Ecosystem.PIP, Ecosystem.APT: Ecosystem.DPKG}

_PURL_TYPES = {
    Ecosystem.NPM: "npm",
    Ecosystem.YARN: "npm",
    Ecosystem.PNPM: "npm",
    Ecosystem.BUN: "npm",
    Ecosystem.PIP: "pypi",
    Ecosystem.CARGO: "cargo",
    Ecosystem.GO: "golang",
    Ecosystem.GEM: "gem",
    Ecosystem.MAVEN: "maven",
    Ecosystem.GRADLE: "maven",
    Ecosystem.DPKG: "deb",
}

#: Other words people write for a package ecosystem, for a "did you mean" hint.
ALIASES: dict[str, Ecosystem] = {
    "apt": Ecosystem.DPKG,
    "deb": Ecosystem.DPKG,
    "debian": Ecosystem.DPKG,
    "pypi": Ecosystem.PIP,
    "python": Ecosystem.PIP,
    "uv": Ecosystem.PIP,
    "poetry": Ecosystem.PIP,
    "node": Ecosystem.NPM,
    "rubygems": Ecosystem.GEM,
    "ruby": Ecosystem.GEM,
    "bundler": Ecosystem.GEM,
    "crates": Ecosystem.CARGO,
    "rust": Ecosystem.CARGO,
    "golang": Ecosystem.GO,
}


def purl(ecosystem: str | None, name: str | None, version: str | None = None) -> str | None:
    """The Package URL of a package (``pkg:npm/esbuild@0.24.2``, ``pkg:npm/%40swc/core@1.3.0``,
    ``pkg:pypi/cryptography@42.0.5``); None when the ecosystem isn't known. A Debian package's
    purl names no vendor: the record doesn't say which distribution the job ran on."""
    member = Ecosystem.named(ecosystem)
    if member is None or not name:
        return None
    kind = member.purl_type
    namespace: str | None = None
    if kind == "npm" and name.startswith("@") and "/" in name:
        namespace, name = name.split("/", 1)
    elif kind == "maven" and ":" in name:
        namespace, name = name.split(":", 1)
    elif kind == "golang" and "/" in name:
        namespace, name = name.rsplit("/", 1)
    try:
        from packageurl import PackageURL  # here: only reports write purls

        return str(PackageURL(type=kind, namespace=namespace, name=name, version=version or None).to_string())
    except ValueError:
        return None
