// Bundles each entry point with ncc into dist/<entry>/index.js (what action.yml and the README run).
// Each bundle is built aside and swapped in whole, so a running test never sees a half-built dist/.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";

const entries = {
  cli: "src/cli.ts",
  main: "src/main.ts",
  post: "src/post.ts",
  janitor: "src/janitor.ts",
};
const outRoot = process.argv[2] ?? "dist";
mkdirSync(outRoot, { recursive: true });
const staging = mkdtempSync(path.join(path.dirname(path.resolve(outRoot)), ".dist-"));

try {
  for (const [name, source] of Object.entries(entries)) {
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
    execFileSync("npx", args, { stdio: "inherit" });
  }
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
