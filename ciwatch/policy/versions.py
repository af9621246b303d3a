"""Version ranges in a policy: npm's semver ranges and PEP 440 specifier lists, read by the
ecosystems' own rules as maintained libraries implement them (``node-semver``, a port of npm's
``semver``; PyPA's ``packaging``).

A policy names packages with an optional range (``esbuild@^0.19``, ``pip:cryptography@>=41,<43``).
The range's syntax decides how it reads: a comma or one of ``==``, ``!=``, ``~=``, ``===`` makes
it a PEP 440 specifier list, anything else is an npm range (cargo's and Go's requirements read
the same way). A single comparison both could read (``>=41``) is PEP 440 in a ``pip:`` spec and
npm otherwise; one that only PEP 440 reads (``>=2.0b1``) is PEP 440. A version or range that
can't be parsed never matches.

In a ``gem:`` spec, RubyGems requirements read as RubyGems reads them (``~> 1.2`` is ``>=1.2, <2``);
in a ``maven:`` or ``gradle:`` spec, Maven's range notation (``[1.0,2.0)``, ``(,1.0],[1.2,)``) and
a bare version (exactly that version). Both are translated to PEP 440 comparators
(``gem_requirement``, ``maven_range``), whose versions, like theirs, have any number of parts
(``1.2`` is ``1.2.0``); other text in those specs reads as above.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Literal

from ciwatch.dataclass import dataclass
from ciwatch.facts.ecosystems import Ecosystem
from ciwatch.policy.problems import quote

if TYPE_CHECKING:
    import nodesemver  # type: ignore[import-untyped]
    from packaging.specifiers import SpecifierSet

# nodesemver and packaging are imported where a range is read: most policies name none, and
# every ``ciwatch run`` would pay for their import before the build starts.

__all__ = ["Syntax", "VersionRange", "gem_requirement", "maven_range", "parse_range", "syntax_for", "version_in_range"]

Syntax = Literal["npm", "pep440", "gem", "maven"]

_NPM_OPERATOR = re.compile(r"^[\s^~<>=v]*")
_INVALID_COMPARATOR = re.compile(r"Invalid comparator: (?P<comparator>.*)$")
_COMPATIBLE_ONE_NUMBER = re.compile(r"~=\s*v?\d+(\s*$|\s*,)")


@dataclass(frozen=True)
class VersionRange:
    """A parsed range; ``contains`` tells whether a version falls in it."""

    text: str
    syntax: Syntax
    npm: nodesemver.Range | None = None
    pep440: tuple[SpecifierSet, ...] = ()
    """Alternatives, any of which may hold (one, except for a Maven union)."""

    def contains(self, version: str) -> bool:
        if self.npm is not None:
            import nodesemver

            try:
                return bool(self.npm.test(nodesemver.make_semver(version.strip(), loose=False)))
            except ValueError:
                return False
        return any(_pep440_contains(specifiers, version) for specifiers in self.pep440)


def _pep440_contains(specifiers: SpecifierSet, version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        # ``===`` compares text and accepts what isn't a version.
        return all(spec.operator == "===" and spec.version == version for spec in specifiers)
    # As pip does: a pre-release is in a range only where the range names one.
    return specifiers.contains(parsed, prereleases=bool(specifiers.prereleases))


def _is_pep440(text: str) -> bool:
    return "," in text or any(op in text for op in ("==", "!=", "~="))


@functools.lru_cache(maxsize=512)
def parse_range(range_text: str, prefer: Syntax = "npm") -> VersionRange:
    """The range ``range_text`` describes; ValueError saying what is wrong when it is not one.
    ``prefer`` decides a single comparison both syntaxes read (``>=41``)."""
    text = range_text.strip()
    if not text:
        raise ValueError("the version range is empty")
    translate = {"gem": gem_requirement, "maven": maven_range}.get(prefer)
    if translate is not None:
        try:
            alternatives = tuple(_pep440_range(part).pep440[0] for part in translate(text).split(" || "))
            return VersionRange(text, prefer, pep440=alternatives)
        except ValueError:
            # Maven's brackets and RubyGems' ~> mean only that; other text reads as below.
            if text[0] in "[(" or "~>" in text:
                raise
    single = "||" not in text and " " not in text
    if _is_pep440(text) or (prefer == "pep440" and single):
        try:
            return _pep440_range(text)
        except ValueError:
            if _is_pep440(text):
                raise
    try:
        return _npm_range(text)
    except ValueError:
        if not single:
            raise
        # A single PEP 440 comparison (>=2.0b1, <1.0.post2) has no comma to tell it apart.
        try:
            return _pep440_range(text if text[0] in "<>=!~" else f"=={text}")
        except ValueError:
            pass
        raise


def _npm_range(text: str) -> VersionRange:
    import nodesemver

    try:
        return VersionRange(text, "npm", npm=nodesemver.make_range(text, loose=False))
    except ValueError as error:
        match = _INVALID_COMPARATOR.search(str(error))
        comparator = match.group("comparator") if match else text
        raise ValueError(f"{quote(_NPM_OPERATOR.sub('', comparator))} is not a version") from None


def _pep440_range(text: str) -> VersionRange:
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise ValueError(f"{quote(text)} has an empty specifier between commas")
    for part in parts:
        if _COMPATIBLE_ONE_NUMBER.match(part.strip()):
            raise ValueError(f"{quote(part.strip())} needs at least two release numbers (e.g. ~=1.4)")
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return VersionRange(text, "pep440", pep440=(SpecifierSet(text),))
    except InvalidSpecifier:
        raise ValueError(f"{quote(text)} is not a PEP 440 specifier list") from None


def version_in_range(version: str, range_text: str, prefer: Syntax = "npm") -> bool:
    """Whether ``version`` falls in ``range_text`` (an npm range or a PEP 440 specifier list).
    A version or a range that can't be parsed never matches."""
    try:
        return parse_range(range_text, prefer).contains(version)
    except ValueError:
        return False


