/**
 * The estimate before a run (src/estimate.ts, src/forecast.ts, src/cluster-shape.ts): scene times
 * from previous runs, the driver's longest-first layout over the slots, start-up, cost, the
 * deadline's worker count and the budget's refusal. Hand-computed figures throughout.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { machineShape, resizeYaml, yamlShape } from "../src/cluster-shape.js";
import { InputError } from "../src/errors.js";
import {
  estimateRun,
  sceneTimes,
  startup,
  workersForDeadline,
  type ClusterShape,
} from "../src/estimate.js";
import { forecast, previousRuns } from "../src/forecast.js";
import type { Plan } from "../src/plan.js";
import type { SummaryStore } from "../src/summary.js";
import { pastSummary, writePastRun, type PastScene } from "./support/history.js";
import { makeTemp, removeTemps, REPO } from "./support/workspace.js";

afterAll(removeTemps);

const scene = (
  name: string,
  seconds: number[],
  steps = 100,
  category = "retrieval",
): PastScene => ({
  name,
  category,
  steps,
  seconds,
});
const planScenes = (scenes: PastScene[]) =>
  scenes.map((s) => ({ name: s.name, expected_cost: s.steps, category: s.category }));

/** A head of `headSlots` and one worker type of `workerSlots` each, up to `max`. */
function shape(
  headSlots: number,
  workerSlots = 1,
  max = 8,
  usd: [number, number] | null = null,
): ClusterShape {
  return {
    head: { name: "head", slots: headSlots, usdPerHour: usd?.[0] ?? null, max: 1 },
    workers: max ? [{ name: "worker", slots: workerSlots, usdPerHour: usd?.[1] ?? null, max }] : [],
    maxWorkers: max,
    notes: [],
  };
}

describe("scene times from previous runs", () => {
  it("a scene's own times (shortest, median, longest), else its category's seconds per step, else the run's", () => {
    const older = pastSummary({
      runId: "r1",
      scenes: [scene("a", [10]), scene("b", [40], 100, "agents")],
    });
    const newer = pastSummary({ runId: "r2", scenes: [scene("a", [30]), scene("c", [20])] });
    const plan = [
      { name: "a", expected_cost: 100, category: "retrieval" },
      { name: "new-retrieval", expected_cost: 50, category: "retrieval" },
      { name: "new-other", expected_cost: 10, category: "occluder" },
    ];
    const known = sceneTimes(plan, [newer, older])!;
    expect(known.basis).toEqual({ own: 1, category: 1, run: 1 });
    // a: 30 and 10 → 10, 20, 30.
    expect(known.times[0]).toEqual({ low: 10, mid: 20, high: 30 });
    // retrieval's seconds per step: a 0.3, a 0.1, c 0.2 → median 0.2 × 50 steps.
    expect(known.times[1]!.mid).toBeCloseTo(10);
    // Every scene: 0.3, 0.1, 0.4, 0.2 → median 0.25 × 10 steps.
    expect(known.times[2]!.mid).toBeCloseTo(2.5);
  });

  it("a scene not seen before: the fixed part plus its steps at its category's rate", () => {
    // 2 s fixed + 0.1 s a step: 100 → 12 s, 200 → 22 s, 300 → 32 s.
    const run = pastSummary({
      runId: "r1",
      scenes: [scene("a", [12], 100), scene("b", [22], 200), scene("c", [32], 300)],
    });
    const known = sceneTimes([{ name: "new", expected_cost: 1000, category: "retrieval" }], [run])!;
    expect(known.times[0]!.mid).toBeCloseTo(102);
  });

  it("a retried scene held its slot for every attempt", () => {
    const run = pastSummary({ runId: "r1", scenes: [scene("a", [5, 7])] });
    expect(sceneTimes(planScenes([scene("a", [])]), [run])!.times[0]!.mid).toBe(12);
  });

  it("nothing to estimate from without a previous scene", () => {
    expect(sceneTimes(planScenes([scene("a", [])]), [])).toBeUndefined();
  });
});

