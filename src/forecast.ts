/**
 * Before a run starts: what it will take and cost (src/estimate.ts) from the previous runs of the
 * same module and level, a deadline that sizes the cluster, a budget that refuses a run estimated
 * above it. Read by every plan: the CLI's `plan` and `run`, the action's dry run and real run.
 */
import { InputError } from "./errors.js";
import {
  allocate,
  estimateRun,
  workersForDeadline,
  type ClusterShape,
  type Estimate,
  type NodeGroup,
  type Range,
  type Scenario,
} from "./estimate.js";
import type { Plan } from "./plan.js";
import { LOCAL_RUN_NODE_TYPE } from "./prices.js";
import { formatSeconds, formatUsd, TREND_RUNS } from "./report.js";
import type { Request } from "./request.js";
import { readSummary, type RunSummary, type SummaryStore } from "./summary.js";

export interface Forecast {
  estimate?: Estimate;
  /** Why there is no estimate (no previous run, the store unreadable). */
  none?: string;
  /** The deadline's choice: this many workers, as min_workers and max_workers. */
  deadline?: { minutes: number; workers: number };
  /** Lines to show beside the estimate (a deadline or budget that could not be checked). */
  notes: string[];
}

/** What the forecast needs of the target: the cluster's shape, and resizing it. */
export interface Sizing {
  shape(plan: Plan): ClusterShape;
  /** Sets each worker type's min_workers and max_workers (the rendered YAML). */
  resize?(plan: Plan, workers: { group: NodeGroup; count: number }[]): void;
}

/**
 * The previous runs of the plan's module and level, newest first: the one the latest-run pointer
 * names and those it follows (at most TREND_RUNS). [] when there is none.
 */
export async function previousRuns(
  store: SummaryStore,
  plan: Pick<Plan, "latest_key">,
  warn: (line: string) => void,
): Promise<RunSummary[]> {
  const text = await store.read(plan.latest_key);
  if (text === undefined) return [];
  const pointer = JSON.parse(text) as { summary_key?: unknown };
  if (typeof pointer.summary_key !== "string")
    throw new Error(`${store.uri(plan.latest_key)} names no run summary`);
  const latest = (await readSummary(store, pointer.summary_key, warn)).summary;
  return [latest, ...(await readHistory(store, latest, warn))];
}

/**
 * The earlier runs of the same module and level, newest first, following each summary's
 * `previous` (at most TREND_RUNS - 1 of them): the first is what "since the previous run" compares
 * with, all of them make the trend. It stops at a run that names none or cannot be read (said
 * through `warn`): the report then says so, and the run goes on.
 */
export async function readHistory(
  store: SummaryStore,
  summary: RunSummary,
  warn: (line: string) => void,
): Promise<RunSummary[]> {
  const history: RunSummary[] = [];
  const seen = new Set([summary.run_id]);
  for (let run = summary; run.previous && history.length < TREND_RUNS - 1;) {
    if (seen.has(run.previous.run_id)) break; // a loop in the chain: never read it twice
    seen.add(run.previous.run_id);
    try {
      run = (await readSummary(store, run.previous.summary_key, warn)).summary;
    } catch (error) {
      const which =
        history.length === 0 ? "no comparison with the previous run" : "a shorter trend";
      warn(`${which}: ${(error as Error).message}`);
      break;
    }
    history.push(run);
  }
  return history;
}

/**
 * The estimate for the plan as it will run, after the deadline (if any) has sized the cluster;
 * throws InputError (exit 2, before anything starts) for a deadline no cluster the YAML allows
 * meets, and for a budget the estimate exceeds or no price supports.
 */
