"""Keeping secrets out of the record.

A record is uploaded as a CI artifact, which CI systems don't mask. Before an event is
written, every string in it (argv, paths, URLs, attribution values) loses the values of the
job's secret-looking environment variables, in every common spelling (``ciwatch.job.encodings``:
URL-encoded, base64, base32, hex, split across DNS labels), and anything shaped like a
well-known token.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from ciwatch.fields import field_names, field_values
from ciwatch.job.encodings import AnyOf, needles, normalise, normalised_with_positions, probe_view

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|PRIVATE|_KEY$|^KEY_|_KEY_|APIKEY|API_KEY|AUTH|COOKIE|SESSION|_PAT$|^PAT_|DSN$",
    re.IGNORECASE,
)
#: Values shorter than this are too likely to occur by chance (``true``, ``1``, ``npm``).
_MIN_SECRET_LENGTH = 6

_TOKEN_PATTERNS = [
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"gl(?:pat|dt|rt|ptt|ft|cbt|oas|soat|agent)-[A-Za-z0-9_\-]{20,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"xox[abposr]-[A-Za-z0-9-]{10,}",
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-AgE[A-Za-z0-9_\-]{50,}",
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]*-----END [A-Z ]*PRIVATE KEY-----",
]
#: user:password@ in a URL keeps the user and loses the password.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/@:\s]*):(?P<password>[^/@\s]+)@")
#: A token starts a word: the ``sk-`` of ``task-runner-...`` or ``desk-top-app`` (a repository,
#: so every path of the job) is not one.
_TOKENS = re.compile("(?<![A-Za-z0-9])(?:" + "|".join(f"(?:{p})" for p in _TOKEN_PATTERNS) + ")")
#: Bearer/Basic values and --token=... style arguments.
_INLINE = re.compile(
    r"(?P<prefix>(?:authorization:\s*(?:bearer|basic|token)\s+|--?(?:token|password|passwd|secret|api-key|auth)[=\s]))(?P<value>\S+)",
    re.IGNORECASE,
)

#: Query parameters whose values are credentials (signed URLs, API keys, tokens).
_SECRET_QUERY_NAME = re.compile(
    r"^(?:sig|sv|se|sp|code|key)$|token|secret|passw|auth|api_?key|_key$|signature|credential|session|x-amz-|x-goog-",
    re.IGNORECASE,
)
_QUERY_PAIR = re.compile(r"(?P<name>[^&=#?]+)=(?P<value>[^&#]*)")

#: What every rule of ``text`` needs in a string, lower-cased and without dots (so that they are
#: looked for in the same normalised view as the secrets' spellings, by the same automaton): a
#: token's prefix, the ``@`` of URL credentials, an Authorization header, a ``--token=`` option.
_TOKEN_PREFIXES = (
    *(f"gh{letter}_" for letter in "pousr"),
    "github_pat_",
    *(f"gl{kind}-" for kind in ("pat", "dt", "rt", "ptt", "ft", "cbt", "oas", "soat", "agent")),
    "akia",
    "asia",
    *(f"xox{letter}-" for letter in "abposr"),
    "npm_",
    "pypi-",
    "sk-",
    "aiza",
    "eyj",
    "-----begin",
    "@",
    "authorization",
    *(f"-{word}" for word in ("token", "passw", "secret", "api-key", "auth")),
)

T = TypeVar("T")


def redact_url(url: str) -> str:
    """The URL without a password and without the values of token-like query parameters."""
    url = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)
    base, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_sep, fragment = query.partition("#")

    def redact(match: re.Match[str]) -> str:
        value = match["value"]
        if value and _SECRET_QUERY_NAME.search(match["name"]):
            return f"{match['name']}={REDACTED}"
        return match.group(0)

    return base + sep + _QUERY_PAIR.sub(redact, query) + hash_sep + fragment


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of the variables whose names look like they hold a secret, longest first."""
    values = {value for name, value in env.items() if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


class Scrubber:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        # Every spelling of every secret (URL-encoded, base64, base32, hex, split across DNS
        # labels: ciwatch.job.encodings), looked for in a normalised view of the string.
        spellings = needles(secrets)
        self._needles = re.compile("|".join(map(re.escape, spellings))) if spellings else None
        # One search of the lower-cased, dot-less string for any of the words says whether any
        # rule below could apply: most strings (paths, argv) have nothing to scrub, and the
        # record is written at every traced syscall.
        self._suspect = AnyOf([*_TOKEN_PREFIXES, *spellings])
        self._spelled = AnyOf(spellings)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Scrubber:
        return cls(secret_values(env))

    def text(self, value: str) -> str:
        probe = probe_view(value)
        # A percent-escaped spelling shows only once decoded; the decoding costs only for the
        # strings that hold a % at all.
        decoded = normalise(value) if "%" in probe and self._needles is not None else None
        if decoded is not None and self._spelled.found(decoded):
            value = self._redact_spellings(value)
        elif not self._suspect.found(probe):
            return value
        elif self._spelled.found(probe):
            value = self._redact_spellings(value)
        if _TOKENS.search(value):
            value = _TOKENS.sub(REDACTED, value)
        if "@" in value and "://" in value:
            value = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", value)
        if "-" in value or ":" in value:
            value = _INLINE.sub(lambda m: m["prefix"] + REDACTED, value)
        return value

    def _redact_spellings(self, value: str) -> str:
        """``value`` with each span that spells a secret (in the normalised view, first as
        written, then with percent-escapes decoded) replaced by ``[REDACTED]``."""
        assert self._needles is not None
        for decode in (False, True):
            if decode and "%" not in value:
                break
            view, starts, ends = normalised_with_positions(value, decode=decode)
            spans = [(starts[m.start()], ends[m.end() - 1]) for m in self._needles.finditer(view)]
            if not spans:
                continue
            pieces, last = [], 0
            for start, end in spans:
                if end <= last:
                    continue
                pieces.append(value[last:start] if start >= last else "")
                pieces.append(REDACTED)
                last = max(last, end)
            pieces.append(value[last:])
            value = "".join(pieces)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value

    def event(self, event: T) -> T:
        """The event with every string field scrubbed (the same object when nothing changed)."""
        changes = {}
        for name in field_names(type(event)):
            current = getattr(event, name)
            if isinstance(current, (str, list, dict)):
                scrubbed = self.value(current)
                if scrubbed != current:
                    changes[name] = scrubbed
        return dataclasses.replace(event, **changes) if changes else event  # type: ignore[type-var]

    def events(self, events: list[T]) -> list[T]:
        """Each event as :meth:`event` gives it. The tracer hands over batches of file writes
        whose strings are nearly always clean: one look at all of them together (joined by NUL,
        which no secret or token holds, so no word is found across two strings) settles that
        in a single search; only a batch where something is found is scrubbed one by one."""
        texts: list[str] = []
        for event in events:
            for value in field_values(event):
                if isinstance(value, str):
                    texts.append(value)
                elif value is not None and not isinstance(value, (int, float)):
                    return [self.event(event) for event in events]  # lists, dicts: one by one
        probe = probe_view("\0".join(texts))
        if ("%" in probe and self._needles is not None) or self._suspect.found(probe):
            return [self.event(event) for event in events]
        return events