describe("the layout: longest first, each scene on the slot that frees first", () => {
  it("10, 7, 5, 4 s on two slots end at 14 s (shortest first would end at 15 s)", () => {
    const scenes = [scene("a", [10]), scene("b", [7]), scene("c", [5]), scene("d", [4])];
    const run = pastSummary({ runId: "r1", scenes });
    const e = estimateRun(planScenes(scenes), [run], shape(2, 1, 0), 0)!;
    expect(e.planned.wall).toEqual({ low: 14, mid: 14, high: 14 });
  });

  it("workers take scenes once booted; only as many start as the scenes need", () => {
    const scenes = [scene("a", [100]), scene("b", [100]), scene("c", [100])];
    const run = pastSummary({
      runId: "r1",
      scenes,
      startedAt: "2026-12-01T10:00:00Z",
      nodes: [
        node("head", true, "2026-12-01T09:59:00Z"),
        node("w1", false, "2026-12-01T10:00:30Z"),
      ],
    });
    // Head: 1 slot; workers boot in 30 s: a on the head 0-100, b and c on two workers 30-130.
    const e = estimateRun(planScenes(scenes), [run], shape(1, 1, 8), 8)!;
    expect(e.workerBoot).toEqual({ low: 30, mid: 30, high: 30 });
    expect(e.planned.started).toBe(2);
    expect(e.planned.wall.mid).toBe(130);
  });

  it("prices the head from its Ray start and each worker from its boot to the end", () => {
    const scenes = [scene("a", [3600]), scene("b", [3600])];
    const run = pastSummary({
      runId: "r1",
      scenes,
      startedAt: "2026-12-01T10:00:00Z",
      nodes: [
        node("head", true, "2026-12-01T09:54:00Z"),
        node("w1", false, "2026-12-01T10:06:00Z"),
      ],
    });
    // Head: 0.1 h before the driver + 1.1 h (the worker's scene ends at 0.1 + 1 h) at $1;
    // the worker: 1 h at $2.
    const e = estimateRun(planScenes(scenes), [run], shape(1, 1, 1, [1, 2]), 1)!;
    expect(e.planned.wall.mid).toBeCloseTo(3960);
    expect(e.planned.usd!.mid).toBeCloseTo(1.2 + 2);
  });

  it("alternatives: 1×, 2× and 4× the workers, marked past the YAML's limit", () => {
    const scenes = Array.from({ length: 8 }, (_, i) => scene(`s${i}`, [100]));
    const e = estimateRun(
      planScenes(scenes),
      [pastSummary({ runId: "r", scenes })],
      shape(1, 1, 2),
      2,
    )!;
    expect(e.alternatives.map((a) => [a.workers, a.wall.mid, a.overLimit])).toEqual([
      [2, 300, false],
      [4, 200, true],
      [8, 100, true],
    ]);
  });
});

describe("start-up", () => {
  it("the front end's phases and the driver's own time before the first scene, per run", () => {
    const runs = [
      pastSummary({
        runId: "r2",
        scenes: [scene("a", [1])],
        driverLead: 5,
        launchPhases: [{ name: "ray up", seconds: 100 }],
      }),
      pastSummary({
        runId: "r1",
        scenes: [scene("a", [1])],
        driverLead: 3,
        launchPhases: [
          { name: "ray up", seconds: 200 },
          { name: "sync plan", seconds: 7 },
        ],
      }),
    ];
    const s = startup(runs);
    expect(s.setup).toEqual({ low: 105, mid: 157.5, high: 210 });
    expect(s.launches).toBe(2);
    const e = estimateRun(planScenes([scene("a", [])]), runs, shape(1, 1, 0), 0)!;
    expect(e.planned.wall).toEqual({ low: 106, mid: 158.5, high: 211 });
  });
});

describe("a deadline's workers", () => {
  const scenes = Array.from({ length: 8 }, (_, i) => scene(`s${i}`, [100]));
  const runs = [pastSummary({ runId: "r", scenes })];
  it("the fewest whose estimate is within it", () => {
    // 1 + n slots: ceil(8 / (1 + n)) rounds of 100 s.
    expect(workersForDeadline(planScenes(scenes), runs, shape(1), 250)!.within!.workers).toBe(3);
    expect(workersForDeadline(planScenes(scenes), runs, shape(1), 150)!.within!.workers).toBe(7);
    expect(workersForDeadline(planScenes(scenes), runs, shape(1), 1000)!.within!.workers).toBe(0);
  });
  it("past the YAML's limit: what would be needed; below the longest scene: nothing would do", () => {
    const over = workersForDeadline(planScenes(scenes), runs, shape(1, 1, 2), 250)!;
    expect(over.within).toBeUndefined();
    expect(over.needed!.workers).toBe(3);
    const never = workersForDeadline(planScenes(scenes), runs, shape(1), 50)!;
    expect(never.within ?? never.needed).toBeUndefined();
    expect(never.best.wall.mid).toBe(100);
  });
});

