"""Version ranges in a policy: npm's semver ranges and PEP 440 specifier lists.

A policy names packages with an optional range (``esbuild@^0.19``, ``pip:cryptography@>=41,<43``).
The range's syntax decides how it reads: a comma or one of ``==``, ``!=``, ``~=``, ``===`` makes
it a PEP 440 specifier list, anything else is an npm range. Versions are parsed leniently
(semver, PEP 440, or dotted numbers) because the same range may be written for any ecosystem;
a version that can't be parsed never matches.

Written here rather than taken from ``packaging`` or a semver library: the policy loader must not
depend on what the build under watch happens to have installed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["Version", "VersionRange", "parse_range", "parse_version", "version_in_range"]

#: One pre-release identifier as it compares: numbers before words, numbers by value.
_IdentifierKey = tuple[int, int, str]


def _identifier(part: str) -> int | str:
    return int(part) if part.isdigit() else part.lower()


def _identifier_key(part: int | str) -> _IdentifierKey:
    return (0, part, "") if isinstance(part, int) else (1, 0, part)


@dataclass(frozen=True, eq=False)
class Version:
    """A parsed version. ``pre`` holds semver pre-release identifiers (``1.0.0-rc.1`` ->
    ``("rc", 1)``) or PEP 440's normalised ones (``1.0rc1`` -> ``("rc", 1)``); ``post`` and
    ``dev`` only come from PEP 440."""

    release: tuple[int, ...]
    pre: tuple[int | str, ...] | None = None
    post: int | None = None
    dev: int | None = None
    epoch: int = 0
    local: str | None = None

    @property
    def is_prerelease(self) -> bool:
        return self.pre is not None or self.dev is not None

    @property
    def base(self) -> tuple[int, ...]:
        """The release without trailing zeros: ``1.2.0`` and ``1.2`` are the same release."""
        release = list(self.release)
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        return tuple(release)

    def key(self) -> tuple[object, ...]:
        # PEP 440's order, which semver's agrees with where both apply: dev < pre < final < post.
        if self.pre is None and self.post is None and self.dev is not None:
            pre: tuple[object, ...] = (0,)
        elif self.pre is None:
            pre = (2,)
        else:
            pre = (1, tuple(_identifier_key(part) for part in self.pre))
        post = (0,) if self.post is None else (1, self.post)
        dev = (1,) if self.dev is None else (0, self.dev)
        return (self.epoch, self.base, pre, post, dev)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: Version) -> bool:
        return self.key() > other.key()

    def __ge__(self, other: Version) -> bool:
        return self.key() >= other.key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


_SEMVER = re.compile(
    r"^v?(?P<release>\d+(?:\.\d+)*)(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-.]+)?$",
    re.IGNORECASE,
)
# PEP 440's appendix B, in its permissive form (any spelling that normalises to a valid version).
_PEP440 = re.compile(
    r"""^v?
    (?:(?P<epoch>\d+)!)?
    (?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>\d+)?)?
    (?:-(?P<post_n1>\d+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>\d+)?)?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>\d+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    $""",
    re.IGNORECASE | re.VERBOSE,
)
_PRE_LETTERS = {"alpha": "a", "a": "a", "beta": "b", "b": "b", "preview": "rc", "pre": "rc", "c": "rc", "rc": "rc"}


def _parse_semver(text: str) -> Version | None:
    match = _SEMVER.match(text)
    if match is None:
        return None
    release = tuple(int(part) for part in match["release"].split("."))
    pre = tuple(_identifier(part) for part in match["pre"].split(".")) if match["pre"] else None
    return Version(release, pre)


def _parse_pep440(text: str) -> Version | None:
    match = _PEP440.match(text)
    if match is None:
        return None
    release = tuple(int(part) for part in match["release"].split("."))
    pre: tuple[int | str, ...] | None = None
    if match["pre_l"]:
        pre = (_PRE_LETTERS[match["pre_l"].lower()], int(match["pre_n"] or 0))
    post = None
    if match["post_n1"] is not None:
        post = int(match["post_n1"])
    elif match["post_l"]:
        post = int(match["post_n2"] or 0)
    dev = int(match["dev_n"] or 0) if match["dev_l"] else None
    epoch = int(match["epoch"] or 0)
    local = match["local"].lower() if match["local"] else None
    return Version(release, pre, post, dev, epoch, local)


def parse_version(text: str, prefer: str = "npm") -> Version | None:
    """The version ``text`` names, or None. ``prefer`` (``npm`` or ``pep440``) decides which
    grammar reads it first where both could (``1.0-1`` is a pre-release in semver, a
    post-release in PEP 440)."""
    text = text.strip()
    readers = (_parse_semver, _parse_pep440) if prefer == "npm" else (_parse_pep440, _parse_semver)
    for read in readers:
        version = read(text)
        if version is not None:
            return version
    return None


# --- npm ranges -------------------------------------------------------------------------------

_LOWEST_PRE: tuple[int | str, ...] = (0,)
"""``-0``: the lowest pre-release of a release, so ``<2.0.0-0`` excludes 2.0.0's pre-releases."""


