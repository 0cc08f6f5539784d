/**
 * The engine's own checks between the run and the report, with the local target's driver replaced
 * by a stand-in that leaves a summary in the store (no Ray runs; Ray must be installed in .venv).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { evaluate, type Environment } from "../src/engine.js";
import { EnvironmentError } from "../src/errors.js";
import type { Plan } from "../src/plan.js";
import { parseRequest } from "../src/request.js";
import { localTarget } from "../src/targets/local.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

const env: Environment = {
  toolRoot: REPO,
  workspace: REPO,
  venvDir: process.env.MCS_VENV ?? path.join(REPO, ".venv"),
  log: () => undefined,
};

/** A finished run summary with no scenes, as the driver writes it, claiming to be `runId`'s. */
function summaryText(plan: Plan, runId: string): string {
  const now = new Date().toISOString();
  return JSON.stringify({
    schema_version: 1,
    run_id: runId,
    module: plan.module,
    metadata: plan.metadata,
    cluster_name: null,
    store: plan.store,
    summary_key: plan.summary_key,
    state: "finished",
    started_at: now,
    updated_at: now,
    finished_at: now,
    totals: { total: 0, succeeded: 0, failed: 0, pending: 0, retried: 0 },
    scenes: [],
  });
}

/** Evaluates with a driver stand-in that leaves the summary of run `writtenBy(plan)`. */
async function evaluateLeaving(writtenBy: (plan: Plan) => string) {
  const target = localTarget(makeTemp("mcs-engine-"), undefined);
  target.run = async (plan) => {
    const file = path.join(plan.store, plan.summary_key);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, summaryText(plan, writtenBy(plan)));
  };
  const request = parseRequest({ module: "demo" }, "local");
  return evaluate(request, env, target, { progress: () => undefined });
}

describe("evaluate: a report always describes its own run", () => {
  it("reports the summary that carries the plan's run id", async () => {
    const outcome = await evaluateLeaving((plan) => plan.run_id);
    expect(outcome.summary!.run_id).toBe(outcome.plan.run_id);
    expect(outcome.markdown).toContain(`## MCS run: demo · level2 · ${outcome.plan.run_id}`);
  }, 60_000);

  it("fails clearly when the summary at the run's key is another run's", async () => {
    let planned: Plan | undefined;
    const error = await evaluateLeaving((plan) => ((planned = plan), "20260101-000000-0000")).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EnvironmentError);
    const file = path.join(planned!.store, planned!.summary_key);
    expect((error as Error).message).toBe(
      `the run summary at ${file} belongs to run 20260101-000000-0000, not to this run (${planned!.run_id}); no report is made from another run's results`,
    );
  }, 60_000);
});
