/**
 * The action end to end, as the runner runs it (test/support/action-cases.ts): a clean run, a
 * failing scene, the errors before any cluster starts, a matrix and the dry run.
 *
 * Every case ends with no Ray process left on the node and none left by the steps, and no
 * credential or token in any log, output, state, GITHUB_ENV, job summary or file of the job.
 */
import { randomInt } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { jwtClaims } from "./support/oidc.js";
import { waitForNoRayProcesses } from "./support/sshd.js";
import {
  actionCases,
  ROLE,
  UNTRUSTED_ROLE,
  REGION,
  FOLDER,
  PREFIX,
  runIdOf,
  summaryKey,
  LATEST_KEY,
  CONSOLE,
  RUN_TIMEOUT_MS,
  SHORT_TIMEOUT_MS,
  SUBSET_NAMES,
  proxy,
  node,
  clusterNames,
  newJob,
  workspace,
  traffic,
  watchNode,
  expectNewClusterName,
  expectMasked,
  context,
  errors,
  filesUnder,
  leaks,
  progressByGroup,
  stateHistory,
  escape,
  objectHref,
  type SummaryFile,
  expectNothingToTearDown,
  expectCleanEnd,
  expectNothingStarted,
} from "./support/action-cases.js";

describe("the action, as the runner runs it, against loopback AWS, OIDC and a real Ray cluster", () => {
  actionCases();

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
