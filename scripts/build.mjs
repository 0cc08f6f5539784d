// Bundles each entry point with ncc into dist/<entry>/index.js (what action.yml and the README run).
// Each bundle is built aside and swapped in whole, so a running test never sees a half-built dist/.
//
// `--if-stale` (what `npm test` runs): build only unless dist/ is exactly what the last build made
// from the sources as they are now. Every build of dist/ records a hash of its inputs (src/, the
// package files, this script) and of its output in node_modules/.cache; a changed source file, or a
// dist/ changed since, means a new build. So tests never run a bundle older than src/.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";

const entries = {
  cli: "src/cli.ts",
  main: "src/main.ts",
  post: "src/post.ts",
  janitor: "src/janitor.ts",
};
const ifStale = process.argv.includes("--if-stale");
const outRoot = process.argv.slice(2).find((a) => !a.startsWith("--")) ?? "dist";
// The schemas live with the driver (they travel to the head node) and are bundled too.
const INPUTS = [
  "src",
  "pipeline/mcs_pipeline/schemas",
  "package.json",
  "package-lock.json",
  "scripts/build.mjs",
  "tsconfig.json",
];
const STAMP = path.join("node_modules", ".cache", "mcs-pipeline", "dist-stamp.json");
const recorded = path.resolve(outRoot) === path.resolve("dist");

/** sha256 over the files under `roots` (paths and contents, in a fixed order). */
function digest(roots) {
  const hash = createHash("sha256");
  const add = (file) => {
    if (!existsSync(file)) return;
    if (statSync(file).isDirectory()) {
      // Python's byte-code caches are not sources.
      for (const name of readdirSync(file).sort()) {
        if (name !== "__pycache__") add(path.join(file, name));
      }
      return;
    }
    hash.update(`${file}\0`).update(readFileSync(file)).update("\0");
  };
  for (const root of roots) add(root);
  return hash.digest("hex");
}

/** Runs `command`, its output through ours; rejects when it fails. */
function run(command, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: "inherit" });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited ${code}`)),
    );
  });
}

const inputs = digest(INPUTS);
if (ifStale && recorded && existsSync(STAMP)) {
  const stamp = JSON.parse(readFileSync(STAMP, "utf8"));
  if (stamp.inputs === inputs && stamp.outputs === digest([outRoot])) {
    console.log("dist/ is what the last build made from the current sources: not rebuilt");
    process.exit(0);
  }
  console.log("dist/ is not what the last build made from the current sources: rebuilding");
}
mkdirSync(outRoot, { recursive: true });
const staging = mkdtempSync(path.join(path.dirname(path.resolve(outRoot)), ".dist-"));

try {
  // The bundles are independent: built side by side (each ncc type-checks and bundles on one core).
  await Promise.all(
    Object.entries(entries).map(([name, source]) => {
      const out = path.join(staging, name);
      const args = [
        "ncc",
        "build",
        source,
        "-o",
        out,
        "--target",
        "es2022",
        "--license",
        "licenses.txt",
        "-q",
      ];
      return run("npx", args);
    }),
  );
  // Bundles of entries that no longer exist go; the rest are replaced one by one.
  for (const old of readdirSync(outRoot, { withFileTypes: true })) {
    if (!(old.name in entries))
      rmSync(path.join(outRoot, old.name), { recursive: true, force: true });
  }
  for (const name of Object.keys(entries)) {
    rmSync(path.join(outRoot, name), { recursive: true, force: true });
    renameSync(path.join(staging, name), path.join(outRoot, name));
  }
} finally {
  rmSync(staging, { recursive: true, force: true });
}
if (recorded) {
  mkdirSync(path.dirname(STAMP), { recursive: true });
  writeFileSync(STAMP, JSON.stringify({ inputs, outputs: digest([outRoot]) }));
}
