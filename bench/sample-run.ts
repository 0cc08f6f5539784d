/**
 * A sample 10,000-scene run for the report's benchmark (report.bench.ts) and pictures
 * (scripts/render-pictures.ts): deterministic, with categories, failures with log excerpts,
 * retries (flaky and after lost nodes), a previous run and a priced cluster.
 */
import type { LinkTarget } from "../src/report.js";
import type { NodeRecord, RunSummary, SceneResult } from "../src/summary.js";

export const SCENES = 10_000;
export const EXCERPT_LINES = 40;
const BUCKET = "evaluation-results";
const FAILURES = ["timeout", "xserver", "oom", "script_error", "missing_outputs"] as const;
const CATEGORIES = ["intuitive physics", "retrieval", "agents", "container", null] as const;
const TASKS = ["collision", "gravity", "agents", "holes", "retrieval", "container"] as const;

/** Deterministic pseudo-random numbers (mulberry32): every run gets the same input. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function link(key: string): LinkTarget {
  return {
    href: `https://s3.console.aws.amazon.com/s3/object/${BUCKET}?region=us-east-1&prefix=${encodeURIComponent(key)}`,
    uri: `s3://${BUCKET}/${key}`,
  };
}

function logExcerpt(name: string, rand: () => number): string {
  const lines = Array.from({ length: EXCERPT_LINES - 2 }, (_, i) => {
    const step = Math.floor(rand() * 500);
    return `2026-11-25 15:${String(i % 60).padStart(2, "0")}:07,123 INFO  [mcs] ${name} step ${step}: action=MoveAhead reward=-0.001 pos=(${rand().toFixed(3)}, 0.465, ${rand().toFixed(3)}) | objects=12`;
  });
  return [
    ...lines,
    "Traceback (most recent call last):",
    "RuntimeError: ``` Unity player exited",
  ].join("\n");
}

function buildScene(i: number, rand: () => number, failedShare: number): SceneResult {
  const name = `eval_6_${TASKS[i % TASKS.length]}_${String(i).padStart(5, "0")}_01`;
  const base = `eval-6/eval-6_level2_team_${name}`;
  const failed = rand() < failedShare;
  const duration = Math.round((120 + rand() ** 2 * 3000) * 1000) / 1000;
  const retried = failed ? rand() < 0.5 : rand() < 0.04;
  const failure = failed ? FAILURES[Math.floor(rand() * FAILURES.length)] : undefined;
  const firstFailure = failure ?? (rand() < 0.5 ? "xserver" : "node_lost");
  return {
    name,
    status: failed ? "FAILED" : "SUCCESS",
    attempts: retried ? 2 : 1,
    exit_code: failed ? (failure === "timeout" ? null : 1) : 0,
    failure_class: failure ?? null,
    duration_s: duration,
    node: `10.0.${Math.floor(i / 250)}.${i % 250}`,
    expected_cost: 200 + (i % 300),
    resumed: !failed && rand() < 0.05,
    outputs: {
      history: failed ? null : `${base}.json`,
      log: `${base}_20261125-151500_log.txt`,
      videos: failed
        ? []
        : [`eval-6-movies/${base}_visual.mp4`, `eval-6-movies/${base}_topdown.mp4`],
    },
    log_excerpt: failed ? logExcerpt(name, rand) : null,
    history: Array.from({ length: retried ? 2 : 1 }, (_, a) => ({
      attempt: a + 1,
      exit_code: failed ? 1 : 0,
      failure_class: a === 0 && retried ? firstFailure : (failure ?? null),
      duration_s: duration,
      node: "10.0.0.5",
      started_at: "2026-11-25T15:20:00Z",
    })),
    category: CATEGORIES[i % CATEGORIES.length] ?? null,
  };
}

export interface RunSpec {
  seed: number;
  runId: string;
  failedShare: number;
  scenes?: number;
  module?: string;
  state?: RunSummary["state"];
}

export function buildSummary(spec: RunSpec, previous?: RunSpec): RunSummary {
  const rand = random(spec.seed);
  const scenes = Array.from({ length: spec.scenes ?? SCENES }, (_, i) =>
    buildScene(i, rand, spec.failedShare),
  );
  if (spec.state === "interrupted") {
    for (const scene of scenes.slice(Math.floor(scenes.length / 2))) {
      Object.assign(scene, { status: "PENDING", attempts: 0, exit_code: null, duration_s: null });
      Object.assign(scene, { failure_class: null, log_excerpt: null, history: [], node: null });
    }
  }
  const count = (status: string) => scenes.filter((s) => s.status === status).length;
  const day = spec.runId.slice(0, 8);
  const started = `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}T15:15:00Z`;
  // As in the bench: 11h 47m 11s, the phases' 11h 49m less Ray's install and ray down.
  const ended = new Date(Date.parse(started) + 42_431_000).toISOString().replace(".000Z", "Z");
  const module = spec.module ?? "baseline";
  return {
    schema_version: 1,
    run_id: spec.runId,
    module,
    metadata: "level2",
    cluster_name: `mcs-${module}-${spec.runId}-1`,
    store: `s3://${BUCKET}`,
    summary_key: `eval-6/${spec.runId}_run-summary.json`,
    state: spec.state ?? "finished",
    started_at: started,
    updated_at: ended,
    finished_at: spec.state === "interrupted" ? null : ended,
    totals: {
      total: scenes.length,
      succeeded: count("SUCCESS"),
      failed: count("FAILED"),
      pending: count("PENDING"),
      retried: scenes.filter((s) => s.attempts > 1).length,
    },
    scenes,
    previous: previous
      ? { run_id: previous.runId, summary_key: `eval-6/${previous.runId}_run-summary.json` }
      : null,
  };
}

/**
 * The cluster of the sample run, for the cost estimate: the head and 20 GPU workers at the
 * on-demand list price (two scaled down early), 8 spot workers at a price the module declares,
 * and one worker of a type with no price.
 */
export function sampleNodes(summary: RunSummary): NodeRecord[] {
  const at = (hours: number) =>
    new Date(Date.parse(summary.started_at) + hours * 3_600_000).toISOString();
  const list = "on-demand list, us-east-1, 2026-06";
  const node = (i: number, fields: Partial<NodeRecord>): NodeRecord => ({
    node_id: `${(0x5a1e + i).toString(16)}${"0".repeat(52)}`,
    address: `10.0.${Math.floor(i / 250)}.${i % 250}`,
    node_type: "worker",
    instance_type: "g4dn.xlarge",
    head: false,
    spot: false,
    started_at: at(0.12),
    ended_at: null,
    usd_per_hour: 0.526,
    price_source: list,
    ...fields,
  });
  return [
    node(0, { node_type: "head", instance_type: "m5.xlarge", head: true, usd_per_hour: 0.192 }),
    ...Array.from({ length: 20 }, (_, i) => node(1 + i, i < 2 ? { ended_at: at(3.5) } : {})),
    ...Array.from({ length: 8 }, (_, i) =>
      node(21 + i, {
        node_type: "worker-spot",
        instance_type: "g4dn.2xlarge",
        spot: true,
        usd_per_hour: 0.3,
        price_source: "configs/baseline_aws.ini [prices]",
      }),
    ),
    node(29, {
      node_type: "worker-big",
      instance_type: "g6.4xlarge",
      usd_per_hour: null,
      price_source: null,
    }),
  ];
}

/** The phases of the sample run, as the action times them. */
export const PHASES = [
  { name: "install ray", seconds: 41 },
  { name: "ray up", seconds: 412 },
  { name: "scenes", seconds: 42_000 },
  { name: "ray down", seconds: 95 },
];