export async function forecast(
  req: Pick<Request, "deadlineMinutes" | "budgetUsd">,
  plan: Plan,
  store: SummaryStore,
  sizing: Sizing,
  warn: (line: string) => void,
): Promise<Forecast> {
  const shape = sizing.shape(plan);
  if (req.budgetUsd !== undefined) requirePrices(shape, plan);
  let runs: RunSummary[] = [];
  let unread: string | undefined;
  try {
    runs = await previousRuns(store, plan, warn);
  } catch (error) {
    unread = `the previous runs could not be read (${(error as Error).message})`;
  }
  const scenes = toRun(plan, runs[0]);
  const result: Forecast = { notes: [] };
  let planned = shape.maxWorkers;
  if (req.deadlineMinutes !== undefined) {
    const pick = workersForDeadline(scenes, runs, shape, req.deadlineMinutes * 60);
    if (!pick) {
      result.notes.push(
        `deadline-minutes: no previous run of ${plan.module} ${plan.metadata} to estimate from; the cluster is sized as its YAML says`,
      );
    } else if (pick.within) {
      planned = pick.within.workers;
      if (shape.workers.length) sizing.resize?.(plan, allocate(shape, planned));
      result.deadline = { minutes: req.deadlineMinutes, workers: planned };
    } else {
      throw new InputError("deadline-minutes", impossible(req.deadlineMinutes, shape, pick));
    }
  }
  result.estimate = estimateRun(scenes, runs, shape, planned);
  if (!result.estimate) {
    result.none =
      unread ??
      (runs.length === 0
        ? `no previous run of ${plan.module} ${plan.metadata} in ${store.uri(plan.latest_key)}: nothing to estimate from`
        : `no scene finished in the previous runs of ${plan.module} ${plan.metadata}: nothing to estimate from`);
  }
  const usd = result.estimate?.planned.usd;
  if (req.budgetUsd !== undefined && usd && usd.mid > req.budgetUsd) {
    throw new InputError(
      "budget-usd",
      `the run is estimated at ${formatUsd(usd.mid)} (${usdRange(usd)}) with ${workersText(result.estimate!.planned, shape)}, over the budget of ${formatUsd(req.budgetUsd)}: raise it, run fewer scenes, or set deadline-minutes to size the cluster`,
    );
  }
  if (req.budgetUsd !== undefined && !result.estimate) {
    result.notes.push(
      `budget-usd: no estimate to check ${formatUsd(req.budgetUsd)} against; the driver still stops starting scenes before the run's cost passes it`,
    );
  }
  return result;
}

/** The scenes the run will start: a resume skips those the latest run has as SUCCESS. */
function toRun(plan: Plan, latest: RunSummary | undefined): Plan["scenes"] {
  if (!plan.resume || !latest) return plan.scenes;
  const done = new Set(latest.scenes.filter((s) => s.status === "SUCCESS").map((s) => s.name));
  return plan.scenes.filter((s) => !done.has(s.name));
}

/** A budget is priced from the node types' prices: every node the run may start needs one. */
function requirePrices(shape: ClusterShape, plan: Plan): void {
  const unpriced = [shape.head, ...shape.workers].filter((g) => g.usdPerHour === null);
  if (unpriced.length === 0) return;
  const where = `configs/${plan.module}_aws.ini [prices]`;
  throw new InputError(
    "budget-usd",
    `node type ${unpriced.map((g) => g.name).join(", ")} has no price, so the run's cost cannot be tracked: declare it in ${where} (e.g. ${unpriced[0]!.name} = 0.5)`,
  );
}

function impossible(
  minutes: number,
  shape: ClusterShape,
  pick: { needed?: Scenario; best: Scenario },
): string {
  const best = `${formatSeconds(pick.best.wall.mid)} with ${workersText(pick.best, shape)}`;
  if (pick.needed) {
    return `${minutes} min cannot be met with the ${workers(shape.maxWorkers)} the cluster YAML allows: the estimate needs ${pick.needed.workers} (${formatSeconds(pick.needed.wall.mid)}); raise max_workers (and the vCPU quota) or allow more time`;
  }
  if (shape.workers.length === 0)
    return `${minutes} min cannot be met: the estimate is ${best}; allow more time, or run on a cluster`;
  return `${minutes} min cannot be met by any number of workers: the fastest estimate is ${best} (the start-up and the longest scene alone take that long); allow more time`;
}

const workers = (n: number) => `${n} worker${n === 1 ? "" : "s"}`;

function workersText(s: Scenario, shape: ClusterShape): string {
  if (shape.workers.length === 0)
    return `${shape.head.slots} slots on ${shape.head.name === LOCAL_RUN_NODE_TYPE ? "this machine" : "the head"}`;
  return workers(s.workers);
}

function usdRange(usd: Range): string {
  return `${formatUsd(usd.low)}–${formatUsd(usd.high)}`;
}

function wallRange(wall: Range): string {
  return `${formatSeconds(wall.low)}–${formatSeconds(wall.high)}`;
}

