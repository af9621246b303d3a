#!/usr/bin/env bash
# actions/setup's post step: every wrapped step's record judged and summed up in one step
# summary (and records/summary.md). It never fails the job: each wrapped step already exited
# with its verdict.
set -uo pipefail
bin=${STATE_bin:-}
records=${STATE_records:-}
if [ -z "$bin" ] || [ -z "$records" ]; then
  echo "ciwatch: the setup step did not finish; nothing to sum up"
  exit 0
fi
options=(--max-bytes 1000000 --markdown "$records/summary.md" --output "$records/summary.env")
[ -z "${STATE_policy:-}" ] || options+=(--policy "$STATE_policy")
[ -z "${STATE_mode:-}" ] || options+=(--mode "$STATE_mode")
rm -f "$records/summary.md" "$records/summary.env"
if "$bin/ciwatch" summary "$records" "${options[@]}"; then
  cat "$records/summary.md" >>"$GITHUB_STEP_SUMMARY"
else
  echo "::warning title=ciwatch::no record to sum up in $records"
fi
exit 0
