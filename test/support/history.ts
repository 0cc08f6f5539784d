/**
 * A previous run in a results store, as the driver leaves it (run-summary.schema.json): its
 * summary and the latest-run pointer naming it, so a plan's estimate has something to read.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { NodeRecord, RunSummary, SceneResult } from "../../src/summary.js";

export interface PastScene {
  name: string;
  category: string | null;
  /** goal.last_step */
  steps: number;
  /** Each attempt's seconds (a retry holds a slot too). */
  seconds: number[];
}

export interface PastRun {
  runId: string;
  scenes: PastScene[];
  /** Where the demo module's level2 results go (its s3_folder and prefix). */
  folder?: string;
  prefix?: string;
  startedAt?: string;
  /** Seconds from the driver's start to its first scene (Ray starting). */
  driverLead?: number;
  launchPhases?: { name: string; seconds: number }[];
  nodes?: NodeRecord[];
  /** The run before it (already written), which the summary names. */
  previous?: { run_id: string; summary_key: string };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The summary of a run whose scenes ran one after another on one slot (times are what count). */
export function pastSummary(run: PastRun, store = "/store"): RunSummary {
  const folder = run.folder ?? "demo-eval";
  const prefix = run.prefix ?? "demo-eval_level2_demo";
  const start = Date.parse(run.startedAt ?? "2026-12-01T10:00:00Z");
  let clock = start + (run.driverLead ?? 0) * 1000;
  const scenes: SceneResult[] = run.scenes.map((scene) => {
    const history = scene.seconds.map((seconds, i) => {
      const at = clock;
      clock += seconds * 1000;
      return {
        attempt: i + 1,
        exit_code: 0,
        failure_class: null,
        duration_s: seconds,
        node: "127.0.0.1",
        started_at: iso(at),
        log: null,
      };
    });
    return {
      name: scene.name,
      status: "SUCCESS",
      attempts: history.length,
      exit_code: 0,
      failure_class: null,
      duration_s: scene.seconds.at(-1) ?? null,
      node: "127.0.0.1",
      expected_cost: scene.steps,
      resumed: false,
      outputs: { history: null, log: null, videos: [] },
      log_excerpt: null,
      history,
      category: scene.category,
    };
  });
  const end = iso(clock);
  return {
    schema_version: 1,
    run_id: run.runId,
    module: "demo",
    metadata: "level2",
    cluster_name: null,
    store,
    summary_key: `${folder}/${prefix}_${run.runId}_run-summary.json`,
    state: "finished",
    started_at: iso(start),
    updated_at: end,
    finished_at: end,
    totals: { total: scenes.length, succeeded: scenes.length, failed: 0, pending: 0, retried: 0 },
    scenes,
    previous: run.previous ?? null,
    ...(run.launchPhases && { launch_phases: run.launchPhases }),
    ...(run.nodes && { nodes: run.nodes }),
  };
}

/** The run's summary and the latest-run pointer naming it: [key, text] pairs for any store. */
export function pastRunObjects(run: PastRun, store: string): [string, string][] {
  const summary = pastSummary(run, store);
  const folder = run.folder ?? "demo-eval";
  const prefix = run.prefix ?? "demo-eval_level2_demo";
  const pointer = {
    schema_version: 1,
    run_id: run.runId,
    module: "demo",
    metadata: "level2",
    summary_key: summary.summary_key,
    started_at: summary.started_at,
    previous: run.previous ?? null,
  };
  return [
    [summary.summary_key, JSON.stringify(summary)],
    [`${folder}/${prefix}_latest-run.json`, JSON.stringify(pointer)],
  ];
}

/** Writes the run's summary into a local store and points its latest-run pointer at it. */
export function writePastRun(storeDir: string, run: PastRun): RunSummary {
  for (const [key, text] of pastRunObjects(run, storeDir)) {
    mkdirSync(path.dirname(path.join(storeDir, key)), { recursive: true });
    writeFileSync(path.join(storeDir, key), text);
  }
  return pastSummary(run, storeDir);
}
