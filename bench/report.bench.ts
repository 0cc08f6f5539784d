/**
 * Report rendering on a large run. By hand: `npx tsx bench/report.bench.ts`
 * Targets: a 10,000-scene report (categories, flaky and node_lost retries, a previous run to
 * compare with) renders in < 1 s and stays < 1 MiB (GitHub's job-summary limit). The full report
 * (every row, for the artifact) is timed too.
 */
import { performance } from "node:perf_hooks";
import { renderFullMarkdown, renderMarkdown } from "../src/report.js";
import type { LinkTarget } from "../src/report.js";
import type { RunSummary, SceneResult } from "../src/summary.js";

const SCENES = 10_000;
const FAILED_SHARE = 0.03;
const EXCERPT_LINES = 40;
const WARMUPS = 2;
const RUNS = 15;
const TARGET_MS = 1000;
const TARGET_BYTES = 1024 * 1024;

const BUCKET = "evaluation-results";
const FAILURES = ["timeout", "xserver", "oom", "script_error", "missing_outputs"] as const;
const CATEGORIES = ["intuitive physics", "retrieval", "agents", "container", null] as const;
const TASKS = ["collision", "gravity", "agents", "holes", "retrieval", "container"] as const;

/** Deterministic pseudo-random numbers (mulberry32), so every run benchmarks the same input. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function link(key: string): LinkTarget {
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

function buildScene(i: number, rand: () => number): SceneResult {
  const name = `eval_6_${TASKS[i % TASKS.length]}_${String(i).padStart(5, "0")}_01`;
  const base = `eval-6/eval-6_level2_team_${name}`;
  const failed = rand() < FAILED_SHARE;
  const duration = Math.round((120 + rand() ** 2 * 3000) * 1000) / 1000;
  const retried = failed ? rand() < 0.5 : rand() < 0.04;
  const failure = failed ? FAILURES[Math.floor(rand() * FAILURES.length)] : undefined;
  // A retried success: half after a failure of its own (flaky), half after a lost node.
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

function buildSummary(seed: number, runId: string): RunSummary {
  const rand = random(seed);
  const scenes = Array.from({ length: SCENES }, (_, i) => buildScene(i, rand));
  const count = (status: string) => scenes.filter((s) => s.status === status).length;
  return {
    schema_version: 1,
    run_id: runId,
    module: "baseline",
    metadata: "level2",
    cluster_name: "mcs-baseline-20261125-151500-ab12-1",
    store: `s3://${BUCKET}`,
    summary_key: "eval-6/eval-6_level2_team_run-summary.json",
    state: "finished",
    started_at: "2026-11-25T15:15:00Z",
    updated_at: "2026-11-26T03:02:11Z",
    finished_at: "2026-11-26T03:02:11Z",
    totals: {
      total: scenes.length,
      succeeded: count("SUCCESS"),
      failed: count("FAILED"),
      pending: count("PENDING"),
      retried: scenes.filter((s) => s.attempts > 1).length,
    },
    scenes,
    previous: { run_id: "20261124-151500-cd34", summary_key: "eval-6/previous_run-summary.json" },
  };
}

function timed(render: () => string): { median: number; min: number; output: string } {
  for (let i = 0; i < WARMUPS; i++) render();
  const times: number[] = [];
  let output = "";
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    output = render();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)] ?? NaN, min: times[0] ?? NaN, output };
}

function main(): void {
  const summary = buildSummary(42, "20261125-151500-ab12");
  const previous = buildSummary(7, "20261124-151500-cd34");
  const phases = [
    { name: "install ray", seconds: 41 },
    { name: "ray up", seconds: 412 },
    { name: "scenes", seconds: 42_000 },
    { name: "ray down", seconds: 95 },
  ];
  const options = { link, phases, previous, fullReport: "`report-full.md` in the run's artifact" };
  const { median, min, output } = timed(() => renderMarkdown(summary, options));
  const full = timed(() => renderFullMarkdown(summary, options));
  const size = Buffer.byteLength(output);
  const shownRows = output.match(/^\| `eval_6_/gm)?.length ?? 0;
  const shownDetails = output.match(/^#### ❌/gm)?.length ?? 0;
  const ok = (pass: boolean) => (pass ? "ok" : "MISSED");

  console.log(
    `report.bench: ${SCENES.toLocaleString("en-US")} scenes, ${summary.totals.failed} failed ` +
      `(${EXCERPT_LINES}-line excerpts), ${RUNS} runs after ${WARMUPS} warm-ups`,
  );
  console.log(`  render  median ${median.toFixed(1)} ms, min ${min.toFixed(1)} ms`);
  console.log(`  output  ${size.toLocaleString("en-US")} bytes (${(size / 1024).toFixed(1)} KiB)`);
  console.log(
    `  full    median ${full.median.toFixed(1)} ms, ` +
      `${Buffer.byteLength(full.output).toLocaleString("en-US")} bytes (report-full.md)`,
  );
  console.log(`  shown   ${shownRows} table rows, ${shownDetails} failure details`);
  console.log(`  target  render < ${TARGET_MS} ms: ${ok(median < TARGET_MS)}`);
  console.log(`  target  size < 1 MiB: ${ok(size < TARGET_BYTES)}`);
  if (median >= TARGET_MS || size >= TARGET_BYTES) process.exitCode = 1;
}

main();
