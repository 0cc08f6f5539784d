/**
 * The frame of the multi-node tests (multinode*.test.ts): the action on a head and two workers,
 * run the way the runner runs it (`node dist/main`, then `node dist/post`), each node its own
 * "machine" (test/support/multinode.ts) brought up by `ray up` with Ray's local provider; the
 * head's autoscaler starts the workers over SSH. STS, S3 and OIDC on loopback
 * (test/support/loopback.ts). Each test file that calls `multinodeSuite()` gets nodes and AWS of
 * its own, so the files run side by side.
 */
import { appendFileSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { makeActionWorkspace, type ActionWorkspace } from "./cluster.js";
import { startNodes, type TestNodes } from "./multinode.js";
import { demoJob, nodeAwsEnv, startLoopbackAws, type LoopbackAws } from "./loopback.js";
import { ActionJob, cleanupActions, type ActionRun } from "./runner.js";
import { rayProcessesOf, waitForNoRayProcesses } from "./sshd.js";
import { REPO, removeTemps } from "./workspace.js";
import { pastRunObjects } from "./history.js";
import { putObject } from "./moto.js";

export const FOLDER = "demo-eval";
/** ray up, workers joining (~20 s), the scenes, ray down. */
export const RUN_TIMEOUT_MS = 300_000;
/**
 * 0.04 s a step: the subset's scenes take 3.6 to 18 s. With one CPU a node the head alone has
 * run two or three of them by the time the workers have joined, so every node gets scenes.
 */
export const PACE = "demo_step_seconds=0.04";

export const SUBSET_NAMES = readdirSync(path.join(REPO, "scenes/subset"))
  .filter((f) => f.endsWith(".json"))
  .map((f) => path.basename(f, ".json"))
  .sort();

export let aws: LoopbackAws | undefined;
export let nodes: TestNodes | undefined;
export const jobs: ActionJob[] = [];

export interface Attempt {
  attempt: number;
  failure_class: string | null;
  node: string | null;
}
export interface SummaryFile {
  state: string;
  updated_at: string;
  nodes?: {
    address: string;
    head: boolean;
    node_type: string | null;
    usd_per_hour: number | null;
    started_at: string;
    ended_at: string | null;
  }[];
  totals: { total: number; succeeded: number; failed: number };
  scenes: {
    name: string;
    status: string;
    attempts: number;
    node: string | null;
    history: Attempt[];
  }[];
}

export function newJob(ws: ActionWorkspace, retries = "1"): ActionJob {
  // One or no retries (the lost-node case): either way a lost node must not use them.
  const job = demoJob(aws!, ws.dir, { retries, "mcs-config-overrides": PACE });
  jobs.push(job);
  return job;
}

/**
 * The mcsteam node services' directories (its common.sh node_dir) of this file's nodes, one per
 * node's PID namespace: another file's team runs on this host have directories of their own.
 */
export function serviceDirs(): string[] {
  const inodes = new Set(nodes!.all.map((n) => /\[(\d+)\]/.exec(n.pidNamespace)![1]));
  return readdirSync("/tmp")
    .filter((d) => {
      const match = new RegExp(`^mcsteam-services-${process.getuid!()}-(\\d+)$`).exec(d);
      return match !== null && inodes.has(match[1]!);
    })
    .map((d) => path.join("/tmp", d));
}

export function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** What the test module declares a node of Ray's local provider costs an hour. */
export const USD_PER_HOUR = 0.5;

export async function workspace(usdPerHour = USD_PER_HOUR): Promise<ActionWorkspace> {
  const ws = await makeActionWorkspace({
    node: nodes!.head,
    s3Endpoint: aws!.moto.url,
    cluster: { workers: nodes!.workers, numCpus: 1 },
  });
  appendFileSync(
    path.join(ws.dir, "configs/demo_aws.ini"),
    `\n[prices]\nlocal.cluster.node = ${usdPerHour}\n`,
  );
  return ws;
}

/** A previous run in the workspace's bucket: each subset scene took `seconds`, start-up 60 s. */
export async function previousRun(ws: ActionWorkspace, seconds: number): Promise<void> {
  const scenes = SUBSET_NAMES.map((name) => ({
    name,
    category: null,
    steps: 100,
    seconds: [seconds],
  }));
  const run = {
    runId: "20261201-100000-aaaa",
    scenes,
    launchPhases: [{ name: "ray up", seconds: 60 }],
  };
  for (const [key, text] of pastRunObjects(run, `s3://${ws.bucket}`))
    await putObject(aws!.moto.url, ws.bucket, key, text);
}

/**
 * The cost estimate from the cluster's own node table: the three nodes, each from its start
 * (within this test) until the driver's last save, at the module's price; the job summary's
 * total is that by hand.
 */
export function expectCost(run: ActionRun, summary: SummaryFile, testStart: number) {
  const nodeList = summary.nodes ?? [];
  expect(nodeList.map((n) => n.address).sort(), context(run)).toEqual(
    nodes!.all.map((n) => n.host).sort(),
  );
  expect(nodeList.filter((n) => n.head).map((n) => n.address)).toEqual([nodes!.head.host]);
  const end = Date.parse(summary.updated_at);
  let hours = 0;
  for (const node of nodeList) {
    expect(node).toMatchObject({ node_type: "local.cluster.node", usd_per_hour: USD_PER_HOUR });
    expect(node.ended_at).toBeNull(); // all three alive when the driver saved
    const started = Date.parse(node.started_at);
    expect(started).toBeGreaterThan(testStart);
    expect(started).toBeLessThan(end);
    hours += (end - started) / 3_600_000;
  }
  expect(run.summary).toContain(`### Cost (estimate): $${(hours * USD_PER_HOUR).toFixed(2)}`);
  expect(run.summary).toContain(`| local.cluster.node | 3 | ${hours.toFixed(2)} | $0.50 |`);
  expect(run.summary).toContain("configs/demo_aws.ini [prices]");
}

export const context = (run: ActionRun) =>
  `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

export async function storedSummary(ws: ActionWorkspace, run: ActionRun): Promise<SummaryFile> {
  const key = (await ws.listKeys(`${FOLDER}/`)).find((k) => k.endsWith("_run-summary.json"));
  expect(key, context(run)).toBeDefined();
  return JSON.parse(await ws.readObject(key!)) as SummaryFile;
}

/** The `[k/9] STATUS scene ...` progress lines. */
export const progressLines = (stdout: string) =>
  stdout.split("\n").filter((l) => /^\[\d+\/\d+\] /.test(l));

/** Every scene succeeded once: one SUCCESS progress line and one successful attempt each. */
export function expectEachSucceededOnce(run: ActionRun, summary: SummaryFile) {
  const succeeded = progressLines(run.stdout).map((l) => /^\[\d+\/9\] SUCCESS (\S+) /.exec(l)?.[1]);
  expect(succeeded.sort(), context(run)).toEqual(SUBSET_NAMES);
  expect(summary.scenes.map((s) => s.name).sort()).toEqual(SUBSET_NAMES);
  for (const scene of summary.scenes) {
    expect(scene.status).toBe("SUCCESS");
    expect(scene.history.filter((h) => h.failure_class === null)).toHaveLength(1);
  }
}

/** After post: no Ray (nor anything else started over SSH) left on any node. */
export async function expectNothingLeft(job: ActionJob) {
  const post = await job.run("post");
  expect(post.code, context(post)).toBe(0);
  for (const node of nodes!.all) expect(await waitForNoRayProcesses(node, 20_000)).toEqual([]);
  expect(job.leftovers()).toEqual([]);
}

/** Registers the hooks: AWS and the nodes for the file, each test's jobs cleaned up after it. */
export function multinodeSuite(): void {
  beforeAll(async () => {
    aws = await startLoopbackAws();
    nodes = await startNodes({ env: nodeAwsEnv(aws.moto.url) });
  }, 120_000);

  afterEach(async () => {
    for (const job of jobs.splice(0)) {
      // A test that failed before its post step: run it now, as the runner always does.
      const postRan = job.runs.some((r) => r.entry === "post");
      if (!postRan && job.state["cluster-up"] === "true") await job.run("post").catch(() => {});
      await job.cleanup();
    }
    // Anything still on a node (only after a failure): stop it by PID, inside its namespace.
    for (const node of nodes?.all ?? []) {
      for (const p of rayProcessesOf(node)) {
        try {
          process.kill(p.pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
    }
  }, 120_000);

  afterAll(async () => {
    await cleanupActions().catch(() => undefined);
    await Promise.allSettled([nodes?.stop(), aws?.stop()]);
    removeTemps();
  }, 60_000);
}
