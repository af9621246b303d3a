"""The scrubber removes the common spellings of each secret value, not only the value itself:
percent-encoded (any mix of escaped and plain characters), base64 at each alignment in either
alphabet, base32, hex in either case, and any of them split across DNS labels."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from ciwatch.job import REDACTED, Scrubber
from ciwatch.job.encodings import MIN_NEEDLE_LENGTH, needles

SECRET = "s3cr3t-V@lue/with spaces+ümlaut"
PLAIN = "supersecretvalue123"
RAW = SECRET.encode()


def _base64_spellings(raw: bytes) -> list[str]:
    """The base64 of ``raw`` embedded at each alignment of a stream, with and without padding,
    in both alphabets."""
    found = []
    for prefix in (b"", b"a", b"ab"):
        for suffix in (b"", b"z", b"yz"):
            text = base64.b64encode(prefix + raw + suffix).decode()
            found += [text, text.rstrip("="), base64.urlsafe_b64encode(prefix + raw + suffix).decode()]
    return found


SPELLINGS = [
    pytest.param(urllib.parse.quote(SECRET, safe=""), id="percent-upper"),
    pytest.param(urllib.parse.quote(SECRET, safe="").lower(), id="percent-lower"),
    pytest.param(urllib.parse.quote_plus(SECRET), id="form-plus"),
    pytest.param(urllib.parse.quote(SECRET), id="percent-keeps-slash"),
    pytest.param("".join(f"%{byte:02x}" for byte in RAW), id="percent-every-byte"),
    pytest.param("".join(f"%{b:02X}" if i % 2 else chr(b) for i, b in enumerate(PLAIN.encode())), id="percent-mixed"),
    pytest.param(RAW.hex(), id="hex-lower"),
    pytest.param(RAW.hex().upper(), id="hex-upper"),
    *(pytest.param(text, id=f"base64-{index}") for index, text in enumerate(_base64_spellings(RAW))),
    *(pytest.param(text, id=f"base64-plain-{index}") for index, text in enumerate(_base64_spellings(PLAIN.encode()))),
    pytest.param(base64.b32encode(b"xyz" + RAW).decode(), id="base32"),
    pytest.param(base64.b32encode(b"x" + RAW).decode().lower(), id="base32-lower"),
    pytest.param(base64.b32hexencode(b"xy" + RAW).decode(), id="base32hex"),
    pytest.param(urllib.parse.quote(base64.b64encode(b"?" + RAW).decode(), safe=""), id="base64-in-a-query"),
    pytest.param(SECRET.upper(), id="other-case"),
]


def _split_labels(text: str, size: int) -> str:
    return ".".join(text[i : i + size] for i in range(0, len(text), size))


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber([SECRET, PLAIN])


def _leaks(scrubbed: str, spelling: str) -> bool:
    """Whether what is left still holds a run of the spelling long enough to decode the secret."""
    return any(spelling[i : i + 12] in scrubbed for i in range(0, max(1, len(spelling) - 11)))


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_each_spelling_is_redacted_in_argv_paths_and_urls(scrubber: Scrubber, spelling: str) -> None:
    for text in (spelling, f"/tmp/x-{spelling}.txt", f"--data={spelling}", f"https://h.test/p?q={spelling}&x=1"):
        scrubbed = scrubber.text(text)
        assert REDACTED in scrubbed, text
        assert not _leaks(scrubbed, spelling), (text, scrubbed)


DNS_SPELLINGS = [
    pytest.param(PLAIN, id="plain"),
    pytest.param(PLAIN.upper(), id="plain-upper"),
    pytest.param(RAW.hex(), id="hex"),
    pytest.param(RAW.hex().upper(), id="hex-upper"),
    pytest.param(base64.b32encode(RAW).decode().rstrip("=").lower(), id="base32"),
    pytest.param(base64.b32encode(b"xy" + RAW).decode().rstrip("="), id="base32-aligned"),
    pytest.param(base64.b32hexencode(b"x" + RAW).decode().rstrip("=").lower(), id="base32hex"),
    pytest.param(base64.b64encode(b"a" + PLAIN.encode()).decode().rstrip("="), id="base64"),
]


@pytest.mark.parametrize("spelling", DNS_SPELLINGS)
@pytest.mark.parametrize("size", [1, 7, 63])
def test_each_spelling_split_across_dns_labels_is_redacted(scrubber: Scrubber, spelling: str, size: int) -> None:
    name = f"{_split_labels(spelling, size)}.exfil.test"
    scrubbed = scrubber.text(name)
    assert REDACTED in scrubbed
    assert scrubbed.endswith(".exfil.test")
    assert not _leaks(scrubbed.replace(".", ""), spelling)


def test_hex_and_base32_chunks_in_dns_names_are_redacted(scrubber: Scrubber) -> None:
    for encoded in (RAW.hex(), base64.b32encode(RAW).decode().rstrip("=").lower()):
        name = _split_labels(encoded, 63) + ".a.exfil.test"
        scrubbed = scrubber.text(name)
        # (base32's last character also holds bits of whatever follows: it may stay)
        assert scrubbed.startswith(REDACTED) and scrubbed.endswith(".a.exfil.test")
        assert len(scrubbed) <= len(f"{REDACTED}x.a.exfil.test")
        mixed = "".join(ch.upper() if i % 3 else ch for i, ch in enumerate(name))  # DNS 0x20 case games
        assert REDACTED in scrubber.text(mixed)


def test_the_rest_of_the_string_is_kept(scrubber: Scrubber) -> None:
    assert scrubber.text(f"/work/x-{PLAIN}.log") == f"/work/x-{REDACTED}.log"
    assert scrubber.text(f"{PLAIN}.evil.test") == f"{REDACTED}.evil.test"
    assert scrubber.text(f"a={RAW.hex()}&b=2") == f"a={REDACTED}&b=2"


@pytest.mark.parametrize(
    "text",
    [
        "/home/runner/work/proj/node_modules/@scope/pkg/lib/index.js",
        "https://registry.example.internal/@scope%2fpkg/-/pkg-1.2.3.tgz",
        "c3VwZXJ",  # a few characters of the secret's base64: too short to be it
        "73757065",
        "",
    ],
)
def test_ordinary_strings_are_unchanged(scrubber: Scrubber, text: str) -> None:
    assert scrubber.text(text) == text


def test_no_spelling_is_shorter_than_the_threshold() -> None:
    assert all(len(needle) >= MIN_NEEDLE_LENGTH for needle in needles(["abcdef", "ab"]))


def test_a_scrubber_without_secrets_still_redacts_tokens() -> None:
    scrubber = Scrubber([])
    assert scrubber.text("/tmp/plain%20file.txt") == "/tmp/plain%20file.txt"
    assert scrubber.text("Authorization: Bearer abcdef123456") == f"Authorization: Bearer {REDACTED}"


def test_wrapped_base64_is_redacted(scrubber: Scrubber) -> None:
    encoded = base64.encodebytes(b"header: " + RAW * 3).decode()  # MIME: 76 characters a line
    assert "\n" in encoded.strip()
    scrubbed = scrubber.text(f"echo '{encoded}' | base64 -d")
    assert REDACTED in scrubbed
    assert not _leaks(scrubbed.replace("\n", ""), base64.b64encode(RAW).decode()[4:-4])
