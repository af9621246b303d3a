"""apt: ``apt-get indextargets`` lists every index ``apt-get update`` fetches, from both
one-line ``.list`` and deb822 ``.sources`` files, with the entry that configured it.

``--no-release-info`` keeps the targets whose Release file has not been fetched yet (a fresh
image, or a source added by the job); without it apt lists only the ones it already has.
The sites then come from the sources alone, so apt is pointed at an empty lists directory:
otherwise it first builds its package cache from the downloaded lists (0.6 s on an image that
disables pkgcache.bin, against 0.03 s). ``mirror+file:`` sites are resolved to the mirrors
their list names. The build's own ``-o``/``-c`` options (a job that points apt at a private
sources list on its command line) are given to the query too.
"""

from __future__ import annotations

from pathlib import Path

from ciwatch.registries._base import Context, RegistrySource, read_text, source_for
from ciwatch.registries.command_line import apt_options

ECOSYSTEM = "apt"

FORMAT = "$(SITE)\t$(SOURCESENTRY)"


def discover(ctx: Context) -> list[RegistrySource]:
    apt_get = ctx.which("apt-get")
    if apt_get is None:
        return []
    lists = ctx.scratch / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    # The build's own -o/-c options first (a private sources list, say), ours after: apt
    # lets the last setting of a key win, and the lists directory must stay the empty one.
    options = [*apt_options(ctx), "-o", f"Dir::State::Lists={lists}"]
    argv = [apt_get, *options, "indextargets", "--no-release-info", "--format", FORMAT]
    out = ctx.output(argv)
    return parse_indextargets(out) if out else []


def parse_indextargets(text: str) -> list[RegistrySource]:
    """Lines of ``SITE<TAB>SOURCESENTRY`` (one per index target, so many repeat)."""
    found: list[RegistrySource | None] = []
    seen: set[tuple[str, str]] = set()
    for line in text.splitlines():
        site, _, entry = line.strip().partition("\t")
        if not site or (site, entry) in seen:
            continue
        seen.add((site, entry))
        where = f"apt-get indextargets ({entry})" if entry else "apt-get indextargets"
        if site.startswith("mirror+file:") or site.startswith("mirror+file://"):
            found += _mirror_list(site.partition(":")[2].removeprefix("//"), where)
        else:
            found.append(source_for(ECOSYSTEM, where, site.removeprefix("mirror+")))
    return [s for s in found if s is not None]


def _mirror_list(path: str, where: str) -> list[RegistrySource | None]:
    """A mirror list file holds one mirror URL a line (optionally followed by tab-separated
    priority and metadata)."""
    text = read_text(Path(path))
    if text is None:
        return []
    return [
        source_for(ECOSYSTEM, f"{where}, mirror list {path}", line.split()[0])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
