/**
 * `collect` mode (input `collect-run-id`): publish the report of a run that outlived the job that
 * launched it (follow-minutes), from the results store, in a later job. No cluster, no Ray, no
 * state for the post step: a collect never stops or tears down anything, and cancelling it
 * leaves the run alone. The run's keys come from the module, the metadata level and the MCS-config
 * overrides, as the plan makes them (plan.ts runNames, resultKeys); `latest` is the run the
 * latest-run pointer names.
 */
import path from "node:path";
import * as core from "@actions/core";
import { roleCredentials } from "../aws/oidc.js";
import { s3Link, s3TextReader } from "../aws/s3.js";
import { outcomeCode } from "../engine.js";
import { readHistory } from "../forecast.js";
import { EnvironmentError } from "../errors.js";
import { loadModule } from "../module.js";
import { resultKeys, runNames } from "../plan.js";
import { FULL_REPORT_FILE, renderFullMarkdown, renderMarkdown } from "../report.js";
import { readSummary, type SummaryStore } from "../summary.js";
import { moduleStore } from "../targets/aws.js";
import type { ActionInputs } from "./inputs.js";
import type { Publishable } from "./publish.js";

export async function collectRun(
  inputs: ActionInputs & { collectRunId: string },
  workspace: string,
  workDir: string,
): Promise<Publishable> {
  const { request, aws } = inputs;
  const mod = loadModule(workspace, request.module, request.metadata);
  const { folder, prefix, mcsConfig } = runNames(request, mod);
  const store = moduleStore({ ...mod, mcsConfig });
  const credentials = await roleCredentials({
    roleArn: aws.roleArn,
    region: aws.region,
    durationSeconds: aws.durationSeconds,
    sessionName: `mcs-collect-${inputs.collectRunId}`.slice(0, 64),
  });
  const uri = (key: string) => s3Link(store, aws.region, key).uri;
  try {
    const read = s3TextReader(store, aws.region, credentials.provider);
    const summaryStore: SummaryStore = { read, uri };
    const runId =
      inputs.collectRunId === "latest"
        ? await latestRun(summaryStore, resultKeys(folder, prefix, "").latest_key)
        : inputs.collectRunId;
    const key = resultKeys(folder, prefix, runId).summary_key;
    core.info(`collecting run ${runId}: ${uri(key)}`);
    const log = (line: string) => core.info(line);
    const { summary, text } = await readSummary(summaryStore, key, log).catch((error: Error) => {
      throw new EnvironmentError(
        `no run summary of run ${runId} of ${request.module} ${request.metadata}: ${error.message}`,
      );
    });
    if (summary.run_id !== runId) {
      throw new EnvironmentError(`${uri(key)} belongs to run ${summary.run_id}, not to ${runId}`);
    }
    const history = await readHistory(summaryStore, summary, log);
    const options = {
      link: (k: string, version?: string) => s3Link(store, aws.region, k, version),
      previous: history[0],
      history,
      fullReport: `\`${FULL_REPORT_FILE}\` in the collecting job's artifact`,
    };
    return {
      plan: { dir: path.join(workDir, runId, "plan"), store, names: { folder } },
      summary,
      summaryText: text,
      markdown: renderMarkdown(summary, options),
      fullMarkdown: renderFullMarkdown(summary, options),
      previous: history[0],
      exitCode: outcomeCode(summary),
    };
  } finally {
    await credentials.close();
  }
}

/** The run id the latest-run pointer names. */
async function latestRun(store: SummaryStore, key: string): Promise<string> {
  const text = await store.read(key);
  if (text === undefined) throw new EnvironmentError(`${store.uri(key)}: no latest run to collect`);
  let runId: unknown;
  try {
    runId = (JSON.parse(text) as { run_id?: unknown } | null)?.run_id;
  } catch {
    // said below
  }
  if (typeof runId !== "string") throw new EnvironmentError(`${store.uri(key)}: names no run`);
  return runId;
}
