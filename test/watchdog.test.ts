/**
 * The head node's watchdog (pipeline/watchdog.py, installed by the plan's cluster YAML), with the
 * action run as the runner runs it (test/support/runner.ts) against loopback AWS and OIDC and a
 * Ray cluster brought up by `ray up` on the sshd fixture (as test/action.test.ts does):
 *  - the runner is lost mid-run (the step and everything it started SIGKILLed, no post step):
 *    the driver finishes its run, then the watchdog tears the cluster down within its bound and
 *    says why in its log on the head; nothing is left on the node;
 *  - the runner follows a run longer than the bound: the watchdog never acts, the step tears the
 *    cluster down itself, and the watchdog exits on its own.
 * The decision itself, condition by condition, is pipeline/tests/test_watchdog.py's.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { watchdogLogPath } from "../src/cluster.js";
import { makeActionWorkspace } from "./support/cluster.js";
import { actionSuite } from "./support/action-suite.js";
import { demoJob, nodeAwsEnv } from "./support/loopback.js";
import type { ActionRun } from "./support/runner.js";
import { waitForNoRayProcesses, type SshdFixture } from "./support/sshd.js";

/** The watchdog's idle bound in these tests: 15 s. */
const IDLE_MINUTES = 0.25;
const IDLE_MS = IDLE_MINUTES * 60_000;
const RUN_TIMEOUT_MS = 240_000;
const ACTED = /tearing the cluster down/;

const suite = actionSuite();
/** The running test's node: the suite stops it after each test, whatever happened. */
let node: SshdFixture | undefined;

/**
 * A job of the demo module (scenes/subset, us-east-1: the action's defaults) on a node of its
 * own, with the watchdog's short bound and `inputs`.
 */
async function newJob(inputs: Record<string, string>) {
  node = await suite.startNode({ env: nodeAwsEnv(suite.aws().moto.url) });
  const ws = await makeActionWorkspace({ node, s3Endpoint: suite.aws().moto.url });
  const job = demoJob(suite.aws(), ws.dir, {
    "watchdog-idle-minutes": String(IDLE_MINUTES),
    ...inputs,
  });
  suite.track(job);
  return { job, ws };
}

/** The watchdog's log on the head (the fixture's home is a directory of this machine). */
function watchdogLog(run: ActionRun): string {
  const file = path.join(node!.home, watchdogLogPath(run.state["cluster-name"]!));
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}

function context(run: ActionRun, log = watchdogLog(run)): string {
  return `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}\n--- watchdog.log\n${log}`;
}

/** `pid` and every process below it, parents first (from /proc's children lists). */
function processTree(pid: number): number[] {
  const children = (p: number) =>
    readdirSync(`/proc/${p}/task`).flatMap((task) =>
      readFileSync(`/proc/${p}/task/${task}/children`, "utf8").split(/\s+/).filter(Boolean),
    );
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    try {
      all.push(...children(all[i]!).map(Number));
    } catch {
      // exited while we looked
    }
  }
  return all;
}

describe("the head's watchdog, with the action as the runner runs it", () => {
  it(
    "the runner is lost mid-run (SIGKILL, no post step): the watchdog tears the cluster down and says why",
    async () => {
      // 450 steps at 10 ms: the first scene ends after ~4.5 s, the rest ~7 s later.
      const { job, ws } = await newJob({ "mcs-config-overrides": "demo_step_seconds=0.01" });
      const running = job.start("main");
      await running.waitForLine(/^\[1\/9\] /, 120_000);
      // The runner dies: the step and everything it started, SIGKILLed by PID, all at once.
      const tree = [
        ...new Set([...processTree(running.pid), ...job.leftovers().map((p) => p.pid)]),
      ];
      for (const pid of tree) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
      const lostAt = Date.now();
      const main = await running.done;
      expect(main.signal).toBe("SIGKILL");
      expect(main.state).toMatchObject({ "cluster-up": "true", driver: "started" });
      expect(job.leftovers()).toEqual([]);

      // The bound: the rest of the run (~7 s), then the idle bound, then `ray down` and `ray stop`.
      const left = await waitForNoRayProcesses(node!, IDLE_MS + 75_000);
      const log = watchdogLog(main);
      const ctx = context(main, log);
      expect(left, ctx).toEqual([]);
      expect(Date.now() - lostAt).toBeLessThan(IDLE_MS + 75_000);

      // Why, with the figures: it acted within a poll or two of the bound.
      const acted =
        /^\S+ driver finished ([\d.]+) min ago and nobody has followed for ([\d.]+) min \(limit 0\.25 min\): tearing the cluster down$/m.exec(
          log,
        );
      expect(acted, ctx).not.toBeNull();
      expect(Number(acted![2])).toBeGreaterThanOrEqual(IDLE_MINUTES);
      expect(Number(acted![2])).toBeLessThanOrEqual(0.4);
      // What it did: the cluster's `ray down` on the head's bootstrap config, then `ray stop`.
      const after = log.slice(acted!.index);
      expect(after).toMatch(/^\S+ \$ \S*ray down -y \S*\/ray_bootstrap_config\.yaml$/m);
      expect(after).toMatch(/^\S+ ray down exited 0$/m);
      expect(after).toMatch(/^\S+ ray stop exited 0$/m);
      expect(after.trimEnd()).toMatch(/ done: exiting$/);
      expect(log.match(ACTED)).toHaveLength(1);

      // Nothing was lost: the driver finished its run before the watchdog acted.
      const key = (await ws.listKeys()).find((k) => k.endsWith("_run-summary.json"));
      const summary = JSON.parse(await ws.readObject(key!)) as {
        state: string;
        totals: { succeeded: number };
      };
      expect(summary).toMatchObject({ state: "finished", totals: { succeeded: 9 } });
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "the runner follows a run longer than the bound: the watchdog never acts, and exits after the step's ray down",
    async () => {
      // 30 ms steps: ~1 min of scenes, four times the idle bound.
      const { job } = await newJob({ "mcs-config-overrides": "demo_step_seconds=0.03" });
      const main = await job.run("main", { timeoutMs: 200_000 });
      expect(main.code, context(main)).toBe(0);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", status: "success" });
      expect(main.ms).toBeGreaterThan(2 * IDLE_MS);
      expect(main.stdout).toMatch(/^::group::ray down$/m);
      expect(main.state["cluster-up"]).toBe("false");

      // The step's `ray down` stopped Ray on the node: the watchdog saw it and exited.
      const left = await waitForNoRayProcesses(node!);
      const log = watchdogLog(main);
      const ctx = context(main, log);
      expect(left, ctx).toEqual([]);
      expect(log, ctx).toMatch(
        /^\S+ watchdog \d+ for cluster \S+: tears it down when the driver has finished and nobody has followed for 0\.25 min, .* or at 390 min /m,
      );
      expect(log, ctx).not.toMatch(ACTED);
      expect(log.trimEnd(), ctx).toMatch(
        / Ray has stopped on this node \(the cluster was torn down\): exiting$/,
      );

      const post = await job.run("post");
      expect(post.stdout).toMatch(/^No cluster to tear down\.$/m);
      expect(job.leftovers()).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );
});
