"""Gradle: the wrapper's ``distributionUrl``; the repositories of the build, printed by Gradle
itself through an init script when ``gradle`` is on PATH (so ``mavenCentral()``, ``google()``
and the default plugin portal come with their URLs from Gradle), else the literal URLs of the
build scripts.

The project's ``gradlew`` is never run: it would download its distribution first.
"""

from __future__ import annotations

import re

from ciwatch.registries._base import Context, RegistrySource, is_file, read_text, source_for

ECOSYSTEM = "gradle"

BUILD_FILES = ("settings.gradle", "settings.gradle.kts", "build.gradle", "build.gradle.kts")

_MARK = "CIWATCH-REPOSITORY"

INIT_SCRIPT = """
def ciwatchReport = { String where, repositories ->
    repositories.each { repository ->
        if (repository.hasProperty('url') && repository.url != null) {
            println "MARK\\t${where}\\t${repository.name}\\t${repository.url}"
        }
    }
}
settingsEvaluated { settings ->
    def plugins = settings.pluginManagement.repositories
    if (plugins.isEmpty()) {
        ciwatchReport('pluginManagement, default', [plugins.gradlePluginPortal()])
    } else {
        ciwatchReport('pluginManagement', plugins)
    }
    try {
        ciwatchReport('dependencyResolutionManagement', settings.dependencyResolutionManagement.repositories)
    } catch (Throwable ignored) {
    }
}
allprojects { project ->
    project.afterEvaluate {
        ciwatchReport("${project.path} buildscript", project.buildscript.repositories)
        ciwatchReport(project.path, project.repositories)
    }
}
""".replace("MARK", _MARK)

_SCRIPT_URL = re.compile(r"""["']([a-zA-Z][a-zA-Z0-9+.-]*://[^"'\s]+)["']""")
_REPOSITORY_LINE = re.compile(r"\b(url|uri|maven|ivy|setUrl)\b")


def discover(ctx: Context) -> list[RegistrySource]:
    found: list[RegistrySource | None] = []
    found += _wrapper(ctx)
    build_files = [ctx.project_dir / name for name in BUILD_FILES if is_file(ctx.project_dir / name)]
    if build_files:
        gradle = ctx.which("gradle")
        if gradle is not None:
            found += _from_gradle(ctx, gradle)
        else:
            for path in build_files:
                found += _from_script(path.name, read_text(path) or "")
    return [s for s in found if s is not None]


def _wrapper(ctx: Context) -> list[RegistrySource | None]:
    text = read_text(ctx.project_dir / "gradle" / "wrapper" / "gradle-wrapper.properties")
    if text is None:
        return []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "distributionUrl":
            url = value.strip().replace("\\:", ":").replace("\\=", "=")
            return [source_for(ECOSYSTEM, "gradle-wrapper.properties (distributionUrl)", url)]
    return []


def _from_gradle(ctx: Context, gradle: str) -> list[RegistrySource | None]:
    script = ctx.scratch / "ciwatch-repositories.gradle"
    script.write_text(INIT_SCRIPT)
    done = ctx.run([gradle, "--offline", "--no-daemon", "--quiet", "--init-script", str(script), "help"])
    return parse_init_output(done.stdout) if done is not None else []


def parse_init_output(text: str) -> list[RegistrySource | None]:
    found: list[RegistrySource | None] = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == _MARK:
            _, where, name, url = fields
            found.append(source_for(ECOSYSTEM, f"gradle init script ({where}: {name})", url))
    return found


def _from_script(name: str, text: str) -> list[RegistrySource | None]:
    """Without Gradle: URLs written literally in repository declarations."""
    found: list[RegistrySource | None] = []
    for number, line in enumerate(text.splitlines(), 1):
        if _REPOSITORY_LINE.search(line) and not line.lstrip().startswith("//"):
            for match in _SCRIPT_URL.finditer(line):
                found.append(source_for(ECOSYSTEM, f"{name}:{number} (repository url)", match.group(1)))
    return found
