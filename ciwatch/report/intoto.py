"""``ciwatch report --format intoto``: an in-toto v1 Statement about what the build wrote, whose
predicate is ciwatch's runtime trace of how it was made (docs/report-format.md). Unsigned:
``actions/attest`` or ``cosign attest-blob`` sign it.

The subjects are the artifacts the build wrote: by default the executables and scripts it wrote
under its working directory (with the hash the record took when the run finished) and the
packages it wrote there (``*.tgz``, ``*.whl``..., hashed now: the record doesn't hash them); with
``--subjects GLOB``, the files the build wrote that match, hashed now. A subject that is gone
by the time of the report can't be attested: it is named in the predicate's ``missingSubjects``.

The Statement and its subjects are built and validated by the in-toto attestation library.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ciwatch import __version__
from ciwatch.dataclass import dataclass
from ciwatch.errors import EnvironmentNotSupported, UsageError
from ciwatch.policy.model import Policy
from ciwatch.record.reader import Record
from ciwatch.record.vocabulary import FileOp
from ciwatch.report.model import FindingItem, Report

#: ciwatch's own predicate type, modelled on in-toto's runtime-trace v0.1 predicate.
PREDICATE_TYPE = "https://ciwatch.dev/attestation/runtime-trace/v1"
#: What a build writes that is a package: attested by default when written under its directory.
PACKAGE_PATTERNS = ("*.tgz", "*.whl", "*.tar.gz", "*.crate", "*.gem", "*.jar")
_BUILT_IN_POLICY = Policy().source


@dataclass(frozen=True)
class Subject:
    name: str
    """Relative to the build's working directory when under it, else absolute."""
    sha256: str


@dataclass(frozen=True)
class Attestation:
    statement: dict[str, Any]
    """The Statement as JSON (``_type``, ``subject``, ``predicateType``, ``predicate``)."""
    missing: list[str]
    """Subjects written during the build that are gone now."""


def attest(
    record: Record, report: Report, policy: Policy, record_file: Path, subject_globs: Sequence[str] = ()
) -> Attestation:
    cwd = record.header.cwd
    subjects, missing = _subjects(record, report, cwd, subject_globs)
    if not subjects:
        what = (
            f"no file the build wrote matches {', '.join(subject_globs)}"
            if subject_globs
            else "the build wrote no executable and no package under its working directory"
        )
        raise UsageError(
            f"nothing to attest: {what}" + (f" (gone since: {', '.join(missing)})" if missing else ""),
            hint="name the artifacts with --subjects GLOB (e.g. 'dist/*', relative to the build's directory)",
        )
    predicate = _utf8(_predicate(record, report, policy, record_file, missing))
    subjects = [Subject(_utf8(s.name), s.sha256) for s in subjects]
    return Attestation(_statement(subjects, predicate), missing)


def _statement(subjects: list[Subject], predicate: dict[str, Any]) -> dict[str, Any]:
    # Imported here: protobuf is only needed for this format.
    try:
        from google.protobuf import json_format  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from in_toto_attestation.v1.resource_descriptor import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            ResourceDescriptor,
        )
        from in_toto_attestation.v1.statement import Statement  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as error:
        raise EnvironmentNotSupported(
            f"--format intoto needs the in-toto attestation library ({error})",
            hint="python3 -m pip install in-toto-attestation (into ciwatch's environment)",
        ) from None

    descriptors = [ResourceDescriptor(name=s.name, digest={"sha256": s.sha256}).pb for s in subjects]
    statement = Statement(descriptors, PREDICATE_TYPE, predicate)
    statement.validate()
    data: dict[str, Any] = json_format.MessageToDict(statement.pb)
    # protobuf's Struct holds every number as a double (an exit code would read 0.0): the
    # predicate is written as built, which the Struct's JSON equals.
    data["predicate"] = predicate
    return data


def _subjects(record: Record, report: Report, cwd: str, globs: Sequence[str]) -> tuple[list[Subject], list[str]]:
    written = _paths_still_written(record)
    chosen: dict[str, str | None] = {}
    if globs:
        patterns = [_glob_regex(glob) for glob in globs]
        for path in written:
            if any(pattern.fullmatch(_name(path, cwd)) or pattern.fullmatch(path) for pattern in patterns):
                chosen[path] = None
    else:
        for item in report.executables.files:
            if _under(item.path, cwd):
                chosen[item.path] = item.sha256  # the last hash of a path wins
        for path in written:
            if _under(path, cwd) and any(fnmatch.fnmatchcase(os.path.basename(path), p) for p in PACKAGE_PATTERNS):
                chosen.setdefault(path, None)
    subjects, missing = [], []
    for path, recorded in chosen.items():
        digest = recorded or _sha256(path)
        if digest is None or not os.path.isfile(path):
            missing.append(_name(path, cwd))
        else:
            subjects.append(Subject(_name(path, cwd), digest))
    return subjects, missing


