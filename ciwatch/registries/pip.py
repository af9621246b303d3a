"""pip: its configuration (every pip.conf and ``PIP_*`` variable, as pip itself merges them)
and its implicit default index, both asked of the Python that runs pip.

The default index is written in no config file. pip knows it as
``pip._internal.models.index.PyPI`` (``simple_url``, and ``file_storage_domain`` for the
files the index links to); a subprocess of the pip's own interpreter reads it, so a
virtualenv's pip or a pinned pip version answers for itself. uv and poetry reuse the answer
for their own implicit default (:func:`default_index`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ciwatch.dataclass import dataclass
from ciwatch.registries._base import (
    Context,
    RegistrySource,
    host_source,
    log,
    present,
    source_for,
    split_urls,
)

ECOSYSTEM = "pip"

#: The settings whose values are index or link URLs (pip's option names).
URL_SETTINGS = ("index-url", "extra-index-url", "find-links")

#: Environment variables for them; pip's configuration reports them too (as ``:env:``),
#: but reading them here also works when pip can't be asked.
ENV_SETTINGS = {"PIP_INDEX_URL": "index-url", "PIP_EXTRA_INDEX_URL": "extra-index-url", "PIP_FIND_LINKS": "find-links"}

_PROBE = r"""
import json, sys
out = {"python": sys.executable}
try:
    import pip
    out["version"] = pip.__version__
except Exception as error:
    out["error"] = repr(error)
try:
    from pip._internal.models.index import PyPI
    out["simple_url"] = PyPI.simple_url
    out["file_storage_domain"] = PyPI.file_storage_domain
except Exception as error:
    out["index_error"] = repr(error)
try:
    from pip._internal.configuration import Configuration
    configuration = Configuration(isolated=False)
    configuration.load()
    out["config"] = [[key, value] for key, value in configuration.items() if isinstance(value, str)]
except Exception as error:
    out["config_error"] = repr(error)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class PipFacts:
    """What the pip of the job says about itself."""

    python: str
    version: str | None
    simple_url: str | None
    file_storage_domain: str | None
    config: tuple[tuple[str, str], ...] | None
    """``(section.option, value)`` pairs as ``pip config list`` prints them; None when unknown."""


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    replaced_default = False
    for variable, setting in ENV_SETTINGS.items():
        value = ctx.env.get(variable, "")
        found += [source_for(ECOSYSTEM, variable, url) for url in split_urls(value)]
        replaced_default |= setting == "index-url" and bool(value.strip())
    replaced_default |= _truthy(ctx.env.get("PIP_NO_INDEX"))
    facts = pip_facts(ctx)
    if facts is not None and facts.config is not None:
        for key, value in facts.config:
            section, _, option = key.partition(".")
            if section == ":env:":
                continue  # the PIP_* variables, read above
            if option in URL_SETTINGS:
                found += [source_for(ECOSYSTEM, f"pip config ({key})", url) for url in split_urls(value)]
                replaced_default |= option == "index-url" and bool(value.strip())
            elif option == "no-index":
                replaced_default |= _truthy(value)
    if not replaced_default:
        found += default_index(ctx, ECOSYSTEM)
    return [s for s in found if s is not None]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def default_index(ctx: Context, ecosystem: str) -> list[RegistrySource]:
    """pip's implicit default index and its file host, as pip reports them, labelled for
    ``ecosystem`` (uv and poetry default to the same index); empty when pip can't say."""
    facts = pip_facts(ctx)
    if facts is None or facts.simple_url is None:
        return []
    version = f"pip {facts.version}" if facts.version else "pip"
    learned = "" if ecosystem == ECOSYSTEM else ", as pip knows it"
    found = [source_for(ecosystem, f"{ecosystem} default index{learned} ({version})", facts.simple_url)]
    if facts.file_storage_domain:
        label = f"{ecosystem} default file host{learned} ({version})"
        found.append(host_source(ecosystem, label, facts.file_storage_domain))
    return [s for s in found if s is not None]


def pip_facts(ctx: Context) -> PipFacts | None:
    """Asked once per discovery, whichever ecosystem asks first."""
    return ctx.shared("pip-facts", lambda: _ask_pip(ctx))


def pip_python(ctx: Context) -> str | None:
    """The interpreter that runs the job's ``pip``: its script's ``#!`` line, else ``python3``
    on PATH (a pyenv or asdf shim resolves to the same version as ``pip`` does)."""
    for name in ("pip", "pip3"):
        pip = ctx.which(name)
        if pip is None:
            continue
        python = _shebang_python(ctx, Path(pip))
        if python is not None:
            return python
        break
    return ctx.which("python3") or ctx.which("python")


def _shebang_python(ctx: Context, script: Path) -> str | None:
    try:
        with script.open("rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        words = words[1:]
        if not Path(words[0]).is_absolute():
            return ctx.which(words[0]) if "python" in words[0] else None
    return words[0] if "python" in Path(words[0]).name and present(Path(words[0])) else None


def _ask_pip(ctx: Context) -> PipFacts | None:
    python = pip_python(ctx)
    if python is None:
        log.debug("pip: no python on PATH")
        return None
    out = ctx.output([python, "-c", _PROBE], cwd=ctx.scratch)
    if out is None:
        return None
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as error:
        log.debug("pip probe: unexpected answer: %s", error)
        return None
    if not isinstance(data, dict) or "version" not in data:
        log.debug("pip probe: %s has no pip: %s", python, data.get("error") if isinstance(data, dict) else data)
        return None
    for problem in ("index_error", "config_error"):
        if problem in data:
            log.debug("pip probe: %s", data[problem])
    config: tuple[tuple[str, str], ...] | None = None
    if isinstance(data.get("config"), list):
        config = tuple((str(k), str(v)) for k, v in data["config"])
    else:
        config = _config_list(ctx, python)
    return PipFacts(
        python=str(data.get("python") or python),
        version=_str_or_none(data.get("version")),
        simple_url=_str_or_none(data.get("simple_url")),
        file_storage_domain=_str_or_none(data.get("file_storage_domain")),
        config=config,
    )


def _config_list(ctx: Context, python: str) -> tuple[tuple[str, str], ...] | None:
    """``pip config list`` (``section.option='value'`` lines), for a pip whose internals moved."""
    out = ctx.output([python, "-m", "pip", "config", "list"], cwd=ctx.scratch)
    if out is None:
        return None
    pairs = []
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs.append((key.strip(), value.strip().strip("'\"")))
    return tuple(pairs)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
