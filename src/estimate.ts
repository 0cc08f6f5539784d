/**
 * The run's time and money, estimated before it starts, from the previous runs of the same module
 * and level: each scene's time (its own where it ran before, else its category's or the run's
 * seconds per step), laid out the way the driver schedules (longest first, each scene on the
 * slot that frees first: Ray starts queued tasks in submission order), after the start-up the
 * previous runs measured (launch_phases) and, for workers, their boot (Ray's node table). A range
 * (low, mid, high), never a point: each scene's shortest and longest time, the fastest and slowest
 * start-up. Priced as the report prices a run (src/cost.ts): each node from its Ray start to the
 * end, at its node type's price.
 */
import type { PlanFile } from "./plan.js";
import type { RunSummary, SceneResult } from "./summary.js";

export interface Range {
  low: number;
  mid: number;
  high: number;
}

/** Nodes of one type: how many scenes one holds at once, its price, how many the YAML allows. */
export interface NodeGroup {
  name: string;
  slots: number;
  usdPerHour: number | null;
  /** Workers: the most of this type the YAML allows (the head: 1). */
  max: number;
}

export interface ClusterShape {
  head: NodeGroup;
  workers: NodeGroup[];
  /** The most workers the cluster may have (its max_workers, within its types' own). */
  maxWorkers: number;
  /** What the shape had to assume (a node type declaring no resources). */
  notes: string[];
}

/** How each scene's time was estimated. */
export interface Basis {
  own: number;
  category: number;
  run: number;
}

export interface Scenario {
  workers: number;
  /** Workers the run would start: no more than its scenes need. */
  started: number;
  /** Wall time in seconds: start-up and the scenes. */
  wall: Range;
  /** null: some node the run needs has no price. */
  usd: Range | null;
}

export interface Estimate {
  scenes: number;
  basis: Basis;
  /** The previous runs the scenes' times came from, newest first. */
  runs: string[];
  /** Seconds of the run that are not its scenes' (null: no previous run measured it). */
  setup: Range | null;
  /** Previous runs whose front end measured its phases (the rest: the driver's own time only). */
  launches: number;
  /** Seconds from the driver's start until a worker takes scenes (null: none measured). */
  workerBoot: Range | null;
  shape: ClusterShape;
  planned: Scenario;
  /** The same run on 1×, 2× and 4× the planned workers; `overLimit` past the YAML's limit. */
  alternatives: (Scenario & { overLimit: boolean })[];
}

const median = (values: number[]) => quantile(values, 0.5);

/** The q-quantile of `values` (linear between neighbours); NaN for none. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const at = (sorted.length - 1) * q;
  const below = Math.floor(at);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (at - below);
}

const spread = (values: number[]): Range => ({
  low: Math.min(...values),
  mid: median(values),
  high: Math.max(...values),
});

/** A scene's time on its slot in one run: every attempt (a retry holds a slot too). */
function occupancy(scene: SceneResult): number | undefined {
  if (scene.status === "PENDING" || scene.resumed) return undefined;
  const attempts = scene.history.map((a) => a.duration_s).filter((d): d is number => d !== null);
  if (attempts.length === 0) return scene.duration_s ?? undefined;
  return attempts.reduce((a, b) => a + b, 0);
}

/**
 * What the previous runs say about scenes not seen before: a scene takes a fixed time (starting
 * the simulator, the performer) plus seconds per step (goal.last_step). The fixed part is the
 * intercept of a least-squares line through every scene's (steps, seconds), within 0 and the
 * shortest scene; the per-step part each scene's rest over its steps, by category and over all.
 */
function rates(runs: RunSummary[]) {
  const seen: { category: string; steps: number; seconds: number }[] = [];
  for (const run of runs) {
    for (const scene of run.scenes) {
      const seconds = occupancy(scene);
      if (seconds !== undefined)
        seen.push({ category: scene.category ?? "", steps: scene.expected_cost, seconds });
    }
  }
  const stepped = seen.filter((s) => s.steps > 0);
  const fixed = Math.min(
    Math.max(0, intercept(stepped.map((s) => [s.steps, s.seconds]))),
    ...stepped.map((s) => s.seconds),
  );
  const byCategory = new Map<string, number[]>();
  const durations = new Map<string, number[]>();
  for (const { category, steps, seconds } of seen) {
    durations.set(category, [...(durations.get(category) ?? []), seconds]);
    if (steps > 0)
      byCategory.set(category, [...(byCategory.get(category) ?? []), (seconds - fixed) / steps]);
  }
  return {
    fixed,
    byCategory,
    all: [...byCategory.values()].flat(),
    durations,
    allDurations: seen.map((s) => s.seconds),
  };
}

/** The intercept of the least-squares line through (x, y) points; 0 with fewer than two x's. */
function intercept(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((sum, [x]) => sum + x, 0) / n;
  const my = points.reduce((sum, [, y]) => sum + y, 0) / n;
  const sxx = points.reduce((sum, [x]) => sum + (x - mx) ** 2, 0);
  if (n < 2 || sxx === 0) return 0;
  const sxy = points.reduce((sum, [x, y]) => sum + (x - mx) * (y - my), 0);
  return my - (sxy / sxx) * mx;
}