def syntax_for(ecosystem: str | None) -> Syntax:
    """How a spec's range reads by its ecosystem prefix: ``pip:`` PEP 440 first, ``gem:``
    RubyGems', ``maven:`` and ``gradle:`` Maven's, anything else npm's."""
    named = Ecosystem.named(ecosystem)
    packages = named.packages if named is not None else None
    if packages is Ecosystem.PIP:
        return "pep440"
    if packages is Ecosystem.GEM:
        return "gem"
    if packages in (Ecosystem.MAVEN, Ecosystem.GRADLE):
        return "maven"
    return "npm"


_GEM_VERSION = r"[0-9]+(?:\.[0-9a-zA-Z]+)*"
_GEM_PART = re.compile(rf"\s*(?P<op>~>|>=|<=|!=|=|>|<)?\s*(?P<version>{_GEM_VERSION})\s*")
_GEM_OPERATORS = {"=": "==", "!=": "!=", ">": ">", "<": "<", ">=": ">=", "<=": "<="}


def gem_requirement(text: str) -> str:
    """A RubyGems requirement (``~> 1.2``, ``>= 1.0, < 2``, ``= 1.4.2``, ``1.4.2``) as PEP 440
    specifiers: ``~> 1.2`` is ``>=1.2,<2``, ``~> 1.2.3`` is ``>=1.2.3,<1.3``, ``~> 1`` is
    ``>=1,<2``; a bare version is exact. ValueError if ``text`` is not one."""
    specifiers: list[str] = []
    for part in text.split(","):
        match = _GEM_PART.fullmatch(part)
        if match is None:
            raise ValueError(f"{quote(part.strip())} is not a RubyGems requirement (e.g. ~> 1.2, >= 1.0)")
        operator, version = match.group("op") or "=", match.group("version")
        if operator != "~>":
            specifiers.append(f"{_GEM_OPERATORS[operator]}{version}")
            continue
        release = [int(segment) for segment in _release(version)]
        if len(release) > 1:
            release.pop()
        release[-1] += 1
        specifiers += [f">={version}", f"<{'.'.join(map(str, release))}"]
    return ",".join(specifiers)


def _release(version: str) -> list[str]:
    """The numeric segments before the first that isn't (``1.2.a`` -> ``1``, ``2``)."""
    segments: list[str] = []
    for segment in version.split("."):
        if not segment.isdigit():
            break
        segments.append(segment)
    return segments


_MAVEN_VERSION = r"[0-9A-Za-z][0-9A-Za-z.+_-]*"
_MAVEN_SET = re.compile(
    rf"\s*(?P<open>[\[(])\s*(?P<low>{_MAVEN_VERSION})?\s*(?P<comma>,)?"
    rf"\s*(?P<high>{_MAVEN_VERSION})?\s*(?P<close>[\])])\s*"
)


def maven_range(text: str) -> str:
    """A Maven version range as PEP 440 specifiers, alternatives joined by `` || ``:
    ``[1.0,2.0)`` is ``>=1.0,<2.0``, ``(,1.0]`` is ``<=1.0``, ``[1.2]`` and a bare ``1.2`` are
    ``==1.2``, ``(,1.0],[1.2,)`` is ``<=1.0 || >=1.2``. ValueError if ``text`` is not one."""
    text = text.strip()
    if re.fullmatch(_MAVEN_VERSION, text):
        return f"=={text}"
    alternatives: list[str] = []
    rest = text
    while rest:
        match = _MAVEN_SET.match(rest)
        if match is None:
            raise ValueError(f"{quote(text)} is not a Maven version range (e.g. [1.0,2.0), (,1.0], [1.2])")
        alternatives.append(_maven_set(match, text))
        rest = rest[match.end() :]
        if rest and not rest.startswith(","):
            raise ValueError(f"{quote(text)}: expected a comma between Maven ranges")
        rest = rest[1:]
        if not rest and text.endswith(","):
            raise ValueError(f"{quote(text)} ends with a comma; expected another range after it")
    return " || ".join(alternatives)


def _maven_set(match: re.Match[str], text: str) -> str:
    low, high = match.group("low"), match.group("high")
    inclusive_low, inclusive_high = match.group("open") == "[", match.group("close") == "]"
    if match.group("comma") is None:
        if not (inclusive_low and inclusive_high and low):
            raise ValueError(f"{quote(text)}: a single version needs square brackets ([1.2]); expected [1.2] or [1.2,)")
        return f"=={low}"
    if low is None and high is None:
        raise ValueError(f"{quote(text)}: a range needs a lower or an upper bound")
    if (low is None and inclusive_low) or (high is None and inclusive_high):
        raise ValueError(f"{quote(text)}: an open end takes a parenthesis: (,1.0] or [1.0,)")
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if inclusive_low else '>'}{low}")
    if high is not None:
        bounds.append(f"{'<=' if inclusive_high else '<'}{high}")
    if low is not None and high is not None and _ordered(high, low):
        raise ValueError(f"{quote(text)}: the lower bound is above the upper bound")
    return ",".join(bounds)


def _ordered(smaller: str, larger: str) -> bool:
    """Whether ``smaller`` < ``larger``, where both are versions PEP 440 reads."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(smaller) < Version(larger)
    except InvalidVersion:
        return False
