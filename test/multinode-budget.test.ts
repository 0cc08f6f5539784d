/**
 * Time and money on a multi-node cluster (test/support/multinode-suite.ts): a deadline sizes the
 * cluster from the previous run, and a budget stops the driver starting scenes.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  context,
  expectNothingLeft,
  FOLDER,
  multinodeSuite,
  newJob,
  previousRun,
  RUN_TIMEOUT_MS,
  storedSummary,
  workspace,
  type SummaryFile,
} from "./support/multinode-suite.js";

describe("deadline and budget on a head and two workers", () => {
  multinodeSuite();

  it(
    "a deadline sizes the cluster from the previous run: too short is refused, 60 min starts one worker",
    async () => {
      const ws = await workspace();
      // Nine 10-minute scenes last time. One slot a node, workers booting like the head (60 s):
      // head alone 91 min, one worker 51 min, two 32 min.
      await previousRun(ws, 600);
      const dryJob = newJob(ws);
      const dry = await dryJob.run("main", {
        inputs: { "dry-run": "true", "deadline-minutes": "60", "budget-usd": "5" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(dry.code, context(dry)).toBe(0);
      expect(dry.summary).toContain("### Estimate");
      expect(dry.summary).toContain(
        "**51m 00s** (51m 00s–51m 00s) for **$0.82** ($0.82–$0.82) with 1 worker.",
      );
      expect(dry.summary).toContain("| 1 | 51m 00s | 51m 00s–51m 00s | $0.82 ($0.82–$0.82) |");
      expect(dry.summary).toContain("| 2 | 32m 00s |");
      expect(dry.summary).toMatch(/\| 4 \(over max_workers 2\) \| 22m 00s \|/);
      expect(dry.summary).toContain("Deadline: 60 min: the cluster starts 1 worker at once");
      // The rendered YAML: an on-premise cluster takes both counts from the top level.
      const rendered = parse(
        readFileSync(
          path.join(
            dryJob.runnerTemp,
            "mcs-pipeline",
            dry.outputs["run-id"]!,
            "plan",
            "cluster.yaml",
          ),
          "utf8",
        ),
      ) as { max_workers: number; min_workers: number };
      expect([rendered.min_workers, rendered.max_workers]).toEqual([1, 1]);

      const tooShort = await newJob(ws).run("main", {
        inputs: { "dry-run": "true", "deadline-minutes": "20" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(tooShort.code, context(tooShort)).toBe(1);
      expect(tooShort.annotations.map((a) => `${a.command}: ${a.message}`)).toEqual([
        "error: input deadline-minutes: 20 min cannot be met with the 2 workers the cluster YAML allows: the estimate needs 8 (12m 00s); raise max_workers (and the vCPU quota) or allow more time",
      ]);
      const overBudget = await newJob(ws).run("main", {
        inputs: { "deadline-minutes": "60", "budget-usd": "0.5" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(overBudget.code, context(overBudget)).toBe(1);
      expect(overBudget.annotations.map((a) => a.message)).toEqual([
        expect.stringMatching(
          /^input budget-usd: the run is estimated at \$0\.82 \(\$0\.82–\$0\.82\) with 1 worker, over the budget of \$0\.50: raise it/,
        ),
      ]);
      expect(overBudget.state["cluster-up"], "nothing started").toBeUndefined();

      // The real run: one worker, started with the head (min_workers), and no more.
      const job = newJob(ws);
      const main = await job.run("main", {
        inputs: { "deadline-minutes": "60" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(main.code, context(main)).toBe(0);
      expect(main.summary.indexOf("### Estimate"), "the estimate before the report").toBe(0);
      const summary = JSON.parse(
        await ws.readObject(
          `${FOLDER}/demo-eval_level2_demo_${main.outputs["run-id"]}_run-summary.json`,
        ),
      ) as SummaryFile;
      expect(
        summary.nodes!.filter((n) => !n.head),
        context(main),
      ).toHaveLength(1);
      expect(new Set(summary.scenes.map((s) => s.node)).size).toBeLessThanOrEqual(2);
      await expectNothingLeft(job);
    },
    2 * RUN_TIMEOUT_MS,
  );

  it(
    "a budget: the driver starts no scene past it, ends interrupted with the reason; resume finishes",
    async () => {
      // $36 an hour a node: a cent a second, so the run passes $0.30 within seconds.
      const ws = await workspace(36);
      const job = newJob(ws);
      const main = await job.run("main", {
        inputs: { "budget-usd": "0.3" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(main.code, context(main)).toBe(1);
      expect(main.outputs.status).toBe("interrupted");
      const summary = (await storedSummary(ws, main)) as SummaryFile & {
        stop_reason?: string;
        budget_usd?: number;
      };
      expect(summary.state).toBe("interrupted");
      expect(summary.budget_usd).toBe(0.3);
      expect(summary.stop_reason, context(main)).toMatch(
        /^budget: \S+ spent, .* would pass the budget of \$0\.30; \d+ scenes? not started \(run again with resume to continue\)$/,
      );
      expect(main.summary).toContain(`Stopped by the ${summary.stop_reason}`);
      // Running scenes finished; the rest never started.
      const pending = summary.scenes.filter((s) => s.status === "PENDING");
      expect(pending.length).toBeGreaterThan(0);
      for (const scene of summary.scenes) {
        if (scene.status === "PENDING") expect(scene.attempts).toBe(0);
        else expect(scene.status).toBe("SUCCESS");
      }
      await expectNothingLeft(job);

      const resumed = newJob(ws);
      const again = await resumed.run("main", {
        inputs: { resume: "true" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(again.code, context(again)).toBe(0);
      expect(again.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });
      await expectNothingLeft(resumed);
    },
    2 * RUN_TIMEOUT_MS,
  );
});
