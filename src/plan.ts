/**
 * The plan: a staging directory holding everything the driver needs (driver code, deploy files,
 * configs, the selected scenes, plan.json), plus the run's identity and results location.
 * A dry run stops here. Paths inside plan.json are relative to the staging directory, so the
 * same plan runs wherever it is synced to.
 */
import { chmodSync, cpSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { InputError } from "./errors.js";
import { stringifyIni } from "./ini.js";
import { checkMcsConfig, mcsFlags, mcsSection, type Module } from "./module.js";
import type { Request } from "./request.js";
import type { S3SceneSet } from "./aws/scene-set.js";
import type { Scene } from "./scenes.js";
import { localNodePrice, nodeTypePrices, type NodeTypePrice } from "./prices.js";
import { schemaProblem } from "./schemas.js";

/**
 * The wall clock is a backstop, not the scene's time limit: MCS's own `timeout` (default 3600 s)
 * ends a scene whose performer stops stepping, `controller_timeout` (600 s) one whose simulator
 * does not start, and a script still running scene_end_grace_s after MCS ended the scene is
 * stopped with its history kept. What is left (a hang before start_scene, in the team script
 * outside the performer) gets the longest run a job supports, so a long legitimate scene is
 * never cut short.
 */
export const DEFAULT_SCENE_TIMEOUT_MINUTES = 360;
/** Seconds a run script may go on after MCS wrote the scene's history (its own copies, uploads). */
export const DEFAULT_SCENE_END_GRACE_S = 120;
/** MCS 0.7.4's own defaults (config_manager.py TIMEOUT_DEFAULT, CONTROLLER_TIMEOUT_DEFAULT). */
const MCS_TIMEOUT_DEFAULT_S = 3600;
const MCS_CONTROLLER_TIMEOUT_DEFAULT_S = 600;

/**
 * plan.json, read by the driver (pipeline/mcs_pipeline/driver.py): one shape for both sides,
 * described once in pipeline/mcs_pipeline/schemas/plan.schema.json (buildPlan checks what it
 * writes; test/schemas.test.ts holds this interface to that file).
 */
export interface PlanFile {
  schema_version: 1;
  run_id: string;
  module: string;
  metadata: string;
  target: Request["target"];
  cluster_name: string | null;
  ray_version: string;
  /** `s3://bucket` or a local directory: where outputs and run-summary.json go. */
  store: string;
  /** This run's own summary: `<folder>/<prefix>_<run id>_run-summary.json`. */
  summary_key: string;
  /**
   * The pointer to the latest run of this module and level (`<folder>/<prefix>_latest-run.json`):
   * the driver replaces it when it starts; resume and scheduling find the previous run through it.
   */
  latest_key: string;
  /** The summary key every run shared before summaries carried the run id; read when no pointer. */
  legacy_summary_key: string;
  names: { folder: string; movies_folder: string; prefix: string };
  retries: number;
  scene_timeout_s: number;
  resume: boolean;
  resources: Module["resources"];
  /** Relative to the plan directory, or absolute on the node. */
  run_script: string;
  eval_dir: string | null;
  history_required: boolean;
  /** Seconds a run script may go on after MCS wrote the scene's history; then it is stopped. */
  scene_end_grace_s?: number;
  /** The module's node services script (DESIGN §4), like run_script; null: none. */
  node_services?: string | null;
  mcs_config: string;
  /**
   * `file` in the plan directory, or `uri` for a scene of an s3:// scene set, which the driver
   * fetches itself (then `expected_cost` and `category` are null here: the driver reads them).
   * `category`: the scene file's goal.category (null when none); the driver copies it to the summary.
   */
  scenes: {
    name: string;
    file?: string;
    uri?: string;
    expected_cost: number | null;
    category: string | null;
  }[];
  /**
   * The cluster's node types with their hourly prices (src/prices.ts), for the cost estimate:
   * the driver records which nodes ran and for how long. Empty for a local run.
   */
  node_types?: Record<string, NodeTypePrice>;
  /**
   * budget-usd: the driver starts no new scene once the spend so far plus the committed cost of
   * the running scenes would pass it, and ends as interrupted (the summary's stop_reason).
   */
  budget_usd?: number | null;
}

export interface Plan extends PlanFile {
  /** The staging directory on this machine. */
  dir: string;
  /** MCS's own timeouts, seconds, from the run's MCS config (for the plan's description). */
  mcsTimeouts: { timeout: number; controller: number };
  /** An s3:// scene set: its folder and total size (the scenes are not in the plan directory). */
  sceneSet?: { uri: string; bytes: number };
}

export interface PlanContext {
  /** Where pipeline/ (the driver) lives: this tool's own checkout. */
  toolRoot: string;
  /** The staging directory to create. */
  dir: string;
  runId: string;
  store: string;
  rayVersion: string;
  clusterName: string | null;
}

export function buildPlan(
  req: Request,
  mod: Module,
  sceneSource: Scene[] | S3SceneSet,
  ctx: PlanContext,
): Plan {
  const s3Set = Array.isArray(sceneSource) ? undefined : sceneSource;
  const scenes = s3Set?.scenes ?? (sceneSource as Scene[]);
  const { mcsConfig, mcs, folder, prefix } = runNames(req, mod);

  mkdirSync(path.join(ctx.dir, "configs"), { recursive: true });
  mkdirSync(path.join(ctx.dir, "scenes"), { recursive: true });
  copyDriver(ctx.toolRoot, path.join(ctx.dir, "pipeline"));
  cpSync(mod.deployDir, path.join(ctx.dir, "deploy"), { recursive: true });
  if (!s3Set) {
    for (const scene of scenes as Scene[])
      cpSync(scene.file, path.join(ctx.dir, "scenes", `${scene.name}.json`));
  }
  writeFileSync(path.join(ctx.dir, "scenes.txt"), scenes.map((s) => `${s.name}.json\n`).join(""));
  writeFileSync(path.join(ctx.dir, "configs", "mcs_config.ini"), stringifyIni(mcsConfig));
  const exec = new Map(mod.exec).set("scene_location", "scenes/").set("scene_list", "scenes.txt");
  writeFileSync(path.join(ctx.dir, "configs", "exec.ini"), stringifyIni(new Map([["MCS", exec]])));

  const runScript = mod.exec.get("run_script")!;
  const onNode = (script: string) => (path.isAbsolute(script) ? script : `deploy/${script}`);
  const plan: PlanFile = {
    schema_version: 1,
    run_id: ctx.runId,
    module: mod.name,
    metadata: req.metadata,
    target: req.target,
    cluster_name: ctx.clusterName,
    ray_version: ctx.rayVersion,
    store: ctx.store,
    ...resultKeys(folder, prefix, ctx.runId),
    names: { folder, movies_folder: mcs.get("s3_movies_folder") || folder, prefix },
    retries: req.retries,
    scene_timeout_s:
      60 * (req.sceneTimeoutMinutes ?? mod.sceneTimeoutMinutes ?? DEFAULT_SCENE_TIMEOUT_MINUTES),
    resume: req.resume,
    resources: mod.resources,
    run_script: onNode(runScript),
    eval_dir: mod.exec.get("eval_dir") || null,
    history_required: mcsFlags(mcs, "MCS config").history_enabled,
    scene_end_grace_s: mod.sceneEndGraceSeconds ?? DEFAULT_SCENE_END_GRACE_S,
    node_services: mod.nodeServices ? onNode(mod.nodeServices) : null,
    mcs_config: "configs/mcs_config.ini",
    scenes: s3Set
      ? s3Set.scenes.map((s) => ({ name: s.name, uri: s.uri, expected_cost: null, category: null }))
      : (scenes as Scene[]).map((s) => ({
          name: s.name,
          file: `scenes/${s.name}.json`,
          expected_cost: s.lastStep,
          category: s.category,
        })),
    node_types: req.target === "aws" ? nodeTypePrices(mod) : localNodePrice(mod),
    ...(req.budgetUsd !== undefined && { budget_usd: req.budgetUsd }),
  };
  const problem = schemaProblem(plan, "plan.schema.json");
  if (problem)
    throw new Error(`mcs-pipeline bug: the plan it built does not match the schema: ${problem}`);
  writeFileSync(path.join(ctx.dir, "plan.json"), JSON.stringify(plan, null, 1));
  for (const script of [runScript, mod.nodeServices]) {
    if (script && !path.isAbsolute(script)) chmodSync(path.join(ctx.dir, "deploy", script), 0o755);
  }
  return {
    ...plan,
    dir: ctx.dir,
    mcsTimeouts: mcsTimeouts(mcs),
    ...(s3Set && { sceneSet: { uri: s3Set.uri, bytes: s3Set.bytes } }),
  };
}

/**
 * The run's copy of the MCS config (the request's overrides applied) and the names its results
 * go under: `folder` (s3_folder) and `prefix` (`<evaluation_name>_<metadata>_<team>`). A run and
 * a later collect of it (src/action/collect.ts) find its keys through this and resultKeys.
 */
export function runNames(req: Pick<Request, "overrides" | "metadata">, mod: Module) {
  const mcsConfig = structuredClone(mod.mcsConfig);
  const mcs = mcsSection(mcsConfig, "MCS config");
  for (const [key, value] of Object.entries(req.overrides)) {
    const appended = key.endsWith("+") ? key.slice(0, -1) : undefined;
    if (appended) mcs.set(appended, (mcs.get(appended) ?? "") + value);
    else mcs.set(key, value);
  }
  if (Object.keys(req.overrides).length) {
    try {
      checkMcsConfig(mcsConfig, req.metadata, "MCS config with overrides");
    } catch (error) {
      throw new InputError("mcs-config-overrides", (error as Error).message);
    }
  }
  const folder = mcs.get("s3_folder")!;
  const prefix = `${mcs.get("evaluation_name")}_${req.metadata}_${mcs.get("team")}`;
  return { mcsConfig, mcs, folder, prefix };
}

/** Every key the plan names in the store; the driver and the report take them from plan.json. */
export function resultKeys(folder: string, prefix: string, runId: string) {
  return {
    summary_key: `${folder}/${prefix}_${runId}_run-summary.json`,
    latest_key: `${folder}/${prefix}_latest-run.json`,
    legacy_summary_key: `${folder}/${prefix}_run-summary.json`,
  };
}

function copyDriver(toolRoot: string, to: string): void {
  const from = path.join(toolRoot, "pipeline");
  cpSync(from, to, {
    recursive: true,
    filter: (src) => !/(^|\/)(tests|__pycache__|\.pytest_cache)$/.test(path.relative(from, src)),
  });
}

/** The phases before the driver's start, for its summary (launch_phases): the next estimate's start-up. */
export function writeLaunchPhases(dir: string, phases: { name: string; seconds: number }[]): void {
  const measured = phases.map(({ name, seconds }) => ({ name, seconds: Math.max(0, seconds) }));
  writeFileSync(path.join(dir, LAUNCH_PHASES_FILE), JSON.stringify(measured));
}

export const LAUNCH_PHASES_FILE = "launch-phases.json";

/** A run id that sorts by time: 20261125-151500-ab12. */
export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const random = Math.floor(Math.random() * 0x10000);
  return `${stamp}-${random.toString(16).padStart(4, "0")}`;
}

