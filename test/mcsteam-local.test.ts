/**
 * A team module with the real MCS package, run locally through the CLI the way users run it:
 * `node dist/cli/index.js run --module mcsteam ...` on a real local Ray. The performer is
 * machine-common-sense 0.7.4 (its config manager, history writer and video recorders; its mock
 * controller stands in for Unity) in a Python 3.10 venv of its own, found as bare `python` on the
 * node's PATH; the run scripts behave as the team scripts do (test/fixtures/mcsteam/).
 *
 * What only the real thing shows: MCS's own output names (a `name` ending in `.json` included),
 * exit statuses masked by `unset`, a crash scored -1 by MCS's atexit handler, MCS's inactivity
 * end of a hung performer, the team scripts' X server line, and node services.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSummary, type RunSummary, type SceneResult } from "../src/summary.js";
import { runCli, type CliResult } from "./support/cli.js";
import { makeTeamWorkspace, type TeamWorkspaceOptions } from "./support/mcsteam.js";
import { makeTemp, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

/** A local Ray (~10 s), MCS imports (~3 s a scene), MCS's inactivity end (2 × 5 s). */
const RUN_TIMEOUT_MS = 300_000;
const PREFIX = "eval7_level1_mcsteam";
const FOLDER = "mcsteam-eval";
const MOVIES = "mcsteam-eval-movies";
const VIDEO_TYPES = ["depth", "segmentation", "visual"];
const STAMP = /^\d{8}-\d{6}$/;

interface TeamRun {
  cli: CliResult;
  store: string;
  summary: RunSummary;
  scenes: Map<string, SceneResult>;
  /** Every file in the store, relative. */
  files: string[];
  /** Where the node service and the X stand-in keep their files (TMPDIR of the run). */
  tmp: string;
}

/** `scenes/<dir>/` of the workspace with the named fixture scenes (from scenes/ and faults/). */
function sceneDir(wsDir: string, dir: string, names: string[]): string {
  const to = path.join(wsDir, "scenes", dir);
  mkdirSync(to, { recursive: true });
  for (const name of names) {
    const from = ["mcsteam", "mcsteam-faults"]
      .map((d) => path.join(wsDir, "scenes", d, `${name}.json`))
      .find((f) => existsSync(f));
    if (!from) throw new Error(`no fixture scene ${name}`);
    cpSync(from, path.join(to, `${name}.json`));
  }
  return `scenes/${dir}`;
}

async function runTeam(
  options: TeamWorkspaceOptions,
  scenes: string[],
  flags: string[] = [],
  prepare: (wsDir: string) => void = () => {},
): Promise<TeamRun> {
  const ws = makeTeamWorkspace(options);
  prepare(ws.dir);
  const out = makeTemp("mcs-out-");
  // The node's own PATH has the image's python first; its own TMPDIR keeps this run's node
  // service apart from any other on this machine (short: Ray's socket paths live under it).
  const tmp = makeTemp("mcs-t-");
  const cli = await runCli(
    ["run", "--module", "mcsteam", "--metadata", "level1", "--out", out, "--retries", "1"].concat([
      "--scenes",
      sceneDir(ws.dir, "run", scenes),
      ...flags,
    ]),
    ws.dir,
    RUN_TIMEOUT_MS - 10_000,
    { PATH: `${ws.imageBin}:${process.env.PATH ?? ""}`, TMPDIR: tmp },
  );
  const store = path.join(out, "store");
  const context = `exit ${cli.code}\nstdout:\n${cli.stdout}\nstderr:\n${cli.stderr}`;
  const summaries = existsSync(path.join(store, FOLDER))
    ? readdirSync(path.join(store, FOLDER)).filter((f) => f.endsWith("_run-summary.json"))
    : [];
  expect(summaries, context).toHaveLength(1);
  const file = path.join(store, FOLDER, summaries[0]!);
  const summary = parseSummary(readFileSync(file, "utf8"), file);
  const files = (readdirSync(store, { recursive: true }) as string[]).filter((f) =>
    statSync(path.join(store, f)).isFile(),
  );
  return {
    cli,
    store,
    summary,
    scenes: new Map(summary.scenes.map((s) => [s.name, s])),
    files: files.sort(),
    tmp,
  };
}