def _glob_regex(glob: str) -> re.Pattern[str]:
    """A shell's glob, as ``actions/attest``'s subject-path reads one: ``*`` and ``?`` within a
    directory, ``**`` across directories (``dist/**/*.whl``), ``[...]`` a character class."""
    parts, index = [], 0
    while index < len(glob):
        if glob.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif glob.startswith("**", index):
            parts.append(".*")
            index += 2
        elif glob[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif glob[index] == "?":
            parts.append("[^/]")
            index += 1
        elif glob[index] == "[" and (end := glob.find("]", index + 2)) != -1:
            body = glob[index + 1 : end]
            parts.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            index = end + 1
        else:
            parts.append(re.escape(glob[index]))
            index += 1
    return re.compile("".join(parts), re.DOTALL)


def _paths_still_written(record: Record) -> list[str]:
    """The files the build wrote that it didn't remove or rename away afterwards, in order."""
    alive: dict[str, None] = {}
    for _, op, path, target in record.events.written_paths():
        if op in (FileOp.OPEN, FileOp.CREAT, FileOp.TRUNCATE):
            alive[path] = None
        elif op is FileOp.RENAME:
            alive.pop(path, None)
            if target:
                alive[target] = None
        elif op is FileOp.LINK and target:
            alive[target] = None
        elif op is FileOp.UNLINK:
            alive.pop(path, None)
    return list(alive)


def _predicate(record: Record, report: Report, policy: Policy, record_file: Path, missing: list[str]) -> dict[str, Any]:
    run, verdict = report.run, report.verdict
    return {
        "monitor": {"name": "ciwatch", "version": __version__, "recordedBy": record.header.ciwatch_version},
        "job": dict(record.header.job_context),
        "run": {
            "command": list(run.command),
            "cwd": run.cwd,
            "host": record.header.host,
            "netMode": run.net_mode,
            "startedOn": run.started_at,
            "durationSeconds": run.duration_s,
            "finished": run.finished,
            "clean": run.clean,
            "exitCode": run.exit_code,
            "buildExitCode": run.build_exit_code,
            "buildSignal": run.build_signal,
        },
        "record": {
            "name": record_file.name,
            "digest": {"sha256": _sha256(str(record_file))},
            "integrity": report.integrity,
        },
        "policy": {"source": policy.source, "digest": {"sha256": policy_digest(policy)}, "mode": verdict.mode},
        "verdict": {
            "verdict": verdict.verdict,
            "failOn": verdict.fail_on,
            "countedFindings": verdict.counted_total,
            "refusals": verdict.refusals,
            "findings": [_finding(f) for f in (*verdict.counted, *verdict.excepted)],
        },
        "hooks": [dataclasses.asdict(hook) for hook in report.hooks],
        "hosts": [
            {"hook": group.hook, "host": h.host, "kinds": h.kinds, "count": h.count, "local": h.local}
            for group in report.network
            for h in group.hosts
        ],
        "writtenFiles": [
            {
                "path": f.path,
                "fileType": f.file_type,
                "sha256": f.sha256,
                "size": f.size,
                "writtenBy": f.written_by,
                "hook": f.hook,
            }
            for f in report.executables.files
        ],
        "missingSubjects": missing,
    }


def _finding(finding: FindingItem) -> dict[str, Any]:
    keys = ("rule", "severity", "package", "purl", "hook", "lineage", "message", "host", "excepted")
    return {key: getattr(finding, key) for key in keys}


def policy_digest(policy: Policy) -> str | None:
    """SHA-256 of the policy file's bytes (of the built-in default's, for the built-in)."""
    try:
        if policy.source == _BUILT_IN_POLICY:
            return hashlib.sha256(resources.files("ciwatch.policy").joinpath("default.yaml").read_bytes()).hexdigest()
        return hashlib.sha256(Path(policy.source).read_bytes()).hexdigest()
    except OSError:
        return None


def _utf8(value: Any) -> Any:
    """A record keeps bytes that weren't UTF-8 as lone surrogates (a file or package name);
    protobuf's strings must be UTF-8: they are written as ``\\udcXX``."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_utf8(key): _utf8(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_utf8(item) for item in value]
    return value


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _name(path: str, cwd: str) -> str:
    return os.path.relpath(path, cwd) if _under(path, cwd) else path
