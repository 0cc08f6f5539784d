/**
 * The action on a multi-node cluster (test/support/multinode-suite.ts): a head and two workers.
 *
 * What only many nodes show: deploy files reaching workers through `file_mounts`, scenes landing
 * on workers, and a worker lost mid-run (its Ray processes SIGKILLed by PID inside that node, as a
 * spot interruption ends them): its scenes run again elsewhere as `node_lost`, without using the
 * scenes' own retries.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  context,
  expectCost,
  expectEachSucceededOnce,
  expectNothingLeft,
  multinodeSuite,
  newJob,
  nodes,
  RUN_TIMEOUT_MS,
  storedSummary,
  workspace,
} from "./support/multinode-suite.js";
import { rayProcessesOf } from "./support/sshd.js";
import type { TestNodes } from "./support/multinode.js";

describe("the action on a head and two workers", () => {
  multinodeSuite();

  it(
    "scenes run on all three nodes, the workers get the deploy files, nothing is left",
    async () => {
      const testStart = Date.now();
      const ws = await workspace();
      const job = newJob(ws);
      const main = await job.run("main", { timeoutMs: RUN_TIMEOUT_MS });
      expect(main.code, context(main)).toBe(0);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });

      const summary = await storedSummary(ws, main);
      expectEachSucceededOnce(main, summary);
      expect(summary.scenes.every((s) => s.attempts === 1)).toBe(true);
      const used = new Set(summary.scenes.map((s) => s.node));
      expect([...used].sort()).toEqual(nodes!.all.map((n) => n.host).sort());
      expectCost(main, summary, testStart);

      // file_mounts: the head's autoscaler synced the deploy files to each worker's home.
      const cluster = main.outputs["cluster-name"]!;
      for (const worker of nodes!.workers) {
        expect(existsSync(path.join(worker.home, cluster, "deploy", "ray_script.sh"))).toBe(true);
      }
      await expectNothingLeft(job);
    },
    RUN_TIMEOUT_MS + 60_000,
  );

  it(
    "a worker lost mid-run: its scenes run again elsewhere as node_lost, each succeeds once",
    async () => {
      const ws = await workspace();
      // No retries at all: a scene lost with its node still runs again, for that is the
      // machine's failure, not the scene's.
      const job = newJob(ws, "0");
      const main = job.start("main", { timeoutMs: RUN_TIMEOUT_MS });
      // The moment a worker plays a scene, its machine "dies": every process Ray started there.
      const [victim, killed] = await new Promise<[TestNodes["workers"][number], number[]]>(
        (resolve, reject) => {
          const timer = setInterval(() => {
            for (const worker of nodes!.workers) {
              const procs = rayProcessesOf(worker);
              if (!procs.some((p) => p.command.includes("play_scene.py"))) continue;
              clearInterval(timer);
              const pids = procs.map((p) => p.pid);
              for (const pid of pids) {
                try {
                  process.kill(pid, "SIGKILL");
                } catch {
                  // exited meanwhile
                }
              }
              resolve([worker, pids]);
              return;
            }
          }, 100);
          void main.done.then(() => {
            clearInterval(timer);
            reject(new Error(`main ended before a worker ran a scene:\n${main.stdout()}`));
          });
        },
      );
      expect(killed.length).toBeGreaterThan(2);
      const run = await main.done;
      expect(run.code, context(run)).toBe(0);
      expect(run.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });

      const summary = await storedSummary(ws, run);
      expect(summary.state).toBe("finished");
      expectEachSucceededOnce(run, summary);
      const lost = summary.scenes.filter((s) =>
        s.history.some((h) => h.failure_class === "node_lost"),
      );
      expect(lost.length, context(run)).toBeGreaterThan(0);
      for (const scene of lost) {
        // Lost, then run again on a node still up; the scene's own retry was never needed.
        expect(scene.history.map((h) => h.failure_class)).toEqual(["node_lost", null]);
        expect(scene.node).not.toBe(victim.host);
        expect(run.stdout).toContain(
          `retrying ${scene.name} after node_lost (attempt 2; a lost node uses none of the scene's retries)`,
        );
      }
      await expectNothingLeft(job);
    },
    RUN_TIMEOUT_MS + 60_000,
  );
});
