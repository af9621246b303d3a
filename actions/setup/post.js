// actions/setup's post step (always, at the job's end): one summary of every wrapped step's record.
const { spawnSync } = require("child_process");
const path = require("path");

const result = spawnSync("bash", [path.join(__dirname, "..", "scripts", "setup-post.sh")], { stdio: "inherit" });
process.exit(result.status === null ? 1 : result.status);
