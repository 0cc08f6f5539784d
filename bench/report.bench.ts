/**
 * Report rendering on a large run. By hand: `npx tsx bench/report.bench.ts`
 * Targets: a 10,000-scene report (categories, flaky and node_lost retries, a previous run to
 * compare with) renders in < 1 s and stays < 1 MiB (GitHub's job-summary limit). The full report
 * (every row, for the artifact) is timed too.
 */
import { performance } from "node:perf_hooks";
import { renderFullMarkdown, renderMarkdown } from "../src/report.js";
import {
  buildSummary,
  EXCERPT_LINES,
  link,
  PHASES,
  sampleNodes,
  SCENES,
  type RunSpec,
} from "./sample-run.js";

const WARMUPS = 2;
const RUNS = 15;
const TARGET_MS = 1000;
const TARGET_BYTES = 1024 * 1024;

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
  const run: RunSpec = { seed: 42, runId: "20261125-151500-ab12", failedShare: 0.03 };
  const before: RunSpec = { seed: 7, runId: "20261124-151500-cd34", failedShare: 0.03 };
  const summary = buildSummary(run, before);
  summary.nodes = sampleNodes(summary);
  const previous = buildSummary(before);
  const options = {
    link,
    phases: PHASES,
    previous,
    fullReport: "`report-full.md` in the run's artifact",
  };
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
