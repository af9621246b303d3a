#!/usr/bin/env bash
# actions/run's step: runs the `run` input as a script under `ciwatch run`, then writes the
# step summary and the outputs. It always exits 0: the Action's last step exits with ciwatch's
# code, after the summary and the artifact upload.
# In (from the Action's inputs, through env: never expanded into this script): CIWATCH_RUN,
# CIWATCH_SHELL, CIWATCH_POLICY, CIWATCH_MODE, CIWATCH_NET, CIWATCH_OUT, CIWATCH_WORKDIR,
# CIWATCH_ARTIFACT, CIWATCH_VENV.
set -uo pipefail
ciwatch="$CIWATCH_VENV/bin/ciwatch"
id="${GITHUB_JOB:-job}-${CIWATCH_JOB_INDEX:-0}-${GITHUB_ACTION:-step}-${GITHUB_RUN_ATTEMPT:-1}"
id=${id//[^A-Za-z0-9._-]/_}
artifact=${CIWATCH_ARTIFACT:-ciwatch-$id}
out=${CIWATCH_OUT:-}
if [ -z "$out" ]; then
  # Outside the workspace: the build writes there, and a record must not be the build's to change.
  mkdir -p "$RUNNER_TEMP/ciwatch" && out="$RUNNER_TEMP/ciwatch/$id"
fi
out=$(realpath -m "$out")
options=(--out "$out" --net "${CIWATCH_NET:-redirect}")
# The policy names a file of the repository: relative to the workspace, as users write it; by
# default the repository's .ciwatch/policy.yml, whatever the working directory.
policy=${CIWATCH_POLICY:-}
[ -n "$policy" ] || [ ! -f .ciwatch/policy.yml ] || policy=.ciwatch/policy.yml
[ -z "$policy" ] || policy=$(realpath -m "$policy")
[ -z "$policy" ] || options+=(--policy "$policy")
[ -z "${CIWATCH_MODE:-}" ] || options+=(--mode "$CIWATCH_MODE")

script=$(mktemp "$RUNNER_TEMP/ciwatch-script-XXXXXX.sh")
printf '%s\n' "$CIWATCH_RUN" >"$script"
# The shell as GitHub's `shell:` takes it: words, `{0}` the script's path (appended if absent).
shell=${CIWATCH_SHELL:-}
[ -n "$shell" ] || shell="bash --noprofile --norc -eo pipefail {0}"
read -r -a words <<<"$shell"
command=()
placed=false
for word in "${words[@]}"; do
  if [ "$word" = "{0}" ]; then command+=("$script") && placed=true; else command+=("$word"); fi
done
$placed || command+=("$script")

(cd "${CIWATCH_WORKDIR:-.}" && "$ciwatch" run "${options[@]}" -- "${command[@]}")
code=$?
rm -f "$script"

summary_options=(--max-bytes "${CIWATCH_SUMMARY_BYTES:-1000000}" --artifact "$artifact")
[ -z "$policy" ] || summary_options+=(--policy "$policy")
[ -z "${CIWATCH_MODE:-}" ] || summary_options+=(--mode "$CIWATCH_MODE")
if [ -f "$out/record.jsonl" ]; then
  "$ciwatch" summary "$out" "${summary_options[@]}" --markdown "$out/summary.md" --output "$GITHUB_OUTPUT" ||
    echo "::warning title=ciwatch::could not summarise the record in $out"
  [ ! -f "$out/summary.md" ] || cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
fi
{
  echo "exit-code=$code"
  echo "out=$out"
  echo "record=$out/record.jsonl"
  echo "verdict-file=$out/verdict.json"
  echo "artifact=$artifact"
} >>"$GITHUB_OUTPUT"
exit 0
