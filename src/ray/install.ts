/**
 * The Ray installer: a Python venv with the pinned `ray[default]` and boto3 (plus the test tools
 * with `dev`). Idempotent: when the venv already has the pinned versions it does nothing.
 * The pins live in pipeline/requirements*.txt, the one place they are written.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { exec } from "@actions/exec";
import { EnvironmentError } from "../errors.js";
import { capture } from "../proc.js";

export const MIN_PYTHON: [number, number] = [3, 10];

export interface InstallOptions {
  toolRoot: string;
  venvDir: string;
  /** The interpreter to build the venv from (default: python3 on PATH). */
  python?: string;
  dev?: boolean;
  /** Default: the pinned version. */
  version?: string;
  log: (line: string) => void;
}

export function requirementsFile(toolRoot: string, dev = false): string {
  return path.join(toolRoot, "pipeline", dev ? "requirements-dev.txt" : "requirements.txt");
}

/** The pinned Ray version, read from pipeline/requirements.txt. */
export function pinnedRayVersion(toolRoot: string): string {
  const text = readFileSync(requirementsFile(toolRoot), "utf8");
  const pin = /^ray(?:\[[^\]]*\])?==(\S+)/m.exec(text);
  if (!pin) throw new Error(`${requirementsFile(toolRoot)} does not pin ray (ray[default]==X)`);
  return pin[1]!;
}

export function venvPython(venvDir: string): string {
  return path.join(venvDir, "bin", "python");
}

/** Make sure the venv has the pinned Ray; returns its python. */
export async function ensureRay(options: InstallOptions): Promise<string> {
  const { toolRoot, venvDir, dev = false, log } = options;
  const pinned = pinnedRayVersion(toolRoot);
  const version = options.version ?? pinned;
  const python = venvPython(venvDir);
  const packages = dev ? ["ray", "boto3", "pytest", "moto", "cfn-lint"] : ["ray", "boto3"];
  if ((await installedRay(python, packages)) === version) {
    log(`Ray ${version} is already installed in ${venvDir}`);
    return python;
  }
  const base = options.python ?? "python3";
  await checkPython(base);
  if (!existsSync(python)) {
    log(`Creating a Python venv in ${venvDir}`);
    await capture(base, ["-m", "venv", venvDir]).catch((error: Error) => {
      throw new EnvironmentError(
        `could not create a venv with ${base} (${error.message}); on Debian/Ubuntu: apt-get install python3-venv`,
      );
    });
  }
  log(
    `Installing ray[default]==${version} and boto3${dev ? " and the test tools" : ""} (this takes a few minutes once)`,
  );
  const pip = await exec(
    python,
    [
      "-m",
      "pip",
      "install",
      "--disable-pip-version-check",
      "--progress-bar",
      "off",
      "-r",
      version === pinned ? requirementsFile(toolRoot, dev) : repinned(toolRoot, dev, version),
    ],
    {
      silent: true,
      ignoreReturnCode: true,
      listeners: {
        stdline: (l) => void (/^(Collecting|Successfully)/.test(l) && log(`  ${l}`)),
        errline: (l) => log(`  ${l}`),
      },
    },
  );
  const installed = await installedRay(python, packages);
  if (pip !== 0 || installed !== version) {
    throw new EnvironmentError(
      `installing Ray ${version} into ${venvDir} failed (pip exit ${pip}); see the pip output above`,
    );
  }
  log(`Ray ${version} installed in ${venvDir}`);
  return python;
}

/** The requirements with another Ray pin (the action's ray-version input), in a temp file. */
function repinned(toolRoot: string, dev: boolean, version: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "mcs-req-"));
  const base = readFileSync(requirementsFile(toolRoot), "utf8").replace(
    /^ray(\[[^\]]*\])?==\S+/m,
    `ray$1==${version}`,
  );
  writeFileSync(path.join(dir, "requirements.txt"), base);
  // requirements-dev.txt includes requirements.txt by relative path: copy it beside.
  writeFileSync(
    path.join(dir, "requirements-dev.txt"),
    readFileSync(requirementsFile(toolRoot, true), "utf8"),
  );
  return path.join(dir, dev ? "requirements-dev.txt" : "requirements.txt");
}

/**
 * Ray's version when every one of `packages` is installed, from the packages' metadata: as pip
 * knows them, in a few milliseconds, where importing Ray and boto3 takes a second of CPU.
 */
async function installedRay(python: string, packages: string[]): Promise<string | undefined> {
  if (!existsSync(python)) return undefined;
  const script = `import importlib.metadata as m; v = [m.version(p) for p in ${JSON.stringify(packages)}]; print(v[0])`;
  return capture(python, ["-c", script]).then(
    (out) => out.trim(),
    () => undefined,
  );
}

async function checkPython(python: string): Promise<void> {
  const found = await capture(python, [
    "-c",
    "import sys; print('%d.%d' % sys.version_info[:2])",
  ]).catch(() => undefined);
  const [major = 0, minor = 0] = (found ?? "").split(".").map(Number);
  if (
    found === undefined ||
    major < MIN_PYTHON[0] ||
    (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])
  ) {
    throw new EnvironmentError(
      `Ray needs Python ${MIN_PYTHON.join(".")} or newer as "${python}" (found ${found ?? "none"}):` +
        " install python3 (e.g. apt-get install python3 python3-venv) or set MCS_PYTHON",
    );
  }
}
