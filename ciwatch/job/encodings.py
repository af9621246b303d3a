"""The spellings of a secret that a build could write instead of the secret itself.

A build that wants a token out of the job rarely writes it as is: it URL-encodes it into a
query, base64s it into a header or a file name, hexes or base32s it into DNS labels. The
scrubber looks for every such spelling of each secret value in a *normalised* view of each
string: lower-cased (DNS is case-insensitive, so an attacker may mix cases at will),
percent-escapes decoded (so any mix of escaped and plain characters, upper or lower case hex,
is one spelling) and dots removed (so a value split across DNS labels, or a file name, joins
up again). The needles are normalised the same way, once per run.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from typing import Any

try:
    import ahocorasick
except ImportError:  # pragma: no cover - a dependency; the regex below is the slow fallback
    ahocorasick = None

__all__ = ["AnyOf", "needles", "normalise", "normalised_with_positions", "probe_view"]

#: Shorter spellings occur by chance too often (the stable inner part of a short secret's
#: base64 is a few characters) to be worth redacting.
MIN_NEEDLE_LENGTH = 6

_PERCENT = re.compile(r"%([0-9a-fA-F]{2})")
#: One unit of the source string in the normalised view: an escape, a dot, or one character.
_UNIT = re.compile(r"%[0-9a-fA-F]{2}|.", re.DOTALL)
#: Left out of the normalised view: the dots between DNS labels, the line breaks of wrapped base64.
_IGNORED = frozenset(".\n\r")


def _stable(encode: Callable[[bytes], bytes], bits: int, group: int, raw: bytes) -> Iterable[str]:
    """For each alignment of ``raw`` in a stream that ``encode`` turns into ``bits``-bit
    characters (``group`` input bytes per output group), the characters determined by
    ``raw`` alone: those of its own bits, whatever bytes come before and after it."""
    for offset in range(group):
        text = encode(b"\0" * offset + raw).decode("ascii").rstrip("=")
        start = -(-8 * offset // bits)  # the first character with none of the preceding bytes' bits
        end = 8 * (offset + len(raw)) // bits  # the last whole character before the next bytes' bits
        yield text[start:end]


def _spellings(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogateescape")
    texts = {secret, raw.decode("latin-1")}  # latin-1: how a decoded %C3%A9 reads
    forms = texts | {text.replace(" ", "+") for text in texts} | {raw.hex()}  # + : a form's space
    for text in _stable(base64.b64encode, 6, 3, raw):
        forms.add(text)
        forms.add(text.translate(str.maketrans("+/", "-_")))  # the URL-safe alphabet
    forms.update(_stable(base64.b32encode, 5, 5, raw))
    forms.update(_stable(base64.b32hexencode, 5, 5, raw))
    # A base64 spelling may itself be percent-escaped in a URL (+ / =): normalising decodes it.
    return forms


def probe_view(text: str) -> str:
    """``normalise`` without decoding percent-escapes: the cheap view every string gets."""
    text = text.lower()
    if "." in text:
        text = text.replace(".", "")
    return _unwrapped(text)


def normalise(text: str) -> str:
    """The view the needles are looked for in: lower case, percent-escapes decoded, no dots and
    no line breaks."""
    text = text.lower()
    if "%" in text:
        text = _PERCENT.sub(lambda match: chr(int(match[1], 16)), text).lower()
    if "." in text:
        text = text.replace(".", "")
    return _unwrapped(text)


def _unwrapped(text: str) -> str:
    """Without line breaks: base64 tools wrap their output (76 characters a line for MIME)."""
    return text.replace("\n", "").replace("\r", "") if "\n" in text or "\r" in text else text


def needles(secrets: Iterable[str]) -> list[str]:
    """Every spelling of each secret, normalised, longest first (so that an alternation of
    them redacts the longest spelling where two overlap)."""
    found: set[str] = set()
    for secret in secrets:
        for form in _spellings(secret):
            needle = normalise(form)
            if len(needle) >= MIN_NEEDLE_LENGTH:
                found.add(needle)
    return sorted(found, key=lambda needle: (-len(needle), needle))


def normalised_with_positions(text: str, *, decode: bool) -> tuple[str, list[int], list[int]]:
    """``normalise(text)`` (percent-escapes decoded only when ``decode``) with, for each of its
    characters, where it starts and ends in ``text``: a match in the view maps back to the
    span of ``text`` to redact. Only called for a string that holds a needle (rare)."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pieces = [unit.group(0) for unit in _UNIT.finditer(text)] if decode else list(text)
    position = 0
    for piece in pieces:
        char = chr(int(piece[1:], 16)) if len(piece) == 3 else piece
        for lowered in char.lower():
            if lowered not in _IGNORED:
                out.append(lowered)
                starts.append(position)
                ends.append(position + len(piece))
        position += len(piece)
    return "".join(out), starts, ends


class AnyOf:
    """Whether a string contains any of many fixed words, in one pass. Aho-Corasick (C, from
    pyahocorasick) where installed: on a 70-character path with the spellings of three secrets
    and the token prefixes (~80 words), Python's regex alternation took 8-20 µs (its engine
    tries each branch at each position), the automaton a tenth of that."""

    def __init__(self, words: Iterable[str]) -> None:
        unique = sorted(set(words))
        self._regex: re.Pattern[str] | None = None
        self._automaton: Any = None
        if ahocorasick is not None and unique:
            automaton = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)
            for word in unique:
                automaton.add_word(word)
            automaton.make_automaton()
            self._automaton = automaton
        elif unique:
            self._regex = re.compile("|".join(map(re.escape, unique)))

    def found(self, text: str) -> bool:
        if self._automaton is not None:
            return next(self._automaton.iter(text), None) is not None
        return self._regex is not None and self._regex.search(text) is not None