const quartiles = (values: number[], scale = 1, fixed = 0): Range => ({
  low: fixed + quantile(values, 0.25) * scale,
  mid: fixed + median(values) * scale,
  high: fixed + quantile(values, 0.75) * scale,
});

/**
 * Each scene's time: its own in the previous runs (shortest, median, longest), else the fixed
 * part plus its steps times its category's seconds per step (quartiles), else the run's; a scene without steps (an
 * s3:// set) its category's or the run's durations. undefined: no previous scene ran at all.
 */
export function sceneTimes(
  scenes: PlanFile["scenes"],
  runs: RunSummary[],
): { times: Range[]; basis: Basis } | undefined {
  const own = new Map<string, number[]>();
  for (const run of runs) {
    for (const scene of run.scenes) {
      const seconds = occupancy(scene);
      if (seconds !== undefined) own.set(scene.name, [...(own.get(scene.name) ?? []), seconds]);
    }
  }
  const known = rates(runs);
  if (known.allDurations.length === 0) return undefined;
  const basis: Basis = { own: 0, category: 0, run: 0 };
  const times = scenes.map((scene) => {
    const seen = own.get(scene.name);
    if (seen) {
      basis.own++;
      return spread(seen);
    }
    const category = scene.category ?? "";
    const steps = scene.expected_cost;
    const ofCategory = steps ? known.byCategory.get(category) : known.durations.get(category);
    if (ofCategory?.length) {
      basis.category++;
      return steps ? quartiles(ofCategory, steps, known.fixed) : quartiles(ofCategory);
    }
    basis.run++;
    return steps && known.all.length
      ? quartiles(known.all, steps, known.fixed)
      : quartiles(known.allDurations);
  });
  return { times, basis };
}

/**
 * Start-up as the previous runs measured it: the front end's phases before the driver started
 * (launch_phases), plus the driver's own time around the scenes (starting Ray before the first
 * scene, saving after the last). For the price, as the report prices nodes (from each node's Ray
 * start to the end): the head's time beside the scenes, and each worker's boot from the first
 * scene's start (later workers replaced lost nodes: left out) and its time after the last.
 */
export function startup(runs: RunSummary[]) {
  const setups: number[] = [];
  const boots: number[] = [];
  const headExtras: number[] = [];
  const tails: number[] = [];
  let launches = 0;
  const ms = (iso: string) => Date.parse(iso);
  for (const run of runs) {
    const attempts = run.scenes
      .filter((s) => !s.resumed)
      .flatMap((s) => s.history)
      .filter((a) => a.started_at !== null && a.duration_s !== null)
      .map((a) => ({ from: ms(a.started_at!), to: ms(a.started_at!) + a.duration_s! * 1000 }));
    if (attempts.length === 0 || !run.finished_at) continue;
    const first = Math.min(...attempts.map((a) => a.from));
    const last = Math.max(...attempts.map((a) => a.to));
    const seconds = (from: number, to: number) => Math.max(0, to - from) / 1000;
    const launch = run.launch_phases?.reduce((sum, p) => sum + p.seconds, 0);
    if (launch !== undefined) launches++;
    const driver = seconds(ms(run.started_at), first) + seconds(last, ms(run.finished_at));
    setups.push((launch ?? 0) + driver);
    const tail = seconds(last, ms(run.updated_at));
    tails.push(tail);
    const head = run.nodes?.find((n) => n.head);
    headExtras.push(head ? seconds(ms(head.started_at), first) + tail : driver);
    const early = (run.nodes ?? [])
      .filter((n) => !n.head && ms(n.started_at) < (first + last) / 2)
      .map((n) => seconds(first, ms(n.started_at)));
    if (early.length) boots.push(median(early));
  }
  return {
    setup: setups.length ? spread(setups) : null,
    /** Runs whose front end measured its phases (else the setup is the driver's time only). */
    launches,
    /** Seconds from the first scene's start until a worker's Ray started. */
    workerBoot: boots.length ? spread(boots) : null,
    /** The head's priced seconds beside the scenes': before the first, after the last. */
    headExtra: headExtras.length ? median(headExtras) : 0,
    /** A worker's priced seconds after the last scene ended. */
    tail: tails.length ? median(tails) : 0,
  };
}

/** `count` workers spread over the worker types in the YAML's order, each up to its own max. */
export function allocate(
  shape: ClusterShape,
  count: number,
): { group: NodeGroup; count: number }[] {
  let left = count;
  return shape.workers.map((group, i) => {
    const last = i === shape.workers.length - 1;
    const n = last ? left : Math.min(group.max, left);
    left -= n;
    return { group, count: n };
  });
}

/**
 * When the last scene ends, scheduled as the driver does: longest first, each on the slot that
 * frees first; a worker's slots free at `boot`. Only the workers the scenes need are started.
 */
