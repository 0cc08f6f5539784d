/** What a run leaves on the workflow run: job summary, annotations, outputs, the summary file. */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as core from "@actions/core";
import { s3FolderUrl } from "../aws/s3.js";
import type { Outcome } from "../engine.js";
import { FULL_REPORT_FILE, outcomeText } from "../report.js";

/** GitHub shows at most 10 error annotations per step; the rest are counted in one more. */
const MAX_ANNOTATIONS = 9;

export async function publish(outcome: Outcome, region: string): Promise<void> {
  const { plan, summary, summaryText, markdown } = outcome;
  if (!summary || !summaryText || !markdown) return;
  const summaryPath = path.join(path.dirname(plan.dir), "run-summary.json");
  mkdirSync(path.dirname(summaryPath), { recursive: true });
  writeFileSync(summaryPath, summaryText);
  // The whole per-scene table, uploaded with the summary (eval.yml uploads this directory).
  if (outcome.fullMarkdown) {
    writeFileSync(path.join(path.dirname(summaryPath), FULL_REPORT_FILE), outcome.fullMarkdown);
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
  const outputs: Record<string, string | number> = {
    total: summary.totals.total,
    succeeded: summary.totals.succeeded,
    failed: summary.totals.failed,
    status: statusOf(outcome.exitCode),
    "results-url": s3FolderUrl(plan.store, region, plan.names.folder),
    "summary-path": summaryPath,
  };
  for (const [name, value] of Object.entries(outputs)) core.setOutput(name, String(value));
  await core.summary.addRaw(markdown).write();
  core.info(outcomeText(summary));
}

export function statusOf(exitCode: number): string {
  return exitCode === 0 ? "success" : exitCode === 130 ? "interrupted" : "failure";
}