describe("the cluster's shape", () => {
  const plan = {
    resources: { num_cpus: 1, num_gpus: 0 },
    node_types: {
      "ray.head.default": { usd_per_hour: 0.096 },
      "ray.worker.default": { usd_per_hour: 0.096 },
    },
  } as unknown as Plan;

  it("slots from each node type's resources over a scene's; max_workers from the YAML", () => {
    const yaml = parse(readFileSync(path.join(REPO, "autoscaler/ray_demo_aws.yaml"), "utf8"));
    const s = yamlShape(yaml, plan);
    expect(s.head).toEqual({ name: "ray.head.default", slots: 2, usdPerHour: 0.096, max: 1 });
    expect(s.workers).toEqual([
      { name: "ray.worker.default", slots: 2, usdPerHour: 0.096, max: 2 },
    ]);
    expect(s.maxWorkers).toBe(2);
    const gpu = yamlShape(yaml, { ...plan, resources: { num_cpus: 1, num_gpus: 1 } } as Plan);
    expect(gpu.head.slots).toBe(0); // no GPU declared: the head runs no scene
  });

  it("an on-premise cluster: its worker_ips and each node's --num-cpus", () => {
    const s = yamlShape(
      {
        max_workers: 2,
        provider: { type: "local", worker_ips: ["10.0.0.2", "10.0.0.3"] },
        head_start_ray_commands: ["ray start --head --num-cpus=3"],
        worker_start_ray_commands: ["ray start --address=x --num-cpus=1"],
      },
      plan,
    );
    expect([s.head.slots, s.workers[0]!.slots, s.maxWorkers]).toEqual([3, 1, 2]);
  });

  it("a deadline's count in the rendered YAML: min_workers = max_workers", () => {
    const file = path.join(makeTemp(), "cluster.yaml");
    writeFileSync(
      file,
      `# rendered\n${readFileSync(path.join(REPO, "autoscaler/ray_demo_aws.yaml"), "utf8")}`,
    );
    const yaml = parse(readFileSync(file, "utf8"));
    const s = yamlShape(yaml, plan);
    resizeYaml(file, [{ group: s.workers[0]!, count: 1 }]);
    const text = readFileSync(file, "utf8");
    const after = parse(text);
    expect(text.startsWith("# rendered")).toBe(true);
    expect(after.max_workers).toBe(1);
    expect(after.available_node_types["ray.worker.default"]).toMatchObject({
      min_workers: 1,
      max_workers: 1,
    });
    expect(after.available_node_types["ray.head.default"]).toMatchObject({
      min_workers: 0,
      max_workers: 0,
    });
  });

  it("a local run: this machine's CPU slots", () => {
    expect(machineShape({ ...plan, node_types: {} } as Plan, 4).head.slots).toBe(4);
  });
});

