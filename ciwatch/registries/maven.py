"""Maven: the mirrors and profile repositories of the global and user settings.xml (or the
ones ``-s``/``-gs`` name in ``.mvn/maven.config`` or ``MAVEN_ARGS``), the repositories of the
project's pom.xml, and the implicit central repository, read from the super-POM inside the
installed Maven's own jars (the URL is in no config file).

``mvn -o -X validate`` would print the same, but it starts a JVM (seconds) and needs a
project; reading the files takes milliseconds and works without one.
"""

from __future__ import annotations

import os
import shlex
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

from ciwatch.registries._base import (
    Context,
    RegistrySource,
    display_path,
    log,
    note_file,
    present,
    read_text,
    source_for,
)

ECOSYSTEM = "maven"

#: Where Maven 3 keeps the super-POM; Maven 4 moved it, so other jars are searched too.
_SUPER_POM_JARS = ("maven-model-builder-*.jar", "maven-*.jar")


def discover(ctx: Context) -> list[RegistrySource]:
    mvn = ctx.which("mvn")
    pom = ctx.project_dir / "pom.xml"
    if mvn is None and not present(pom):
        return []
    found: list[RegistrySource | None] = []
    home = maven_home(ctx, mvn)
    central_mirrored = False
    for path in settings_files(ctx, home):
        root = _parse_xml(path)
        if root is None:
            continue
        shown = display_path(path, ctx.project_dir)
        for mirror in _all(root, "mirror"):
            url, mirror_of = _text(mirror, "url"), _text(mirror, "mirrorOf") or ""
            if (_text(mirror, "blocked") or "").lower() == "true":
                continue  # a blocker (Maven's default one refuses plain-http repositories)
            if url:
                label = f"{shown} (mirror {_text(mirror, 'id') or '?'} of {mirror_of})"
                found.append(source_for(ECOSYSTEM, label, url))
                central_mirrored |= mirrors_central(mirror_of)
        found += _repositories(root, shown)
    root = _parse_xml(pom)
    if root is not None:
        found += _repositories(root, "pom.xml")
    if home is not None and not central_mirrored:
        found += super_pom_repositories(home)
    return [s for s in found if s is not None]


def maven_home(ctx: Context, mvn: str | None) -> Path | None:
    for variable in ("MAVEN_HOME", "M2_HOME"):
        if ctx.env.get(variable):
            return Path(ctx.env[variable])
    if mvn is None:
        return None
    home = Path(os.path.realpath(mvn)).parent.parent  # <home>/bin/mvn
    return home if (home / "lib").is_dir() else None


def settings_files(ctx: Context, home: Path | None) -> list[Path]:
    """The global settings, then the user's, as the command line or maven.config chooses them."""
    args: list[str] = []
    config = read_text(ctx.project_dir / ".mvn" / "maven.config")
    if config:
        args += shlex.split(config, comments=True)
    args += shlex.split(ctx.env.get("MAVEN_ARGS", ""))
    chosen = {"global": _option(args, "-gs", "--global-settings"), "user": _option(args, "-s", "--settings")}
    user_home = ctx.home()
    defaults = {
        "global": home / "conf" / "settings.xml" if home is not None else None,
        "user": user_home / ".m2" / "settings.xml" if user_home is not None else None,
    }
    files = []
    for kind in ("global", "user"):
        path = chosen[kind] or defaults[kind]
        if path is not None:
            files.append(path if path.is_absolute() else ctx.project_dir / path)
    return files


def _option(args: list[str], short: str, long: str) -> Path | None:
    for index, arg in enumerate(args):
        if arg in (short, long) and index + 1 < len(args):
            return Path(args[index + 1])
        if arg.startswith(long + "="):
            return Path(arg.partition("=")[2])
    return None


def mirrors_central(mirror_of: str) -> bool:
    """Whether a ``<mirrorOf>`` pattern takes over the central repository."""
    patterns = [p.strip() for p in mirror_of.split(",")]
    if "!central" in patterns:
        return False
    return any(p in ("*", "central", "external:*") for p in patterns)


def super_pom_repositories(home: Path) -> list[RegistrySource | None]:
    """The repositories of the super-POM that every project inherits, from Maven's own jars."""
    lib = home / "lib"
    note_file(lib)  # the jars: a listing's names carry their versions
    seen: set[Path] = set()
    for pattern in _SUPER_POM_JARS:
        for jar in sorted(lib.glob(pattern)):
            if jar in seen:
                continue
            seen.add(jar)
            pom = _super_pom(jar)
            if pom is not None:
                return _repositories(pom, f"Maven super-POM in {jar.name}")
    log.debug("maven: no super-POM found under %s", lib)
    return []


def _super_pom(jar: Path) -> ElementTree.Element | None:
    try:
        with zipfile.ZipFile(jar) as archive:
            for name in archive.namelist():
                if name.startswith("org/apache/maven/") and name.endswith(("/pom-4.0.0.xml", "/pom-4.1.0.xml")):
                    return ElementTree.fromstring(archive.read(name))
    except (OSError, zipfile.BadZipFile, ElementTree.ParseError) as error:
        log.debug("maven: %s: %s", jar, error)
    return None


def _repositories(root: ElementTree.Element, where: str) -> list[RegistrySource | None]:
    found: list[RegistrySource | None] = []
    for kind in ("repository", "pluginRepository", "snapshotRepository"):
        for repository in _all(root, kind):
            url = _text(repository, "url")
            if url:
                label = f"{where} ({kind} {_text(repository, 'id') or '?'})"
                found.append(source_for(ECOSYSTEM, label, url))
    return found


def _parse_xml(path: Path) -> ElementTree.Element | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        log.debug("maven: %s: %s", path, error)
        return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _all(root: ElementTree.Element, name: str) -> Iterator[ElementTree.Element]:
    """Every element named ``name``, whatever its XML namespace."""
    return (element for element in root.iter() if _local(element.tag) == name)


def _text(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name and child.text:
            return child.text.strip()
    return None
