/**
 * The action's main step: inputs → plan → Ray cluster on AWS → results on the workflow run.
 * Teardown is guaranteed by post.ts, which runs even when this step fails or is cancelled.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as core from "@actions/core";
import { jobRunId } from "./action/identity.js";
import { collectRun } from "./action/collect.js";
import { readInputs, type ActionInputs } from "./action/inputs.js";
import { renderPlanSummary } from "./action/plan-summary.js";
import { publish } from "./action/publish.js";
import { s3FolderUrl } from "./aws/s3.js";
import { clusterYamlPath, validateWithRaySchema } from "./cluster.js";
import { evaluate } from "./engine.js";
import { InputError, PreflightError, type Finding } from "./errors.js";
import { describeForecast, renderForecast, type Forecast } from "./forecast.js";
import { describePlan } from "./plan.js";
import { stopRunningRay } from "./ray/cli.js";
import { ensureRay } from "./ray/install.js";
import type { RunSummary } from "./summary.js";
import { awsTarget, type AwsTarget } from "./targets/aws.js";

let target: AwsTarget | undefined;
let cancelled = false;
/** A collect starts nothing: its cancel has nothing to stop, the run goes on. */
let collecting = false;

async function main(): Promise<void> {
  const inputs = readInputs();
  const toolRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const runnerTemp = process.env.RUNNER_TEMP ?? path.join(toolRoot, ".mcs-local");
  if (inputs.collectRunId) {
    collecting = true;
    const workspace = process.env.GITHUB_WORKSPACE ?? process.cwd();
    const collected = await collectRun(
      { ...inputs, collectRunId: inputs.collectRunId },
      workspace,
      path.join(runnerTemp, "mcs-pipeline"),
    );
    await publish(collected, inputs.aws.region);
    return settle(inputs, collected.summary!, collected.exitCode);
  }
  const env = {
    toolRoot,
    workspace: process.env.GITHUB_WORKSPACE ?? process.cwd(),
    venvDir: process.env.MCS_VENV ?? path.join(runnerTemp, "mcs-pipeline-venv"),
    python: process.env.MCS_PYTHON,
    rayVersion: inputs.rayVersion,
    log: (line: string) => core.info(line),
  };
  target = awsTarget({ ...inputs.aws, workDir: path.join(runnerTemp, "mcs-pipeline") });
  let outlook: Forecast | undefined;
  const outcome = await evaluate(inputs.request, env, target, {
    progress: (line) => core.info(line),
    runId: jobRunId(),
    onPlan: (plan) => {
      core.setOutput("cluster-name", plan.cluster_name ?? "");
      core.setOutput("run-id", plan.run_id);
      core.info(describePlan(plan));
    },
    onForecast: async (forecast) => {
      outlook = forecast;
      core.info(describeForecast(forecast));
      for (const note of forecast.notes) core.warning(note);
      // A real run shows it before `ray up`; a dry run's plan summary has it (below).
      if (!inputs.request.dryRun) await core.summary.addRaw(renderForecast(forecast)).write();
    },
    onFindings: showFindings,
  });
  if (inputs.request.dryRun) {
    // Ray's own schema check, as `ray up` would make it: the pinned Ray (installed once, no
    // cluster, no cloud API), then the plan as the job summary.
    const { plan } = outcome;
    const python = await ensureRay({
      toolRoot,
      venvDir: env.venvDir,
      python: env.python,
      version: plan.ray_version,
      log: env.log,
    });
    await validateWithRaySchema(
      python,
      clusterYamlPath(plan.dir),
      `the cluster YAML of module ${plan.module}`,
    );
    core.setOutput("total", String(plan.scenes.length));
    core.setOutput("results-url", s3FolderUrl(plan.store, inputs.aws.region, plan.names.folder));
    core.setOutput("status", "planned");
    await core.summary.addRaw(renderPlanSummary(plan, inputs.aws.region, outlook)).write();
    core.info("dry-run: the plan is valid; nothing was started");
    return;
  }
  const summary = outcome.summary!;
  await publish(
    outcome,
    inputs.aws.region,
    target.handedOver() ? handOverNote(inputs, summary.run_id) : "",
  );
  settle(inputs, summary, outcome.exitCode);
}

/** Each finding its own annotation (one line naming the fix); none: one line saying it passed. */
function showFindings(findings: Finding[]): void {
  for (const { level, text } of findings) {
    if (level === "error") core.error(`preflight: ${text}`);
    else core.warning(`preflight: ${text}`);
  }
  if (!findings.some((f) => f.level === "error")) {
    const warnings = findings.length ? ` with ${findings.length} warning(s)` : "";
    core.info(`preflight: passed${warnings}`);
  }
}

/** How to collect a run the step handed over to its cluster (follow-minutes). */
function handOverNote(inputs: ActionInputs, runId: string): string {
  const { module, metadata, overrides } = inputs.request;
  const lines = [
    `collect-run-id: ${runId}`,
    `module: ${module}`,
    `metadata: ${metadata}`,
    ...(Object.keys(overrides).length ? ["mcs-config-overrides: (the same as this run's)"] : []),
  ];
  return (
    `**The step followed the run for \`follow-minutes\` (${inputs.aws.followMinutes} min) and ` +
    "handed it over: the driver goes on on its cluster, which the head's watchdog tears down " +
    "once it has finished.** A later job publishes its report with the action's `collect` mode:\n\n" +
    "```yaml\n" +
    lines.join("\n") +
    "\n```"
  );
}

/** The step fails when scenes failed (unless allow-failures); a run still going does not. */
function settle(inputs: ActionInputs, summary: RunSummary, exitCode: number): void {
  const { failed, pending, total } = summary.totals;
  if (summary.state === "running") {
    core.info("The run is still going: status running (collect it later with collect-run-id).");
    return;
  }
  if (exitCode !== 0 && !inputs.allowFailures) {
    const why = summary.stop_reason ? ` (stopped by the ${summary.stop_reason})` : "";
    core.setFailed(
      `${failed} of ${total} scenes failed${pending ? `, ${pending} did not run` : ""}${why}`,
    );
  }
}

// Cancel: SIGINT, then SIGTERM 7.5 s later, then a kill. Stop the driver on the head (it saves
// the summary) and leave teardown to post; a second signal changes nothing, post does the rest.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (cancelled) return;
    cancelled = true;
    if (collecting) {
      // A collect never stops the run: nothing of it runs here.
      core.setFailed(`collect cancelled (${signal}); the run goes on`);
      process.exit(1);
    }
    core.setOutput("status", "interrupted");
    core.setFailed(`cancelled (${signal}); the post step tears the cluster down`);
    const stopped = target ? target.interrupt() : Promise.resolve(stopRunningRay("SIGTERM"));
    void stopped
      .catch((error: Error) => core.info(`stopping: ${error.message}`))
      .finally(() => process.exit(1));
  });
}

main().catch((error: unknown) => {
  if (cancelled) return; // the cancel has said what happened
  stopRunningRay("SIGTERM");
  if (error instanceof PreflightError) {
    // Its findings are the step's error annotations already; 2, the CLI's code for bad input.
    process.exitCode = 2;
  } else if (error instanceof InputError) {
    core.setFailed(`input ${error.input}: ${error.message}`);
  } else {
    core.setOutput("status", "failure");
    core.setFailed(error instanceof Error ? error.message : String(error));
  }
});
