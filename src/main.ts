/**
 * The action's main step: inputs → plan → Ray cluster on AWS → results on the workflow run.
 * Teardown is guaranteed by post.ts, which runs even when this step fails or is cancelled.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as core from "@actions/core";
import { jobRunId } from "./action/identity.js";
import { readInputs } from "./action/inputs.js";
import { renderPlanSummary } from "./action/plan-summary.js";
import { publish } from "./action/publish.js";
import { s3FolderUrl } from "./aws/s3.js";
import { clusterYamlPath, validateWithRaySchema } from "./cluster.js";
import { evaluate } from "./engine.js";
import { InputError } from "./errors.js";
import { describePlan } from "./plan.js";
import { stopRunningRay } from "./ray/cli.js";
import { ensureRay } from "./ray/install.js";
import { awsTarget, type AwsTarget } from "./targets/aws.js";

let target: AwsTarget | undefined;
let cancelled = false;

async function main(): Promise<void> {
  const inputs = readInputs();
  const toolRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const runnerTemp = process.env.RUNNER_TEMP ?? path.join(toolRoot, ".mcs-local");
  const env = {
    toolRoot,
    workspace: process.env.GITHUB_WORKSPACE ?? process.cwd(),
    venvDir: process.env.MCS_VENV ?? path.join(runnerTemp, "mcs-pipeline-venv"),
    python: process.env.MCS_PYTHON,
    rayVersion: inputs.rayVersion,
    log: (line: string) => core.info(line),
  };
  target = awsTarget({ ...inputs.aws, workDir: path.join(runnerTemp, "mcs-pipeline") });
  const outcome = await evaluate(inputs.request, env, target, {
    progress: (line) => core.info(line),
    runId: jobRunId(),
    onPlan: (plan) => {
      core.setOutput("cluster-name", plan.cluster_name ?? "");
      core.info(describePlan(plan));
    },
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
    await core.summary.addRaw(renderPlanSummary(plan, inputs.aws.region)).write();
    core.info("dry-run: the plan is valid; nothing was started");
    return;
  }
  await publish(outcome, inputs.aws.region);
  const { failed, pending, total } = outcome.summary!.totals;
  if (outcome.exitCode !== 0 && !inputs.allowFailures) {
    core.setFailed(
      `${failed} of ${total} scenes failed${pending ? `, ${pending} did not run` : ""}`,
    );
  }
}

// Cancel: SIGINT, then SIGTERM 7.5 s later, then a kill. Stop the driver on the head (it saves
// the summary) and leave teardown to post; a second signal changes nothing, post does the rest.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (cancelled) return;
    cancelled = true;
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
  if (error instanceof InputError) {
    core.setFailed(`input ${error.input}: ${error.message}`);
  } else {
    core.setOutput("status", "failure");
    core.setFailed(error instanceof Error ? error.message : String(error));
  }
});