export function describePlan(plan: Plan): string {
  const lines = [
    `plan ${plan.run_id}: module ${plan.module}, metadata ${plan.metadata}, target ${plan.target}`,
    plan.sceneSet
      ? `  scenes:        ${plan.scenes.length} in ${plan.sceneSet.uri} (${formatBytes(plan.sceneSet.bytes)}; fetched and ordered by goal.last_step on the head)`
      : `  scenes:        ${plan.scenes.length} (longest first by goal.last_step)`,
    `  staging:       ${plan.dir}`,
    `  results:       ${plan.store} (summary ${plan.summary_key})`,
    `  latest run:    ${plan.latest_key} (resume and scheduling find the previous run there)`,
    `  retries:       ${plan.retries}; timeout ${plan.scene_timeout_s / 60} min per scene${mcsTimeoutNote(plan)}`,
    `  resources:     ${JSON.stringify(plan.resources)} per scene; Ray ${plan.ray_version}`,
  ];
  if (plan.cluster_name) lines.push(`  cluster:       ${plan.cluster_name}`);
  if (plan.resume)
    lines.push("  resume:        scenes already SUCCESS in the latest run's summary are skipped");
  return lines.join("\n");
}

/**
 * Said in the plan when the wall clock would end a scene before MCS's own timeouts could: the
 * pipeline, not MCS, then ends a scene whose performer stopped stepping (no history, retried).
 */
function mcsTimeoutNote(plan: Plan): string {
  const { timeout, controller } = plan.mcsTimeouts;
  return plan.scene_timeout_s > timeout + controller
    ? ""
    : ` (not above MCS's own timeout ${timeout} s + controller_timeout ${controller} s: a scene whose performer stops stepping is ended by the wall clock, not by MCS)`;
}

/** MCS's `timeout` and `controller_timeout` in seconds, as MCS reads them (its defaults if unset). */
function mcsTimeouts(mcs: Map<string, string>) {
  const seconds = (key: string, fallback: number) => {
    const n = Number.parseInt(mcs.get(key) ?? "", 10);
    return Number.isFinite(n) ? n : fallback;
  };
  return {
    timeout: seconds("timeout", MCS_TIMEOUT_DEFAULT_S),
    controller: seconds("controller_timeout", MCS_CONTROLLER_TIMEOUT_DEFAULT_S),
  };
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
