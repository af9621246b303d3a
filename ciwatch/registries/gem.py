"""gem and bundler: ``gem sources --list`` (rubygems' configured sources, its default
included), the Gemfile's ``source`` and ``git:`` URLs, and bundler mirrors
(``BUNDLE_MIRROR__*`` variables, ``.bundle/config``). Without gem, ``~/.gemrc``.

A source is not always the host gem and bundler fetch its index from: both rewrite some
sources' host for the compact index (``/versions``, ``/info/<name>``). Which ones is their
code's business, so ciwatch asks bundler's fetcher (``Bundler::Fetcher::CompactIndex#fetch_uri``,
the rule rubygems' own ``Gem::Source`` applies too) for each source found, and adds the host it
answers when it differs.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ciwatch.registries._base import Context, RegistrySource, display_path, log, read_text, source_for

ECOSYSTEM = "gem"

_GEMFILE_SOURCE = re.compile(r"""^\s*source\s*\(?\s*["']([^"']+)["']""")
_GEMFILE_GIT = re.compile(r"""\bgit:\s*["']([^"']+)["']|:git\s*=>\s*["']([^"']+)["']""")


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    gem = ctx.which("gem")
    if gem is not None:
        out = ctx.output([gem, "sources", "--list"])
        if out is not None:
            found += parse_gem_sources(out)
    else:
        found += _from_gemrc(ctx)
    found += _from_gemfile(ctx)
    found += _from_bundler(ctx)
    known = [s for s in found if s is not None]
    return known + fetch_hosts(ctx, known)


#: Prints ``<source>\t<the URI bundler fetches its compact index from>`` for each source in ARGV.
FETCH_URI_SCRIPT = """
require "bundler"
require "bundler/fetcher"
ARGV.each do |source|
  remote = Bundler::Source::Rubygems::Remote.new(URI(source))
  puts "#{source}\\t#{Bundler::Fetcher::CompactIndex.new(nil, remote, source).fetch_uri}"
rescue StandardError, ScriptError => e
  warn "#{source}: #{e.class}"
end
"""


def fetch_hosts(ctx: Context, sources: list[RegistrySource]) -> list[RegistrySource]:
    """The hosts bundler (and gem) fetch the sources' indexes from, where they differ from
    the sources' own."""
    urls = sorted({source.url for source in sources if source.url and source.url.startswith(("http:", "https:"))})
    ruby = ctx.which("ruby")
    if not urls or ruby is None:
        return []
    out = ctx.output([ruby, "-e", FETCH_URI_SCRIPT, *urls], cwd=ctx.scratch)
    return parse_fetch_uris(out or "", {source.url: source for source in sources if source.url})


def parse_fetch_uris(text: str, by_url: dict[str, RegistrySource]) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    for line in text.splitlines():
        url, _, fetch_uri = line.strip().partition("\t")
        origin = by_url.get(url)
        if origin is None or not fetch_uri:
            continue
        fetched = source_for(ECOSYSTEM, f"{origin.source}: its index, as bundler's fetcher names it", fetch_uri)
        if fetched is not None and fetched.host != origin.host:
            found.append(fetched)
    return [s for s in found if s is not None]


def parse_gem_sources(text: str) -> list[RegistrySource | None]:
    """``gem sources --list`` prints a ``*** CURRENT SOURCES ***`` header, then one URL a line."""
    return [source_for(ECOSYSTEM, "gem sources --list", line.strip()) for line in text.splitlines() if "://" in line]


def _from_gemrc(ctx: Context) -> list[RegistrySource | None]:
    home = ctx.home()
    path = Path(ctx.env["GEMRC"]) if ctx.env.get("GEMRC") else (home / ".gemrc" if home else None)
    text = read_text(path) if path is not None else None
    if path is None or text is None:
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        log.debug("%s: %s", path, error)
        return []
    sources = data.get(":sources:") if isinstance(data, dict) else None
    if not isinstance(sources, list):
        return []
    return [source_for(ECOSYSTEM, f"{path} (:sources:)", str(url)) for url in sources]


def _from_gemfile(ctx: Context) -> list[RegistrySource | None]:
    path = ctx.project_dir / "Gemfile"
    text = read_text(path)
    if text is None:
        return []
    found: list[RegistrySource | None] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        source = _GEMFILE_SOURCE.match(line)
        if source:
            found.append(source_for(ECOSYSTEM, f"Gemfile:{number} (source)", source.group(1)))
        for git in _GEMFILE_GIT.finditer(line):
            found.append(source_for(ECOSYSTEM, f"Gemfile:{number} (git)", git.group(1) or git.group(2)))
    return found


def _from_bundler(ctx: Context) -> list[RegistrySource | None]:
    """Mirrors replace a source's host: ``BUNDLE_MIRROR__<HOST>`` is the mirror's URL."""
    settings: list[tuple[str, str, str]] = [(name, value, name) for name, value in ctx.env.items()]
    home = ctx.home()
    for path in (ctx.project_dir / ".bundle" / "config", home / ".bundle" / "config" if home else None):
        text = read_text(path) if path is not None else None
        if path is None or text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            log.debug("%s: %s", path, error)
            continue
        if isinstance(data, dict):
            shown = display_path(path, ctx.project_dir)
            settings += [(str(k), str(v), f"{shown} ({k})") for k, v in data.items()]
    return [
        source_for(ECOSYSTEM, where, value)
        for name, value, where in settings
        if name.upper().startswith("BUNDLE_MIRROR__") and value
    ]
