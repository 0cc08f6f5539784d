/**
 * The pure half of estimate.bench.ts: replaying recorded runs through the estimate
 * (src/estimate.ts) as a plan would (the previous runs read by previousRuns from a store that
 * holds only the runs before the one estimated), and measuring it against what the run took.
 */
import type { ClusterShape, Estimate, Range } from "../src/estimate.js";
import { estimateRun, startup } from "../src/estimate.js";
import { estimateCost } from "../src/cost.js";
import { previousRuns } from "../src/forecast.js";
import type { PlanFile } from "../src/plan.js";
import type { RunSummary, SummaryStore } from "../src/summary.js";

/** The same pointer key the plan uses (`<folder>/<prefix>_latest-run.json`), in memory only. */
export const LATEST_KEY = "replay/latest-run.json";

/** A run's wall time as the estimate means it: the front end's phases and the driver's run. */
export function actualWall(run: RunSummary): number {
  if (!run.finished_at) throw new Error(`run ${run.run_id} has no finished_at`);
  const launch = (run.launch_phases ?? []).reduce((sum, p) => sum + p.seconds, 0);
  return launch + (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000;
}

/** The run's cost as the report prices it (src/cost.ts); null: a node without a price. */
export function actualUsd(run: RunSummary): number | null {
  const cost = estimateCost(run);
  if (!cost || cost.unpricedHours > 0) return null;
  return cost.usd;
}

/** The run's own start-up (launch phases, the driver before the first and after the last scene). */
export function actualSetup(run: RunSummary): number | null {
  return startup([run]).setup?.mid ?? null;
}

/** The run's scenes as its plan listed them. */
export function planScenes(run: RunSummary): PlanFile["scenes"] {
  return run.scenes.map((s) => ({
    name: s.name,
    expected_cost: s.expected_cost,
    category: s.category ?? null,
  }));
}

/** A store holding `runs` under their summary keys, the latest-run pointer naming `latest`. */
export function memoryStore(runs: RunSummary[], latest: RunSummary | undefined): SummaryStore {
  const files = new Map(runs.map((r) => [r.summary_key, JSON.stringify(r)]));
  if (latest) files.set(LATEST_KEY, JSON.stringify({ summary_key: latest.summary_key }));
  return { read: async (key) => files.get(key), uri: (key) => `memory:${key}` };
}

export interface Measured {
  estimate: Range;
  actual: number;
  /** estimate.mid / actual */
  ratio: number;
  inside: boolean;
}

export function measure(estimate: Range, actual: number): Measured {
  return {
    estimate,
    actual,
    ratio: estimate.mid / actual,
    inside: estimate.low <= actual && actual <= estimate.high,
  };
}

export interface Replayed {
  run: RunSummary;
  /** The previous runs' ids, newest first. */
  from: string[];
  estimate: Estimate;
  wall: Measured;
  /** null: the estimate or the run has no price. */
  usd: Measured | null;
  /** Start-up, estimated (mid) and as the run had it; the rest of the wall time is its scenes'. */
  setup: { estimate: number | null; actual: number | null };
}

/**
 * Run `k` (0-based, k >= 1) of `runs` (oldest first) estimated from the runs before it, as the
 * plan of run k would have read them; undefined when there is nothing to estimate from.
 */
export async function replay(
  runs: RunSummary[],
  k: number,
  shape: ClusterShape,
  warn: (line: string) => void,
): Promise<Replayed | undefined> {
  const run = runs[k]!;
  const before = runs.slice(0, k);
  const previous = await previousRuns(
    memoryStore(before, before.at(-1)),
    { latest_key: LATEST_KEY },
    warn,
  );
  const estimate = estimateRun(planScenes(run), previous, shape, 0);
  if (!estimate) return undefined;
  const usd = actualUsd(run);
  return {
    run,
    from: previous.map((r) => r.run_id),
    estimate,
    wall: measure(estimate.planned.wall, actualWall(run)),
    usd: usd !== null && estimate.planned.usd ? measure(estimate.planned.usd, usd) : null,
    setup: { estimate: estimate.setup?.mid ?? null, actual: actualSetup(run) },
  };
}

export interface Tally {
  n: number;
  median: number;
  /** The ratio furthest from 1. */
  worst: number;
  /** |ratio - 1| <= tolerance */
  within: number;
  inside: number;
}

/** Median ratio, the worst, how many within ±tolerance and inside their range. */
export function tally(measured: Measured[], tolerance: number): Tally {
  const ratios = measured.map((m) => m.ratio).sort((a, b) => a - b);
  const mid = (ratios.length - 1) / 2;
  const median = ratios.length
    ? (ratios[Math.floor(mid)]! + ratios[Math.ceil(mid)]!) / 2
    : Number.NaN;
  const worst = ratios.reduce(
    (w, r) => (Math.abs(r - 1) > Math.abs(w - 1) ? r : w),
    ratios[0] ?? Number.NaN,
  );
  return {
    n: ratios.length,
    median,
    worst,
    within: ratios.filter((r) => Math.abs(r - 1) <= tolerance + 1e-12).length,
    inside: measured.filter((m) => m.inside).length,
  };
}
