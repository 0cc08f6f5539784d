// actions/setup-python (v5) stand-in, main step: see action.yml.
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

console.log(`setup-python stand-in on Node ${process.version}`);
const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] ?? "").trim();
const write = (file, name, value) => appendFileSync(process.env[file], `${name}=${value}\n`);

const [executable, version] = execFileSync(
  "python3",
  ["-c", "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"],
  { encoding: "utf8" },
)
  .trim()
  .split("\n");
const wanted = input("python-version");
if (wanted && !version.startsWith(`${wanted}.`)) {
  console.log(`stand-in: Python ${wanted} asked for; this host has ${version} (${executable})`);
}
console.log(`Python ${version}: ${executable}`);
write("GITHUB_OUTPUT", "python-version", version);
write("GITHUB_OUTPUT", "python-path", executable);
write("GITHUB_OUTPUT", "cache-hit", "false");

const cache = input("cache");
if (cache === "pip") {
  for (const file of input("cache-dependency-path").split("\n").filter(Boolean)) {
    if (!existsSync(path.resolve(process.env.GITHUB_WORKSPACE ?? ".", file.trim()))) {
      console.log(`::error::No file in ${process.cwd()} matched to [${file}]`);
      process.exit(1);
    }
  }
  // pip's own rule on Linux: PIP_CACHE_DIR, else $XDG_CACHE_HOME/pip, else ~/.cache/pip.
  const dir =
    process.env.PIP_CACHE_DIR ||
    path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache"), "pip");
  write("GITHUB_STATE", "cache-paths", JSON.stringify([dir]));
  console.log(`pip cache folder ${dir}: no cache service here, nothing restored`);
} else if (cache) {
  console.log(`::error::Caching for '${cache}' is not supported by this stand-in`);
  process.exit(1);
}
