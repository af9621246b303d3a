#!/usr/bin/env bash
# Installs ciwatch into a virtual environment of its own (CIWATCH_VENV) from CIWATCH_SOURCE,
# unless the cache already restored it there. Prints the version installed.
set -euo pipefail
venv=${CIWATCH_VENV:?CIWATCH_VENV: where the venv goes}
source=${CIWATCH_SOURCE:?CIWATCH_SOURCE: what pip installs}
if ! "$venv/bin/ciwatch" --version >/dev/null 2>&1; then
  rm -rf "$venv"
  "${CIWATCH_PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$source"
fi
"$venv/bin/ciwatch" --version
