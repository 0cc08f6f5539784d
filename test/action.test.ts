/**
 * The action end to end, run the way the GitHub runner runs it: `node dist/main/index.js`, then
 * `node dist/post/index.js`, with INPUT_*, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_STATE /
 * STATE_*, GITHUB_ENV, RUNNER_TEMP and GITHUB_WORKSPACE (test/support/runner.ts). Everything the
 * action talks to is real and on loopback: moto (STS, S3) behind the STS trust-policy proxy, an
 * endpoint speaking the Actions ID-token protocol, and a Ray cluster brought up by `ray up` with
 * Ray's local node provider over SSH to the fixture's sshd. No mock of our own code anywhere.
 *
 * Every case ends with no Ray process left on the node and none left by the steps, and no
 * credential or token in any log, output, state, GITHUB_ENV, job summary or file of the job.
 */
import { randomInt } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeActionWorkspace, rayClientEnv, type ActionWorkspace } from "./support/cluster.js";
import {
  startMoto,
  startStsProxy,
  TEST_KEYS,
  TEST_REGION,
  type IssuedCredentials,
  type MotoServer,
  type ProxiedRequest,
  type StsProxy,
} from "./support/moto.js";
import { jwtClaims, startOidcServer, type OidcRequest, type OidcServer } from "./support/oidc.js";
import {
  ActionJob,
  cleanupActions,
  leakedSecrets,
  type ActionRun,
  type JobOptions,
  type RunningAction,
  type WorkflowCommand,
} from "./support/runner.js";
import {
  dropConnections,
  execCommand,
  rayProcessesOf,
  startSshd,
  waitForNoRayProcesses,
  type NodeProcess,
  type SshdFixture,
} from "./support/sshd.js";
import { REPO, removeTemps } from "./support/workspace.js";

const ROLE = "arn:aws:iam::123456789012:role/mcs-eval";
const UNTRUSTED_ROLE = "arn:aws:iam::123456789012:role/mcs-untrusted";
const REGION = "us-east-1";
const FOLDER = "demo-eval";
const PREFIX = "demo-eval_level2_demo";
/**
 * The job's check-run id: what the runner makes of action.yml's `job-key` default
 * (`${{ job.check_run_id || strategy.job-index }}`), which the harness passes as written.
 */
const checkRunId = (job: ActionJob) => job.options.inputs?.["job-key"] ?? "";
/** The run id the action gives the job: `<run id>-<attempt>-<GITHUB_JOB>-<job key>`. */
const runIdOf = (job: ActionJob) => `${job.runId}-${job.runAttempt}-eval-${checkRunId(job)}`;
/** Its cluster: `mcs-<module>-<level>-<run id>`. */
const clusterOf = (job: ActionJob, level = "level2") => `mcs-demo-${level}-${runIdOf(job)}`;
/** Each run has a summary of its own: its key carries the job's run id. */
const summaryKey = (job: ActionJob) => `${FOLDER}/${PREFIX}_${runIdOf(job)}_run-summary.json`;
const LATEST_KEY = `${FOLDER}/${PREFIX}_latest-run.json`;
/** Every credential STS issues through the proxy expires this soon, as AWS would enforce it. */
const CREDENTIAL_LIFETIME_S = 20;
const CONSOLE = "https://s3.console.aws.amazon.com/s3";

/** A full run: ray up (~6 s) + scenes + ray down (~6 s), and the post step. */
const RUN_TIMEOUT_MS = 240_000;
/** Runs that fail before any cluster starts. */
const SHORT_TIMEOUT_MS = 60_000;

const SUBSET_NAMES = readdirSync(path.join(REPO, "scenes/subset"))
  .filter((f) => f.endsWith(".json"))
  .map((f) => path.basename(f, ".json"))
  .sort();

let moto: MotoServer | undefined;
let proxy: StsProxy | undefined;
let oidc: OidcServer | undefined;
let node: SshdFixture | undefined;

/** The jobs of the running test: afterEach tears down whatever they may have left. */
const jobs: ActionJob[] = [];
/** Steps started in the background by the running test. */
const started: RunningAction[] = [];
/** Every cluster name the action reported, over the whole file: each must be new. */
const clusterNames = new Set<string>();

// ── helpers ───────────────────────────────────────────────────────────────────────────────────

type JobSetup = Partial<Omit<JobOptions, "workspace" | "inputs">> & {
  /** Inputs over the defaults; undefined removes one. */
  inputs?: Record<string, string | undefined>;
};

/**
 * A job of the workflow using the action in `ws`: module demo, scenes/subset, the role, and the
 * job-key the runner would evaluate (a check-run id of its own).
 */
