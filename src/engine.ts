/**
 * The engine, in the one direction of DESIGN §3: request → module → plan → run → results → report.
 * Front ends (cli.ts, main.ts) build the request and a target, and present what comes back.
 */
import path from "node:path";
import { defaultS3Access, isS3Uri, listS3Scenes, type S3SceneSet } from "./aws/scene-set.js";
import { EnvironmentError, PreflightError, type Finding } from "./errors.js";
import { forecast, readHistory, type Forecast, type Sizing } from "./forecast.js";
import { loadModule, type Module } from "./module.js";
import { buildPlan, newRunId, runNames, writeLaunchPhases, type Plan } from "./plan.js";
import { ensureRay, pinnedRayVersion } from "./ray/install.js";
import {
  FULL_REPORT_FILE,
  type LinkTarget,
  type Phase,
  renderFullMarkdown,
  renderMarkdown,
} from "./report.js";
import type { Request } from "./request.js";
import { loadScenes } from "./scenes.js";
import { readSummary, type RunSummary, type SummaryStore } from "./summary.js";

export interface Environment {
  /** This tool's checkout: pipeline/ and its pinned requirements. */
  toolRoot: string;
  /** Where modules (configs/, autoscaler/, deploy_files/) and relative scene paths are found. */
  workspace: string;
  venvDir: string;
  python?: string;
  /** Ray to install (default: the pinned version). */
  rayVersion?: string;
  log: (line: string) => void;
}

/** Where a run's plan and results live, decided by the target once the module is known. */
export interface Placement {
  dir: string;
  store: string;
  clusterName: string | null;
}

export interface Hooks {
  /** One line per finished scene, from the driver. */
  progress: (line: string) => void;
  /** Times a phase for the report. */
  phase: <T>(name: string, work: () => Promise<T> | T) => Promise<T>;
  /**
   * Writes the phases measured so far into the plan (launch-phases.json), just before the driver
   * starts: its summary keeps them for the next run's estimate of the start-up.
   */
  recordLaunch: (plan: Plan) => void;
}

/** What differs between running here and running on a cluster. */
export interface Target extends Sizing {
  place(mod: Module, runId: string): Placement;
  /**
   * Lists an s3:// scene set with the target's credentials (the AWS target authenticates for
   * it); absent: the default credential chain, as the local driver reads the scenes.
   */
  listScenes?(uri: string, runId: string): Promise<S3SceneSet>;
  /** Add target-specific files to the built plan (e.g. the rendered cluster YAML). */
  stage?(plan: Plan, mod: Module): void;
  /** Run the plan's scenes; resolves once the driver has finished (whatever its verdict). */
  run(plan: Plan, python: string, hooks: Hooks): Promise<void>;
  /** The text at `key` in the plan's store; undefined when there is no such key. */
  readText(plan: Plan, key: string): Promise<string | undefined>;
  /** `version`: the S3 version the run wrote (ReportOptions.link). */
  link(plan: Plan, key: string, version?: string): LinkTarget;
  /** Let go of what run() held for readText (the AWS target's credential server). */
  release?(): Promise<void>;
  /**
   * Checks, after the plan and before anything starts, that the run's cloud side is ready (AWS:
   * the role, bucket, AMIs, instance profile, network, quotas). Undefined: nothing was checked.
   */
  preflight?(plan: Plan, dryRun: boolean): Promise<Finding[] | undefined>;
}

export interface Outcome {
  plan: Plan;
  summary?: RunSummary;
  /** run-summary.json as the store holds it, with its journal applied (summary.ts readSummary). */
  summaryText?: string;
  markdown?: string;
  /** Every row, no budget: for FULL_REPORT_FILE beside the run summary (or report.md). */
  fullMarkdown?: string;
  /** The previous run's summary, which the report compared with (and the PR comment will). */
  previous?: RunSummary;
  phases: Phase[];
  /** 0 all scenes succeeded, 1 some failed, 130 interrupted. */
  exitCode: number;
}

/** request → module → plan. Validates everything and starts nothing; an s3:// set is listed. */
export async function planRun(
  req: Request,
  env: Environment,
  target: Target,
  runId = newRunId(),
): Promise<Plan> {
  if (!isS3Uri(req.scenes)) return preparePlan(req, env, target, runId);
  loadModule(env.workspace, req.module, req.metadata); // a wrong module fails before any AWS call
  const set = target.listScenes
    ? await target.listScenes(req.scenes, runId)
    : await listS3Scenes(req.scenes, defaultS3Access());
  return preparePlan(req, env, target, runId, set);
}

