/**
 * The frame of the action's end-to-end files (action*.test.ts), run the way the GitHub runner
 * runs it: `node dist/main/index.js`, then `node dist/post/index.js`, with INPUT_*, GITHUB_OUTPUT,
 * GITHUB_STEP_SUMMARY, GITHUB_STATE / STATE_*, GITHUB_ENV, RUNNER_TEMP and GITHUB_WORKSPACE
 * (test/support/runner.ts). Everything the action talks to is real and on loopback
 * (test/support/loopback.ts): moto (STS, S3) behind the STS trust-policy proxy, an endpoint
 * speaking the Actions ID-token protocol, and a Ray cluster brought up by `ray up` with Ray's local
 * node provider over SSH to the fixture's sshd. Each file that calls `actionCases()` gets its own,
 * so the files run side by side.
 */
import { randomInt } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { makeActionWorkspace, type ActionWorkspace } from "./cluster.js";
import {
  type IssuedCredentials,
  type MotoServer,
  type ProxiedRequest,
  type StsProxy,
} from "./moto.js";
import { type OidcRequest, type OidcServer } from "./oidc.js";
import {
  ActionJob,
  cleanupActions,
  leakedSecrets,
  type ActionRun,
  type JobOptions,
  type RunningAction,
  type WorkflowCommand,
} from "./runner.js";
import {
  rayProcessesOf,
  startSshd,
  waitForNoRayProcesses,
  type NodeProcess,
  type SshdFixture,
} from "./sshd.js";
import { REPO, removeTemps } from "./workspace.js";
import { nodeAwsEnv, startLoopbackAws, type LoopbackAws } from "./loopback.js";

export const ROLE = "arn:aws:iam::123456789012:role/mcs-eval";
export const UNTRUSTED_ROLE = "arn:aws:iam::123456789012:role/mcs-untrusted";
export const REGION = "us-east-1";
export const FOLDER = "demo-eval";
export const PREFIX = "demo-eval_level2_demo";
/**
 * The job's check-run id: what the runner makes of action.yml's `job-key` default
 * (`${{ job.check_run_id || strategy.job-index }}`), which the harness passes as written.
 */
export const checkRunId = (job: ActionJob) => job.options.inputs?.["job-key"] ?? "";
/** The run id the action gives the job: `<run id>-<attempt>-<GITHUB_JOB>-<job key>`. */
export const runIdOf = (job: ActionJob) => `${job.runId}-${job.runAttempt}-eval-${checkRunId(job)}`;
/** Its cluster: `mcs-<module>-<level>-<run id>`. */
export const clusterOf = (job: ActionJob, level = "level2") => `mcs-demo-${level}-${runIdOf(job)}`;
/** Each run has a summary of its own: its key carries the job's run id. */
export const summaryKey = (job: ActionJob) =>
  `${FOLDER}/${PREFIX}_${runIdOf(job)}_run-summary.json`;
export const LATEST_KEY = `${FOLDER}/${PREFIX}_latest-run.json`;
/** Every credential STS issues through the proxy expires this soon, as AWS would enforce it. */
export const CREDENTIAL_LIFETIME_S = 20;
export const CONSOLE = "https://s3.console.aws.amazon.com/s3";

/** A full run: ray up (~6 s) + scenes + ray down (~6 s), and the post step. */
export const RUN_TIMEOUT_MS = 240_000;
/** Runs that fail before any cluster starts. */
export const SHORT_TIMEOUT_MS = 60_000;

export const SUBSET_NAMES = readdirSync(path.join(REPO, "scenes/subset"))
  .filter((f) => f.endsWith(".json"))
  .map((f) => path.basename(f, ".json"))
  .sort();

let aws: LoopbackAws | undefined;
export let moto: MotoServer | undefined;
export let proxy: StsProxy | undefined;
export let oidc: OidcServer | undefined;
export let node: SshdFixture | undefined;

/** The jobs of the running test: afterEach tears down whatever they may have left. */
export const jobs: ActionJob[] = [];
/** Steps started in the background by the running test. */
export const started: RunningAction[] = [];
/** Every cluster name the action reported, over the whole file: each must be new. */
export const clusterNames = new Set<string>();

// ── helpers ───────────────────────────────────────────────────────────────────────────────────

export type JobSetup = Partial<Omit<JobOptions, "workspace" | "inputs">> & {
  /** Inputs over the defaults; undefined removes one. */
  inputs?: Record<string, string | undefined>;
};

/**
 * A job of the workflow using the action in `ws`: module demo, scenes/subset, the role, and the
 * job-key the runner would evaluate (a check-run id of its own).
 */
