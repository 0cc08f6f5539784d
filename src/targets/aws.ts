/**
 * The AWS target: a Ray cluster per run. OIDC credentials → state saved → `ray up` → one
 * `ray rsync-up` of the plan → `ray submit` of the driver (progress streamed) → `ray down`
 * unless kept. The post step (post.ts) tears down whatever the saved state says may be up.
 */
import path from "node:path";
import * as core from "@actions/core";
import { assumeRoleWithOidc, exportCredentials } from "../aws/oidc.js";
import { readS3Text, s3Link } from "../aws/s3.js";
import {
  clusterNameFor,
  clusterYamlPath,
  remotePlanDir,
  renderClusterYaml,
  validateWithRaySchema,
} from "../cluster.js";
import type { Hooks, Target } from "../engine.js";
import { EnvironmentError, InputError } from "../errors.js";
import { mcsSection } from "../module.js";
import type { Plan } from "../plan.js";
import { rayBinary, runRay } from "../ray/cli.js";

export interface AwsSettings {
  roleArn: string;
  region: string;
  durationSeconds: number;
  keepCluster: boolean;
  /** Where plans are staged on the runner (under RUNNER_TEMP). */
  workDir: string;
}

/** The state the post step reads (saved before `ray up`: a cancelled up may leave a head). */
export const STATE = {
  clusterYaml: "cluster-yaml",
  clusterName: "cluster-name",
  clusterUp: "cluster-up",
  ray: "ray",
  roleArn: "role-to-assume",
  region: "aws-region",
  durationSeconds: "role-duration-seconds",
  keepCluster: "keep-cluster",
} as const;

/** The driver's per-scene progress lines and its own summary lines stay visible in the log. */
const DRIVER_LINE = /^(\[\d+\/\d+\] |retrying |mcs-pipeline: )/;

export function awsTarget(settings: AwsSettings): Target {
  return {
    place: (mod, runId) => {
      const clusterName = clusterNameFor(mod.name, runId);
      return {
        dir: path.join(settings.workDir, runId, "plan"),
        store: `s3://${mcsSection(mod.mcsConfig, mod.mcsConfigPath).get("s3_bucket")}`,
        clusterName,
      };
    },
    stage: (plan, mod) => {
      const provider = mod.cluster.provider as { type?: string; region?: string };
      if (provider.type === "aws" && provider.region !== settings.region) {
        throw new InputError(
          "aws-region",
          `is ${settings.region} but ${path.basename(mod.clusterYamlPath)} runs in ${provider.region}: make them agree`,
        );
      }
      renderClusterYaml(mod, plan.cluster_name!, plan.ray_version, plan.dir, plan.run_id);
    },
    run: (plan, python, hooks) => runOnCluster(plan, python, hooks, settings),
    readSummary: (plan) => readS3Text(plan.store, plan.summary_key, settings.region),
    link: (plan, key) => s3Link(plan.store, settings.region, key),
  };
}

async function runOnCluster(plan: Plan, python: string, hooks: Hooks, settings: AwsSettings) {
  const yaml = clusterYamlPath(plan.dir);
  await validateWithRaySchema(python, yaml, `the cluster YAML of module ${plan.module}`);
  const creds = await hooks.phase("authenticate", () =>
    assumeRoleWithOidc({
      roleArn: settings.roleArn,
      region: settings.region,
      durationSeconds: settings.durationSeconds,
      sessionName: `mcs-${plan.run_id}`.slice(0, 64),
    }),
  );
  exportCredentials(creds, settings.region);

  const ray = rayBinary(python);
  const state: Record<string, string> = {
    [STATE.clusterYaml]: yaml,
    [STATE.clusterName]: plan.cluster_name!,
    [STATE.ray]: ray,
    [STATE.roleArn]: settings.roleArn,
    [STATE.region]: settings.region,
    [STATE.durationSeconds]: String(settings.durationSeconds),
    [STATE.keepCluster]: String(settings.keepCluster),
    [STATE.clusterUp]: "true",
  };
  for (const [name, value] of Object.entries(state)) core.saveState(name, value);

  const remote = `~/${remotePlanDir(plan.run_id)}`;
  await hooks.phase("ray up", () =>
    rayStep(ray, "ray up", ["up", "-y", "--no-config-cache", "--disable-usage-stats", yaml]),
  );
  await hooks.phase("sync plan", () =>
    rayStep(ray, "ray rsync-up", ["rsync-up", yaml, `${plan.dir}/`, `${remote}/`]),
  );
  // The driver's exit status does not survive `ray submit`; the run summary is the verdict.
  const driver = driverOutput(hooks.progress);
  await hooks.phase("run scenes", () =>
    runRay(
      ray,
      ["submit", yaml, path.join(plan.dir, "pipeline", "run_eval.py"), "--", "--plan", remote],
      driver.line,
    ).finally(driver.close),
  );
  // keep-cluster: the state still says up, and the post step tells how to stop it.
  if (!settings.keepCluster) {
    await hooks.phase("ray down", () => rayStep(ray, "ray down", ["down", "-y", yaml]));
    core.saveState(STATE.clusterUp, "false");
  }
}

/** A `ray` command with its output in a collapsed group; a failure names the group. */
export async function rayStep(ray: string, title: string, args: string[]): Promise<void> {
  core.startGroup(title);
  const result = await runRay(ray, args, (line) => core.info(line)).finally(() => core.endGroup());
  if (result.code !== 0) {
    throw new EnvironmentError(
      `${title} failed (${result.code ?? result.signal}); its output is in the "${title}" group above`,
    );
  }
}

/** Driver lines visible; Ray's own chatter between them folded into collapsed groups. */
function driverOutput(progress: (line: string) => void) {
  let open = false;
  const close = () => {
    if (open) core.endGroup();
    open = false;
  };
  const line = (text: string) => {
    if (DRIVER_LINE.test(text)) {
      close();
      progress(text);
      return;
    }
    if (!open) core.startGroup("Ray output");
    open = true;
    core.info(text);
  };
  return { line, close };
}