const read = (run: TeamRun, key: string) => readFileSync(path.join(run.store, key), "utf8");
const history = (run: TeamRun, scene: SceneResult) =>
  JSON.parse(read(run, scene.outputs.history!)) as {
    info: { name: string; timestamp: string };
    score: { confidence: string };
    steps: unknown[];
  };

/**
 * Exactly one set of outputs per scene under the original names, the final attempt's: history,
 * the three videos, and that attempt's log with the history's timestamp.
 */
function expectOneSet(run: TeamRun, scene: SceneResult, key: string, videos = true) {
  const base = `${PREFIX}_${key}`;
  const mine = run.files.filter(
    (f) => f.startsWith(`${FOLDER}/${base}.`) || f.startsWith(`${MOVIES}/${base}_`),
  );
  const expected = [
    `${FOLDER}/${base}.json`,
    ...(videos ? VIDEO_TYPES.map((t) => `${MOVIES}/${base}_${t}.mp4`) : []),
  ];
  expect(mine).toEqual([...expected].sort());
  expect(scene.outputs.history).toBe(expected[0]);
  expect([...scene.outputs.videos].sort()).toEqual(expected.slice(1));
  const { info } = history(run, scene);
  expect(info.timestamp).toMatch(STAMP);
  expect(scene.outputs.log).toBe(`${FOLDER}/${base}_${info.timestamp}_log.txt`);
  for (const video of scene.outputs.videos) {
    expect(readFileSync(path.join(run.store, video)).subarray(4, 8).toString()).toBe("ftyp");
  }
}

/** The node service's log (test/fixtures/mcsteam/deploy_files/mcsteam/README.md). */
function serviceLog(tmp: string): string {
  const dirs = readdirSync(tmp).filter((d) => d.startsWith("mcsteam-services-"));
  expect(dirs).toHaveLength(1); // one node
  return readFileSync(path.join(tmp, dirs[0]!, "services.log"), "utf8");
}