/** request → module → plan, with the scenes of a repository path, or an s3:// set listed. */
export function preparePlan(
  req: Request,
  env: Environment,
  target: Target,
  runId = newRunId(),
  s3Set?: S3SceneSet,
): Plan {
  const mod = loadModule(env.workspace, req.module, req.metadata);
  const scenes = s3Set ?? loadScenes(path.resolve(env.workspace, req.scenes), req.scenes);
  // The store is the bucket of the run's own config: overrides (s3_bucket=, results-bucket) count.
  const configured = { ...mod, mcsConfig: runNames(req, mod).mcsConfig };
  const plan = buildPlan(req, mod, scenes, {
    toolRoot: env.toolRoot,
    runId,
    rayVersion: env.rayVersion ?? pinnedRayVersion(env.toolRoot),
    ...target.place(configured, runId),
  });
  target.stage?.(plan, mod);
  return plan;
}

export interface EvaluateOptions {
  progress: (line: string) => void;
  runId?: string;
  /** Called once the plan is built, before anything starts. */
  onPlan?: (plan: Plan) => void;
  /** Where the report says the full per-scene table is (Markdown). */
  fullReport?: string;
  /** The preflight's findings (none: it passed), each to be shown as its own line. */
  onFindings?: (findings: Finding[]) => void;
  /** The estimate (and the deadline's sizing), before the preflight and before anything starts. */
  onForecast?: (forecast: Forecast, plan: Plan) => void | Promise<void>;
}

export async function evaluate(
  req: Request,
  env: Environment,
  target: Target,
  {
    progress,
    runId,
    onPlan,
    onFindings,
    onForecast,
    fullReport = `\`${FULL_REPORT_FILE}\` in the run's artifact`,
  }: EvaluateOptions,
): Promise<Outcome> {
  const phases: Phase[] = [];
  const hooks: Hooks = {
    progress,
    phase: async (name, work) => {
      const start = performance.now();
      try {
        return await work();
      } finally {
        phases.push({ name, seconds: (performance.now() - start) / 1000 });
      }
    },
    recordLaunch: (plan) => writeLaunchPhases(plan.dir, phases),
  };
  let plan: Plan;
  try {
    plan = await hooks.phase("plan", () => planRun(req, env, target, runId));
    onPlan?.(plan);
    const outlook = await hooks.phase("estimate", () =>
      forecast(req, plan, planStore(target, plan), target, env.log),
    );
    await onForecast?.(outlook, plan);
    // Before the Ray install and before anything is created: a wrong setup fails in seconds.
    const check = target.preflight;
    const findings = check && (await hooks.phase("preflight", () => check(plan, req.dryRun)));
    if (findings) {
      onFindings?.(findings);
      if (findings.some((f) => f.level === "error")) throw new PreflightError(findings);
    }
  } catch (error) {
    await target.release?.(); // listing an s3:// set or the preflight may have authenticated
    throw error;
  }
  if (req.dryRun) {
    await target.release?.();
    return { plan, phases, exitCode: 0 };
  }

  const python = await hooks.phase("install Ray", () =>
    ensureRay({
      toolRoot: env.toolRoot,
      venvDir: env.venvDir,
      python: env.python,
      version: plan.ray_version,
      log: env.log,
    }),
  );
  const source = target.link(plan, plan.summary_key).uri;
  let summary: RunSummary;
  let summaryText: string;
  let history: RunSummary[] = [];
  const store = planStore(target, plan);
  try {
    await target.run(plan, python, hooks);
    try {
      ({ summary, text: summaryText } = await readSummary(store, plan.summary_key, env.log));
    } catch (error) {
      throw new EnvironmentError(
        `the driver left no readable run summary at ${source}: ${(error as Error).message}`,
      );
    }
    history = await readHistory(store, summary, env.log);
  } finally {
    await target.release?.();
  }
  // A report describes its own run: never another run's summary found at this run's key.
  if (summary.run_id !== plan.run_id) {
    throw new EnvironmentError(
      `the run summary at ${source} belongs to run ${summary.run_id}, not to this run (${plan.run_id}); no report is made from another run's results`,
    );
  }
  const link = (key: string, version?: string) => target.link(plan, key, version);
  const options = { link, phases, previous: history[0], history, fullReport };
  return {
    plan,
    summary,
    summaryText,
    markdown: renderMarkdown(summary, options),
    fullMarkdown: renderFullMarkdown(summary, options),
    previous: history[0],
    phases,
    exitCode: outcomeCode(summary),
  };
}

/** The plan's results store, read through the target (its credentials). */
export function planStore(target: Target, plan: Plan): SummaryStore {
  return {
    read: (key: string) => target.readText(plan, key),
    uri: (key: string) => target.link(plan, key).uri,
  };
}

export function outcomeCode(summary: RunSummary): number {
  if (summary.state === "interrupted") return 130;
  return summary.totals.failed === 0 && summary.totals.pending === 0 ? 0 : 1;
}
