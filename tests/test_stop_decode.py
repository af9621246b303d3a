"""A write stop's FileWrite built in the compiled loop (_stopdecode.c) is the row's decoder's
(ciwatch.trace.decode.files), over any bytes a tracee may pass; whole runs record the same
writes on both loops, awkward names included; a secret in a file name never reaches the record."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciwatch.record.events import FileWrite
from ciwatch.trace import batch
from ciwatch.trace.table import TABLE
from tests.support.runner import run_ciwatch

SETTINGS = settings(max_examples=150, deadline=None, database=None)
_ROWS = {row.name: row for row in TABLE}


def test_every_fast_row_is_decoded_in_the_loop() -> None:
    assert set(batch.DECODED) == set(batch.READS)
    assert batch._stoploop is not None, batch.compiled_loop_state()


class _Given:
    """A MemoryReader answering with what the loop would have read: each address's string, the
    cwd, any fd's link, and each path read's canonical form in the order the decoder asks."""

    def __init__(self, strings: dict[int, bytes], link: str, canonical: list[str]) -> None:
        self._strings, self._link, self._canonical = strings, link, list(canonical)

    def read_cstring(self, address: int) -> bytes:
        return self._strings[address]

    def cwd(self) -> str:
        return self._link

    def fd_path(self, fd: int) -> str:
        return self._link

    def canonical(self, path: str, follow: bool) -> str:
        return self._canonical.pop(0)

    def read_bytes(self, address: int, size: int) -> bytes:
        raise AssertionError("a fast row's decoder reads no memory")

    def read_u64(self, address: int) -> int | None:
        raise AssertionError("a fast row's decoder reads no memory")

    def write_bytes(self, address: int, data: bytes) -> bool:
        raise AssertionError("a decoder writes nothing")


#: What a tracee may pass: undecodable bytes, control characters, quotes, backslashes, DEL,
#: characters beyond the BMP, long names, nothing at all.
_AWKWARD = [
    b"\xff\xfe",
    b"caf\xc3\xa9/\xe9t\xe9",
    bytes(range(1, 32)),
    b'"quoted" \\back\\slash\\',
    b"del\x7f\x80",
    "\U0001f600\u202e\u00a0".encode(),
    b"d" * 255 + b"/" + b"e" * 3000,
    b"",
]
_texts = st.one_of(st.sampled_from(_AWKWARD), st.binary(max_size=30)).map(lambda raw: raw.replace(b"\0", b"_"))
_absolute = _texts.map(lambda raw: b"/" + raw)


@SETTINGS
@given(
    name=st.sampled_from(sorted(batch.DECODED)),
    texts=st.lists(_texts, min_size=2, max_size=2),
    canonical=st.lists(_absolute, min_size=2, max_size=2),
    same=st.booleans(),
    link=_absolute,
    words=st.lists(st.integers(0, 2**64 - 1), min_size=6, max_size=6),
    pid=st.integers(1, 2**22),
)
def test_the_loops_event_is_the_decoders(
    name: str, texts: list[bytes], canonical: list[bytes], same: bool, link: bytes, words: list[int], pid: int
) -> None:
    assert batch._stoploop is not None
    reads = batch.READS[name]
    addresses = {read[2] for read in reads if read[0] in (batch._PATH, batch._STRING)}
    args = tuple(0x1000 + index if index in addresses else word for index, word in enumerate(words))
    if same:  # the spelling is the canonical path: no as_written
        texts = [c if read[0] == batch._PATH else t for read, t, c in zip(reads, texts, canonical, strict=False)]
    given_reads = tuple(
        (read[0], texts[index], link, canonical[index] if read[0] == batch._PATH else None)
        for index, read in enumerate(reads)
    )
    strings = {args[read[2]]: texts[index] for index, read in enumerate(reads) if read[0] != batch._FD}
    paths = [os.fsdecode(canonical[index]) for index, read in enumerate(reads) if read[0] == batch._PATH]
    expected = _ROWS[name].decode(pid, args, _Given(strings, os.fsdecode(link), paths))
    number = _ROWS[name].number
    built = batch._stoploop.decoded_write_of(batch.decoding(), pid, number, args, given_reads)
    assert built == expected
    assert type(built) is FileWrite and [type(getattr(built, f)) for f in ("pid", "flags")] == [
        type(getattr(expected, f)) for f in ("pid", "flags")
    ]


def test_an_unresolved_path_is_left_to_the_decoder() -> None:
    assert batch._stoploop is not None
    reads = ((batch._PATH, b"name", b"", None),)
    number = _ROWS["unlink"].number
    assert batch._stoploop.decoded_write_of(batch.decoding(), 1, number, (0, 0, 0, 0, 0, 0), reads) is None


# -- whole runs ------------------------------------------------------------------------------

_SECRET = "s3cr3t-V4lue-in-a-name"

#: Every fast row, on names no text format likes; run by the interpreter under ciwatch.
_SCRIPT = r"""
import os, sys
os.chdir(sys.argv[1])
secret = os.environ["MY_API_TOKEN"].encode()
names = [b"\xff\xfe", b"caf\xc3\xa9", bytes(range(1, 32)).replace(b"/", b"_"), b'"q" \\b\\', b"del\x7f\x80",
         "\U0001f600\u202e".encode(), b"l" * 240, b"x-" + secret]