export function newJob(ws: ActionWorkspace, setup: JobSetup = {}): ActionJob {
  const inputs: Record<string, string | undefined> = {
    module: "demo",
    scenes: "scenes/subset",
    "role-to-assume": ROLE,
    "aws-region": REGION,
    "job-key": String(randomInt(10_000_000_000, 99_999_999_999)),
    ...setup.inputs,
  };
  const defined: Record<string, string> = {};
  for (const [k, v] of Object.entries(inputs)) if (v !== undefined) defined[k] = v;
  const job = new ActionJob({
    oidc: oidc!,
    awsEndpoint: proxy!.url,
    ...setup,
    workspace: ws.dir,
    inputs: defined,
  });
  jobs.push(job);
  return job;
}

export function workspace(): Promise<ActionWorkspace> {
  return makeActionWorkspace({ node: node!, s3Endpoint: moto!.url });
}

/** What the loopback services see from this call on. */
export function traffic() {
  const sts = proxy!.requests.length;
  const tokens = oidc!.requests.length;
  const issued = oidc!.issued.length;
  const credentials = proxy!.credentials.length;
  return {
    credentials: (): IssuedCredentials[] => proxy!.credentials.slice(credentials),
    sts: (): ProxiedRequest[] => proxy!.requests.slice(sts),
    assumes: (): ProxiedRequest[] =>
      proxy!.requests.slice(sts).filter((r) => r.action === "AssumeRoleWithWebIdentity"),
    oidc: (): OidcRequest[] => oidc!.requests.slice(tokens),
    issued: () => oidc!.issued.slice(issued),
  };
}

/** Samples the node's processes while `work` runs: a process that lived 50 ms shows up. */
export async function watchNode<T>(
  work: () => Promise<T>,
): Promise<{ result: T; seen: NodeProcess[] }> {
  const seen = new Map<number, NodeProcess>();
  const sample = () => {
    for (const p of rayProcessesOf(node!)) seen.set(p.pid, p);
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await work();
    sample();
    return { result, seen: [...seen.values()] };
  } finally {
    clearInterval(timer);
  }
}

/**
 * The cluster name the action reported: `mcs-<module>-<level>-<run id>-<attempt>-<job>-<job key>`,
 * new to this file.
 */
export function expectNewClusterName(run: ActionRun, level = "level2"): string {
  const name = clusterOf(run.job, level);
  expect(run.outputs["cluster-name"]).toBe(name);
  expect(clusterNames.has(name), `${name} was used before`).toBe(false);
  clusterNames.add(name);
  return name;
}

/** Every credential and ID token issued since `seen` was taken was masked by this step. */
export function expectMasked(run: ActionRun, seen: ReturnType<typeof traffic>) {
  const issued = [
    ...seen.credentials().flatMap((c) => [c.accessKeyId, c.secretAccessKey, c.sessionToken]),
    ...seen.issued().map((t) => t.jwt),
  ];
  expect(issued.length).toBeGreaterThanOrEqual(4);
  for (const value of issued) expect(run.masks).toContain(value);
}

