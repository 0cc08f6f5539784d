/**
 * Runs longer than the job: the follow budget (`follow-minutes`) and the `collect` mode
 * (`collect-run-id`), with the action run as the runner runs it (test/support/runner.ts) against
 * loopback AWS and OIDC and a Ray cluster brought up by `ray up` on the sshd fixture:
 *  - the budget ends mid-run: the step reports `running` with the run id and exits 0, its post
 *    step leaves the cluster up (the driver runs on), a later job's collect publishes the complete
 *    report once the driver has finished (its links to the object versions the run wrote, the
 *    bucket versioned as the setup stack makes it), and the head's watchdog then tears the
 *    cluster down;
 *  - a collect while the run goes on publishes its progress (status `running`), and a cancelled
 *    collect leaves the run alone: it still finishes.
 * Units: the follow budget (followWithin), the progress and ETA of a partial report, the status.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { progressMarkdown, statusOf } from "../src/action/publish.js";
import { watchdogLogPath } from "../src/cluster.js";
import { followWithin } from "../src/ray/detached.js";
import type { RunSummary, SceneResult } from "../src/summary.js";
import { makeActionWorkspace } from "./support/cluster.js";
import { actionSuite } from "./support/action-suite.js";
import { demoJob, nodeAwsEnv } from "./support/loopback.js";
import { s3Client } from "./support/moto.js";
import type { ActionJob, ActionRun } from "./support/runner.js";
import { rayProcessesOf, waitForNoRayProcesses, type SshdFixture } from "./support/sshd.js";

/** The watchdog's idle bound in these tests: 15 s. */
const IDLE_MINUTES = 0.25;
const IDLE_MS = IDLE_MINUTES * 60_000;
const RUN_TIMEOUT_MS = 300_000;
/** 450 steps at 50 ms: ~22 s a scene, the run ~1 min. */
const SLOW = "demo_step_seconds=0.05";

const suite = actionSuite();
let node: SshdFixture | undefined;

async function newNode() {
  node = await suite.startNode({ env: nodeAwsEnv(suite.aws().moto.url) });
  const ws = await makeActionWorkspace({ node, s3Endpoint: suite.aws().moto.url });
  // Versioning on, as the setup stack makes the bucket: reports link the versions their run wrote.
  await s3Client(suite.aws().moto.url).send(
    new PutBucketVersioningCommand({
      Bucket: ws.bucket,
      VersioningConfiguration: { Status: "Enabled" },
    }),
  );
  return ws;
}

/** The report's history links: one per scene, each to the version its run wrote. */
function expectVersionedHistoryLinks(markdown: string, scenes: number) {
  const links = [...markdown.matchAll(/\[history\]\((https:[^)]+)\)/g)].map((m) => new URL(m[1]!));
  expect(links.length, markdown).toBe(scenes);
  for (const url of links) expect(url.searchParams.get("versionId"), url.href).toBeTruthy();
}

/** A job of the demo module in `dir` with the watchdog's short bound and `inputs`. */
function newJob(dir: string, inputs: Record<string, string>): ActionJob {
  const job = demoJob(suite.aws(), dir, {
    "watchdog-idle-minutes": String(IDLE_MINUTES),
    ...inputs,
  });
  suite.track(job);
  return job;
}

function context(run: ActionRun, clusterName?: string): string {
  const file = clusterName && path.join(node!.home, watchdogLogPath(clusterName));
  const log = file && existsSync(file) ? readFileSync(file, "utf8") : "";
  return `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}\n--- summary\n${run.summary}\n--- watchdog.log\n${log}`;
}

/** The run's summary in the store, once its state is `state`. */
async function summaryWhen(
  ws: Awaited<ReturnType<typeof newNode>>,
  runId: string,
  state: string,
  timeoutMs: number,
): Promise<{ state: string; totals: { succeeded: number } }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const key = (await ws.listKeys()).find((k) => k.endsWith(`_${runId}_run-summary.json`));
    const doc = key ? JSON.parse(await ws.readObject(key)) : undefined;
    if (doc?.state === state || Date.now() > deadline) return doc;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

