/**
 * A team module with the real MCS package on a multi-node cluster
 * (test/support/multinode-suite.ts): outputs, failures and node services on every node.
 */
import { appendFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  aws,
  context,
  expectNothingLeft,
  jobs,
  mkdirp,
  multinodeSuite,
  nodes,
  RUN_TIMEOUT_MS,
  serviceDirs,
  type SummaryFile,
} from "./support/multinode-suite.js";
import { makeActionWorkspace } from "./support/cluster.js";
import { demoJob } from "./support/loopback.js";
import { makeTeamWorkspace } from "./support/mcsteam.js";

describe("a team module on a head and two workers", () => {
  multinodeSuite();

  it(
    "a team module with the real MCS package: outputs, failures and node services on every node",
    async () => {
      const team = makeTeamWorkspace({
        runScript: "ray_script_service.sh",
        awsConfig: { scene_end_grace_seconds: 3 },
      });
      const scenes = path.join(team.dir, "scenes", "run");
      const names = [
        "mcsteam/mcsteam_gravity_0001_01",
        "mcsteam/mcsteam_gravity_0001_02",
        "mcsteam/mcsteam_retrieval_0001_01",
        "mcsteam/collision-variant-a",
        "mcsteam-faults/mcsteam_fault_xserver_0001_01",
        "mcsteam-faults/mcsteam_fault_crash_0001_01",
        "mcsteam-faults/mcsteam_fault_hang_0001_01",
      ];
      for (const name of names) {
        const file = path.join(team.dir, "scenes", `${name}.json`);
        writeFileSync(path.join(mkdirp(scenes), path.basename(file)), readFileSync(file));
      }
      const ws = await makeActionWorkspace({
        node: nodes!.head,
        s3Endpoint: aws!.moto.url,
        module: "mcsteam",
        cluster: { workers: nodes!.workers, numCpus: 1 },
        dir: team.dir,
      });
      // Each node as a team image with Ray set up on it: the image's python on PATH, and the
      // plan's Ray venv put first by ~/.bashrc (src/cluster.ts does so on AWS).
      const rcs = nodes!.all.map((n) => path.join(n.home, ".bashrc"));
      const saved = rcs.map((rc) => readFileSync(rc, "utf8"));
      rcs.forEach((rc) =>
        appendFileSync(
          rc,
          `export PATH="${team.imageBin}:$PATH"\nexport PATH="${nodes!.head.venv}/bin:$PATH"\n`,
        ),
      );
      for (const dir of serviceDirs()) rmSync(dir, { recursive: true, force: true });
      try {
        const job = demoJob(aws!, ws.dir, {
          module: "mcsteam",
          metadata: "level1",
          scenes: "scenes/run",
          retries: "1",
        });
        jobs.push(job);
        const main = await job.run("main", { timeoutMs: RUN_TIMEOUT_MS });
        expect(main.code, context(main)).toBe(1); // the crash and the hang fail
        expect(main.outputs).toMatchObject({ total: "7", succeeded: "5", failed: "2" });

        const key = (await ws.listKeys("mcsteam-eval/")).find((k) =>
          k.endsWith("_run-summary.json"),
        );
        const summary = JSON.parse(await ws.readObject(key!)) as SummaryFile & {
          scenes: { outputs: { history: string | null; log: string | null; videos: string[] } }[];
        };
        const byName = new Map(summary.scenes.map((s) => [s.name, s]));
        const crash = byName.get("mcsteam_fault_crash_0001_01")!;
        expect(crash.history.map((h) => h.failure_class)).toEqual(["performer_crash"]);
        // Hung after MCS's inactivity end: MCS's history kept, not run again.
        const hang = byName.get("mcsteam_fault_hang_0001_01")!;
        expect(hang.history.map((h) => h.failure_class)).toEqual(["inactivity"]);
        const xserver = byName.get("mcsteam_fault_xserver_0001_01")!;
        expect(xserver.history.map((h) => h.failure_class)).toEqual(["xserver", null]);

        // One set per scene, at the original names, the final attempt's.
        const prefix = "eval7_level1_mcsteam";
        const keys = await ws.listKeys("");
        for (const scene of summary.scenes) {
          const base = `${prefix}_${scene.name.replace(/\.json$/, "")}`;
          expect(keys.filter((k) => k.startsWith(`mcsteam-eval/${base}.`))).toEqual([
            `mcsteam-eval/${base}.json`,
          ]);
          expect(keys.filter((k) => k.startsWith(`mcsteam-eval-movies/${base}_`)).sort()).toEqual(
            ["depth", "segmentation", "visual"].map((t) => `mcsteam-eval-movies/${base}_${t}.mp4`),
          );
          const history = JSON.parse(await ws.readObject(scene.outputs.history!)) as {
            info: { timestamp: string };
          };
          expect(scene.outputs.log).toBe(`mcsteam-eval/${base}_${history.info.timestamp}_log.txt`);
        }

        // Node services: started once on each node that ran scenes, used by all its scenes.
        const logs = serviceDirs().map((d) => readFileSync(path.join(d, "services.log"), "utf8"));
        const used = new Set(summary.scenes.flatMap((s) => s.history.map((h) => h.node)));
        expect(logs.length, context(main)).toBe(used.size);
        for (const log of logs) {
          const started = [...log.matchAll(/started pid (\d+) by (\S+)/g)];
          expect(started.map((m) => m[2])).toEqual(["node_services.sh"]);
          const pids = [...log.matchAll(/used service pid (\d+)/g)].map((m) => m[1]);
          expect(pids.length).toBeGreaterThan(0);
          expect(new Set(pids)).toEqual(new Set([started[0]![1]]));
          expect(log).toContain(`stopped pid ${started[0]![1]}`);
        }
        // ... and gone with the run: nothing of it (nor of Ray) is left on any node.
        await expectNothingLeft(job);
      } finally {
        rcs.forEach((rc, i) => writeFileSync(rc, saved[i]!));
      }
    },
    RUN_TIMEOUT_MS + 60_000,
  );
});