for index, name in enumerate(names):
    fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, b"x")
    os.fchmod(fd, 0o600)
    os.close(fd)
    os.chmod(name, 0o644)
    os.truncate(name, 0)
    os.link(name, name + b".link")
    os.symlink(name, name + b".sym")
    os.rename(name + b".link", name + b".moved")
    for gone in (name + b".moved", name + b".sym", name):
        os.unlink(gone)
os.close(os.memfd_create("m-" + secret.decode()))
os.close(os.open(os.path.join(os.getcwd().encode(), b"abs-\xff"), os.O_CREAT | os.O_WRONLY, 0o644))
"""


def _writes(tmp_path: Path, loop: str) -> tuple[list[tuple[Any, ...]], bytes]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    for leftover in work.iterdir():
        leftover.unlink()
    run = run_ciwatch(
        ["--net", "off", "--file-events", "ptrace", "--", sys.executable, "-c", _SCRIPT, str(work)],
        tmp_path / loop,
        cwd=work,
        env={"CIWATCH_STOP_LOOP": loop, "MY_API_TOKEN": _SECRET},
    )
    assert run.code == 0, run.stderr
    found = [
        (w.op.value, w.path, w.target, w.flags, w.as_written, w.target_as_written)
        for w in run.events(FileWrite)
        if w.path.startswith(str(work)) or w.path.startswith("memfd:")
    ]
    return found, (tmp_path / loop / "record.jsonl").read_bytes()


@pytest.mark.slow
def test_both_loops_record_awkward_names_alike_and_no_secret(tmp_path: Path) -> None:
    compiled, raw = _writes(tmp_path, "compiled")
    python, _ = _writes(tmp_path, "python")
    assert compiled == python
    assert len(compiled) == 8 * 10 + 2  # ten writes a name, the memfd, the absolute open
    assert _SECRET.encode() not in raw
    work = str(tmp_path / "work")
    assert ("open", f"{work}/\udcff\udcfe", None, 0o1101 | os.O_CLOEXEC, "\udcff\udcfe", None) in compiled
    assert ("chmod", f"{work}/\udcff\udcfe", None, 0o600, None, None) in compiled  # fchmod: the fd's link
    assert ("memfd", "memfd:m-[REDACTED]", None, 1, None, None) in compiled  # MFD_CLOEXEC
    assert ("open", f"{work}/abs-\udcff", None, 0o101 | os.O_CLOEXEC, None, None) in compiled
    assert any(c[1] == f"{work}/x-[REDACTED]" and c[4] == "x-[REDACTED]" for c in compiled)
    for line in raw.splitlines():
        json.loads(line)  # every line whole and valid
