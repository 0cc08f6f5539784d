/**
 * Several runs' summaries as one report: a row per module × metadata level, and the scenes that
 * passed in the previous run of the same module and level but fail now (regressions).
 * Used by the scheduled evaluation's final job and the pull-request comment.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseSummary, type RunSummary } from "./summary.js";

export function findSummaries(dir: string): RunSummary[] {
  const found: RunSummary[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const file = path.join(d, name);
      if (statSync(file).isDirectory()) walk(file);
      else if (name.endsWith("run-summary.json")) {
        found.push(parseSummary(readFileSync(file, "utf8"), file));
      }
    }
  };
  walk(dir);
  return found;
}

const keyOf = (s: RunSummary) => `${s.module} ${s.metadata}`;

export function regressions(current: RunSummary, previous: RunSummary | undefined): string[] {
  if (!previous) return [];
  const passed = new Set(previous.scenes.filter((s) => s.status === "SUCCESS").map((s) => s.name));
  return current.scenes
    .filter((s) => s.status === "FAILED" && passed.has(s.name))
    .map((s) => s.name);
}

export function renderCombined(
  current: RunSummary[],
  previous: RunSummary[] = [],
  title = "MCS evaluations",
): string {
  const before = new Map(previous.map((s) => [keyOf(s), s]));
  const lines = [
    `## ${title}`,
    "",
    "| module | metadata | total | succeeded | failed | status | newly failing |",
    "| --- | --- | ---: | ---: | ---: | --- | ---: |",
  ];
  const details: string[] = [];
  for (const run of [...current].sort((a, b) => keyOf(a).localeCompare(keyOf(b)))) {
    const { total, succeeded, failed } = run.totals;
    const newly = regressions(run, before.get(keyOf(run)));
    const status =
      run.state !== "finished" ? `⚠️ ${run.state}` : failed ? "❌ failed" : "✅ passed";
    lines.push(
      `| ${run.module} | ${run.metadata} | ${total} | ${succeeded} | ${failed} | ${status} | ${newly.length} |`,
    );
    if (newly.length) {
      details.push(
        `### ${run.module} ${run.metadata}: passed in the previous run, failing now`,
        "",
        ...newly.slice(0, 200).map((n) => `- \`${n}\``),
        ...(newly.length > 200 ? [`- … and ${newly.length - 200} more`] : []),
        "",
      );
    }
  }
  if (current.length === 0) lines.push("| _no run summaries found_ | | | | | | |");
  if (previous.length === 0) lines.push("", "_No previous run to compare with._");
  return [...lines, "", ...details].join("\n").trimEnd() + "\n";
}