describe("follow-minutes and collect, with the action as the runner runs it", () => {
  it(
    "the budget ends mid-run: `running`, the cluster stays up; a later collect publishes the complete report, then the watchdog tears down",
    async () => {
      const ws = await newNode();
      const job = newJob(ws.dir, { "mcs-config-overrides": SLOW, "follow-minutes": "0.25" });
      const main = await job.run("main", { timeoutMs: 200_000 });
      const name = main.state["cluster-name"]!;
      expect(main.code, context(main, name)).toBe(0);
      const runId = main.outputs["run-id"]!;
      expect(runId).toMatch(/^\d+-1-/);
      expect(main.outputs.status, context(main, name)).toBe("running");
      expect(Number(main.outputs.total)).toBe(9);
      expect(Number(main.outputs.succeeded)).toBeLessThan(9);
      expect(main.state).toMatchObject({ driver: "handed-over", "cluster-up": "true" });
      expect(main.stdout).not.toMatch(/^::group::ray down$/m);
      expect(main.summary).toMatch(/The run is still going/);
      expect(main.summary).toContain(`collect-run-id: ${runId}`);

      const post = await job.run("post");
      expect(post.code, context(post, name)).toBe(0);
      expect(post.stdout).toMatch(/handed over to the head's watchdog/);
      expect(post.stdout).not.toMatch(/Stopping the driver|ray down/);
      // The cluster and the driver are still there right after the post step.
      const commands = rayProcessesOf(node!).map((p) => p.command);
      expect(
        commands.some((c) => /raylet/.test(c)),
        commands.join("\n"),
      ).toBe(true);
      expect(
        commands.some((c) => /run_eval\.py/.test(c)),
        commands.join("\n"),
      ).toBe(true);

      // The driver finishes on its own, unfollowed.
      const done = await summaryWhen(ws, runId, "finished", 120_000);
      expect(done, context(post, name)).toMatchObject({
        state: "finished",
        totals: { succeeded: 9 },
      });

      // A later job collects the complete report.
      const collector = newJob(ws.dir, { "collect-run-id": runId });
      const collect = await collector.run("main", { timeoutMs: 60_000 });
      expect(collect.code, context(collect, name)).toBe(0);
      expect(collect.outputs).toMatchObject({
        total: "9",
        succeeded: "9",
        failed: "0",
        status: "success",
        "run-id": runId,
      });
      expect(collect.summary).toMatch(/All 9 scenes succeeded/);
      expect(collect.summary).not.toMatch(/still going/);
      expectVersionedHistoryLinks(collect.summary, 9);
      expect(existsSync(collect.outputs["summary-path"]!)).toBe(true);
      expect(collect.state).toEqual({});
      const collectPost = await collector.run("post");
      expect(collectPost.stdout).toMatch(/^No cluster to tear down\.$/m);

      // The watchdog tears the cluster down: the driver has finished and nobody follows.
      const left = await waitForNoRayProcesses(node!, IDLE_MS + 75_000);
      const ctx = context(collect, name);
      expect(left, ctx).toEqual([]);
      expect(ctx).toMatch(
        /driver finished [\d.]+ min ago and nobody has followed for [\d.]+ min \(limit 0\.25 min\): tearing the cluster down/,
      );
      expect(ctx).toMatch(/ray down exited 0/);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "a collect while the run goes on is partial (`running`, progress, ETA); a cancelled collect leaves the run alone",
    async () => {
      const ws = await newNode();
      const job = newJob(ws.dir, { "mcs-config-overrides": SLOW });
      const running = job.start("main", { timeoutMs: 200_000 });
      await running.waitForLine(/^\[1\/9\] /, 150_000);

      // The latest-run pointer names this run; its summary says `running`.
      const collector = newJob(ws.dir, { "collect-run-id": "latest" });
      const partial = await collector.run("main", { timeoutMs: 60_000 });
      expect(partial.code, context(partial)).toBe(0);
      expect(partial.outputs.status, context(partial)).toBe("running");
      expect(Number(partial.outputs.succeeded)).toBeGreaterThanOrEqual(1);
      expect(Number(partial.outputs.succeeded)).toBeLessThan(9);
      expect(partial.summary).toMatch(/The run is still going/);
      expect(partial.summary).toMatch(/\d of 9 scenes finished \(\d+%\)/);
      expect(partial.summary).toMatch(/ETA: about \d+ min more, around \S+Z \(an estimate/);
      const runId = partial.outputs["run-id"]!;

      // A collect cancelled mid-way stops nothing of the run.
      const second = newJob(ws.dir, { "collect-run-id": runId }).start("main", {
        timeoutMs: 60_000,
      });
      await second.waitForLine(/^collecting run /, 30_000);
      const cancelled = await second.cancel();
      expect(cancelled.stdout, context(cancelled)).toMatch(
        /collect cancelled \(SIGINT\); the run goes on/,
      );
      const post = await suite.jobs().at(-1)!.run("post");
      expect(post.stdout).toMatch(/^No cluster to tear down\.$/m);

      // The run finishes, followed to the end by the launching step.
      const main = await running.done;
      expect(main.code, context(main)).toBe(0);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", status: "success" });
      expectVersionedHistoryLinks(main.summary, 9);
      expect(main.outputs["run-id"]).toBe(runId);
      expect(await summaryWhen(ws, runId, "finished", 1000)).toMatchObject({
        totals: { succeeded: 9 },
      });
      await job.run("post");
    },
    RUN_TIMEOUT_MS,
  );
});

describe("followWithin: the follow budget", () => {
  /** A follow that runs until its signal aborts (then throws, as followDriver does). */
  const endless = (signal: AbortSignal) =>
    new Promise<number>((_, reject) =>
      signal.addEventListener("abort", () => reject(signal.reason), { once: true }),
    );

  it("no budget: the follow's own answer", async () => {
    const cancel = new AbortController();
    expect(await followWithin(undefined, cancel.signal, async () => 1)).toBe(1);
  });

  it("the budget spent: `budget spent`, not an error", async () => {
    const cancel = new AbortController();
    const start = Date.now();
    expect(await followWithin(0.002, cancel.signal, endless)).toBe("budget spent");
    expect(Date.now() - start).toBeGreaterThanOrEqual(100);
  });

  it("a cancel within the budget still throws", async () => {
    const cancel = new AbortController();
    setTimeout(() => cancel.abort(new Error("cancelled")), 20);
    await expect(followWithin(1, cancel.signal, endless)).rejects.toThrow("cancelled");
  });

  it("the driver ending within the budget: its exit status", async () => {
    const cancel = new AbortController();
    expect(await followWithin(1, cancel.signal, async () => 0)).toBe(0);
  });
});

function scene(name: string, status: SceneResult["status"], resumed = false): SceneResult {
  return {
    name,
    status,
    attempts: status === "PENDING" ? 0 : 1,
    exit_code: status === "SUCCESS" ? 0 : null,
    failure_class: null,
    duration_s: null,
    node: null,
    expected_cost: 1,
    resumed,
    outputs: { history: null, log: null, videos: [] },
    log_excerpt: null,
    history: [],
  };
}

function running(scenes: SceneResult[], startedAt: string, updatedAt: string): RunSummary {
  return {
    schema_version: 1,
    run_id: "r1",
    module: "demo",
    metadata: "level2",
    cluster_name: null,
    store: "s3://b",
    summary_key: "k",
    state: "running",
    started_at: startedAt,
    updated_at: updatedAt,
    finished_at: null,
    totals: { total: scenes.length, succeeded: 0, failed: 0, pending: 0, retried: 0 },
    scenes,
  };
}

describe("a partial report: progress and ETA", () => {
  const at = (iso: string) => Date.parse(iso);

  it("2 of 8 done in 1 h: about 3 h more, the finish time, and that it is an estimate", () => {
    const scenes = [
      scene("a", "SUCCESS"),
      scene("b", "FAILED"),
      ...Array.from({ length: 6 }, (_, i) => scene(`p${i}`, "PENDING")),
    ];
    const text = progressMarkdown(
      running(scenes, "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"),
      at("2026-01-01T11:01:00Z"),
    );
    expect(text).toMatch(/^### ⏳ The run is still going/);
    expect(text).toContain("2 of 8 scenes finished (25%) in 1 h 0 min since 2026-01-01T10:00:00Z");
    expect(text).toContain("ETA: about 3 h 0 min more, around 2026-01-01T14:00Z (an estimate");
    expect(text).not.toMatch(/is the driver still running/);
  });

  it("scenes a resume carried over count for neither the progress nor the ETA", () => {
    const scenes = [
      scene("r1", "SUCCESS", true),
      scene("r2", "SUCCESS", true),
      scene("a", "SUCCESS"),
      scene("p", "PENDING"),
    ];
    const text = progressMarkdown(
      running(scenes, "2026-01-01T10:00:00Z", "2026-01-01T10:10:00Z"),
      at("2026-01-01T10:10:00Z"),
    );
    expect(text).toContain("1 of 2 scenes finished (50%) in 10 min");
    expect(text).toContain("ETA: about 10 min more, around 2026-01-01T10:20Z");
  });

  it("nothing finished yet: no estimate; a summary not updated for long is called out", () => {
    const text = progressMarkdown(
      running([scene("p", "PENDING")], "2026-01-01T10:00:00Z", "2026-01-01T10:00:05Z"),
      at("2026-01-01T11:00:00Z"),
    );
    expect(text).toContain("ETA: no estimate yet: no scene has finished.");
    expect(text).toMatch(/\(1 h 0 min ago: is the driver still running\?\)/);
  });

  it("the status output: `running` while the summary says so, whatever the exit code", () => {
    expect(statusOf(1, { state: "running" })).toBe("running");
    expect(statusOf(0, { state: "finished" })).toBe("success");
    expect(statusOf(1, { state: "finished" })).toBe("failure");
    expect(statusOf(130, { state: "interrupted" })).toBe("interrupted");
  });
});