function schedule(
  durations: number[],
  shape: ClusterShape,
  workers: { group: NodeGroup; count: number }[],
  boot: number,
) {
  let demand = durations.length - shape.head.slots;
  const started = workers.map(({ group, count }) => {
    const n = group.slots > 0 ? Math.max(0, Math.min(count, Math.ceil(demand / group.slots))) : 0;
    demand -= n * group.slots;
    return { group, count: n };
  });
  const free: number[] = Array(shape.head.slots).fill(0);
  for (const { group, count } of started) free.push(...Array(count * group.slots).fill(boot));
  if (free.length === 0) return { seconds: durations.length ? Infinity : 0, started };
  const heap = new MinHeap(free);
  let end = 0;
  for (const seconds of [...durations].sort((a, b) => b - a)) {
    const at = heap.pop() + seconds;
    end = Math.max(end, at);
    heap.push(at);
  }
  return { seconds: end, started };
}

/** The run with `workers` workers: wall time and cost, each a range. */
export function scenario(
  times: Range[],
  shape: ClusterShape,
  boot: Pick<ReturnType<typeof startup>, "setup" | "workerBoot" | "headExtra" | "tail">,
  workers: number,
): Scenario {
  const allocation = allocate(shape, workers);
  const at = (which: keyof Range) => {
    const setup = boot.setup?.[which] ?? 0;
    // No worker measured: a worker boots like the head did (its share of the start-up).
    const workerBoot = boot.workerBoot?.[which] ?? setup;
    const run = schedule(
      times.map((t) => t[which]),
      shape,
      allocation,
      workerBoot,
    );
    const hours = (seconds: number) => Math.max(0, seconds) / 3600;
    const priced = [shape.head, ...run.started.filter((s) => s.count > 0).map((s) => s.group)];
    const usd = priced.some((g) => g.usdPerHour === null)
      ? null
      : hours(boot.headExtra + run.seconds) * shape.head.usdPerHour! +
        run.started.reduce(
          (sum, s) =>
            sum + s.count * hours(run.seconds - workerBoot + boot.tail) * (s.group.usdPerHour ?? 0),
          0,
        );
    return {
      wall: setup + run.seconds,
      usd,
      started: run.started.reduce((n, s) => n + s.count, 0),
    };
  };
  const [low, mid, high] = [at("low"), at("mid"), at("high")];
  return {
    workers,
    started: mid.started,
    wall: { low: low.wall, mid: mid.wall, high: high.wall },
    usd:
      low.usd === null || mid.usd === null || high.usd === null
        ? null
        : { low: low.usd, mid: mid.usd, high: high.usd },
  };
}

/**
 * The estimate for `planned` workers and its alternatives; undefined when no previous run has a
 * scene's time (there is nothing to estimate from).
 */
export function estimateRun(
  scenes: PlanFile["scenes"],
  runs: RunSummary[],
  shape: ClusterShape,
  planned: number,
): Estimate | undefined {
  const known = sceneTimes(scenes, runs);
  if (!known) return undefined;
  const boot = startup(runs);
  const base = Math.max(1, planned);
  return {
    scenes: scenes.length,
    basis: known.basis,
    runs: runs.map((r) => r.run_id),
    setup: boot.setup,
    launches: boot.launches,
    workerBoot: boot.workerBoot,
    shape,
    planned: scenario(known.times, shape, boot, planned),
    alternatives: [1, 2, 4].map((k) => ({
      ...scenario(known.times, shape, boot, base * k),
      overLimit: base * k > shape.maxWorkers,
    })),
  };
}

/** The most workers worth trying past the YAML's limit when saying what a deadline would need. */
const SEARCH_LIMIT = 4096;

/**
 * The fewest workers whose estimated wall time (mid) is within `seconds`: `within` when the YAML
 * allows that many; else `needed`, the fewest that would (absent: no number of workers would,
 * the longest scene or the start-up alone takes longer). `best`: the most that help.
 * A binary search: more workers never make the estimate longer.
 */
export function workersForDeadline(
  scenes: PlanFile["scenes"],
  runs: RunSummary[],
  shape: ClusterShape,
  seconds: number,
): { within?: Scenario; needed?: Scenario; best: Scenario } | undefined {
  const known = sceneTimes(scenes, runs);
  if (!known) return undefined;
  const boot = startup(runs);
  const at = (n: number) => scenario(known.times, shape, boot, n);
  // More workers than the scenes can use change nothing.
  const useful = shape.workers.length
    ? Math.min(SEARCH_LIMIT, Math.max(0, scenes.length - shape.head.slots))
    : 0;
  const best = at(useful);
  if (best.wall.mid > seconds) return { best };
  let [low, high] = [0, useful]; // at(high) is within the deadline
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    if (at(middle).wall.mid <= seconds) high = middle;
    else low = middle + 1;
  }
  const pick = at(high);
  return high <= shape.maxWorkers ? { within: pick, best } : { needed: pick, best };
}

/** A min-heap of numbers: the slot that frees first. */
class MinHeap {
  private items: number[] = [];
  constructor(values: number[]) {
    for (const v of values) this.push(v);
  }
  push(value: number): void {
    const a = this.items;
    a.push(value);
    for (let i = a.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (a[parent]! <= a[i]!) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }
  pop(): number {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]! < a[m]!) m = l;
        if (r < a.length && a[r]! < a[m]!) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}
