// The test set-up's Ray venv (`npm run setup`): the product's own installer
// (`node dist/cli/index.js setup --dev`: the pinned Ray and the test tools) building a venv in the
// test cache (scripts/dev-cache.mjs), and .venv a link to it:
//   <cache>/ray-venv-<ray version>-py<X.Y>-<hash of pipeline/requirements*.txt and the Python>
// A .venv directory of the clone's own (made before the cache, or by `setup` for a local run) is
// used as it is, and MCS_VENV (the venv the tests use instead of .venv) is set up in place: both
// by the installer, as `setup --dev` always did.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { cacheDir, cachedInPlace, kindOf, linkTo, pythonInfo, shortHash } from "./dev-cache.mjs";

const root = path.resolve(import.meta.dirname, "..");
const cli = path.join(root, "dist/cli/index.js");
const venv = path.join(root, ".venv");

/** The product's `setup --dev` on the venv `dir`. */
function setup(dir) {
  execFileSync(process.execPath, [cli, "setup", "--dev"], {
    stdio: "inherit",
    env: { ...process.env, MCS_VENV: dir },
  });
}

if (process.env.MCS_VENV) {
  setup(process.env.MCS_VENV);
} else if (kindOf(venv) === "real") {
  console.log(`Using the clone's own ${venv} (not a link to the cache)`);
  setup(venv);
} else {
  const requirements = ["requirements.txt", "requirements-dev.txt"].map((f) =>
    readFileSync(path.join(root, "pipeline", f), "utf8"),
  );
  const ray = /^ray(?:\[[^\]]*\])?==(\S+)/m.exec(requirements[0])?.[1];
  if (!ray) throw new Error("pipeline/requirements.txt does not pin ray (ray[default]==X)");
  const base = process.env.MCS_PYTHON ?? "python3";
  let python;
  try {
    python = pythonInfo(base);
  } catch {
    setup(venv); // no usable Python: the installer says what to install
    process.exit(1);
  }
  const entry = path.join(
    cacheDir(),
    `ray-venv-${ray}-py${python.version}-${shortHash(...requirements, python.id)}`,
  );
  await cachedInPlace(entry, `the Ray ${ray} venv with the test tools`, base, setup);
  linkTo(venv, entry);
  console.log(`.venv -> ${entry}`);
}
