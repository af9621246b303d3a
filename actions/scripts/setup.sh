#!/usr/bin/env bash
# actions/setup's main step: ciwatch into its own venv (the tool cache, keyed on its version),
# ciwatch-step on PATH, and what the wrapped steps and the post step read through $GITHUB_ENV
# and $GITHUB_STATE. Inputs come as INPUT_* variables (set by the runner).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CIWATCH_VERSION=${INPUT_VERSION:-} CIWATCH_SOURCE=${INPUT_SOURCE:-} CIWATCH_PYTHON=${INPUT_PYTHON:-python3}
located=$(GITHUB_OUTPUT=/dev/stdout bash "$here/locate.sh")
venv=$(sed -n 's/^venv=//p' <<<"$located")
CIWATCH_VENV=$venv CIWATCH_SOURCE=$(sed -n 's/^source=//p' <<<"$located") bash "$here/install.sh"

records=${INPUT_RECORDS:-}
[ -n "$records" ] || records="$RUNNER_TEMP/ciwatch-records"
records=$(realpath -m "$records")
mkdir -p "$records" && chmod 700 "$records"
policy=${INPUT_POLICY:-}
[ -z "$policy" ] || policy=$(realpath -m "$policy")
for value in "$records" "$policy" "${INPUT_MODE:-}" "${INPUT_NET:-}"; do
  # One line each: $GITHUB_ENV takes KEY=value lines, and a newline would start another variable.
  case $value in *$'\n'*) echo "::error title=ciwatch setup::an input holds a newline" && exit 2 ;; esac
done
{
  echo "CIWATCH_BIN=$venv/bin"
  echo "CIWATCH_RECORDS=$records"
  echo "CIWATCH_POLICY=$policy"
  echo "CIWATCH_MODE=${INPUT_MODE:-}"
  echo "CIWATCH_NET=${INPUT_NET:-redirect}"
} >>"$GITHUB_ENV"
{
  echo "bin=$venv/bin"
  echo "records=$records"
  echo "policy=$policy"
  echo "mode=${INPUT_MODE:-}"
} >>"$GITHUB_STATE"
echo "$(cd "$here/../setup/bin" && pwd)" >>"$GITHUB_PATH"
echo "$venv/bin" >>"$GITHUB_PATH"
echo "records=$records" >>"$GITHUB_OUTPUT"
