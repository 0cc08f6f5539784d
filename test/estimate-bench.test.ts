/** The estimate benchmark's pure helpers (bench/estimate-replay.ts) on its recorded runs. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { actualWall, measure, replay, tally } from "../bench/estimate-replay.js";
import { machineShape } from "../src/cluster-shape.js";
import type { Plan } from "../src/plan.js";
import { parseSummary } from "../src/summary.js";
import { REPO } from "./support/workspace.js";

const CAMPAIGN = path.join(REPO, "bench", "recorded", "seed-1");
const runs = [1, 2, 3].map((k) => {
  const file = path.join(CAMPAIGN, `run-${k}.json`);
  return parseSummary(readFileSync(file, "utf8"), file);
});

describe("estimate bench", () => {
  it("takes a run's wall time as its launch phases plus the driver's start to finish", () => {
    const run = runs[0]!;
    const launch = run.launch_phases!.reduce((sum, p) => sum + p.seconds, 0);
    const driver = (Date.parse(run.finished_at!) - Date.parse(run.started_at)) / 1000;
    expect(actualWall(run)).toBeCloseTo(launch + driver, 6);
    expect(() => actualWall({ ...run, finished_at: null })).toThrow(/no finished_at/);
  });

  it("estimates run k from the runs before it, newest first, as previousRuns reads them", async () => {
    const plan = { resources: { num_cpus: 1, num_gpus: 0 }, node_types: {} } as unknown as Plan;
    const replayed = await replay(runs, 2, machineShape(plan, 2), () => {});
    expect(replayed?.from).toEqual([runs[1]!.run_id, runs[0]!.run_id]);
    expect(replayed?.estimate.basis).toEqual({ own: runs[2]!.scenes.length, category: 0, run: 0 });
    expect(replayed?.usd).toBeNull(); // no price in the shape
    expect(replayed?.wall.actual).toBeCloseTo(actualWall(runs[2]!), 6);
  });

  it("tallies ratios: median, the worst, within the tolerance, inside the range", () => {
    const at = (mid: number, actual: number) =>
      measure({ low: mid - 1, mid, high: mid + 1 }, actual);
    const t = tally([at(9, 10), at(10, 10), at(12, 10), at(8.4, 10)], 0.15);
    expect(t.n).toBe(4);
    expect(t.median).toBeCloseTo(0.95, 6);
    expect(t.worst).toBeCloseTo(1.2, 6);
    expect(t.within).toBe(2);
    expect(t.inside).toBe(2);
    expect(tally([], 0.15).n).toBe(0);
  });
});
