// Bundles each entry point with ncc into dist/<entry>/index.js (what action.yml and the README run).
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";

const entries = { cli: "src/cli.ts", main: "src/main.ts", post: "src/post.ts" };
const outRoot = process.argv[2] ?? "dist";

rmSync(outRoot, { recursive: true, force: true });
for (const [name, source] of Object.entries(entries)) {
  execFileSync(
    "npx",
    [
      "ncc",
      "build",
      source,
      "-o",
      `${outRoot}/${name}`,
      "--target",
      "es2022",
      "--license",
      "licenses.txt",
      "-q",
    ],
    { stdio: "inherit" },
  );
}
