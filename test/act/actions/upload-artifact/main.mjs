// actions/upload-artifact (v4) stand-in: see action.yml.
import { appendFileSync, cpSync, existsSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";

console.log(`upload-artifact stand-in on Node ${process.version}`);
const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] ?? "").trim();
const name = input("name") || "artifact";
const root =
  process.env.ACT_STAND_IN_ARTIFACTS || path.join(process.env.RUNNER_TEMP ?? "/tmp", "artifacts");
const dest = path.join(root, name);
const workspace = process.env.GITHUB_WORKSPACE ?? process.cwd();

const paths = input("path")
  .split("\n")
  .map((p) => p.trim())
  .filter((p) => p && !p.startsWith("!"));
if (paths.some((p) => /[*?[]/.test(p))) {
  console.log(`::error::the upload-artifact stand-in takes no globs: ${paths.join(", ")}`);
  process.exit(1);
}
const found = paths.map((p) => path.resolve(workspace, p)).filter((p) => existsSync(p));
if (found.length === 0) {
  const mode = input("if-no-files-found") || "warn";
  const message = `No files were found with the provided path: ${paths.join(", ")}. No artifacts will be uploaded.`;
  if (mode === "error") {
    console.log(`::error::${message}`);
    process.exit(1);
  }
  if (mode === "warn") console.log(`::warning::${message}`);
  else console.log(message);
  process.exit(0);
}
mkdirSync(dest, { recursive: true });
// As upload-artifact lays them out: a folder's contents at the artifact's root, a file by its name.
for (const p of found) {
  cpSync(p, statSync(p).isDirectory() ? dest : path.join(dest, path.basename(p)), {
    recursive: true,
  });
}
console.log(`Artifact ${name}: ${found.join(", ")} copied to ${dest}`);
appendFileSync(process.env.GITHUB_OUTPUT, `artifact-id=${name}\nartifact-url=file://${dest}\n`);