export function context(run: ActionRun): string {
  return `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

export const errors = (run: ActionRun): WorkflowCommand[] =>
  run.annotations.filter((a) => a.command === "error");

/** Every value a leak check looks for: STS credentials, ID tokens, the ID-token request token. */
export function secrets(): string[] {
  return [
    ...proxy!.secrets(),
    ...proxy!.credentials.map((c) => c.accessKeyId),
    ...oidc!.issued.map((t) => t.jwt),
    oidc!.requestToken,
  ];
}

export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

/**
 * Where a secret shows: every step's stdout (bar ::add-mask::), stderr, outputs, state and job
 * summary (leakedSecrets), what it wrote to GITHUB_ENV, and every file of the job: RUNNER_TEMP
 * (plans, cluster YAML, run summary), TMPDIR (Ray's client-side files), the step files.
 */
export function leaks(job: ActionJob): string[] {
  const all = secrets();
  const hits = job.runs.flatMap((run, i) => [
    ...leakedSecrets(run, all).map((hit) => `step ${i + 1} (${run.entry}): ${hit}`),
    ...all
      .filter((s) => JSON.stringify(run.env).includes(s))
      .map((s) => `step ${i + 1} (${run.entry}): ${s.slice(0, 4)}... in GITHUB_ENV`),
  ]);
  for (const file of filesUnder(job.dir)) {
    const bytes = readFileSync(file);
    for (const s of all) {
      if (bytes.includes(s)) hits.push(`${s.slice(0, 4)}... in ${path.relative(job.dir, file)}`);
    }
  }
  return hits;
}

/** The `[k/N] ...` progress lines, split by whether they sit inside a `::group::`. */
export function progressByGroup(stdout: string) {
  let depth = 0;
  let deepest = 0;
  const outside: string[] = [];
  const inside: string[] = [];
  for (const line of stdout.split("\n")) {
    if (line.startsWith("::group::")) deepest = Math.max(deepest, ++depth);
    else if (line.startsWith("::endgroup::")) depth--;
    else if (/^\[\d+\/\d+\] /.test(line)) (depth > 0 ? inside : outside).push(line);
  }
  return { outside, inside, openAtEnd: depth, deepest };
}

/** The values a file-command file gave `name`, in the order they were written. */
export function stateHistory(run: ActionRun, name: string): string[] {
  const text = readFileSync(run.files.state, "utf8");
  const values: string[] = [];
  const re = new RegExp(`^${name}<<(\\S+)\\n([\\s\\S]*?)\\n\\1$|^${name}=(.*)$`, "gm");
  for (const m of text.matchAll(re)) values.push(m[2] ?? m[3] ?? "");
  return values;
}

export const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
export const objectHref = (bucket: string, key: string) =>
  `${CONSOLE}/object/${bucket}?region=${REGION}&prefix=${encodeURIComponent(key)}`;

export interface SummaryFile {
  run_id: string;
  state: string;
  cluster_name: string | null;
  totals: { total: number; succeeded: number; failed: number; pending: number };
  scenes: {
    name: string;
    status: string;
    attempts: number;
    exit_code: number | null;
    failure_class: string | null;
    outputs: { history: string | null; log: string | null; videos: string[] };
    log_excerpt: string | null;
  }[];
}

/** The post step of a job whose main left no cluster: says so, asks nobody for anything. */
export async function expectNothingToTearDown(job: ActionJob) {
  const seen = traffic();
  const post = await job.run("post");
  expect(post.code, context(post)).toBe(0);
  expect(post.stdout).toMatch(/^No cluster to tear down\.$/m);
  expect(post.stdout).not.toContain("::group::ray down");
  expect(post.annotations).toEqual([]);
  expect(seen.oidc()).toEqual([]);
  expect(seen.sts()).toEqual([]);
  return post;
}

/** A finished run's end: the step tore its cluster down, nothing left on the node, no leak. */
export async function expectCleanEnd(job: ActionJob) {
  await expectNothingToTearDown(job);
  expect(await waitForNoRayProcesses(node!)).toEqual([]);
  expect(job.leftovers()).toEqual([]);
  expect(leaks(job)).toEqual([]);
}

/** Nothing started: no cluster, no STS/OIDC traffic, no state saying a cluster may be up. */
export function expectNothingStarted(
  main: ActionRun,
  seen: ReturnType<typeof traffic>,
  onNode: NodeProcess[],
) {
  expect(onNode, "processes on the node during the step").toEqual([]);
  expect(main.stdout).not.toMatch(/^::group::ray /m);
  expect(main.state["cluster-up"]).toBeUndefined();
  expect(main.job.leftovers()).toEqual([]);
  expect(seen.sts()).toEqual([]);
}

/** Registers the hooks: loopback AWS and a node for the file, each test's jobs cleaned up after it. */
export function actionCases(): void {
  beforeAll(async () => {
    // Strict credentials: every one STS issues expires in CREDENTIAL_LIFETIME_S, as AWS enforces.
    aws = await startLoopbackAws({ proxy: { credentialLifetimeSeconds: CREDENTIAL_LIFETIME_S } });
    ({ moto, proxy, oidc } = aws);
    // The node's own AWS settings, like an instance profile: it writes to moto directly.
    node = await startSshd({ env: nodeAwsEnv(moto.url) });
  });

  afterAll(async () => {
    // Each part is stopped by its own PID (or closed), whatever happened above.
    await cleanupActions().catch(() => undefined);
    await Promise.allSettled([node?.stop(), aws?.stop()]);
    removeTemps();
  });

  afterEach(async () => {
    // A step still running after a failed assertion: cancel it the runner's way first.
    await Promise.allSettled(started.splice(0).map((r) => r.cancel({ sigtermAfterMs: 2_000 })));
    for (const job of jobs.splice(0)) {
      // A test that failed before its post step: run it now, as the runner always does.
      const postRan = job.runs.some((r) => r.entry === "post");
      if (!postRan && job.state["cluster-up"] === "true") {
        await job.run("post").catch(() => undefined);
      }
      await job.cleanup();
    }
    // Anything still on the node (only after a failure): stop it by PID, inside its namespace.
    if (!node) return;
    for (const p of rayProcessesOf(node)) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await waitForNoRayProcesses(node, 5_000);
  });
}
