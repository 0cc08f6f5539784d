/**
 * The mcsteam fixture's "image": a Python 3.10 venv with the real machine-common-sense 0.7.4
 * (whose wheel also ships MCS's mock of the Unity simulator, tests/mock_controller.py), built
 * once and cached under MCS_TEST_CACHE (default ~/.cache/mcs-pipeline/). Its `image-bin/` holds `python` and `python3`,
 * for a node's PATH: team run scripts call bare `python` and expect the image's interpreter.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * What the venv holds. MCS 0.7.4's metadata omits two of its needs: numpy < 2 (its pinned
 * opencv-python 4.5.4.60 and scikit-image 0.19.3 are built against numpy 1) and portalocker
 * (imported by machine_common_sense/import_override.py). Nothing else is needed to import MCS
 * and record videos with the mock controller.
 */
export const MCS_REQUIREMENTS = ["machine-common-sense==0.7.4", "numpy<2", "portalocker"] as const;

/** The venv holds the complete install once this file is in it. */
const READY = ".mcs-ready";
const BUILD_TIMEOUT_MS = 15 * 60_000;

function run(command: string, args: string[], what: string): string {
  const result = spawnSync(command, args, {
    encoding: "utf8",
    timeout: BUILD_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) {
    const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-30);
    const why = result.error ? result.error.message : `exit ${result.status ?? result.signal}`;
    throw new Error(`${what} failed (${why}):\n${output.join("\n")}`);
  }
  return result.stdout;
}

function pyenvRoot(): string {
  const result = spawnSync("pyenv", ["root"], { encoding: "utf8" });
  if (result.status === 0 && result.stdout.trim()) return result.stdout.trim();
  return process.env.PYENV_ROOT || path.join(os.homedir(), ".pyenv");
}

/** pyenv's newest Python 3.10 (MCS 0.7.4 needs Python < 3.11). */
export function findPython310(): string {
  const versions = path.join(pyenvRoot(), "versions");
  let names: string[] = [];
  try {
    names = readdirSync(versions);
  } catch {
    // no pyenv versions at all: reported below
  }
  const candidates = names
    .map((name) => ({ name, match: /^3\.10(?:\.(\d+))?$/.exec(name) }))
    .filter((c) => c.match && existsSync(path.join(versions, c.name, "bin", "python3.10")))
    .sort((a, b) => Number(b.match![1] ?? 0) - Number(a.match![1] ?? 0));
  if (!candidates[0])
    throw new Error(
      `Python 3.10 not found in ${versions} (machine-common-sense 0.7.4 needs Python 3.7-3.10): install it with \`pyenv install 3.10\``,
    );
  return path.join(versions, candidates[0].name, "bin", "python3.10");
}

/** Where the venv for `requirements` lives (not necessarily built yet). */
export function mcsVenvDir(requirements: readonly string[] = MCS_REQUIREMENTS): string {
  const hash = createHash("sha256").update(requirements.join("\n")).digest("hex").slice(0, 10);
  const cache = process.env.MCS_TEST_CACHE ?? path.join(os.homedir(), ".cache", "mcs-pipeline");
  return path.join(cache, `mcs-0.7.4-py3.10-${hash}`);
}

/**
 * The absolute path of the cached venv's `bin/python`, building the venv first when it is not
 * there (about 25 s and 620 MB). It is built in a temporary directory beside its final place
 * and renamed into place when complete, so a half-built venv is never used; two builders at
 * once both work and the first rename wins. (A venv renamed after `python -m venv` keeps
 * working through bin/python; its pip and other console scripts name the build directory, so
 * use `bin/python -m pip`.)
 */
export function ensureMcsVenv(): string {
  const dir = mcsVenvDir();
  const python = path.join(dir, "bin", "python");
  if (existsSync(path.join(dir, READY))) return python;

  const base = findPython310();
  mkdirSync(path.dirname(dir), { recursive: true });
  const build = mkdtempSync(`${dir}.building-`);
  try {
    run(base, ["-m", "venv", build], "python3.10 -m venv");
    const py = path.join(build, "bin", "python");
    run(
      py,
      [
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        ...MCS_REQUIREMENTS,
      ],
      `pip install ${MCS_REQUIREMENTS.join(" ")}`,
    );
    run(
      py,
      ["-c", "import machine_common_sense, tests.mock_controller, cv2"],
      "importing machine_common_sense",
    );
    // The image's own interpreter for a node's PATH. Inside the venv, so that Python (which
    // looks for pyvenv.cfg beside the executable and one level up) finds the venv through it.
    const bin = path.join(build, "image-bin");
    mkdirSync(bin);
    for (const name of ["python", "python3"]) symlinkSync("../bin/python", path.join(bin, name));
    writeFileSync(path.join(build, READY), `${MCS_REQUIREMENTS.join("\n")}\n`);
    chmodSync(build, 0o755); // mkdtemp's 0700 would hide it from a node's other users
    try {
      renameSync(build, dir);
    } catch (error) {
      // Another builder finished first (or a stale incomplete dir is in the way).
      if (existsSync(path.join(dir, READY))) return python;
      throw error;
    }
  } finally {
    rmSync(build, { recursive: true, force: true });
  }
  return python;
}

/** The directory with the venv's `python` and `python3`, to put on a node's PATH. */
export function mcsImageBin(python: string = ensureMcsVenv()): string {
  return path.join(path.dirname(path.dirname(python)), "image-bin");
}
