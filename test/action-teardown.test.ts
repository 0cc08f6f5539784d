/**
 * The action's teardown, as the runner runs it (test/support/action-cases.ts): main cancelled or
 * killed mid-run, keep-cluster, and two runs of the same module and level at once.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeActionWorkspace, rayClientEnv } from "./support/cluster.js";
import { execCommand, rayProcessesOf, startSshd, waitForNoRayProcesses } from "./support/sshd.js";
import {
  actionCases,
  ROLE,
  runIdOf,
  clusterOf,
  summaryKey,
  LATEST_KEY,
  RUN_TIMEOUT_MS,
  SUBSET_NAMES,
  moto,
  proxy,
  node,
  started,
  newJob,
  workspace,
  traffic,
  expectNewClusterName,
  expectMasked,
  context,
  errors,
  leaks,
  progressByGroup,
  stateHistory,
  escape,
  type SummaryFile,
  expectNothingToTearDown,
} from "./support/action-cases.js";

describe("the action torn down: cancelled, killed, kept, side by side", () => {
  actionCases();

  it(
    "main cancelled mid-run: post re-assumes the role and tears the cluster down",
    async () => {
      const ws = await workspace();
      // 450 steps at 10 ms: the first scene ends after ~4.5 s, the rest ~7 s later.
      const job = newJob(ws, { inputs: { "mcs-config-overrides": "demo_step_seconds=0.01" } });
      const seen = traffic();
      const running = job.start("main");
      started.push(running);
      const [first] = await running.waitForLine(/^\[1\/9\] .*$/, 120_000);
      // Cancel the runner's way: SIGINT now, SIGTERM 7.5 s later if it is still there.
      const main = await running.cancel();
      const ctx = context(main);
      expect(main.code, ctx).not.toBe(0);
      // The step stopped the driver on the head and exited before the runner's SIGTERM.
      expect(main.signalsSent, ctx).toEqual(["SIGINT"]);
      expect(main.stdout).toMatch(/^mcs-follow: stopped 130\r?$/m);
      expect(first, ctx).toMatch(/^\[1\/9\] SUCCESS \S+ in /);
      expectNewClusterName(main);
      expect(errors(main).map((e) => e.message)).toContain(
        "cancelled (SIGINT); the post step tears the cluster down",
      );
      // It was cancelled mid-run: not every scene had finished.
      expect(progressByGroup(main.stdout).outside.length).toBeLessThan(9);
      expect(main.state).toMatchObject({
        "cluster-up": "true",
        "cluster-name": clusterOf(job),
      });
      expect(main.stdout).not.toMatch(/^::group::ray down$/m);
      expect(main.outputs.status).toBe("interrupted");
      // The step stopped the driver, and waited for it to save the summary as interrupted.
      const stored = JSON.parse(await ws.readObject(summaryKey(job))) as SummaryFile;
      expect(stored.state).toBe("interrupted");
      expect(stored.totals!.pending).toBeGreaterThan(0);
      expect(rayProcessesOf(node!).some((p) => /raylet/.test(p.command))).toBe(true);
      const mainTokens = seen.issued().map((t) => t.jwt);
      expect(mainTokens.length).toBeGreaterThan(0);
      expect(seen.assumes().length).toBeGreaterThan(0);
      expectMasked(main, seen);

      // Post: a fresh ID token, a new AssumeRoleWithWebIdentity with it, then `ray down`.
      const atPost = traffic();
      const post = await job.run("post");
      const postCtx = context(post);
      expect(post.code, postCtx).toBe(0);
      expect(post.annotations, postCtx).toEqual([]);
      const postTokens = atPost.issued();
      expect(postTokens.length).toBeGreaterThan(0);
      for (const t of postTokens) {
        expect(mainTokens).not.toContain(t.jwt);
        expect(t.audience).toBe("sts.amazonaws.com");
      }
      expect(atPost.assumes().length).toBeGreaterThan(0);
      expect(atPost.assumes().at(-1)).toMatchObject({ roleArn: ROLE, status: 200 });
      expect(proxy!.webIdentityTokens.at(-1)).toBe(postTokens.at(-1)!.jwt);
      expect(post.stdout).toMatch(/^::group::ray down mcs-demo-\S+$/m);
      expect(post.stdout).toContain(`Cluster ${clusterOf(job)} is torn down.`);
      expectMasked(post, atPost);

      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(job.leftovers()).toEqual([]);
      expect(leaks(job)).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "main killed mid-run (no chance to clean up): post stops the driver, then tears down",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { "mcs-config-overrides": "demo_step_seconds=0.01" } });
      const running = job.start("main");
      started.push(running);
      await running.waitForLine(/^\[1\/9\] /, 120_000);
      process.kill(running.pid, "SIGKILL"); // a lost runner process: main says nothing more
      const main = await running.done;
      expect(main.signal).toBe("SIGKILL");
      expect(main.state).toMatchObject({ "cluster-up": "true", driver: "started" });

      const post = await job.run("post");
      const ctx = context(post);
      expect(post.code, ctx).toBe(0);
      expect(post.annotations, ctx).toEqual([]);
      expect(post.stdout).toMatch(/^::group::Stopping the driver on the head node$/m);
      expect(post.stdout).toMatch(/^The driver: stopped 130\.$/m);
      expect(post.stdout).toContain(`Cluster ${clusterOf(job)} is torn down.`);
      // Nothing lost: the summary keeps what finished, and says the run was interrupted.
      const stored = JSON.parse(await ws.readObject(summaryKey(job))) as SummaryFile;
      expect(stored.state).toBe("interrupted");
      expect(stored.totals.succeeded).toBeGreaterThan(0);
      expect(stored.totals.pending).toBeGreaterThan(0);
      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(leaks(job)).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "two runs of the same module and level at once: each its own summary and report",
    async () => {
      // A second node for the second cluster; both runs write to one bucket, one folder.
      const other = await startSshd({ env: node!.env });
      try {
        const wsA = await workspace();
        const wsB = await makeActionWorkspace({
          node: other,
          s3Endpoint: moto!.url,
          bucket: wsA.bucket,
        });
        const scenes = path.join(wsB.dir, "scenes", "three");
        mkdirSync(scenes);
        const picked = SUBSET_NAMES.slice(0, 2);
        for (const name of picked) {
          cpSync(path.join(wsB.dir, "scenes", "subset", `${name}.json`), `${scenes}/${name}.json`);
        }
        const broken = "demo_broken_0002_01";
        writeFileSync(
          path.join(scenes, `${broken}.json`),
          JSON.stringify({ name: broken, goal: { last_step: 5 }, demo: { exit_code: 3 } }),
        );
        const jobA = newJob(wsA);
        const jobB = newJob(wsB, { inputs: { scenes: "scenes/three" } });
        const [a, b] = await Promise.all([jobA.run("main"), jobB.run("main")]);
        expect(a.code, context(a)).toBe(0);
        expect(b.code, context(b)).toBe(1);
        expect(a.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });
        expect(b.outputs).toMatchObject({ total: "3", succeeded: "2", failed: "1" });

        for (const [run, names] of [
          [a, SUBSET_NAMES],
          [b, [...picked, broken].sort()],
        ] as const) {
          const id = runIdOf(run.job);
          const stored = JSON.parse(await wsA.readObject(summaryKey(run.job))) as SummaryFile;
          expect(stored.run_id).toBe(id);
          expect(stored.scenes.map((s) => s.name).sort()).toEqual(names);
          const local = JSON.parse(readFileSync(run.outputs["summary-path"]!, "utf8"));
          expect(local).toEqual(stored);
          expect(run.summary).toContain(`## MCS run: demo · level2 · ${id}`);
          const rows = run.summary.match(/^\| `demo_\S+` \|/gm) ?? [];
          expect(rows.map((r) => /`(\S+)`/.exec(r)![1]).sort()).toEqual(names);
        }
        const latest = JSON.parse(await wsA.readObject(LATEST_KEY)) as { run_id: string };
        expect([runIdOf(jobA), runIdOf(jobB)]).toContain(latest.run_id);
        for (const job of [jobA, jobB]) await expectNothingToTearDown(job);
        expect(await waitForNoRayProcesses(other)).toEqual([]);
      } finally {
        await other.stop();
      }
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "keep-cluster: the step leaves the cluster up and says so; post leaves it, saying how to stop it",
    async () => {
      const ws = await workspace();
      const job = newJob(ws, { inputs: { "keep-cluster": "true" } });
      const main = await job.run("main");
      const ctx = context(main);
      expect(main.code, ctx).toBe(0);
      expect(errors(main), ctx).toEqual([]);
      const name = expectNewClusterName(main);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", status: "success" });
      expect(main.stdout).toMatch(/^::group::ray up$/m);
      expect(main.stdout).not.toMatch(/^::group::ray down/m);
      expect(main.stdout).toMatch(
        new RegExp(
          `^keep-cluster: cluster ${escape(name)} is left running \\(not torn down\\)$`,
          "m",
        ),
      );
      // The state says the cluster is up, and kept: post must not take it down.
      expect(main.state).toMatchObject({
        "cluster-name": name,
        "cluster-up": "true",
        "keep-cluster": "true",
      });
      expect(stateHistory(main, "cluster-up")).toEqual(["true"]);
      const running = () =>
        rayProcessesOf(node!).filter((p) => /raylet|gcs_server/.test(p.command));
      expect(running().length, "Ray on the head after the step").toBeGreaterThan(0);

      // Post: a notice naming the cluster and the command that stops it; no teardown, no AWS.
      const seen = traffic();
      const post = await job.run("post");
      const postCtx = context(post);
      expect(post.code, postCtx).toBe(0);
      expect(post.annotations, postCtx).toHaveLength(1);
      const [notice] = post.annotations;
      expect(notice!.command).toBe("notice");
      expect(notice!.message).toMatch(
        new RegExp(`^keep-cluster: ${escape(name)} was left running`),
      );
      expect(notice!.message).toContain(`ray down -y ${main.state["cluster-yaml"]}`);
      expect(post.stdout).not.toMatch(/^::group::ray down/m);
      expect(post.stdout).not.toMatch(/is torn down/);
      expect(seen.oidc()).toEqual([]);
      expect(seen.sts()).toEqual([]);
      expect(running().length, "Ray on the head after the post step").toBeGreaterThan(0);
      expect(leaks(job)).toEqual([]);

      // What the notice says, done by the test: `ray down` with the job's client-side state.
      const down = await execCommand(main.state.ray!, ["down", "-y", main.state["cluster-yaml"]!], {
        env: { ...rayClientEnv(node!), TMPDIR: job.tmp },
        timeoutMs: 120_000,
      });
      expect(down.code, `${down.stdout}\n${down.stderr}`).toBe(0);
      expect(await waitForNoRayProcesses(node!)).toEqual([]);
      expect(job.leftovers()).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );
});
