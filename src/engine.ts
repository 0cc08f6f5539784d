/**
 * The engine, in the one direction of DESIGN §3: request → module → plan → run → results → report.
 * Front ends (the CLI now, the action next) build the request and print what comes back.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { EnvironmentError } from "./errors.js";
import { loadModule } from "./module.js";
import { buildPlan, newRunId, type Plan } from "./plan.js";
import { ensureRay, pinnedRayVersion } from "./ray/install.js";
import { renderMarkdown, renderTerminal } from "./report.js";
import type { Request } from "./request.js";
import { loadScenes } from "./scenes.js";
import { parseSummary, type RunSummary } from "./summary.js";
import { localLayout, readLocalSummary, runDriver, tail } from "./targets/local.js";

export interface Environment {
  /** This tool's checkout: pipeline/ and its pinned requirements. */
  toolRoot: string;
  /** Where modules (configs/, autoscaler/, deploy_files/) and relative scene paths are found. */
  workspace: string;
  venvDir: string;
  python?: string;
  log: (line: string) => void;
}

export interface Outcome {
  plan: Plan;
  summary?: RunSummary;
  reportPath?: string;
  terminalTable?: string;
  /** 0 all scenes succeeded, 1 some failed, 130 interrupted. */
  exitCode: number;
}

/** request → module → plan. Validates everything and starts nothing. */
export function preparePlan(req: Request, env: Environment, runId = newRunId()): Plan {
  const mod = loadModule(env.workspace, req.module, req.metadata);
  const scenes = loadScenes(path.resolve(env.workspace, req.scenes), req.scenes);
  const layout = localLayout(path.resolve(env.workspace, req.outDir), runId);
  return buildPlan(req, mod, scenes, {
    toolRoot: env.toolRoot,
    dir: layout.planDir,
    runId,
    store: layout.store,
    rayVersion: pinnedRayVersion(env.toolRoot),
    clusterName: null,
  });
}

/** The whole local evaluation. */
export async function evaluate(req: Request, env: Environment, onProgress: (line: string) => void) {
  const phases: { name: string; seconds: number }[] = [];
  const timed = async <T>(name: string, work: () => Promise<T> | T): Promise<T> => {
    const start = performance.now();
    try {
      return await work();
    } finally {
      phases.push({ name, seconds: (performance.now() - start) / 1000 });
    }
  };
  const plan = await timed("plan", () => preparePlan(req, env));
  if (req.dryRun) return { plan, exitCode: 0 } satisfies Outcome;

  const runDir = path.dirname(plan.dir);
  const python = await timed("install Ray", () =>
    ensureRay({ toolRoot: env.toolRoot, venvDir: env.venvDir, python: env.python, log: env.log }),
  );
  const driver = await timed("run scenes", () =>
    runDriver(plan, python, runDir, req.numCpus, onProgress),
  );
  let summary: RunSummary;
  try {
    summary = parseSummary(readLocalSummary(plan), path.join(plan.store, plan.summary_key));
  } catch (error) {
    throw new EnvironmentError(
      `the driver exited ${driver.code} without a readable run summary (${(error as Error).message}); ` +
        `last lines of ${driver.logPath}:\n${tail(driver.logPath)}`,
    );
  }
  if (![0, 1, 130].includes(driver.code)) {
    env.log(`warning: the driver exited ${driver.code}; see ${driver.logPath}`);
  }
  const reportPath = path.join(runDir, "report.md");
  const link = (key: string) => {
    const file = path.join(plan.store, key);
    return { href: path.relative(runDir, file), uri: file };
  };
  writeFileSync(reportPath, renderMarkdown(summary, { link, phases }));
  return {
    plan,
    summary,
    reportPath,
    terminalTable: renderTerminal(summary),
    exitCode: outcomeCode(summary),
  } satisfies Outcome;
}

export function outcomeCode(summary: RunSummary): number {
  if (summary.state === "interrupted") return 130;
  return summary.totals.failed === 0 && summary.totals.pending === 0 ? 0 : 1;
}