/** A live process (a zombie is not: this machine's PID 1 may never reap what it inherits). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
}

describe("a team module with the real MCS package, through the CLI", () => {
  const NORMAL = [
    "mcsteam_gravity_0001_01",
    "mcsteam_gravity_0001_02", // "name": "mcsteam_gravity_0001_02.json", as real scenes have it
    "mcsteam_retrieval_0001_01",
  ];
  const FAULTS = [
    "mcsteam_fault_crash_0001_01",
    "mcsteam_fault_hang_0001_01",
    "mcsteam_fault_hang_after_end_0001_01",
    "mcsteam_fault_exit_before_start_0001_01",
    "mcsteam_fault_xserver_0001_01",
  ];
  let run: TeamRun;

  beforeAll(async () => {
    // The CORA way: the scene talks to a node service that node_services.sh starts once.
    run = await runTeam(
      { runScript: "ray_script_service.sh", awsConfig: { scene_end_grace_seconds: 3 } },
      [...NORMAL, ...FAULTS],
      ["--num-cpus", "2"],
    );
  }, RUN_TIMEOUT_MS);

  it("stores every scene's history, videos and log under the original names, one set each", () => {
    const context = run.cli.stdout;
    expect(run.cli.code, context).toBe(1); // the faults fail
    for (const name of NORMAL) {
      const scene = run.scenes.get(name === "mcsteam_gravity_0001_02" ? `${name}.json` : name);
      expect(scene?.status, `${name}\n${context}`).toBe("SUCCESS");
      expectOneSet(run, scene!, name);
      expect(history(run, scene!).info.name).toBe(name);
      expect(history(run, scene!).steps.length).toBeGreaterThan(0);
    }
  });

  it("an X server that will not start is xserver, retried, and succeeds on retry", () => {
    const scene = run.scenes.get("mcsteam_fault_xserver_0001_01")!;
    expect(scene.status).toBe("SUCCESS");
    expect(scene.history.map((a) => a.failure_class)).toEqual(["xserver", null]);
    expectOneSet(run, scene, "mcsteam_fault_xserver_0001_01");
    const firstLog = run.files.filter(
      (f) =>
        f.startsWith(`${FOLDER}/${PREFIX}_mcsteam_fault_xserver_0001_01_`) &&
        f.endsWith("_log.txt") &&
        f !== scene.outputs.log,
    );
    expect(firstLog).toHaveLength(1);
    expect(read(run, firstLog[0]!)).toContain("Error:  Unable to start X Server!!");
  });

  it("a crash MCS scored -1 is performer_crash, not a success, and not run again", () => {
    const scene = run.scenes.get("mcsteam_fault_crash_0001_01")!;
    expect(scene.status).toBe("FAILED");
    expect(scene.failure_class).toBe("performer_crash");
    expect(scene.exit_code).toBe(0); // the team script's `unset` masks it
    expect(scene.attempts).toBe(1);
    expect(Number(history(run, scene).score.confidence)).toBe(-1);
    expect(scene.log_excerpt).toMatch(/Traceback|Error/);
  });

  it("a performer hung after MCS ended the scene keeps MCS's history and is not re-run", () => {
    const inactive = run.scenes.get("mcsteam_fault_hang_0001_01")!;
    expect(inactive.failure_class).toBe("inactivity");
    expect(inactive.attempts).toBe(1);
    expect(Number(history(run, inactive).score.confidence)).toBe(-1);
    expect(inactive.duration_s!).toBeLessThan(60); // MCS's 5 s timeout, not the 10 min clock
    expect(inactive.log_excerpt).toContain("still ran 3 s after MCS wrote the scene history");

    const ended = run.scenes.get("mcsteam_fault_hang_after_end_0001_01")!;
    expect(ended.status).toBe("SUCCESS");
    expect(ended.attempts).toBe(1);
    expectOneSet(run, ended, "mcsteam_fault_hang_after_end_0001_01");
    expect(read(run, ended.outputs.log!)).toContain("still ran 3 s after MCS wrote");
  });

  it("no history (a crash before start_scene) is missing_outputs and retried", () => {
    const scene = run.scenes.get("mcsteam_fault_exit_before_start_0001_01")!;
    expect(scene.history.map((a) => a.failure_class)).toEqual([
      "missing_outputs",
      "missing_outputs",
    ]);
    expect(scene.outputs.history).toBeNull();
    expect(scene.outputs.videos).toEqual([]);
  });

  it("the node service starts once per node, serves every scene, and is gone after the run", () => {
    const log = serviceLog(run.tmp);
    const started = [...log.matchAll(/started pid (\d+) by (\S+)/g)];
    expect(started.map((m) => m[2])).toEqual(["node_services.sh"]);
    const pid = Number(started[0]![1]);
    const used = [...log.matchAll(/scene (\S+) used service pid (\d+)/g)];
    // Every scene that got as far as its performer (not the failed X server attempt).
    expect(used.length).toBeGreaterThanOrEqual(NORMAL.length + FAULTS.length);
    expect(new Set(used.map((m) => Number(m[2])))).toEqual(new Set([pid]));
    expect(run.cli.stdout).toContain("node services stopped on 1 nodes");
    expect(log).toContain(`stopped pid ${pid}`);
    expect(alive(pid), log).toBe(false);
  });
});

describe("history_enabled and evaluation, as MCS and the pipeline read them", () => {
  it(
    "a development run with history_enabled = off: no histories, videos and logs uploaded",
    async () => {
      const run = await runTeam({ mcsConfig: { evaluation: false, history_enabled: "off" } }, [
        "mcsteam_gravity_0001_01",
        "mcsteam_retrieval_0001_01",
      ]);
      expect(run.cli.code, run.cli.stdout).toBe(0);
      for (const scene of run.summary.scenes) {
        expect(scene.status).toBe("SUCCESS");
        expect(scene.outputs.history).toBeNull();
        expect(scene.outputs.videos).toHaveLength(3);
        expect(scene.outputs.log).toMatch(/_log\.txt$/);
      }
      expect(
        run.files.filter((f) => f.startsWith(`${FOLDER}/${PREFIX}_`) && f.endsWith(".json")),
      ).toEqual(
        [
          expect.stringMatching(/_run-summary\.json$/),
          expect.stringMatching(/_latest-run\.json$/),
        ].sort(),
      );
    },
    RUN_TIMEOUT_MS,
  );

  it("an evaluation (evaluation = true) without histories is refused before anything starts", async () => {
    const ws = makeTeamWorkspace({ mcsConfig: { history_enabled: "no" } });
    const cli = await runCli(
      ["plan", "--module", "mcsteam", "--metadata", "level1", "--scenes", "scenes/mcsteam"],
      ws.dir,
    );
    expect(cli.code).toBe(2);
    expect(cli.stderr.trim()).toBe(
      "mcs-pipeline: --metadata: configs/mcs_config_mcsteam_level1.ini: evaluation = true needs history_enabled = true (an evaluation is scored from the scene histories and videos); set it, or evaluation = false for a development run",
    );
  });
});

describe("an eval_dir kept across scenes (as team images have it), the MESS way", () => {
  it(
    "counts only the attempt's own outputs; the monitor ends a performer hung after its scene",
    async () => {
      const xserver = "mcsteam_fault_xserver_0001_01";
      const evalDir = makeTemp("mcs-eval-");
      const stale = "20260101-000000";
      const run = await runTeam(
        { runScript: "ray_script_monitor.sh", awsConfig: { eval_dir: evalDir } },
        [xserver, "mcsteam_fault_hang_after_end_0001_01", "mcsteam_gravity_0001_02"],
        ["--num-cpus", "1"],
        (wsDir) => {
          // Longest first (by goal.last_step): the X server scene runs before any other scene's
          // script clears SCENE_HISTORY/, so its first attempt meets what an earlier run left
          // on this node: its history and videos of the same scene.
          const scene = path.join(wsDir, "scenes", "mcsteam-faults", `${xserver}.json`);
          const doc = JSON.parse(readFileSync(scene, "utf8")) as { goal: { last_step: number } };
          doc.goal.last_step = 20;
          writeFileSync(scene, JSON.stringify(doc));
          const old = new Date(Date.now() - 3600_000);
          const files = [
            path.join(evalDir, "SCENE_HISTORY", `${xserver}-${stale}.json`),
            ...VIDEO_TYPES.map((t) =>
              path.join(evalDir, xserver, `${PREFIX}_${xserver}_${t}_${stale}.mp4`),
            ),
          ];
          for (const file of files) {
            mkdirSync(path.dirname(file), { recursive: true });
            writeFileSync(
              file,
              JSON.stringify({ info: { name: xserver }, score: { confidence: "1" } }),
            );
            utimesSync(file, old, old);
          }
        },
      );
      expect(run.cli.code, run.cli.stdout).toBe(0);
      const scene = run.scenes.get(xserver)!;
      // The failed first attempt is not a success made of the earlier run's files.
      expect(scene.history.map((a) => a.failure_class)).toEqual(["xserver", null]);
      expect(history(run, scene).info.timestamp).not.toBe(stale);
      expectOneSet(run, scene, xserver);
      const ended = run.scenes.get("mcsteam_fault_hang_after_end_0001_01")!;
      expect(ended.status).toBe("SUCCESS");
      expect(read(run, ended.outputs.log!)).not.toContain(
        "[mcs-pipeline] the run script still ran",
      );
      expectOneSet(run, run.scenes.get("mcsteam_gravity_0001_02.json")!, "mcsteam_gravity_0001_02");
    },
    RUN_TIMEOUT_MS,
  );
});