@dataclass(frozen=True)
class _Comparator:
    op: str  # one of < <= > >= =
    version: Version
    bound: bool = False
    """Made by desugaring (``^1.2`` -> ``<2.0.0-0``), not written; it names no pre-release."""

    def test(self, version: Version) -> bool:
        match self.op:
            case "<":
                return version < self.version
            case "<=":
                return version <= self.version
            case ">":
                return version > self.version
            case ">=":
                return version >= self.version
            case _:
                return version == self.version


_NPM_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-.]+)?$"
)
_NPM_COMPARATOR = re.compile(r"^(?P<op><=|>=|<|>|=|\^|~>|~)?(?P<version>.*)$")


@dataclass(frozen=True)
class _Partial:
    """``1``, ``1.2``, ``1.2.x``, ``1.2.3-beta.1``: the parts given, None for a missing or x part."""

    parts: tuple[int | None, int | None, int | None]
    pre: tuple[int | str, ...] | None

    @property
    def given(self) -> int:
        """How many leading parts are numbers."""
        count = 0
        for part in self.parts:
            if part is None:
                break
            count += 1
        return count

    def version(self, pre: tuple[int | str, ...] | None = None) -> Version:
        major, minor, patch = (part or 0 for part in self.parts)
        return Version((major, minor, patch), pre)


def _npm_partial(text: str) -> _Partial:
    match = _NPM_PARTIAL.match(text)
    if match is None:
        raise ValueError(f'"{text}" is not a version')
    parts: list[int | None] = []
    wildcard = False
    for name in ("major", "minor", "patch"):
        value = match[name]
        if value is None or value in ("x", "X", "*") or wildcard:
            wildcard = True
            parts.append(None)
        else:
            parts.append(int(value))
    pre = tuple(_identifier(part) for part in match["pre"].split(".")) if match["pre"] else None
    if pre is not None and None in parts:
        raise ValueError(f'"{text}": a pre-release needs a full version (major.minor.patch)')
    return _Partial((parts[0], parts[1], parts[2]), pre)


def _bump(partial: _Partial, index: int) -> Version:
    """The first version after every version that shares ``partial``'s parts up to ``index``,
    as the lowest pre-release of it: bumping ``1.2`` at 1 gives ``1.3.0-0``."""
    numbers = [part or 0 for part in partial.parts]
    numbers[index] += 1
    for later in range(index + 1, 3):
        numbers[later] = 0
    return Version((numbers[0], numbers[1], numbers[2]), _LOWEST_PRE)


