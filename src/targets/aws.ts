/**
 * The AWS target: a Ray cluster per run. Self-refreshing OIDC credentials → the preflight (before
 * the Ray install: aws/preflight.ts) → state saved →
 * `ray up` → one `ray rsync-up` of the plan → one `ray exec` that starts the driver on the head,
 * detached from SSH, and follows it (reconnecting when the connection drops) → `ray down` unless
 * kept. The post step (post.ts) stops the driver and tears down whatever the state says is up.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as core from "@actions/core";
import { parse as parseYaml } from "yaml";
import { roleCredentials, type CredentialServer } from "../aws/oidc.js";
import { preflight } from "../aws/preflight.js";
import { parseS3Uri, s3Link, s3TextReader } from "../aws/s3.js";
import { listS3Scenes } from "../aws/scene-set.js";
import {
  clusterNameFor,
  clusterYamlPath,
  remotePlanDir,
  renderClusterYaml,
  validateWithRaySchema,
  WATCHDOG_DEFAULTS,
  type RunSshKey,
  type WatchdogSettings,
} from "../cluster.js";
import type { Hooks, Target } from "../engine.js";
import { EnvironmentError, InputError, type Finding } from "../errors.js";
import { mcsSection, type Module } from "../module.js";
import type { Plan } from "../plan.js";
import { rayBinary, runRay, stopRunningRay } from "../ray/cli.js";
import { followDriver, followWithin, stopDriver, type FollowOutput } from "../ray/detached.js";
import { resizeYaml, yamlShape } from "../cluster-shape.js";
import { createRunKeyPair, removeRunResources, runSshKey } from "./aws-resources.js";

export interface AwsSettings {
  roleArn: string;
  region: string;
  durationSeconds: number;
  keepCluster: boolean;
  /** The head's watchdog (default WATCHDOG_DEFAULTS); keep-cluster comes from keepCluster. */
  watchdog?: Omit<WatchdogSettings, "keepCluster">;
  /** Where plans are staged on the runner (under RUNNER_TEMP). */
  workDir: string;
  /**
   * How long the step follows the driver (from its start); then it hands the run over to the
   * head's watchdog: the driver goes on, nothing is torn down. Undefined: to the end.
   */
  followMinutes?: number;
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
  /** The plan directory on the head (`~/<cluster name>`). */
  remotePlan: "remote-plan",
  /**
   * `started` once the driver may run on the head, `ended` once the follow saw it end,
   * `handed-over` once the follow budget was spent: the driver runs on, the watchdog tears down.
   */
  driver: "driver",
  /** The run's EC2 key pair (aws-resources.ts), saved before it is imported. */
  keyPair: "key-pair",
  /** `created` until the key pair and Ray's security group of the cluster are deleted. */
  runResources: "run-resources",
} as const;

/** The driver's per-scene progress lines and its own summary lines stay visible in the log. */
const DRIVER_LINE = /^(\[\d+\/\d+\] |retrying |mcs-pipeline: )/;

/** The AWS target, plus what a cancel needs: stop the driver and let go of the credentials. */
export interface AwsTarget extends Target {
  interrupt(): Promise<void>;
  /** Whether the follow budget ran out: the run goes on, under the head's watchdog. */
  handedOver(): boolean;
}

/** What a run holds while it runs: the credential server, and the driver once it may run. */
interface Session {
  credentials?: CredentialServer;
  driver?: { ray: string; yaml: string; remote: string };
  /** The run's own SSH key (AWS provider only), named in the cluster YAML. */
  sshKey?: RunSshKey;
  /** Aborted by a cancel: the follow must not reconnect. */
  cancel: AbortController;
  /** Reads the store (the summary and its journal) with the run's credentials. */
  read?: (key: string) => Promise<string | undefined>;
  handedOver?: boolean;
  /** STS refused role-duration-seconds (authenticate): the credentials are an hour's session. */
  refusedDuration?: { roleArn: string; seconds: number };
  /** The run's first authentication (credentialsFor), whatever its outcome. */
  authenticating?: Promise<CredentialServer>;
  /** deadline-minutes sized the cluster to this many workers: a quota below it is an error. */
  deadlineWorkers?: number;
}