function newJob(ws: ActionWorkspace, setup: JobSetup = {}): ActionJob {
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

function workspace(): Promise<ActionWorkspace> {
  return makeActionWorkspace({ node: node!, s3Endpoint: moto!.url });
}

/** What the loopback services see from this call on. */
function traffic() {
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
async function watchNode<T>(work: () => Promise<T>): Promise<{ result: T; seen: NodeProcess[] }> {
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
function expectNewClusterName(run: ActionRun, level = "level2"): string {
  const name = clusterOf(run.job, level);
  expect(run.outputs["cluster-name"]).toBe(name);
  expect(clusterNames.has(name), `${name} was used before`).toBe(false);
  clusterNames.add(name);
  return name;
}

/** Every credential and ID token issued since `seen` was taken was masked by this step. */
function expectMasked(run: ActionRun, seen: ReturnType<typeof traffic>) {
  const issued = [
    ...seen.credentials().flatMap((c) => [c.accessKeyId, c.secretAccessKey, c.sessionToken]),
    ...seen.issued().map((t) => t.jwt),
  ];
  expect(issued.length).toBeGreaterThanOrEqual(4);
  for (const value of issued) expect(run.masks).toContain(value);
}

function context(run: ActionRun): string {
  return `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

const errors = (run: ActionRun): WorkflowCommand[] =>
  run.annotations.filter((a) => a.command === "error");

/** Every value a leak check looks for: STS credentials, ID tokens, the ID-token request token. */
function secrets(): string[] {
  return [
    ...proxy!.secrets(),
    ...proxy!.credentials.map((c) => c.accessKeyId),
    ...oidc!.issued.map((t) => t.jwt),
    oidc!.requestToken,
  ];
}

function filesUnder(dir: string): string[] {
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
function leaks(job: ActionJob): string[] {
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
function progressByGroup(stdout: string) {
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
function stateHistory(run: ActionRun, name: string): string[] {
  const text = readFileSync(run.files.state, "utf8");
  const values: string[] = [];
  const re = new RegExp(`^${name}<<(\\S+)\\n([\\s\\S]*?)\\n\\1$|^${name}=(.*)$`, "gm");
  for (const m of text.matchAll(re)) values.push(m[2] ?? m[3] ?? "");
  return values;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const objectHref = (bucket: string, key: string) =>
  `${CONSOLE}/object/${bucket}?region=${REGION}&prefix=${encodeURIComponent(key)}`;

interface SummaryFile {
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
async function expectNothingToTearDown(job: ActionJob) {
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
async function expectCleanEnd(job: ActionJob) {
  await expectNothingToTearDown(job);
  expect(await waitForNoRayProcesses(node!)).toEqual([]);
  expect(job.leftovers()).toEqual([]);
  expect(leaks(job)).toEqual([]);
}

/** Nothing started: no cluster, no STS/OIDC traffic, no state saying a cluster may be up. */
function expectNothingStarted(
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

// ── the cases ─────────────────────────────────────────────────────────────────────────────────

describe("the action, as the runner runs it, against loopback AWS, OIDC and a real Ray cluster", () => {
  beforeAll(async () => {
    // Each fixture is kept as soon as it runs, so afterAll stops it even if another one failed.
    moto = await startMoto();
    const motoUrl = moto.url;
    await Promise.all([
      startStsProxy(motoUrl, {
        // Only tokens our OIDC endpoint issued pass, as only GitHub-signed ones pass real STS.
        acceptToken: (jwt) => oidc?.issued.some((t) => t.jwt === jwt) ?? false,
        credentialLifetimeSeconds: CREDENTIAL_LIFETIME_S,
      }).then((p) => (proxy = p)),
      startOidcServer().then((o) => (oidc = o)),
      // The node's own AWS settings, like an instance profile: it writes to moto directly.
      startSshd({
        env: {
          AWS_ENDPOINT_URL: motoUrl,
          AWS_ACCESS_KEY_ID: TEST_KEYS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: TEST_KEYS.secretAccessKey,
          AWS_DEFAULT_REGION: TEST_REGION,
          AWS_EC2_METADATA_DISABLED: "true",
        },
      }).then((n) => (node = n)),
    ]);
  });

  afterAll(async () => {
    // Each part is stopped by its own PID (or closed), whatever happened above.
    await cleanupActions().catch(() => undefined);
    await Promise.allSettled([node?.stop(), moto?.stop(), proxy?.close(), oidc?.close()]);
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

  it(
    "clean run of scenes/subset: outputs, job summary, objects in S3, state, post, no leaks",
    async () => {
      const ws = await workspace();
      const job = newJob(ws);
      const SUMMARY_KEY = summaryKey(job);
      const seen = traffic();
      const main = await job.run("main");
      const ctx = context(main);
      expect(main.code, ctx).toBe(0);
      expect(errors(main), ctx).toEqual([]);

      // Outputs.
      const name = expectNewClusterName(main);
      expect(main.outputs).toEqual({
        "cluster-name": name,
        "run-id": runIdOf(job),
        total: "9",
        succeeded: "9",
        failed: "0",
        status: "success",
        "results-url": `${CONSOLE}/buckets/${ws.bucket}?region=${REGION}&prefix=${FOLDER}%2F`,
        "summary-path": expect.stringMatching(/run-summary\.json$/),
      });
      const summaryPath = main.outputs["summary-path"]!;
      expect(summaryPath.startsWith(job.runnerTemp + path.sep)).toBe(true);
      const local = JSON.parse(readFileSync(summaryPath, "utf8")) as SummaryFile;

      // The store: the summary and each scene's history and log under DESIGN §4 names.
      const stored = JSON.parse(await ws.readObject(SUMMARY_KEY)) as SummaryFile;
      expect(local).toMatchObject({ run_id: stored.run_id, totals: stored.totals });
      expect(stored).toMatchObject({
        run_id: runIdOf(job),
        state: "finished",
        cluster_name: name,
        totals: { total: 9, succeeded: 9, failed: 0, pending: 0 },
      });
      const keys = await ws.listKeys();
      expect(keys).toHaveLength(2 + 2 * SUBSET_NAMES.length);
      expect(keys).toContain(SUMMARY_KEY);
      expect(JSON.parse(await ws.readObject(LATEST_KEY))).toMatchObject({
        run_id: stored.run_id,
        summary_key: SUMMARY_KEY,
      });
      for (const scene of SUBSET_NAMES) {
        const historyKey = `${FOLDER}/${PREFIX}_${scene}.json`;
        expect(keys).toContain(historyKey);
        const history = JSON.parse(await ws.readObject(historyKey)) as {
          info: Record<string, string>;
        };
        expect(history.info).toMatchObject({ name: scene, metadata: "level2", team: "demo" });
        // The log carries its history's timestamp: one attempt's files match.
        const logKey = `${FOLDER}/${PREFIX}_${scene}_${history.info.timestamp}_log.txt`;
        expect(keys, `log of ${scene}`).toContain(logKey);
        expect(await ws.readObject(logKey!)).toContain(`[demo] scene ${scene} done:`);
        const result = stored.scenes.find((s) => s.name === scene)!;
        expect(result).toMatchObject({ status: "SUCCESS", attempts: 1, exit_code: 0 });
        expect(result.outputs).toEqual({ history: historyKey, log: logKey, videos: [] });

        // The job summary: a row per scene, console links and s3:// URIs to both outputs.
        const row = main.summary.split("\n").find((l) => l.startsWith(`| \`${scene}\` |`));
        expect(row, `row of ${scene}`).toBeDefined();
        expect(row).toMatch(/^\| `[^`]+` \| [^|]+ \| ✅ SUCCESS \| 1 \| /);
        for (const key of [historyKey, logKey!]) {
          expect(row).toContain(`(${objectHref(ws.bucket, key)}) \`s3://${ws.bucket}/${key}\``);
        }
      }

      // The job summary's header: outcome, totals, the full summary's location.
      expect(main.summary).toContain(`## MCS run: demo · level2 · ${runIdOf(job)}`);
      expect(main.summary).toContain("**✅ All 9 scenes succeeded.**");
      expect(main.summary).toContain(`cluster \`${name}\``);
      expect(main.summary).toMatch(/^\| 9 \| 9 \| 0 \| 0 \| 0 \| 0 \| 0 \|$/m); // total, succeeded, failed, pending, retried, flaky, resumed
      expect(main.summary).toContain(
        `[run-summary.json](${objectHref(ws.bucket, SUMMARY_KEY)}) \`s3://${ws.bucket}/${SUMMARY_KEY}\``,
      );
      expect(main.summary).not.toContain("Failed scenes");

      // The log: one progress line per scene, visible (outside every group); groups balanced.
      const progress = progressByGroup(main.stdout);
      expect(progress.inside, ctx).toEqual([]);
      expect(
        progress.outside.map((l) => /^\[(\d+)\/9\] SUCCESS (\S+) /.exec(l)?.[2]).sort(),
      ).toEqual(SUBSET_NAMES);
      expect(progress.outside.map((l) => Number(/^\[(\d+)\//.exec(l)![1]))).toEqual([
        1, 2, 3, 4, 5, 6, 7, 8, 9,
      ]);
      expect(progress.openAtEnd).toBe(0);
      expect(progress.deepest).toBe(1);
      expect(main.stdout).toMatch(/^::group::ray up$/m);
      expect(main.stdout).toMatch(/^::group::ray down$/m);

      // State: cluster-up=true (saved before `ray up`), then false after the in-step `ray down`.
      expect(main.state).toMatchObject({
        "cluster-name": name,
        "cluster-yaml": path.join(
          job.runnerTemp,
          "mcs-pipeline",
          runIdOf(job),
          "plan",
          "cluster.yaml",
        ),
        "role-to-assume": ROLE,
        "aws-region": REGION,
        "keep-cluster": "false",
        "cluster-up": "false",
      });
      expect(stateHistory(main, "cluster-up")).toEqual(["true", "false"]);
      expect(readFileSync(main.state["cluster-yaml"]!, "utf8")).toMatch(
        new RegExp(`^cluster_name: ${escape(name)}$`, "m"),
      );

      // OIDC → STS: tokens for sts.amazonaws.com, each presented to STS for the role.
      expect(seen.oidc().length).toBeGreaterThan(0);
      for (const r of seen.oidc()) {
        expect(r).toMatchObject({ audience: "sts.amazonaws.com", authorized: true, status: 200 });
      }
      for (const t of seen.issued()) expect(jwtClaims(t.jwt).aud).toBe("sts.amazonaws.com");
      expect(seen.assumes().length).toBeGreaterThan(0);
      for (const r of seen.assumes()) expect(r).toMatchObject({ roleArn: ROLE, status: 200 });
      // The summary was read back through AWS_ENDPOINT_URL with the assumed credentials.
      expect(seen.sts().some((r) => r.method === "GET" && r.path.endsWith(SUMMARY_KEY))).toBe(true);

      // Post: the in-step `ray down` already ran.
      await expectNothingToTearDown(job);
      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(job.leftovers()).toEqual([]);

      // No secret anywhere a person or a later step can read (the walk does look at files).
      expectMasked(main, seen);
      expect(filesUnder(job.runnerTemp).length).toBeGreaterThan(20);
      expect(leaks(job)).toEqual([]);

      // action.yml's summary-path is "the downloaded run-summary.json": what the store holds.
      expect(local).toEqual(stored);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "a scene that fails: step failed, annotation, failure in the summary; allow-failures passes",
    async () => {
      const ws = await workspace();
      const scenes = path.join(ws.dir, "scenes", "with-failure");
      mkdirSync(scenes, { recursive: true });
      cpSync(path.join(ws.dir, "scenes", "subset"), scenes, { recursive: true });
      const broken = "demo_broken_0001_01";
      const doc = JSON.parse(
        readFileSync(path.join(scenes, "demo_agents_0001_01.json"), "utf8"),
      ) as Record<string, unknown>;
      writeFileSync(
        path.join(scenes, `${broken}.json`),
        JSON.stringify({ ...doc, name: broken, demo: { exit_code: 3 } }),
      );

      const job = newJob(ws, { inputs: { scenes: "scenes/with-failure" } });
      const main = await job.run("main");
      const ctx = context(main);
      expect(main.code, ctx).toBe(1);
      expectNewClusterName(main);
      expect(main.outputs).toMatchObject({
        total: "10",
        succeeded: "9",
        failed: "1",
        status: "failure",
      });
      expect(errors(main)).toEqual([
        {
          command: "error",
          properties: { title: `Scene failed: ${broken}` },
          message: "script_error after 1 attempt(s), exit code 3",
        },
        { command: "error", properties: {}, message: "1 of 10 scenes failed" },
      ]);
      expect(main.summary).toContain("**❌ 1 of 10 scenes failed.**");
      expect(main.summary).toContain("### Failed scenes (1)");
      const detail = main.summary.slice(main.summary.indexOf("### Failed scenes (1)"));
      expect(detail).toMatch(
        new RegExp(
          `^#### ❌ \`${broken}\` — agents · script_error · 1 attempt · exit code 3 · `,
          "m",
        ),
      );
      expect(detail).toMatch(
        /<details><summary>log<\/summary>\n\n```text\n[^]*injected failure: exiting with code 3[^]*\n```/,
      );
      expect(main.summary).toMatch(
        new RegExp(
          `^\\| \`${broken}\` \\| agents \\| ❌ FAILED \\| 1 \\| .* \\| script_error \\|`,
          "m",
        ),
      );
      const stored = JSON.parse(await ws.readObject(summaryKey(job))) as SummaryFile;
      expect(stored.scenes.find((s) => s.name === broken)).toMatchObject({
        status: "FAILED",
        exit_code: 3,
        failure_class: "script_error",
      });
      await expectCleanEnd(job);

      // The same scenes with allow-failures: the step passes, the outputs still tell.
      const lenient = newJob(ws, {
        inputs: { scenes: "scenes/with-failure", "allow-failures": "true" },
      });
      const again = await lenient.run("main");
      expect(again.code, context(again)).toBe(0);
      expect(again.outputs).toMatchObject({ total: "10", failed: "1", status: "failure" });
      expect(errors(again).map((e) => e.properties.title)).toEqual([`Scene failed: ${broken}`]);
      expectNewClusterName(again);
      await expectCleanEnd(lenient);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "main cancelled mid-run: post re-assumes the role and tears the cluster down",
    async () => {
      const ws = await workspace();
      // 450 steps at 10 ms: the first scene ends after ~4.5 s, the rest ~7 s later.
      const job = newJob(ws, { inputs: { "mcs-config-overrides": "demo_step_seconds=0.01" } });
      const seen = traffic();
      const running = job.start("main");
      started.push(running);
      const [first] = await running.waitForLine(/^\[1\/9\] .*$/, 120_000);
      // Cancel the runner's way: SIGINT now, SIGTERM 7.5 s later if it is still there.
      const main = await running.cancel();
      const ctx = context(main);
      expect(main.code, ctx).not.toBe(0);
      // The step stopped the driver on the head and exited before the runner's SIGTERM.
      expect(main.signalsSent, ctx).toEqual(["SIGINT"]);
      expect(main.stdout).toMatch(/^mcs-follow: stopped 130\r?$/m);
      expect(first, ctx).toMatch(/^\[1\/9\] SUCCESS \S+ in /);
      expectNewClusterName(main);
      expect(errors(main).map((e) => e.message)).toContain(
        "cancelled (SIGINT); the post step tears the cluster down",
      );
      // It was cancelled mid-run: not every scene had finished.
      expect(progressByGroup(main.stdout).outside.length).toBeLessThan(9);
      expect(main.state).toMatchObject({
        "cluster-up": "true",
        "cluster-name": clusterOf(job),
      });
      expect(main.stdout).not.toMatch(/^::group::ray down$/m);
      expect(main.outputs.status).toBe("interrupted");
      // The step stopped the driver, and waited for it to save the summary as interrupted.
      const stored = JSON.parse(await ws.readObject(summaryKey(job))) as SummaryFile;
      expect(stored.state).toBe("interrupted");
      expect(stored.totals!.pending).toBeGreaterThan(0);
      expect(rayProcessesOf(node!).some((p) => /raylet/.test(p.command))).toBe(true);
      const mainTokens = seen.issued().map((t) => t.jwt);
      expect(mainTokens.length).toBeGreaterThan(0);
      expect(seen.assumes().length).toBeGreaterThan(0);
      expectMasked(main, seen);

      // Post: a fresh ID token, a new AssumeRoleWithWebIdentity with it, then `ray down`.
      const atPost = traffic();
      const post = await job.run("post");
      const postCtx = context(post);
      expect(post.code, postCtx).toBe(0);
      expect(post.annotations, postCtx).toEqual([]);
      const postTokens = atPost.issued();
      expect(postTokens.length).toBeGreaterThan(0);
      for (const t of postTokens) {
        expect(mainTokens).not.toContain(t.jwt);
        expect(t.audience).toBe("sts.amazonaws.com");
      }
      expect(atPost.assumes().length).toBeGreaterThan(0);
      expect(atPost.assumes().at(-1)).toMatchObject({ roleArn: ROLE, status: 200 });
      expect(proxy!.webIdentityTokens.at(-1)).toBe(postTokens.at(-1)!.jwt);
      expect(post.stdout).toMatch(/^::group::ray down mcs-demo-\S+$/m);
      expect(post.stdout).toContain(`Cluster ${clusterOf(job)} is torn down.`);
      expectMasked(post, atPost);

      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(job.leftovers()).toEqual([]);
      expect(leaks(job)).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "main killed mid-run (no chance to clean up): post stops the driver, then tears down",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { "mcs-config-overrides": "demo_step_seconds=0.01" } });
      const running = job.start("main");
      started.push(running);
      await running.waitForLine(/^\[1\/9\] /, 120_000);
      process.kill(running.pid, "SIGKILL"); // a lost runner process: main says nothing more
      const main = await running.done;
      expect(main.signal).toBe("SIGKILL");
      expect(main.state).toMatchObject({ "cluster-up": "true", driver: "started" });

      const post = await job.run("post");
      const ctx = context(post);
      expect(post.code, ctx).toBe(0);
      expect(post.annotations, ctx).toEqual([]);
      expect(post.stdout).toMatch(/^::group::Stopping the driver on the head node$/m);
      expect(post.stdout).toMatch(/^The driver: stopped 130\.$/m);
      expect(post.stdout).toContain(`Cluster ${clusterOf(job)} is torn down.`);
      // Nothing lost: the summary keeps what finished, and says the run was interrupted.
      const stored = JSON.parse(await ws.readObject(summaryKey(job))) as SummaryFile;
      expect(stored.state).toBe("interrupted");
      expect(stored.totals.succeeded).toBeGreaterThan(0);
      expect(stored.totals.pending).toBeGreaterThan(0);
      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(leaks(job)).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "a run several credential lifetimes long: renewed credentials publish the summary",
    async () => {
      const ws = await workspace();
      // ~1 min of scenes: three lifetimes of what STS issues through the proxy (20 s each).
      const job = newJob(ws, { inputs: { "mcs-config-overrides": "demo_step_seconds=0.05" } });
      const seen = traffic();
      const main = await job.run("main");
      const ctx = context(main);
      expect(main.code, ctx).toBe(0);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", status: "success" });
      expect(main.summary).toContain("**✅ All 9 scenes succeeded.**");
      expect(main.ms).toBeGreaterThan(3 * CREDENTIAL_LIFETIME_S * 1000);

      // Renewed well before expiry, again and again: a fresh ID token and role session each time.
      const issued = seen.credentials();
      expect(issued.length, ctx).toBeGreaterThanOrEqual(main.ms / (CREDENTIAL_LIFETIME_S * 1000));
      expect(new Set(issued.map((c) => c.accessKeyId)).size).toBe(issued.length);
      expect(seen.issued().length).toBe(seen.assumes().length);
      expect(main.stdout.match(/^AWS credentials renewed \(expire /gm)?.length).toBe(
        issued.length - 1,
      );
      // Nothing was ever signed with an expired (or unknown) key ...
      expect(seen.sts().filter((r) => r.refused)).toEqual([]);
      // ... and the summary, read after the scenes, was signed with a key from late in the run.
      const read = seen.sts().find((r) => r.method === "GET" && r.path.endsWith(summaryKey(job)));
      const signer = issued.findIndex((c) => c.accessKeyId === read?.accessKeyId);
      expect(signer, ctx).toBeGreaterThanOrEqual(2);
      expectMasked(main, seen);

      await expectCleanEnd(job);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "the SSH connection drops twice mid-run: the follow reconnects, every scene runs once",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { "mcs-config-overrides": "demo_step_seconds=0.03" } });
      const running = job.start("main");
      started.push(running);
      const drops: number[][] = [];
      // Drop every connection to the node (the follow's) when scene 1, then scene 4, has ended;
      // seeing [4/9] at all means the follow came back after the first drop.
      for (const k of [1, 4]) {
        await running.waitForLine(new RegExp(`^\\[${k}/9\\] `), 120_000);
        drops.push(dropConnections(node!));
      }
      const main = await running.done;
      const ctx = context(main);
      expect(main.code, ctx).toBe(0);
      for (const killed of drops) expect(killed.length, ctx).toBeGreaterThan(0);
      const lost = main.stdout.match(/^Connection to the head node lost .*$/gm) ?? [];
      expect(lost, ctx).toHaveLength(2);
      for (const line of lost) expect(line).toMatch(/the driver keeps running there/);

      // Every progress line once, in order, visible; the driver's start line once.
      const progress = progressByGroup(main.stdout);
      expect(progress.outside.map((l) => Number(/^\[(\d+)\//.exec(l)![1]))).toEqual([
        1, 2, 3, 4, 5, 6, 7, 8, 9,
      ]);
      expect(progress.openAtEnd).toBe(0);
      expect(main.stdout.match(/^mcs-pipeline: 9 scenes to run/gm)).toHaveLength(1);

      // Every scene ran exactly once: one attempt each, one log each in the store.
      const stored = JSON.parse(await ws.readObject(summaryKey(job))) as SummaryFile & {
        scenes: { history: unknown[] }[];
      };
      expect(stored).toMatchObject({ state: "finished", totals: { total: 9, succeeded: 9 } });
      for (const scene of stored.scenes) {
        expect(scene.attempts).toBe(1);
        expect(scene.history).toHaveLength(1);
      }
      const logs = (await ws.listKeys(`${FOLDER}/`)).filter((k) => k.endsWith("_log.txt"));
      expect(logs).toHaveLength(9);
      // The report is complete: a row per scene.
      expect(main.summary).toContain("**✅ All 9 scenes succeeded.**");
      for (const scene of SUBSET_NAMES) {
        expect(main.summary).toMatch(new RegExp(`^\\| \`${scene}\` \\| [^|]+ \\| ✅`, "m"));
      }

      await expectCleanEnd(job);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "two runs of the same module and level at once: each its own summary and report",
    async () => {
      // A second node for the second cluster; both runs write to one bucket, one folder.
      const other = await startSshd({ env: node!.env });
      try {
        const wsA = await workspace();
        const wsB = await makeActionWorkspace({
          node: other,
          s3Endpoint: moto!.url,
          bucket: wsA.bucket,
        });
        const scenes = path.join(wsB.dir, "scenes", "three");
        mkdirSync(scenes);
        const picked = SUBSET_NAMES.slice(0, 2);
        for (const name of picked) {
          cpSync(path.join(wsB.dir, "scenes", "subset", `${name}.json`), `${scenes}/${name}.json`);
        }
        const broken = "demo_broken_0002_01";
        writeFileSync(
          path.join(scenes, `${broken}.json`),
          JSON.stringify({ name: broken, goal: { last_step: 5 }, demo: { exit_code: 3 } }),
        );
        const jobA = newJob(wsA);
        const jobB = newJob(wsB, { inputs: { scenes: "scenes/three" } });
        const [a, b] = await Promise.all([jobA.run("main"), jobB.run("main")]);
        expect(a.code, context(a)).toBe(0);
        expect(b.code, context(b)).toBe(1);
        expect(a.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });
        expect(b.outputs).toMatchObject({ total: "3", succeeded: "2", failed: "1" });

        for (const [run, names] of [
          [a, SUBSET_NAMES],
          [b, [...picked, broken].sort()],
        ] as const) {
          const id = runIdOf(run.job);
          const stored = JSON.parse(await wsA.readObject(summaryKey(run.job))) as SummaryFile;
          expect(stored.run_id).toBe(id);
          expect(stored.scenes.map((s) => s.name).sort()).toEqual(names);
          const local = JSON.parse(readFileSync(run.outputs["summary-path"]!, "utf8"));
          expect(local).toEqual(stored);
          expect(run.summary).toContain(`## MCS run: demo · level2 · ${id}`);
          const rows = run.summary.match(/^\| `demo_\S+` \|/gm) ?? [];
          expect(rows.map((r) => /`(\S+)`/.exec(r)![1]).sort()).toEqual(names);
        }
        const latest = JSON.parse(await wsA.readObject(LATEST_KEY)) as { run_id: string };
        expect([runIdOf(jobA), runIdOf(jobB)]).toContain(latest.run_id);
        for (const job of [jobA, jobB]) await expectNothingToTearDown(job);
        expect(await waitForNoRayProcesses(other)).toEqual([]);
      } finally {
        await other.stop();
      }
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "no id-token permission: one clear error before any cluster starts; post has nothing to do",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { oidc: null });
      const seen = traffic();
      const { result: main, seen: onNode } = await watchNode(() => job.run("main"));
      const ctx = context(main);
      expect(main.code, ctx).toBe(1);
      expect(errors(main), ctx).toHaveLength(1);
      expect(errors(main)[0]!.message).toMatch(/^no OIDC token: .*id-token: write/);
      expect(main.stdout.split("\n").filter((l) => l.startsWith("::error"))).toHaveLength(1);
      expect(seen.oidc()).toEqual([]);
      expectNothingStarted(main, seen, onNode);
      await expectNothingToTearDown(job);
      expect(leaks(job)).toEqual([]);
    },
    SHORT_TIMEOUT_MS,
  );

  it(
    "a pull request from a fork: the error says forks get no OIDC token",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, {
        oidc: null,
        eventName: "pull_request",
        event: {
          action: "synchronize",
          number: 7,
          pull_request: {
            number: 7,
            head: { ref: "patch-1", repo: { full_name: "someone/mcs-pipeline", fork: true } },
            base: { ref: "main", repo: { full_name: "mcs-org/mcs-pipeline", fork: false } },
          },
          repository: { full_name: "mcs-org/mcs-pipeline" },
        },
      });
      const seen = traffic();
      const { result: main, seen: onNode } = await watchNode(() => job.run("main"));
      const ctx = context(main);
      expect(main.code, ctx).toBe(1);
      expect(errors(main), ctx).toHaveLength(1);
      expect(errors(main)[0]!.message).toMatch(/forks get no OIDC token/);
      expect(errors(main)[0]!.message).not.toContain("id-token: write");
      expectNothingStarted(main, seen, onNode);
      await expectNothingToTearDown(job);
      expect(leaks(job)).toEqual([]);
    },
    SHORT_TIMEOUT_MS,
  );

  it(
    "a role whose trust policy refuses the token: the error names the role and the policy",
    async () => {
      const ws = await workspace();
      proxy!.refuse.add(UNTRUSTED_ROLE);
      try {
        const job = newJob(ws, { inputs: { "role-to-assume": UNTRUSTED_ROLE } });
        const seen = traffic();
        const { result: main, seen: onNode } = await watchNode(() => job.run("main"));
        const ctx = context(main);
        // The preflight's finding: exit 2, as for any setup it finds wrong.
        expect(main.code, ctx).toBe(2);
        expect(errors(main), ctx).toHaveLength(1);
        const message = errors(main)[0]!.message;
        expect(message).toMatch(/^preflight: role-to-assume: /);
        expect(message).toContain(UNTRUSTED_ROLE);
        expect(message).toMatch(/trust policy/);
        expect(message).toMatch(/AccessDenied/);
        // The token was fetched for STS and refused once: no retry of a final answer.
        expect(seen.oidc().map((r) => r.audience)).toEqual(["sts.amazonaws.com"]);
        expect(seen.assumes()).toEqual([
          expect.objectContaining({ roleArn: UNTRUSTED_ROLE, refused: "AccessDenied" }),
        ]);
        expect(onNode, "processes on the node during the step").toEqual([]);
        expect(main.stdout).not.toMatch(/^::group::ray /m);
        expect(main.state["cluster-up"]).toBeUndefined();
        expect(job.leftovers()).toEqual([]);
        expect(proxy!.credentials.filter((c) => c.roleArn === UNTRUSTED_ROLE)).toEqual([]);
        await expectNothingToTearDown(job);
        expect(leaks(job)).toEqual([]);
      } finally {
        proxy!.refuse.delete(UNTRUSTED_ROLE);
      }
    },
    SHORT_TIMEOUT_MS,
  );

  it(
    "keep-cluster: the step leaves the cluster up and says so; post leaves it, saying how to stop it",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { "keep-cluster": "true" } });
      const main = await job.run("main");
      const ctx = context(main);
      expect(main.code, ctx).toBe(0);
      expect(errors(main), ctx).toEqual([]);
      const name = expectNewClusterName(main);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", status: "success" });
      expect(main.stdout).toMatch(/^::group::ray up$/m);
      expect(main.stdout).not.toMatch(/^::group::ray down/m);
      expect(main.stdout).toMatch(
        new RegExp(
          `^keep-cluster: cluster ${escape(name)} is left running \\(not torn down\\)$`,
          "m",
        ),
      );
      // The state says the cluster is up, and kept: post must not take it down.
      expect(main.state).toMatchObject({
        "cluster-name": name,
        "cluster-up": "true",
        "keep-cluster": "true",
      });
      expect(stateHistory(main, "cluster-up")).toEqual(["true"]);
      const running = () =>
        rayProcessesOf(node!).filter((p) => /raylet|gcs_server/.test(p.command));
      expect(running().length, "Ray on the head after the step").toBeGreaterThan(0);

      // Post: a notice naming the cluster and the command that stops it; no teardown, no AWS.
      const seen = traffic();
      const post = await job.run("post");
      const postCtx = context(post);
      expect(post.code, postCtx).toBe(0);
      expect(post.annotations, postCtx).toHaveLength(1);
      const [notice] = post.annotations;
      expect(notice!.command).toBe("notice");
      expect(notice!.message).toMatch(
        new RegExp(`^keep-cluster: ${escape(name)} was left running`),
      );
      expect(notice!.message).toContain(`ray down -y ${main.state["cluster-yaml"]}`);
      expect(post.stdout).not.toMatch(/^::group::ray down/m);
      expect(post.stdout).not.toMatch(/is torn down/);
      expect(seen.oidc()).toEqual([]);
      expect(seen.sts()).toEqual([]);
      expect(running().length, "Ray on the head after the post step").toBeGreaterThan(0);
      expect(leaks(job)).toEqual([]);

      // What the notice says, done by the test: `ray down` with the job's client-side state.
      const down = await execCommand(main.state.ray!, ["down", "-y", main.state["cluster-yaml"]!], {
        env: { ...rayClientEnv(node!), TMPDIR: job.tmp },
        timeoutMs: 120_000,
      });
      expect(down.code, `${down.stdout}\n${down.stderr}`).toBe(0);
      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(job.leftovers()).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "three jobs of one run (a matrix): three cluster names, from the job key the runner gives",
    async () => {
      const ws = await workspace();
      const runId = String(randomInt(1_000_000_000, 9_999_999_999));
      const dry = { "dry-run": "true", "role-to-assume": undefined };
      // Each job's check-run id, as GitHub evaluates the default; then a default nothing
      // evaluated (the jobs of scheduled-eval.yml under act), where the level tells them apart.
      // (Matrix positions, the other default, and long keys: test/cluster.test.ts.)
      const jobs = [
        ...["51725241954", "51725241955", "51725241956"].map((key) => ({ key, level: "level2" })),
        ...["level1", "level2", "oracle"].map((level) => ({ key: undefined, level })),
      ];
      const names: string[] = [];
      for (const batch of [jobs.slice(0, 3), jobs.slice(3)]) {
        const runs = await Promise.all(
          batch.map(({ key, level }) =>
            newJob(ws, { runId, inputs: { ...dry, "job-key": key, metadata: level } }).run("main"),
          ),
        );
        for (const main of runs) {
          expect(main.code, context(main)).toBe(0);
          names.push(main.outputs["cluster-name"]!);
        }
      }
      expect(names).toEqual([
        `mcs-demo-level2-${runId}-1-eval-51725241954`,
        `mcs-demo-level2-${runId}-1-eval-51725241955`,
        `mcs-demo-level2-${runId}-1-eval-51725241956`,
        `mcs-demo-level1-${runId}-1-eval`,
        `mcs-demo-level2-${runId}-1-eval`,
        `mcs-demo-oracle-${runId}-1-eval`,
      ]);
      for (const name of names) {
        expect(clusterNames.has(name), `${name} was used before`).toBe(false);
        clusterNames.add(name);
      }
    },
    2 * SHORT_TIMEOUT_MS,
  );

  it(
    "dry run: prints the plan, sets status=planned and the cluster name, starts nothing",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { "dry-run": "true", "role-to-assume": undefined } });
      const seen = traffic();
      const { result: main, seen: onNode } = await watchNode(() => job.run("main"));
      const ctx = context(main);
      expect(main.code, ctx).toBe(0);
      expect(main.annotations, ctx).toEqual([]);
      const name = expectNewClusterName(main);
      // The plan's own outputs and job summary are test/dry-run.test.ts's.
      expect(main.outputs).toMatchObject({ "cluster-name": name, status: "planned" });
      expect(main.stdout).toContain(
        `plan ${runIdOf(job)}: module demo, metadata level2, target aws`,
      );
      expect(main.stdout).toMatch(/^ {2}scenes: +9 /m);
      expect(main.stdout).toContain(`s3://${ws.bucket} (summary ${summaryKey(job)})`);
      expect(main.stdout).toMatch(new RegExp(`^ {2}cluster: +${escape(name)}$`, "m"));
      expect(main.stdout).toMatch(/^dry-run: the plan is valid; nothing was started$/m);
      expect(main.state).toEqual({});
      expect(seen.oidc()).toEqual([]);
      expectNothingStarted(main, seen, onNode);
      expect(await ws.listKeys()).toEqual([]);
      await expectNothingToTearDown(job);
      expect(leaks(job)).toEqual([]);
    },
    SHORT_TIMEOUT_MS,
  );

  it(
    "a bad input (module=../x): one error naming `module`, nothing started",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { module: "../x" } });
      const seen = traffic();
      const { result: main, seen: onNode } = await watchNode(() => job.run("main"));
      const ctx = context(main);
      expect(main.code, ctx).toBe(1);
      expect(main.annotations, ctx).toHaveLength(1);
      expect(errors(main)[0]!.message).toMatch(/^input module: /);
      expect(errors(main)[0]!.message).not.toContain("\n");
      expect(main.outputs).toEqual({});
      expect(main.state).toEqual({});
      expect(seen.oidc()).toEqual([]);
      expectNothingStarted(main, seen, onNode);
      expect(existsSync(path.join(job.runnerTemp, "mcs-pipeline"))).toBe(false);
      await expectNothingToTearDown(job);
      expect(leaks(job)).toEqual([]);
    },
    SHORT_TIMEOUT_MS,
  );
});
