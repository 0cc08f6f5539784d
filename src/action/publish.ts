/** What a run leaves on the workflow run: job summary, annotations, outputs, the summary file. */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as core from "@actions/core";
import { s3FolderUrl } from "../aws/s3.js";
import type { Outcome } from "../engine.js";
import type { Plan } from "../plan.js";
import { FULL_REPORT_FILE, outcomeText } from "../report.js";
import { PREVIOUS_SUMMARY_FILE } from "../combine.js";
import type { RunSummary } from "../summary.js";

/** GitHub shows at most 10 error annotations per step; the rest are counted in one more. */
const MAX_ANNOTATIONS = 9;

/** What publish needs: a run's summary and report (a run's Outcome, or a collect's). */
export type Publishable = Pick<
  Outcome,
  "summary" | "summaryText" | "markdown" | "fullMarkdown" | "previous" | "exitCode"
> & { plan: Pick<Plan, "dir" | "store"> & { names: Pick<Plan["names"], "folder"> } };

/**
 * `note`: Markdown shown above the report (e.g. how to collect a run handed over). A run still
 * running (a follow budget spent, a collect before the end) gets its progress and an ETA first,
 * and the status `running`.
 */
export async function publish(outcome: Publishable, region: string, note = ""): Promise<void> {
  const { plan, summary, summaryText, markdown } = outcome;
  if (!summary || !summaryText || !markdown) return;
  const summaryPath = path.join(path.dirname(plan.dir), "run-summary.json");
  mkdirSync(path.dirname(summaryPath), { recursive: true });
  writeFileSync(summaryPath, summaryText);
  // The whole per-scene table, uploaded with the summary (eval.yml uploads this directory).
  if (outcome.fullMarkdown) {
    writeFileSync(path.join(path.dirname(summaryPath), FULL_REPORT_FILE), outcome.fullMarkdown);
  }
  // The run compared with, so a report of several runs (the PR comment) can compare too.
  if (outcome.previous) {
    const previousPath = path.join(path.dirname(summaryPath), PREVIOUS_SUMMARY_FILE);
    writeFileSync(previousPath, JSON.stringify(outcome.previous));
  }

  const failed = summary.scenes.filter((s) => s.status === "FAILED");
  for (const scene of failed.slice(0, MAX_ANNOTATIONS)) {
    core.error(
      `${scene.failure_class} after ${scene.attempts} attempt(s), exit code ${scene.exit_code ?? "-"}`,
      { title: `Scene failed: ${scene.name}` },
    );
  }
  if (failed.length > MAX_ANNOTATIONS) {
    core.error(`${failed.length - MAX_ANNOTATIONS} more scenes failed; see the job summary`);
  }
  const status = statusOf(outcome.exitCode, summary);
  const outputs: Record<string, string | number> = {
    total: summary.totals.total,
    succeeded: summary.totals.succeeded,
    failed: summary.totals.failed,
    status,
    "run-id": summary.run_id,
    "results-url": s3FolderUrl(plan.store, region, plan.names.folder),
    "summary-path": summaryPath,
  };
  for (const [name, value] of Object.entries(outputs)) core.setOutput(name, String(value));
  const progress = status === "running" ? progressMarkdown(summary) : "";
  await core.summary.addRaw([progress, note, markdown].filter(Boolean).join("\n\n")).write();
  core.info(outcomeText(summary));
}

/** The status output: `running` while the run's summary says so, else by the exit code. */
export function statusOf(exitCode: number, summary?: Pick<RunSummary, "state">): string {
  if (summary?.state === "running") return "running";
  return exitCode === 0 ? "success" : exitCode === 130 ? "interrupted" : "failure";
}

/**
 * A running run's progress and ETA, from its summary alone: the scenes this run runs (not those
 * a resume carried over), how many have finished, and the time since it started as of the
 * summary's last update. The ETA is an estimate: that time per finished scene, times the scenes
 * left (the scenes in flight and the longest-first order make it rough).
 */
export function progressMarkdown(summary: RunSummary, now = Date.now()): string {
  const ran = summary.scenes.filter((s) => !s.resumed);
  const done = ran.filter((s) => s.status !== "PENDING").length;
  const started = Date.parse(summary.started_at);
  const asOf = Date.parse(summary.updated_at);
  const elapsed = Math.max(0, asOf - started);
  const share = ran.length ? Math.floor((100 * done) / ran.length) : 100;
  let eta = "no estimate yet: no scene has finished";
  if (done > 0 && elapsed > 0) {
    const rest = (elapsed * (ran.length - done)) / done;
    eta =
      `about ${hoursMinutes(rest)} more, around ${new Date(asOf + rest).toISOString().slice(0, 16)}Z ` +
      "(an estimate: the time so far per finished scene, times the scenes left)";
  }
  const age = now - asOf;
  const stale =
    age > 10 * 60_000 ? ` (${hoursMinutes(age)} ago: is the driver still running?)` : "";
  return [
    "### ⏳ The run is still going",
    `${done} of ${ran.length} scenes finished (${share}%) in ${hoursMinutes(elapsed)} since ` +
      `${summary.started_at}, as of the summary's last update, ${summary.updated_at}${stale}. ` +
      `ETA: ${eta}.`,
  ].join("\n\n");
}

function hoursMinutes(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