describe("forecast: the plan's estimate, a deadline and a budget", () => {
  const scenes = Array.from({ length: 8 }, (_, i) => scene(`s${i}`, [1800]));
  const plan = (extra: Partial<Plan> = {}) =>
    ({
      module: "demo",
      metadata: "level2",
      latest_key: "demo-eval/demo-eval_level2_demo_latest-run.json",
      resume: false,
      scenes: planScenes(scenes),
      ...extra,
    }) as Plan;
  const storeOf = (dir: string): SummaryStore => ({
    read: async (key) => {
      try {
        return readFileSync(path.join(dir, key), "utf8");
      } catch {
        return undefined;
      }
    },
    uri: (key) => path.join(dir, key),
  });
  const withHistory = () => {
    const dir = makeTemp();
    const first = writePastRun(dir, { runId: "r1", scenes });
    writePastRun(dir, {
      runId: "r2",
      scenes,
      previous: { run_id: "r1", summary_key: first.summary_key },
    });
    return storeOf(dir);
  };
  // Head 1 slot at $1/h, workers 1 slot at $2/h, up to 4.
  const sizing = (resized: number[] = []) => ({
    shape: () => shape(1, 1, 4, [1, 2]),
    resize: (_p: Plan, w: { count: number }[]) => resized.push(...w.map((x) => x.count)),
  });

  it("reads the pointer's run and the runs it follows", async () => {
    const runs = await previousRuns(withHistory(), plan(), () => {});
    expect(runs.map((r) => r.run_id)).toEqual(["r2", "r1"]);
  });

  it("no previous run: says so and estimates nothing", async () => {
    const f = await forecast({}, plan(), storeOf(makeTemp()), sizing(), () => {});
    expect(f.estimate).toBeUndefined();
    expect(f.none).toMatch(
      /^no previous run of demo level2 in .*latest-run\.json: nothing to estimate from$/,
    );
  });

  it("a store it cannot read: says why, estimates nothing, starts the run as planned", async () => {
    const broken: SummaryStore = {
      read: () => Promise.reject(new Error("no role-to-assume to read the results store with")),
      uri: (key) => key,
    };
    const f = await forecast({ deadlineMinutes: 60 }, plan(), broken, sizing(), () => {});
    expect(f.none).toBe(
      "the previous runs could not be read (no role-to-assume to read the results store with)",
    );
    expect(f.notes).toEqual([
      "deadline-minutes: no previous run of demo level2 to estimate from; the cluster is sized as its YAML says",
    ]);
  });

  it("a deadline sizes the cluster to the fewest workers within it", async () => {
    const resized: number[] = [];
    // 8 half-hour scenes: 1 + 3 slots → 2 rounds = 60 min.
    const f = await forecast(
      { deadlineMinutes: 61 },
      plan(),
      withHistory(),
      sizing(resized),
      () => {},
    );
    expect(f.deadline).toEqual({ minutes: 61, workers: 3 });
    expect(resized).toEqual([3]);
    expect(f.estimate!.planned.wall.mid).toBe(3600);
  });

  it("a deadline no cluster the YAML allows meets: one line naming what is needed", async () => {
    await expect(
      forecast({ deadlineMinutes: 31 }, plan(), withHistory(), sizing(), () => {}),
    ).rejects.toThrow(
      new InputError(
        "deadline-minutes",
        "31 min cannot be met with the 4 workers the cluster YAML allows: the estimate needs 7 (30m 00s); raise max_workers (and the vCPU quota) or allow more time",
      ),
    );
    await expect(
      forecast({ deadlineMinutes: 20 }, plan(), withHistory(), sizing(), () => {}),
    ).rejects.toThrow(
      /^20 min cannot be met by any number of workers: the fastest estimate is 30m 00s with 7 workers/,
    );
  });

  it("a budget below the estimate is refused; above it the run goes on", async () => {
    // 4 workers: 2 rounds (1 h); head 1 h × $1 + 4 workers × 1 h × $2 = $9.
    await expect(
      forecast({ budgetUsd: 8.5 }, plan(), withHistory(), sizing(), () => {}),
    ).rejects.toThrow(
      /^the run is estimated at \$9\.00 \(\$9\.00–\$9\.00\) with 4 workers, over the budget of \$8\.50: raise it/,
    );
    const f = await forecast({ budgetUsd: 9.5 }, plan(), withHistory(), sizing(), () => {});
    expect(f.estimate!.planned.usd!.mid).toBeCloseTo(9);
  });

  it("a budget needs a price for every node type", async () => {
    const unpriced = { shape: () => shape(1, 1, 4) };
    await expect(
      forecast({ budgetUsd: 100 }, plan(), withHistory(), unpriced, () => {}),
    ).rejects.toThrow(
      /^node type head, worker has no price, so the run's cost cannot be tracked: declare it in configs\/demo_aws\.ini \[prices\]/,
    );
  });

  it("a resume estimates only the scenes still to run", async () => {
    const f = await forecast({}, plan({ resume: true }), withHistory(), sizing(), () => {});
    expect(f.estimate!.scenes).toBe(0);
  });
});

function node(id: string, head: boolean, startedAt: string) {
  return {
    node_id: id,
    address: id,
    node_type: head ? "head" : "worker",
    instance_type: null,
    head,
    spot: false,
    started_at: startedAt,
    ended_at: null,
    usd_per_hour: null,
    price_source: null,
  };
}
