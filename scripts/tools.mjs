// Test tools outside npm and PyPI: actionlint, built from the Go module proxy into .tools/bin.
// Idempotent: an installed binary of the pinned version is kept.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const ACTIONLINT = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12";
const bin = path.resolve(".tools/bin");
const actionlint = path.join(bin, "actionlint");
const version = ACTIONLINT.split("@")[1];

const installed = existsSync(actionlint)
  ? execFileSync(actionlint, ["-version"], { encoding: "utf8" }).split("\n")[0]
  : "";
if (installed === version) {
  console.log(`actionlint ${version} is already installed in .tools/bin`);
} else {
  console.log(`Installing ${ACTIONLINT} into .tools/bin (needs Go)`);
  execFileSync("go", ["install", ACTIONLINT], {
    stdio: "inherit",
    env: { ...process.env, GOBIN: bin },
  });
}
