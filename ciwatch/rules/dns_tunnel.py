"""dns-tunnel: data carried in DNS names: many long or high-entropy labels under one zone."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from ciwatch.analysis.network import ContactKind
from ciwatch.analysis.tree import ProcessNode
from ciwatch.policy.model import Severity
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="dns-tunnel",
    summary="Data sent out in DNS names (long or random-looking labels under one zone)",
    default_severity=Severity.HIGH,
    hint="Legitimate builds look up a handful of fixed names; encoded labels are exfiltration. Block the zone.",
)

_ENCODED = re.compile(r"^(?:[0-9a-f]{16,}|[a-z2-7]{20,}=*|[A-Za-z0-9+/_-]{24,}=*)$", re.IGNORECASE)
_HEX = re.compile(r"[0-9a-f]+", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+[0-9]*|[0-9]+|[a-z0-9]{1,3}")
_TWO_LEVEL_SUFFIXES = frozenset({"co", "com", "net", "org", "gov", "ac", "edu"})
#: Distinct data-carrying names under one zone that make a finding.
_MIN_NAMES = 3


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _is_data_part(part: str) -> bool:
    if _HEX.fullmatch(part):
        return len(part) >= 16
    if _WORD.fullmatch(part.lower()):
        return False  # letters with at most a number after them: productionresultssa12, west1, k8s
    if len(part) >= 40:
        return True
    if len(part) < 12:
        return False
    return bool(_ENCODED.match(part)) or (len(part) >= 16 and entropy(part) >= 3.6)


def is_data_label(label: str) -> bool:
    """Whether a label carries data. Judged part by part between hyphens: names that people give
    (``my-company-artifacts-prod``, ``us-central1-docker``) are words, and the random parts of
    cloud names are short identifiers (``hello-2ldgwxzwxa-uc``, ``app-5f7d8b9c6-x2k4p``), while
    encoded data (hex, base32, base64) comes in long runs with its digits mixed among the letters.
    A long label cut into short runs that aren't words is data too (``a8f3k2j9x1-q7w2e4r6t8-...``)."""
    parts = [part for part in label.split("-") if part]
    if any(_is_data_part(part) for part in parts):
        return True
    return len(label) >= 40 and not all(_WORD.fullmatch(part.lower()) for part in parts)


def zone_of(name: str) -> str:
    labels = name.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _TWO_LEVEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


class DnsTunnel:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        by_zone: dict[str, dict[str, int]] = {}
        nodes: dict[str, ProcessNode | None] = {}
        for contact in context.contacts:
            if contact.kind is not ContactKind.DNS:
                continue
            name = contact.host.lower().rstrip(".")
            zone = zone_of(name)
            subdomain = name[: -len(zone)].rstrip(".")
            if not subdomain:
                continue
            if any(is_data_label(label) for label in subdomain.split(".")) or len(name) >= 100:
                by_zone.setdefault(zone, {}).setdefault(name, contact.seq)
                nodes.setdefault(zone, contact.node)
        for zone, names in by_zone.items():
            longest = max((len(n) for n in names), default=0)
            if len(names) < _MIN_NAMES and longest < 100:
                continue
            example = max(names, key=len)
            message = f"{len(names)} data-like DNS names under {zone} (e.g. {example[:80]})"
            yield context.finding(INFO, message, nodes[zone], names.values(), host=zone)
