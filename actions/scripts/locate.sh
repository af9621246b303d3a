#!/usr/bin/env bash
# Where ciwatch's virtual environment goes, and the cache key it is kept under: one venv per
# ciwatch version (and source) and Python, in the runner's tool cache, never the build's Python.
# In: CIWATCH_VERSION (a release to install from the package index; empty: the Action's own
# checkout), CIWATCH_SOURCE (anything pip installs: a path, a wheel, a git URL; overrides the
# version), CIWATCH_PYTHON. Out (to $GITHUB_OUTPUT): venv, key, source.
set -euo pipefail
checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${CIWATCH_PYTHON:-python3}
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -n "${CIWATCH_SOURCE:-}" ]; then
  source=$CIWATCH_SOURCE
  version="src-$(printf '%s' "$source" | sha256sum | cut -c1-12)"
elif [ -n "${CIWATCH_VERSION:-}" ]; then
  source="ciwatch==$CIWATCH_VERSION"
  version=$CIWATCH_VERSION
else
  # The checkout's version, and a digest of its code: an unreleased change gets a venv of its own.
  source=$checkout
  release=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$checkout/ciwatch/__init__.py")
  digest=$(cd "$checkout" && find ciwatch pyproject.toml -type f ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
  version="$release-$digest"
fi
venv="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/ciwatch/$version-py$py_version/venv"
{
  echo "venv=$venv"
  echo "key=ciwatch-${RUNNER_OS:-Linux}-${RUNNER_ARCH:-X64}-py$py_version-$version"
  echo "source=$source"
} >>"${GITHUB_OUTPUT:-/dev/stdout}"
