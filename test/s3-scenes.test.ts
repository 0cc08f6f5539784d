/**
 * An s3:// scene set in the action, run as the runner runs it (test/support/runner.ts) against
 * loopback AWS and OIDC and a Ray cluster brought up by `ray up` on the sshd fixture: 200 scenes
 * stored in moto are listed by the step with the role's credentials (a dry run too) and fetched
 * by the head node itself with its own AWS settings (nodeAwsEnv, as an instance profile). The
 * runner never holds a scene: none anywhere under the job's RUNNER_TEMP, none in the directory
 * the workflow uploads as the artifact (RUNNER_TEMP/mcs-pipeline).
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { actionSuite } from "./support/action-suite.js";
import { makeActionWorkspace } from "./support/cluster.js";
import { demoJob, nodeAwsEnv } from "./support/loopback.js";
import type { ActionRun } from "./support/runner.js";
import { sceneFilesUnder, storeScenes } from "./support/scene-set.js";

const COUNT = 200;
const RUN_TIMEOUT_MS = 420_000;

const context = (run: ActionRun) =>
  `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout.slice(-6000)}\n--- stderr\n${run.stderr}`;

describe("an s3:// scene set in the action", () => {
  const suite = actionSuite();

  it(
    `lists ${COUNT} scenes in S3 and the head runs them; no scene is ever on the runner`,
    async () => {
      const aws = suite.aws();
      const node = await suite.startNode({ env: nodeAwsEnv(aws.moto.url) });
      const ws = await makeActionWorkspace({ node, s3Endpoint: aws.moto.url });
      const bucket = `mcs-scenes-${randomBytes(4).toString("hex")}`;
      const names = await storeScenes(aws.moto.url, bucket, "eval-7/full", COUNT);
      const scenes = `s3://${bucket}/eval-7/full/`;
      const job = (inputs: Record<string, string>) =>
        suite.track(demoJob(aws, ws.dir, { scenes, ...inputs }));

      // A dry run lists the set with the role's credentials and shows it.
      const dry = await job({ "dry-run": "true" }).run("main", { timeoutMs: 120_000 });
      expect(dry.code, context(dry)).toBe(0);
      expect(dry.outputs).toMatchObject({ total: String(COUNT), status: "planned" });
      expect(dry.stdout).toMatch(new RegExp(`scenes: +${COUNT} in ${scenes} \\(`));
      expect(dry.summary).toContain(`In \`${scenes}\``);
      // Without a role it says so, naming the input and the fix, before anything starts.
      const blind = await job({ "dry-run": "true", "role-to-assume": "" }).run("main", {
        timeoutMs: 60_000,
      });
      expect(blind.code).not.toBe(0);
      expect(blind.stdout).toContain(
        `::error::input scenes: ${scenes} could not be listed without AWS credentials: give role-to-assume`,
      );

      const eval_ = job({ "mcs-config-overrides": "demo_step_seconds=0" });
      const main = await eval_.run("main", { timeoutMs: RUN_TIMEOUT_MS - 60_000 });
      expect(main.code, context(main)).toBe(0);
      expect(main.outputs).toMatchObject({
        total: String(COUNT),
        succeeded: String(COUNT),
        status: "success",
      });
      expect(main.stdout).toContain(`mcs-pipeline: fetched ${COUNT} scenes`);
      const post = await eval_.run("post");
      expect(post.code, context(post)).toBe(0);

      const key = (await ws.listKeys()).find((k) => k.endsWith("_run-summary.json"));
      const summary = JSON.parse(await ws.readObject(key!)) as {
        totals: { succeeded: number };
        scenes: { name: string }[];
      };
      expect(summary.totals.succeeded).toBe(COUNT);
      expect(summary.scenes.map((s) => s.name).sort()).toEqual(names);

      // The runner never held a scene: not in RUNNER_TEMP, not in the artifact's directory.
      for (const j of suite.jobs()) {
        expect(sceneFilesUnder(j.runnerTemp, names)).toEqual([]);
        expect(sceneFilesUnder(path.join(j.runnerTemp, "mcs-pipeline"), names)).toEqual([]);
      }
    },
    RUN_TIMEOUT_MS,
  );
});