def _npm_comparators(op: str, partial: _Partial) -> list[_Comparator]:
    given = partial.given
    if given == 0:  # *, x, ^*, >=*: any version (> * and < * match none)
        if op in ("<", ">"):
            return [_Comparator("<", Version((0, 0, 0), _LOWEST_PRE), bound=True)]
        return []
    low = partial.version(partial.pre)
    if op in ("", "="):
        if given == 3:
            return [_Comparator("=", low)]
        return [_Comparator(">=", low), _Comparator("<", _bump(partial, given - 1), bound=True)]
    if op in ("~", "~>"):
        return [_Comparator(">=", low), _Comparator("<", _bump(partial, min(given - 1, 1)), bound=True)]
    if op == "^":
        major, minor, _patch = partial.parts
        if major != 0 or given == 1:
            upper = _bump(partial, 0)
        elif minor != 0 or given == 2:
            upper = _bump(partial, 1)
        else:
            upper = _bump(partial, 2)
        return [_Comparator(">=", low), _Comparator("<", upper, bound=True)]
    if given == 3:
        return [_Comparator(op, low)]
    # A partial version in an ordered comparison stands for the whole of its release line.
    match op:
        case ">":
            return [_Comparator(">=", _bump(partial, given - 1), bound=True)]
        case ">=":
            return [_Comparator(">=", low)]
        case "<":
            return [_Comparator("<", partial.version(_LOWEST_PRE), bound=True)]
        case _:  # <=
            return [_Comparator("<", _bump(partial, given - 1), bound=True)]


def _hyphen_range(low_text: str, high_text: str) -> list[_Comparator]:
    low, high = _npm_partial(low_text), _npm_partial(high_text)
    comparators = [] if low.given == 0 else [_Comparator(">=", low.version(low.pre))]
    if high.given == 3:
        comparators.append(_Comparator("<=", high.version(high.pre)))
    elif high.given > 0:
        comparators.append(_Comparator("<", _bump(high, high.given - 1), bound=True))
    return comparators


def _npm_set(text: str) -> list[_Comparator]:
    text = re.sub(r"(<=|>=|<|>|=|\^|~>|~)\s+", r"\1", text.strip())
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        return _hyphen_range(hyphen[1], hyphen[2])
    comparators: list[_Comparator] = []
    for token in text.split():
        found = _NPM_COMPARATOR.match(token)
        assert found is not None  # the pattern matches any text
        if not found["version"]:
            raise ValueError(f'"{token}" has no version after its operator')
        comparators.extend(_npm_comparators(found["op"] or "", _npm_partial(found["version"])))
    return comparators


def _npm_test(comparators: tuple[_Comparator, ...], version: Version) -> bool:
    if not all(comparator.test(version) for comparator in comparators):
        return False
    if version.pre is None:
        return True
    # npm lets a pre-release in only where the range names a pre-release of the same release.
    return any(c.version.pre is not None and not c.bound and c.version.base == version.base for c in comparators)


# --- PEP 440 specifiers -----------------------------------------------------------------------

_PEP440_SPECIFIER = re.compile(r"^(?P<op>===|==|!=|~=|<=|>=|<|>)\s*(?P<version>\S+)$")


@dataclass(frozen=True)
class _Specifier:
    """One PEP 440 specifier: ``>=1.2``, ``==1.*``, ``~=1.4.5``, ``===weird-1``."""

    op: str
    text: str
    version: Version | None
    """None for ``===`` (a text comparison)."""
    prefix: tuple[int, ...] | None = None
    """For ``==X.*`` and ``!=X.*``: the release numbers before the ``.*``."""

    @property
    def names_prerelease(self) -> bool:
        return self.version is not None and self.version.is_prerelease

    def test(self, text: str, version: Version | None) -> bool:
        if self.op == "===":
            return text.strip().lower() == self.text.lower()
        spec = self.version
        if version is None or spec is None:
            return False
        if self.prefix is not None:
            width = len(self.prefix)
            release = version.release + (0,) * max(0, width - len(version.release))
            inside = version.epoch == spec.epoch and release[:width] == self.prefix
            return inside if self.op == "==" else not inside
        same_release = version.epoch == spec.epoch and version.base == spec.base
        if spec.local is None and version.local is not None:
            # A specifier without a local label compares the candidate's public version.
            version = Version(version.release, version.pre, version.post, version.dev, version.epoch)
        match self.op:
            case "==":
                return version == spec and version.local == spec.local
            case "!=":
                return not (version == spec and version.local == spec.local)
            case "~=":
                width = len(spec.release) - 1
                release = version.release + (0,) * max(0, width - len(version.release))
                return version >= spec and version.epoch == spec.epoch and release[:width] == spec.release[:width]
            case "<=":
                return version <= spec
            case ">=":
                return version >= spec
            case "<":
                # <V doesn't let in V's own pre-releases unless V is one.
                return version < spec and (spec.is_prerelease or not (version.is_prerelease and same_release))
            case _:  # >
                # >V doesn't let in V's post-releases unless V is one.
                return version > spec and (spec.post is not None or version.post is None or not same_release)


