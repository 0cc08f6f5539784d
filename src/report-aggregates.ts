/**
 * What the report says about a run as a whole (DESIGN.md §3): results and durations by category
 * (the scene files' goal.category, carried into the summary), failure classes, flaky scenes and
 * what changed since the previous run of the same module and level. Plain data; report.ts
 * renders it.
 */
import type { AttemptRecord, RunSummary, SceneResult } from "./summary.js";

/** The category of a scene whose file has no goal.category (or a summary from before them). */
export const UNCATEGORIZED = "uncategorized";

export interface Durations {
  /** Scenes with a duration of their own (resumed scenes ran in an earlier run). */
  timed: number;
  p50: number | null;
  p90: number | null;
  max: number | null;
}

export interface CategoryStats {
  category: string;
  total: number;
  succeeded: number;
  failed: number;
  pending: number;
  flaky: number;
  /** Failed scenes by failure class, most first. */
  failures: [string, number][];
  durations: Durations;
}

export interface Changes {
  /** The previous run of the same module and level. */
  previous: RunSummary;
  /** FAILED now, SUCCESS in the previous run. */
  newlyFailing: SceneResult[];
  /** SUCCESS now, FAILED in the previous run. */
  newlyPassing: SceneResult[];
  /** FAILED in both. */
  stillFailing: number;
}

export interface Aggregates {
  /** By name, uncategorized last. */
  categories: CategoryStats[];
  /** Failed scenes by failure class, most first. */
  failureClasses: [string, number][];
  /** Scenes that passed only on a retry after a failure of their own: by name. */
  flaky: SceneResult[];
  /** Scenes that passed on a retry whose earlier attempts were all lost with their node. */
  passedAfterLostNode: number;
  /** Only when the previous run's summary is given. */
  changes?: Changes;
}

export function categoryOf(scene: SceneResult): string {
  return scene.category ?? UNCATEGORIZED;
}

/**
 * A scene that passed only on a retry, after an attempt that failed for a reason of its own: a
 * lost machine (node_lost) says nothing about the scene. Resumed scenes ran in an earlier run.
 */
export function isFlaky(scene: SceneResult): boolean {
  return passedOnRetry(scene) && earlierAttempts(scene).some(failedByItself);
}

function passedOnRetry(scene: SceneResult): boolean {
  return scene.status === "SUCCESS" && !scene.resumed && scene.history.length > 1;
}

function earlierAttempts(scene: SceneResult): AttemptRecord[] {
  return scene.history.slice(0, -1);
}

function failedByItself(attempt: AttemptRecord): boolean {
  return attempt.failure_class !== null && attempt.failure_class !== "node_lost";
}

export function aggregate(summary: RunSummary, previous?: RunSummary): Aggregates {
  const byCategory = new Map<string, SceneResult[]>();
  for (const scene of summary.scenes) {
    const category = categoryOf(scene);
    const list = byCategory.get(category);
    if (list) list.push(scene);
    else byCategory.set(category, [scene]);
  }
  const categories = [...byCategory]
    .map(([category, scenes]) => categoryStats(category, scenes))
    .sort(
      (a, b) =>
        Number(a.category === UNCATEGORIZED) - Number(b.category === UNCATEGORIZED) ||
        compare(a.category, b.category),
    );
  const flaky = summary.scenes.filter(isFlaky).sort((a, b) => compare(a.name, b.name));
  const passedAfterLostNode = summary.scenes.filter(
    (scene) => passedOnRetry(scene) && !earlierAttempts(scene).some(failedByItself),
  ).length;
  return {
    categories,
    failureClasses: failureCounts(summary.scenes),
    flaky,
    passedAfterLostNode,
    ...(previous ? { changes: changes(summary, previous) } : {}),
  };
}

function categoryStats(category: string, scenes: SceneResult[]): CategoryStats {
  const count = (status: SceneResult["status"]) => scenes.filter((s) => s.status === status).length;
  return {
    category,
    total: scenes.length,
    succeeded: count("SUCCESS"),
    failed: count("FAILED"),
    pending: count("PENDING"),
    flaky: scenes.filter(isFlaky).length,
    failures: failureCounts(scenes),
    durations: durations(scenes),
  };
}

export function durations(scenes: SceneResult[]): Durations {
  const sorted = scenes
    .filter((scene) => !scene.resumed && scene.duration_s !== null)
    .map((scene) => scene.duration_s as number)
    .sort((a, b) => a - b);
  return {
    timed: sorted.length,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    max: sorted.at(-1) ?? null,
  };
}

function failureCounts(scenes: SceneResult[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const scene of scenes) {
    if (scene.status !== "FAILED") continue;
    const key = scene.failure_class ?? "unknown";
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1] || compare(a[0], b[0]));
}

function changes(summary: RunSummary, previous: RunSummary): Changes {
  const before = new Map(previous.scenes.map((scene) => [scene.name, scene.status]));
  const byName = (a: SceneResult, b: SceneResult) => compare(a.name, b.name);
  const was = (scene: SceneResult, status: SceneResult["status"]) =>
    before.get(scene.name) === status;
  const failed = summary.scenes.filter((scene) => scene.status === "FAILED");
  return {
    previous,
    newlyFailing: failed.filter((scene) => was(scene, "SUCCESS")).sort(byName),
    newlyPassing: summary.scenes
      .filter((scene) => scene.status === "SUCCESS" && was(scene, "FAILED"))
      .sort(byName),
    stillFailing: failed.filter((scene) => was(scene, "FAILED")).length,
  };
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? null;
}

export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Shares passed in one run: of its finished scenes (0 to 1), overall and by category. */
export interface TrendPoint {
  run_id: string;
  passed: number | null;
  byCategory: Map<string, number | null>;
}

/** Of the scenes that finished, the share that succeeded; null when none finished. */
export function passShare(succeeded: number, failed: number): number | null {
  return succeeded + failed === 0 ? null : succeeded / (succeeded + failed);
}

/** The share passed, overall and by category, of each of `runs` (oldest first). */
export function trend(runs: RunSummary[]): TrendPoint[] {
  return runs.map((run) => ({
    run_id: run.run_id,
    passed: passShare(run.totals.succeeded, run.totals.failed),
    byCategory: new Map(
      aggregate(run).categories.map((c) => [c.category, passShare(c.succeeded, c.failed)]),
    ),
  }));
}
