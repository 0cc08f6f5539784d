/**
 * The local target: the driver on this machine's own Ray, results in a local directory store.
 * No SSH, no AWS. Layout under --out: store/ (same keys as the S3 bucket) and runs/<run id>/
 * (plan/, driver.log, report.md), so a later run in the same --out can resume. Runs may share an
 * --out at the same time: each has its own run directory, summary key and local Ray.
 */
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { machineShape } from "../cluster-shape.js";
import type { Target } from "../engine.js";
import { EnvironmentError } from "../errors.js";
import type { Plan } from "../plan.js";
import { stream } from "../proc.js";

export function localTarget(outDir: string, numCpus: number | undefined): Target {
  const out = path.resolve(outDir);
  return {
    place: (_mod, runId) => ({
      dir: path.join(claimRunDir(out, runId), "plan"),
      store: path.join(out, "store"),
      clusterName: null,
    }),
    shape: (plan) => machineShape(plan, numCpus ?? availableParallelism()),
    run: (plan, python, hooks) => {
      hooks.recordLaunch(plan);
      return hooks.phase("run scenes", () => runDriver(plan, python, numCpus, hooks.progress));
    },
    readText: async (plan, key) => readIfThere(path.join(plan.store, key)),
    // A directory keeps no versions: a link is to the file as it is now.
    link: (plan, key) => {
      const file = path.join(plan.store, key);
      return { href: path.relative(runDir(plan), file), uri: file };
    },
  };
}

/**
 * Creates runs/<run id>/ for this run alone: runs into one --out may overlap, and two of them
 * must never share a plan, driver.log or report.md (run ids are random within the second).
 */
function claimRunDir(out: string, runId: string): string {
  const dir = path.join(out, "runs", runId);
  mkdirSync(path.dirname(dir), { recursive: true });
  try {
    mkdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    throw new EnvironmentError(`${dir} already exists: another run has the id ${runId}; run again`);
  }
  return dir;
}

function readIfThere(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** runs/<run id>/: the plan's parent, where driver.log and report.md go. */
export function runDir(plan: Plan): string {
  return path.dirname(plan.dir);
}

/** Runs the driver; its stdout (one progress line per scene) goes to `onProgress`. */
async function runDriver(
  plan: Plan,
  python: string,
  numCpus: number | undefined,
  onProgress: (line: string) => void,
): Promise<void> {
  const logPath = path.join(runDir(plan), "driver.log");
  const log = createWriteStream(logPath);
  const args = [
    path.join(plan.dir, "pipeline", "run_eval.py"),
    "--plan",
    plan.dir,
    "--ray-address",
    "local",
  ];
  if (numCpus) args.push("--num-cpus", String(numCpus));
  // Ctrl-C reaches the driver from the terminal; a SIGTERM to us is passed on. Either way we
  // wait for the driver, which saves the summary before it exits.
  let child: { kill: (s: NodeJS.Signals) => boolean } | undefined;
  const forward = () => child?.kill("SIGTERM");
  const ignore = () => undefined;
  process.on("SIGTERM", forward).on("SIGINT", ignore);
  let code: number | null;
  try {
    ({ code } = await stream(python, args, {
      env: { ...process.env, PYTHONUNBUFFERED: "1", RAY_USAGE_STATS_ENABLED: "0" },
      onSpawn: (c) => (child = c),
      onStdout: onProgress,
      onStderr: (line) => log.write(`${line}\n`),
    }));
  } finally {
    process.off("SIGTERM", forward).off("SIGINT", ignore);
    await new Promise((r) => log.end(r));
  }
  // 0, 1 and 130 are verdicts (all ok, some failed, interrupted); anything else is a crash.
  if (code === null || ![0, 1, 130].includes(code)) {
    const tail = readFileSync(logPath, "utf8").split("\n").slice(-21).join("\n");
    throw new EnvironmentError(`the driver failed (exit ${code}); ${logPath} ends:\n${tail}`);
  }
}