/** What the scenes' times rest on, in words. */
function basisText(e: Estimate): string {
  const parts = [
    e.basis.own && `${e.basis.own} by their own time`,
    e.basis.category && `${e.basis.category} by their category's seconds per step`,
    e.basis.run && `${e.basis.run} by the previous runs' median`,
  ].filter(Boolean);
  const setup = !e.setup
    ? "no start-up measured (the scenes' time only)"
    : e.launches
      ? `start-up and wind-down ${wallRange(e.setup)} as measured`
      : `the driver's own start-up ${wallRange(e.setup)} (no earlier launch measured)`;
  const runs = `${e.runs.length} previous run${e.runs.length === 1 ? "" : "s"} (${e.runs[0]}${e.runs.length > 1 ? ", …" : ""})`;
  const range =
    e.runs.length === 1
      ? "one previous run, so the range holds no run-to-run variation"
      : "the range: each scene's shortest and longest time in them";
  return `${e.scenes} scenes: ${parts.join(", ")}, from ${runs}; ${setup}; ${range}`;
}

function deadlineText(f: Forecast): string {
  const { minutes } = f.deadline!;
  if (!f.estimate?.shape.workers.length) return `${minutes} min: the estimate is within it`;
  return `${minutes} min: the cluster starts ${workersText(f.estimate.planned, f.estimate.shape)} at once (min_workers = max_workers), the fewest whose estimate is within it`;
}

/** The forecast for the log and the CLI: a few lines. */
export function describeForecast(f: Forecast): string {
  const lines: string[] = [];
  const e = f.estimate;
  if (e) {
    const p = e.planned;
    const usd = p.usd ? `, ${formatUsd(p.usd.mid)} (${usdRange(p.usd)})` : ", cost not priced";
    lines.push(
      `  estimate:      ${formatSeconds(p.wall.mid)} (${wallRange(p.wall)})${usd} with ${workersText(p, e.shape)}`,
      `                ${basisText(e)}`,
    );
    if (e.shape.workers.length) {
      for (const a of e.alternatives) {
        const cost = a.usd ? formatUsd(a.usd.mid) : "not priced";
        const over = a.overLimit ? ` (over the YAML's max_workers ${e.shape.maxWorkers})` : "";
        lines.push(
          `                ${workers(a.workers).padStart(11)}: ${formatSeconds(a.wall.mid)}, ${cost}${over}`,
        );
      }
    }
  } else if (f.none) {
    lines.push(`  estimate:      none: ${f.none}`);
  }
  if (f.deadline) lines.push(`  deadline:      ${deadlineText(f)}`);
  for (const note of f.notes) lines.push(`  note:          ${note}`);
  for (const note of e?.shape.notes ?? []) lines.push(`  note:          ${note}`);
  return lines.join("\n");
}

/** The forecast as a job-summary section (Markdown). */
export function renderForecast(f: Forecast): string {
  const lines = ["### Estimate", ""];
  const e = f.estimate;
  if (!e) {
    lines.push(`No estimate: ${f.none ?? "nothing to estimate from"}.`);
  } else {
    const p = e.planned;
    const usd = p.usd ? ` for **${formatUsd(p.usd.mid)}** (${usdRange(p.usd)})` : "";
    lines.push(
      `**${formatSeconds(p.wall.mid)}** (${wallRange(p.wall)})${usd} with ${workersText(p, e.shape)}. ${basisText(e)}.`,
      "",
    );
    if (e.shape.workers.length) {
      lines.push("| workers | wall time | range | cost |", "| ---: | ---: | ---: | ---: |");
      for (const a of e.alternatives) {
        const over = a.overLimit ? ` (over max_workers ${e.shape.maxWorkers})` : "";
        lines.push(
          `| ${a.workers}${over} | ${formatSeconds(a.wall.mid)} | ${wallRange(a.wall)} | ${a.usd ? `${formatUsd(a.usd.mid)} (${usdRange(a.usd)})` : "not priced"} |`,
        );
      }
      lines.push("");
    }
  }
  if (f.deadline) lines.push(`Deadline: ${deadlineText(f)}.`, "");
  for (const note of [...f.notes, ...(e?.shape.notes ?? [])]) lines.push(`- ${note}`);
  return `${lines.join("\n").trimEnd()}\n`;
}
