/**
 * The action over a long run, as the runner runs it (test/support/action-cases.ts): credentials
 * renewed over several lifetimes, and the follow reconnecting after SSH drops.
 */
import { describe, expect, it } from "vitest";
import { dropConnections } from "./support/sshd.js";
import {
  actionCases,
  FOLDER,
  summaryKey,
  CREDENTIAL_LIFETIME_S,
  RUN_TIMEOUT_MS,
  SUBSET_NAMES,
  node,
  started,
  newJob,
  workspace,
  traffic,
  expectMasked,
  context,
  progressByGroup,
  type SummaryFile,
  expectCleanEnd,
} from "./support/action-cases.js";

describe("the action over long runs: credential renewal and SSH drops", () => {
  actionCases();

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
});
