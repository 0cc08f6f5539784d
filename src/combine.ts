/**
 * Several runs' summaries as one report: a row per module × metadata level, and the scenes that
 * passed in the previous run of the same module and level but fail now (regressions).
 * Used by the scheduled evaluation's final job and the pull-request comment.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { renderDigest } from "./report.js";
import { parseSummary, type RunSummary } from "./summary.js";

/** A PR comment may hold 65,536 characters; per-run details stop short of that. */
export const COMBINED_MAX_CHARS = 60_000;

/** Beside a run's run-summary.json in its artifact: the previous run's, which it compared with. */
export const PREVIOUS_SUMMARY_FILE = "previous-run.json";

/** The run summaries below `dir` (artifacts unpack into folders); `previous`: the previous runs'. */
export function findSummaries(dir: string, previous = false): RunSummary[] {
  const found: RunSummary[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const file = path.join(d, name);
      if (statSync(file).isDirectory()) walk(file);
      else if (previous ? name === PREVIOUS_SUMMARY_FILE : name.endsWith("run-summary.json")) {
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
    "| module | metadata | total | succeeded | failed | not run | status | newly failing |",
    "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
  ];
  const details: string[] = [];
  const runs = [...current].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  for (const run of runs) {
    const { total, succeeded, failed, pending } = run.totals;
    const newly = regressions(run, before.get(keyOf(run)));
    const status =
      run.state !== "finished" ? `⚠️ ${run.state}` : failed ? "❌ failed" : "✅ passed";
    lines.push(
      `| ${run.module} | ${run.metadata} | ${total} | ${succeeded} | ${failed} | ${pending} | ${status} | ${newly.length} |`,
    );
    const section = [`### ${run.module} ${run.metadata}`, ""];
    if (newly.length) {
      section.push(
        "**Passed in the previous run, failing now:**",
        "",
        ...newly.slice(0, 200).map((n) => `- \`${n}\``),
        ...(newly.length > 200 ? [`- … and ${newly.length - 200} more`] : []),
        "",
      );
    }
    details.push([...section, renderDigest(run, before.get(keyOf(run))), ""].join("\n"));
  }
  if (current.length === 0) lines.push("| _no run summaries found_ | | | | | | | |");
  if (previous.length === 0) lines.push("", "_No previous run to compare with._");
  // Each run's details while they fit in a PR comment (its job summary has them all).
  let text = lines.join("\n") + "\n";
  for (const [i, section] of details.entries()) {
    if (text.length + section.length + 100 > COMBINED_MAX_CHARS) {
      const left = details.length - i;
      return `${text}\n_The details of ${left} more run${left === 1 ? "" : "s"} are in their job summaries._\n`;
    }
    text += `\n${section}`;
  }
  return text;
}
