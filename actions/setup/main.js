// actions/setup's main step: no npm dependency, no bundle; the work is in ../scripts/setup.sh.
// The inputs reach it as INPUT_* environment variables, never spliced into a command line.
const { spawnSync } = require("child_process");
const path = require("path");

const result = spawnSync("bash", [path.join(__dirname, "..", "scripts", "setup.sh")], { stdio: "inherit" });
process.exit(result.status === null ? 1 : result.status);
