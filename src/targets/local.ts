/**
 * The local target: the driver on this machine's own Ray, results in a local directory store.
 * No SSH, no AWS. Layout under --out: store/ (same keys as the S3 bucket) and runs/<run id>/
 * (plan/, driver.log, report.md), so a later run in the same --out can resume.
 */
import { createWriteStream, readFileSync } from "node:fs";
import path from "node:path";
import type { Plan } from "../plan.js";
import { stream } from "../proc.js";

export interface LocalLayout {
  runDir: string;
  planDir: string;
  store: string;
}

export function localLayout(outDir: string, runId: string): LocalLayout {
  const out = path.resolve(outDir);
  const runDir = path.join(out, "runs", runId);
  return { runDir, planDir: path.join(runDir, "plan"), store: path.join(out, "store") };
}

export interface DriverRun {
  code: number;
  /** The driver's stderr (Ray's own chatter included), kept beside the report. */
  logPath: string;
}

/** Runs the driver; its stdout (one progress line per scene) goes to `onProgress`. */
export async function runDriver(
  plan: Plan,
  python: string,
  runDir: string,
  numCpus: number | undefined,
  onProgress: (line: string) => void,
): Promise<DriverRun> {
  const logPath = path.join(runDir, "driver.log");
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
  try {
    const result = await stream(python, args, {
      env: { ...process.env, PYTHONUNBUFFERED: "1", RAY_USAGE_STATS_ENABLED: "0" },
      onSpawn: (c) => (child = c),
      onStdout: onProgress,
      onStderr: (line) => log.write(`${line}\n`),
    });
    return { code: result.code ?? 128 + 15, logPath };
  } finally {
    process.off("SIGTERM", forward).off("SIGINT", ignore);
    await new Promise((r) => log.end(r));
  }
}

export function readLocalSummary(plan: Plan): string {
  return readFileSync(path.join(plan.store, plan.summary_key), "utf8");
}

export function tail(file: string, lines = 20): string {
  return readFileSync(file, "utf8")
    .split("\n")
    .slice(-lines - 1)
    .join("\n");
}
