"""RubyGems requirements and Maven version ranges in ``gem:`` / ``maven:`` package specs, read by
translating them to PEP 440 comparators."""

from __future__ import annotations

import pytest

from ciwatch.policy.model import PackageSpec
from ciwatch.policy.values import parse_package
from ciwatch.policy.versions import gem_requirement, maven_range, parse_range, syntax_for, version_in_range


@pytest.mark.parametrize(
    ("requirement", "comparators"),
    [
        ("~> 1.2", ">=1.2,<2"),
        ("~>1.2", ">=1.2,<2"),
        ("~> 1.2.3", ">=1.2.3,<1.3"),
        ("~> 1.2.3.4", ">=1.2.3.4,<1.2.4"),
        ("~> 1", ">=1,<2"),
        ("~> 0.19", ">=0.19,<1"),
        ("~> 1.2.a", ">=1.2.a,<2"),  # a pre-release segment ends the release part, as Gem::Version#bump does
        ("1.4.2", "==1.4.2"),
        ("= 1.4.2", "==1.4.2"),
        ("!= 1.3", "!=1.3"),
        (">= 1.0, < 2", ">=1.0,<2"),
        ("~> 1.2, >= 1.2.5", ">=1.2,<2,>=1.2.5"),
        ("<= 3", "<=3"),
        ("> 0.9", ">0.9"),
    ],
)
def test_gem_requirement(requirement: str, comparators: str) -> None:
    assert gem_requirement(requirement) == comparators


@pytest.mark.parametrize("requirement", ["", "~>", ">= ", "~> 1.2,", "=> 1.0", "^1.2", "1.2 - 1.4", "~> 1.2 || ~> 2"])
def test_what_is_not_a_gem_requirement(requirement: str) -> None:
    with pytest.raises(ValueError, match="is not a RubyGems requirement"):
        gem_requirement(requirement)


@pytest.mark.parametrize(
    ("notation", "comparators"),
    [
        ("[1.0,2.0)", ">=1.0,<2.0"),
        ("[1.0,2.0]", ">=1.0,<=2.0"),
        ("(1.0,2.0)", ">1.0,<2.0"),
        ("(1.0,2.0]", ">1.0,<=2.0"),
        ("(,1.0]", "<=1.0"),
        ("(,1.0)", "<1.0"),
        ("[1.5,)", ">=1.5"),
        ("(1.5,)", ">1.5"),
        ("[1.2]", "==1.2"),
        ("1.2", "==1.2"),  # Maven's "soft" requirement: a policy means that version
        (" [ 1.0 , 2.0 ) ", ">=1.0,<2.0"),
        ("(,1.0],[1.2,)", "<=1.0 || >=1.2"),
        ("[1.0,1.5),[2.0],(3.0,)", ">=1.0,<1.5 || ==2.0 || >3.0"),
    ],
)
def test_maven_range(notation: str, comparators: str) -> None:
    assert maven_range(notation) == comparators


@pytest.mark.parametrize(
    ("notation", "says"),
    [
        ("[1.0,2.0", "is not a Maven version range"),
        ("1.0,2.0)", "is not a Maven version range"),
        ("[1.0)", "a single version needs square brackets"),
        ("(1.0)", "a single version needs square brackets"),
        ("(,)", "needs a lower or an upper bound"),
        ("[,1.0]", "an open end takes a parenthesis"),
        ("[1.0,)x", "expected a comma between Maven ranges"),
        ("[1.0,),", "ends with a comma"),
        ("[2.0,1.0]", "the lower bound is above the upper bound"),
        ("[1.0,2.0,3.0]", "is not a Maven version range"),
    ],
)
def test_what_is_not_a_maven_range(notation: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        maven_range(notation)


@pytest.mark.parametrize(
    ("version", "requirement", "inside"),
    [
        ("1.2", "~> 1.2", True),
        ("1.9.9", "~> 1.2", True),
        ("2.0", "~> 1.2", False),
        ("1.1.9", "~> 1.2", False),
        ("1.2.3", "~> 1.2.3", True),
        ("1.2.99", "~> 1.2.3", True),
        ("1.3.0", "~> 1.2.3", False),
        ("1.16.0.1", "~> 1.16.0", True),  # four-part gem versions
        ("1.4.2.0", "1.4.2", True),  # 1.4.2 is 1.4.2.0, as in RubyGems
        ("2.0.0.rc1", "~> 1.2", False),
        ("1.5", ">= 1.0, < 2", True),
    ],
)
def test_gem_ranges_match_as_rubygems_reads_them(version: str, requirement: str, inside: bool) -> None:
    assert version_in_range(version, requirement, "gem") is inside


@pytest.mark.parametrize(
    ("version", "notation", "inside"),
    [
        ("1.0", "[1.0,2.0)", True),
        ("1.9.9", "[1.0,2.0)", True),
        ("2.0", "[1.0,2.0)", False),
        ("2.0.0", "[1.0,2.0)", False),
        ("0.9", "(,1.0]", True),
        ("1.0", "(,1.0]", True),
        ("1.0.1", "(,1.0]", False),
        ("1.1", "(,1.0],[1.2,)", False),
        ("1.5", "(,1.0],[1.2,)", True),
        ("1.2.0", "[1.2]", True),
        ("1.2.1", "[1.2]", False),
        ("2.0", "2.0", True),
        ("2.1", "2.0", False),
        ("1.0-SNAPSHOT", "[1.0,2.0)", False),  # a version ciwatch can't read never matches
    ],
)
def test_maven_ranges_match(version: str, notation: str, inside: bool) -> None:
    assert version_in_range(version, notation, "maven") is inside


def test_the_ecosystem_prefix_picks_the_reading() -> None:
    assert [syntax_for(name) for name in ("pip", "uv", "gem", "maven", "gradle", "npm", "cargo", None)] == [
        "pep440",
        "pep440",
        "gem",
        "maven",
        "maven",
        "npm",
        "npm",
        "npm",
    ]
    # npm reads "~>" as its tilde (~1.2: <1.3); RubyGems' pessimistic operator allows up to 2.
    assert PackageSpec.parse("gem:nokogiri@~> 1.2").matches("gem", "nokogiri", "1.16.0")
    assert not PackageSpec.parse("nokogiri@~> 1.2").matches("gem", "nokogiri", "1.16.0")
    assert PackageSpec.parse("maven:org.example:lib@[1.0,2.0)").matches("maven", "org.example:lib", "1.5")
    assert PackageSpec.parse("gradle:org.example:lib@(,1.0]").matches("gradle", "org.example:lib", "1.0")


def test_other_ranges_still_read_as_before_in_those_specs() -> None:
    assert parse_range("^1.2", "gem").syntax == "npm"
    assert parse_range("1.x", "maven").syntax == "npm"
    assert parse_range("~> 1.2", "gem").syntax == "gem"
    assert parse_range("[1.0,2.0)", "maven").syntax == "maven"
    assert version_in_range("1.9.0", "^1.2", "gem")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("maven:org.example:lib@[1.0,2.0", "is not a Maven version range"),
        ("maven:org.example:lib@[2.0,1.0]", "the lower bound is above the upper bound"),
        ("gem:rails@~> banana", "is not a RubyGems requirement"),
    ],
)
def test_a_policy_says_what_is_wrong_with_them(spec: str, says: str) -> None:
    found, wrong = parse_package(spec)
    assert found is None and wrong is not None
    assert says in wrong
    assert ("Maven range" if spec.startswith("maven") else "RubyGems requirement") in wrong.rsplit(";", 1)[1]