/** The module's results store, `s3://<s3_bucket>` of its MCS config (runs and collects). */
export function moduleStore(mod: Module): string {
  return `s3://${mcsSection(mod.mcsConfig, mod.mcsConfigPath).get("s3_bucket")}`;
}

export function awsTarget(settings: AwsSettings): AwsTarget {
  const session: Session = { cancel: new AbortController() };
  /** One authentication for the estimate's reads and the preflight: a refusal is not retried. */
  const credentialsFor = async (plan: Plan) => {
    session.authenticating ??= authenticate(settings, plan.run_id, session);
    return (session.credentials ??= await session.authenticating);
  };
  return {
    place: (mod, runId) => {
      const clusterName = clusterNameFor(mod.name, mod.metadata, runId);
      return {
        dir: path.join(settings.workDir, runId, "plan"),
        store: moduleStore(mod),
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
      // The run's own SSH key (only for Ray's AWS provider): no key pair of Ray's defaults.
      session.sshKey = provider.type === "aws" ? runSshKey(settings.workDir, plan) : undefined;
      renderClusterYaml(
        mod,
        plan.cluster_name!,
        plan.ray_version,
        plan.dir,
        plan.run_id,
        session.sshKey,
        {
          ...WATCHDOG_DEFAULTS,
          ...settings.watchdog,
          keepCluster: settings.keepCluster,
        },
      );
    },
    // An s3:// scene set is listed with the run's own credentials, so they come first.
    listScenes: async (uri, runId) => {
      session.credentials ??= await authenticateToList(uri, runId, settings, session);
      return listS3Scenes(uri, {
        region: settings.region,
        credentials: session.credentials.provider,
      });
    },
    preflight: async (plan, dryRun) => {
      if (!settings.roleArn) {
        core.info("preflight: skipped (no role-to-assume to check with)");
        return undefined;
      }
      try {
        await credentialsFor(plan);
      } catch (error) {
        // A role whose trust policy refuses the token is a finding; a dry run without an OIDC
        // token (a fork's pull request, no id-token permission) only checks nothing.
        if (error instanceof InputError) return [roleFinding(error)];
        if (!dryRun) throw error;
        core.info(`preflight: skipped (${(error as Error).message})`);
        return undefined;
      }
      return preflightPlan(plan, settings.region, session);
    },
    run: (plan, python, hooks) => runOnCluster(plan, python, hooks, settings, session),
    shape: (plan) => yamlShape(parseYaml(readFileSync(clusterYamlPath(plan.dir), "utf8")), plan),
    resize: (plan, workers) => {
      resizeYaml(clusterYamlPath(plan.dir), workers);
      session.deadlineWorkers = workers.reduce((n, w) => n + w.count, 0);
    },
    readText: async (plan, key) => {
      if (!session.read) {
        // Before the run (the estimate reads the previous runs): with the run's own role.
        if (!session.credentials && !settings.roleArn)
          throw new Error("no role-to-assume to read the results store with");
        const credentials = await credentialsFor(plan);
        session.read = s3TextReader(plan.store, settings.region, credentials.provider);
      }
      return session.read(key);
    },
    link: (plan, key, version) => s3Link(plan.store, settings.region, key, version),
    release: async () => {
      await session.credentials?.close();
      session.credentials = undefined;
      session.authenticating = undefined;
    },
    interrupt: async () => {
      // Stop the `ray` commands running now (a follow, an up), then the driver on the head,
      // which saves the summary as interrupted. Teardown is left to the post step.
      session.cancel.abort();
      stopRunningRay("SIGTERM");
      const driver = session.driver;
      session.driver = undefined;
      if (driver) {
        core.info("Stopping the driver on the head node (it saves the summary as interrupted)");
        await stopDriver(driver.ray, driver.yaml, driver.remote, (line) => core.info(line));
      }
      await session.credentials?.close();
    },
    handedOver: () => session.handedOver === true,
  };
}

async function runOnCluster(
  plan: Plan,
  python: string,
  hooks: Hooks,
  settings: AwsSettings,
  session: Session,
) {
  const yaml = clusterYamlPath(plan.dir);
  await validateWithRaySchema(python, yaml, `the cluster YAML of module ${plan.module}`);
  // Already there from the preflight (or from listing an s3:// scene set).
  session.credentials ??= await hooks.phase("authenticate", () =>
    authenticate(settings, plan.run_id, session),
  );

  const ray = rayBinary(python);
  const remote = `~/${remotePlanDir(plan.cluster_name!)}`;
  const state: Record<string, string> = {
    [STATE.clusterYaml]: yaml,
    [STATE.clusterName]: plan.cluster_name!,
    [STATE.ray]: ray,
    [STATE.roleArn]: settings.roleArn,
    [STATE.region]: settings.region,
    [STATE.durationSeconds]: String(settings.durationSeconds),
    [STATE.keepCluster]: String(settings.keepCluster),
    [STATE.remotePlan]: remote,
    [STATE.clusterUp]: "true",
    ...(session.sshKey && {
      [STATE.keyPair]: session.sshKey.keyPairName,
      [STATE.runResources]: "created",
    }),
  };
  for (const [name, value] of Object.entries(state)) core.saveState(name, value);

  // A cancel between steps must not start the next one.
  const { signal } = session.cancel;
  signal.throwIfAborted();
  await hooks.phase("ray up", async () => {
    if (session.sshKey) {
      await createRunKeyPair(
        session.sshKey,
        plan.cluster_name!,
        settings.region,
        session.credentials!,
      );
    }
    await rayStep(ray, "ray up", ["up", "-y", "--no-config-cache", "--disable-usage-stats", yaml]);
  });
  signal.throwIfAborted();
  hooks.recordLaunch(plan);
  await hooks.phase("sync plan", () =>
    rayStep(ray, "ray rsync-up", ["rsync-up", yaml, `${plan.dir}/`, `${remote}/`]),
  );
  signal.throwIfAborted();
  // From here a cancel must stop the driver on the head: it outlives every SSH connection.
  core.saveState(STATE.driver, "started");
  session.driver = { ray, yaml, remote };
  const output = driverOutput(hooks.progress);
  const code = await hooks.phase("run scenes", () =>
    followWithin(settings.followMinutes, signal, (follow) =>
      followDriver(ray, yaml, remote, output, follow),
    ).finally(output.close),
  );
  session.driver = undefined;
  if (code === "budget spent") {
    // The driver runs on; the head's watchdog tears the cluster down once it has finished and
    // nobody follows. The post step leaves both alone.
    session.handedOver = true;
    core.saveState(STATE.driver, "handed-over");
    core.info(
      `follow-minutes: followed the run for ${settings.followMinutes} min; it goes on on cluster ` +
        `${plan.cluster_name}, which the head's watchdog tears down once the driver has finished`,
    );
    return;
  }
  core.saveState(STATE.driver, "ended");
  // 0, 1 and 130 are verdicts (all ok, some failed, interrupted); anything else is a crash.
  if (![0, 1, 130].includes(code)) {
    throw new EnvironmentError(
      `the driver failed on the head node (exit ${code}); its output is in the "Ray output" groups above`,
    );
  }
  // keep-cluster: the state still says up, and the post step tells how to stop it.
  if (!settings.keepCluster) {
    await hooks.phase("ray down", async () => {
      await rayStep(ray, "ray down", ["down", "-y", yaml]);
      core.saveState(STATE.clusterUp, "false");
      // The key pair and Ray's security group; on failure the post step tries again.
      const { sshKey, credentials } = session;
      if (sshKey && credentials) {
        const name = plan.cluster_name!;
        await removeRunResources(name, settings.region, credentials, sshKey.privateKeyFile)
          .then(() => core.saveState(STATE.runResources, "deleted"))
          .catch((error: Error) => core.info(`${error.message} (the post step tries again)`));
      }
    });
  } else {
    core.info(`keep-cluster: cluster ${plan.cluster_name} is left running (not torn down)`);
  }
}

/** The preflight (aws/preflight.ts) of a plan: its rendered cluster YAML and its store. */
function preflightPlan(plan: Plan, region: string, session: Session) {
  return preflight({
    region,
    bucket: parseS3Uri(plan.store).bucket,
    bucketSource: `configs/mcs_config_${plan.module}_${plan.metadata}.ini`,
    cluster: parseYaml(readFileSync(clusterYamlPath(plan.dir), "utf8")) as Record<string, unknown>,
    clusterSource: `autoscaler/ray_${plan.module}_aws.yaml`,
    credentials: session.credentials!.provider,
    refusedDuration: session.refusedDuration,
    ...(session.deadlineWorkers !== undefined && {
      quotaRequiredBy: `deadline-minutes needs ${session.deadlineWorkers} workers`,
    }),
  });
}

const roleFinding = (error: InputError): Finding => ({
  level: "error",
  text: `${error.input}: ${error.message}`,
});

/**
 * The run's credentials. STS refuses a role-duration-seconds above the role's MaxSessionDuration
 * in words that read like a trust problem; every role allows an hour, so when an hour's session
 * is granted the duration was the fault: the preflight says so (session.refusedDuration).
 */
async function authenticate(
  settings: AwsSettings,
  runId: string,
  session: Session,
): Promise<CredentialServer> {
  const assume = (durationSeconds: number) =>
    roleCredentials({
      roleArn: settings.roleArn,
      region: settings.region,
      durationSeconds,
      sessionName: `mcs-${runId}`.slice(0, 64),
    });
  try {
    return await assume(settings.durationSeconds);
  } catch (error) {
    if (!(error instanceof InputError) || settings.durationSeconds <= ONE_HOUR) throw error;
    const credentials = await assume(ONE_HOUR).catch(() => Promise.reject(error));
    session.refusedDuration = { roleArn: settings.roleArn, seconds: settings.durationSeconds };
    return credentials;
  }
}

/** The session length every role allows (MaxSessionDuration is 1 to 12 hours). */
const ONE_HOUR = 3600;

/** Credentials to list an s3:// scene set with; a dry run without a role says so clearly. */
async function authenticateToList(
  uri: string,
  runId: string,
  settings: AwsSettings,
  session: Session,
): Promise<CredentialServer> {
  const fix = "give role-to-assume (with id-token: write), or a scene directory in the repository";
  if (!settings.roleArn) {
    throw new InputError("scenes", `${uri} could not be listed without AWS credentials: ${fix}`);
  }
  try {
    return await authenticate(settings, runId, session);
  } catch (error) {
    throw new InputError(
      "scenes",
      `${uri} could not be listed without AWS credentials (${(error as Error).message}): ${fix}`,
    );
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

/** Progress and reconnects visible; Ray's and the driver's chatter folded into groups. */
function driverOutput(progress: (line: string) => void): FollowOutput & { close: () => void } {
  let open = false;
  const close = () => {
    if (open) core.endGroup();
    open = false;
  };
  const folded = (text: string) => {
    if (!open) core.startGroup("Ray output");
    open = true;
    core.info(text);
  };
  return {
    driver: (text) => {
      if (!DRIVER_LINE.test(text)) return folded(text);
      close();
      progress(text);
    },
    other: folded,
    notice: (text) => {
      close();
      core.info(text);
    },
    close,
  };
}
