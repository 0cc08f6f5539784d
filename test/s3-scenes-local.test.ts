/**
 * An s3:// scene set on the local CLI, as users run it against any S3-compatible store:
 * `node dist/cli/index.js run --module demo --scenes s3://bucket/prefix/` with AWS_ENDPOINT_URL
 * naming a moto server holding 200 scenes. The driver fetches them itself: no scene reaches the
 * run's directory (its plan included), and the report has all 200.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSummary } from "../src/summary.js";
import { runCli } from "./support/cli.js";
import { startMoto, TEST_KEYS, TEST_REGION, type MotoServer } from "./support/moto.js";
import { sceneFilesUnder, storeScenes } from "./support/scene-set.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const COUNT = 200;
const BUCKET = "mcs-private-scenes";
const PREFIX = "eval-7/full";

let moto: MotoServer;
beforeAll(async () => {
  moto = await startMoto();
}, 60_000);
afterAll(async () => {
  await moto?.stop();
  removeTemps();
});

describe("e2e: the local CLI runs an s3:// scene set", () => {
  it(`runs ${COUNT} scenes from s3:// and never holds a scene file`, async () => {
    const names = await storeScenes(moto.url, BUCKET, PREFIX, COUNT);
    const out = makeTemp("mcs-s3-e2e-");
    const env = {
      AWS_ENDPOINT_URL: moto.url,
      AWS_ACCESS_KEY_ID: TEST_KEYS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_KEYS.secretAccessKey,
      AWS_REGION: TEST_REGION,
      AWS_DEFAULT_REGION: TEST_REGION,
    };
    const uri = `s3://${BUCKET}/${PREFIX}/`;
    const cli = (args: string[], timeoutMs: number) =>
      runCli([...args, "--module", "demo", "--scenes", uri, "--out", out], REPO, timeoutMs, env);

    const plan = await cli(["plan"], 60_000);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(new RegExp(`scenes: +${COUNT} in ${uri} \\(`));

    const result = await cli(["run", "--num-cpus", "2"], 280_000);
    const context = `exit ${result.code}\nstdout:\n${result.stdout.slice(-3000)}\nstderr:\n${result.stderr}`;
    expect(result.code, context).toBe(0);
    expect(result.stdout).toContain(`mcs-pipeline: fetched ${COUNT} scenes`);
    const reportPath = /^report: (.+)$/m.exec(result.stdout)![1]!;
    const runDir = path.dirname(reportPath);
    const runId = path.basename(runDir);
    const summaryPath = path.join(
      out,
      "store",
      "demo-eval",
      `demo-eval_level2_demo_${runId}_run-summary.json`,
    );
    const summary = parseSummary(readFileSync(summaryPath, "utf8"), summaryPath);
    expect(summary.totals).toMatchObject({ total: COUNT, succeeded: COUNT, failed: 0 });
    expect(summary.scenes.map((s) => s.name).sort()).toEqual(names);
    expect(readFileSync(reportPath, "utf8")).toMatch(new RegExp(`\\b${COUNT}\\b`));
    // The driver read goal.last_step and goal.category from S3 itself.
    expect(new Set(summary.scenes.map((s) => s.expected_cost))).toEqual(
      new Set([1, 2, 3, 4, 5, 6, 7]),
    );
    expect(new Set(summary.scenes.map((s) => s.category))).toEqual(new Set(["retrieval"]));
    // The plan names each scene's URI; no scene anywhere in the run's directory.
    const planFile = JSON.parse(readFileSync(path.join(runDir, "plan", "plan.json"), "utf8"));
    expect(planFile.scenes[0].uri).toBe(`${uri}${names[0]}.json`);
    expect(readdirSync(path.join(runDir, "plan", "scenes"))).toEqual([]);
    expect(sceneFilesUnder(path.join(out, "runs"), names)).toEqual([]);
  }, 300_000);
});