def _pep440_specifier(text: str) -> _Specifier:
    found = _PEP440_SPECIFIER.match(text)
    if found is None:
        raise ValueError(f'"{text}" is not a version specifier; expected ==, !=, ~=, <=, >=, <, > or === and a version')
    op, version_text = found["op"], found["version"]
    if op == "===":
        return _Specifier(op, version_text, None)
    if op in ("==", "!=") and version_text.endswith(".*"):
        prefix = _parse_pep440(version_text[:-2])
        if prefix is None or prefix.pre or prefix.post is not None or prefix.dev is not None or prefix.local:
            raise ValueError(f'"{version_text}" is not a version prefix (e.g. 1.4.*)')
        return _Specifier(op, version_text, prefix, prefix.release)
    spec = _parse_pep440(version_text)
    if spec is None:
        raise ValueError(f'"{version_text}" is not a PEP 440 version')
    if spec.local is not None and op not in ("==", "!="):
        raise ValueError(f'"{text}": a local version label (+...) is only allowed with == and !=')
    if op == "~=" and len(spec.release) < 2:
        raise ValueError(f'"{text}" needs at least two release numbers (e.g. ~=1.4)')
    return _Specifier(op, version_text, spec)


# --- ranges -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRange:
    """A parsed range; ``contains`` tells whether a version falls in it."""

    text: str
    syntax: str
    """``npm`` or ``pep440``."""
    npm_sets: tuple[tuple[_Comparator, ...], ...] = ()
    """npm: alternatives (``||``), each a set of comparators that must all hold."""
    specifiers: tuple[_Specifier, ...] = ()
    """PEP 440: specifiers that must all hold."""

    def contains(self, version_text: str) -> bool:
        version = parse_version(version_text, prefer=self.syntax)
        if self.syntax == "npm":
            return version is not None and any(_npm_test(comparators, version) for comparators in self.npm_sets)
        # As pip does: a pre-release is only in a range that names one.
        if version is not None and version.is_prerelease and not any(s.names_prerelease for s in self.specifiers):
            return False
        return all(specifier.test(version_text, version) for specifier in self.specifiers)


def _is_pep440(text: str) -> bool:
    return "," in text or any(op in text for op in ("==", "!=", "~="))


@functools.lru_cache(maxsize=512)
def parse_range(range_text: str) -> VersionRange:
    """The range ``range_text`` describes; ValueError saying what is wrong when it is not one."""
    text = range_text.strip()
    if not text:
        raise ValueError("the version range is empty")
    if _is_pep440(text):
        return _pep440_range(text)
    try:
        return VersionRange(text, "npm", npm_sets=tuple(tuple(_npm_set(part)) for part in text.split("||")))
    except ValueError:
        # A single PEP 440 comparison (>=2.0b1, <1.0.post2) has no comma to tell it apart.
        if "||" in text or " " in text:
            raise
        try:
            return _pep440_range(text if text[0] in "<>=!~" else f"=={text}")
        except ValueError:
            pass
        raise


def _pep440_range(text: str) -> VersionRange:
    specifiers = []
    for part in text.split(","):
        if not part.strip():
            raise ValueError(f'"{text}" has an empty specifier between commas')
        specifiers.append(_pep440_specifier(part.strip()))
    return VersionRange(text, "pep440", specifiers=tuple(specifiers))


def version_in_range(version: str, range_text: str) -> bool:
    """Whether ``version`` falls in ``range_text`` (an npm range or a PEP 440 specifier list).
    A version or a range that can't be parsed never matches."""
    try:
        return parse_range(range_text).contains(version)
    except ValueError:
        return False
