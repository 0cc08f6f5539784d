/**
 * The mcsteam test module on its own (no pipeline, no Ray): its run scripts run directly, with
 * the image's `python` (the cached MCS 0.7.4 venv's image-bin/) first on PATH, as a node has it.
 * The outputs checked are what the real machine-common-sense 0.7.4 package writes: the scene
 * history and the visual, depth and segmentation videos under MCS's own names, MCS's atexit
 * history for a crashed performer, its inactivity timer for a hung one (which stays hung).
 *
 * The first run on a machine builds the venv (~25 s, ~620 MB under ~/.cache/mcs-pipeline).
 */
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTeamWorkspace, setIniKeys, type TeamWorkspace } from "./support/mcsteam.js";
import { makeTemp, removeTemps } from "./support/workspace.js";

const VIDEO_TYPES = ["visual", "depth", "segmentation"] as const;

let ws: TeamWorkspace;
/** Each test's node-local dirs live under its own TMPDIR; all are cleaned up at the end. */
const tmpDirs: string[] = [];
const groups: number[] = [];

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A short TMPDIR (the node service's unix socket path must stay under 108 bytes). */
function nodeTmp(): string {
  const base = os.tmpdir().length <= 24 ? os.tmpdir() : "/tmp";
  const dir = mkdtempSync(path.join(base, "mcsteam-"));
  tmpDirs.push(dir);
  return dir;
}

interface RunOptions {
  /** PATH entries before the node's own (default: the image's bin). */
  pathFirst?: string[];
  env?: Record<string, string>;
  tmp?: string;
  cwd?: string;
  timeoutMs?: number;
  /** Called with the script's pid once it runs (it leads its own process group). */
  started?: (pid: number) => void;
}

/** Runs a deploy_files/mcsteam script in its own process group, as the driver does. */
function runScript(script: string, args: string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(path.join(ws.deployDir, script), args, {
      cwd: options.cwd ?? makeTemp("mcsteam-cwd-"),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        PATH: [...(options.pathFirst ?? [ws.imageBin]), process.env.PATH].join(path.delimiter),
        TMPDIR: options.tmp ?? nodeTmp(),
        MCSTEAM_XORG_LIFETIME: "300",
        MCSTEAM_SERVICE_LIFETIME: "300",
        ...options.env,
      },
    });
    groups.push(child.pid!);
    options.started?.(child.pid!);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => killGroup(child.pid!), options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      // Forget a group once it is empty: its number may then be reused.
      if (!groupExists(child.pid!)) groups.splice(groups.indexOf(child.pid!), 1);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - start });
    });
  });
}

function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

const output = (r: Run) =>
  `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

interface SceneOutputs {
  history: string;
  historyJson: {
    info: Record<string, string>;
    steps: { step: number; action: string }[];
    score: { classification: string | null; confidence: string };
  };
  timestamp: string;
  videoDir: string;
  videos: string[];
}

/** What MCS wrote for scene `name` in `evalDir`, checked against MCS 0.7.4's naming. */
function mcsOutputs(evalDir: string, name: string, metadata = "level1", run?: Run): SceneOutputs {
  const context = run ? `\n${output(run)}` : "";
  const historyDir = path.join(evalDir, "SCENE_HISTORY");
  const histories = existsSync(historyDir) ? readdirSync(historyDir) : [];
  // SCENE_HISTORY/<name without .json>-<YYYYMMDD-HHMMSS>.json
  const pattern = new RegExp(`^${escape(name.replace(".json", ""))}-(\\d{8}-\\d{6})\\.json$`);
  expect(histories, `histories in ${historyDir}${context}`).toHaveLength(1);
  const match = pattern.exec(histories[0]!);
  expect(match, `${histories[0]} matches ${pattern}`).not.toBeNull();
  const timestamp = match![1]!;
  const history = path.join(historyDir, histories[0]!);

  // <name>/<evaluation_name>_<metadata>_<team>_<name with "json" removed>_<type>_<timestamp>.mp4
  const videoDir = path.join(evalDir, name);
  const expected = VIDEO_TYPES.map(
    (type) => `eval7_${metadata}_mcsteam_${name.replace("json", "")}_${type}_${timestamp}.mp4`,
  );
  const videos = readdirSync(videoDir).sort();
  expect(videos).toEqual([...expected].sort());
  for (const video of videos) {
    const bytes = readFileSync(path.join(videoDir, video));
    expect(bytes.length, video).toBeGreaterThan(2000);
    // A finished MP4: its ftyp box first, and the moov index written at release.
    expect(bytes.subarray(4, 8).toString("latin1"), video).toBe("ftyp");
    expect(bytes.includes(Buffer.from("moov")), `${video} has its moov box`).toBe(true);
  }
  return {
    history,
    historyJson: JSON.parse(readFileSync(history, "utf8")),
    timestamp,
    videoDir,
    videos: videos.map((v) => path.join(videoDir, v)),
  };
}

function sceneJson(file: string): { name: string; goal: { last_step: number } } {
  return JSON.parse(readFileSync(file, "utf8"));
}

/** A config copy with other keys, in the workspace (the run scripts take any path). */
function mcsConfigWith(keys: Record<string, string | number>): string {
  const file = path.join(makeTemp("mcsteam-config-"), "mcs_config.ini");
  writeFileSync(file, readFileSync(ws.mcsConfigs.level1, "utf8"));
  setIniKeys(file, keys);
  return file;
}

function pidFiles(): string[] {
  const files: string[] = [];
  for (const tmp of tmpDirs)
    for (const node of existsSync(tmp) ? readdirSync(tmp) : [])
      for (const name of ["Xorg.pid", "service.pid"]) {
        const file = path.join(tmp, node, name);
        if (existsSync(file)) files.push(file);
      }
  return files;
}

function nodeDirOf(tmp: string): string {
  const dirs = readdirSync(tmp).filter((d) => d.startsWith("mcsteam-services-"));
  expect(dirs).toHaveLength(1);
  return path.join(tmp, dirs[0]!);
}

async function waitFor(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const alive = (pid: number) => {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

beforeAll(() => {
  ws = makeTeamWorkspace();
});

/** A process running one of the workspace's mcsteam files (not a stranger with a reused pid). */
function ours(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(ws.deployDir);
  } catch {
    return false;
  }
}

/** Stops what the scripts left running on purpose (the X stand-in, node services), by pid file. */
async function stopLeftovers(names = ["Xorg.pid", "service.pid"]): Promise<void> {
  const pids = pidFiles()
    .filter((file) => names.includes(path.basename(file)))
    .map((file) => Number(readFileSync(file, "utf8").trim()))
    .filter((pid) => pid > 1 && alive(pid) && ours(pid));
  for (const pid of pids) process.kill(pid, "SIGTERM");
  await waitFor("the leftovers to stop", () => !pids.some(alive), 10_000);
}

/** An X server in this PID namespace that these tests did not start. */
function foreignXorg(): boolean {
  const r = spawnSync("pgrep", ["-x", "Xorg", "--ns", String(process.pid), "--nslist", "pid"]);
  return r.status === 0;
}

afterAll(async () => {
  await stopLeftovers();
  for (const pgid of groups) killGroup(pgid);
  for (const dir of tmpDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  removeTemps();
});

describe("the mcsteam image", () => {
  it("has MCS 0.7.4 behind image-bin's python and python3", () => {
    for (const name of ["python", "python3"]) {
      const r = spawnSync(
        path.join(ws.imageBin, name),
        ["-c", "import machine_common_sense as m, sys; print(m.__version__, sys.version_info[:2])"],
        { encoding: "utf8" },
      );
      expect(r.stdout.trim(), r.stderr).toBe("0.7.4 (3, 10)");
    }
    const env = readFileSync(path.join(ws.deployDir, "image.env"), "utf8");
    expect(env).toContain(`PERFORMER_PYTHON=${ws.python}\n`);
    expect(env).toContain(`IMAGE_BIN=${ws.imageBin}\n`);
    expect(readFileSync(ws.awsConfig, "utf8")).toMatch(/^run_script = ray_script\.sh$/m);
    expect(readFileSync(ws.autoscaler, "utf8")).toMatch(/^cluster_name: mcs-mcsteam$/m);
  });
});

describe("ray_script.sh with the real MCS", () => {
  it("checks its three arguments", async () => {
    const r = await runScript("ray_script.sh", [ws.mcsConfigs.level1, "x.json"]);
    expect(r.code, output(r)).toBe(1);
    expect(r.stdout).toMatch(/^usage: ray_script\.sh MCS_CONFIG SCENE_FILE EVAL_DIR$/m);
  });

  it("plays every scene: MCS's history and visual, depth and segmentation videos, one timestamp", async () => {
    const scenes = readdirSync(ws.scenesDir).sort();
    expect(scenes).toHaveLength(4);
    const tmp = nodeTmp();
    let startedOwn = false;
    const play = async (file: string, first: boolean) => {
      const scene = sceneJson(path.join(ws.scenesDir, file));
      const evalDir = makeTemp("mcsteam-eval-");
      const r = await runScript(
        "ray_script.sh",
        [ws.mcsConfigs.level1, path.join(ws.scenesDir, file), evalDir],
        { tmp },
      );
      expect(r.code, output(r)).toBe(0);
      // Started by the first scene, then found running by the others. pgrep sees this whole
      // machine's: the first may find another test file's, which may be gone by the others.
      if (first) startedOwn = /^Successfully started X Server$/m.test(r.stdout);
      expect(r.stdout).toMatch(
        first || !startedOwn
          ? /^(Successfully started X Server|X Server is running)$/m
          : /^X Server is running$/m,
      );
      expect(r.stdout).toContain(`Performer python: ${ws.imageBin}/python\n`);
      const out = mcsOutputs(evalDir, scene.name, "level1", r);
      const h = out.historyJson;
      expect(h.info).toEqual({
        evaluation_name: "eval7",
        metadata: "level1",
        team: "mcsteam",
        name: scene.name.replace(".json", ""),
        timestamp: out.timestamp,
      });
      // The Initialize step, then one per step up to last_step.
      expect(h.steps.map((s) => s.step)).toEqual(
        Array.from({ length: scene.goal.last_step + 1 }, (_, i) => i),
      );
      const passive = file !== "mcsteam_retrieval_0001_01.json";
      expect(h.steps.slice(1).every((s) => s.action === (passive ? "Pass" : "MoveAhead"))).toBe(
        true,
      );
      expect(h.score).toEqual(
        passive
          ? { classification: "1.0", confidence: "0.75" }
          : { classification: null, confidence: "None" },
      );
    };
    // The first starts the node's X server; the others then run side by side, as on a node.
    await play(scenes[0]!, true);
    await Promise.all(scenes.slice(1).map((file) => play(file, false)));
  });

  it('keeps ".json" of a scene name in the video folder and drops only "json" from the video names', async () => {
    const scene = path.join(ws.scenesDir, "mcsteam_gravity_0001_02.json");
    expect(sceneJson(scene).name).toBe("mcsteam_gravity_0001_02.json");
    const evalDir = makeTemp("mcsteam-eval-");
    const r = await runScript("ray_script.sh", [ws.mcsConfigs.level2, scene, evalDir]);
    expect(r.code, output(r)).toBe(0);
    const out = mcsOutputs(evalDir, "mcsteam_gravity_0001_02.json", "level2", r);
    const t = out.timestamp;
    expect(path.relative(evalDir, out.history)).toBe(
      `SCENE_HISTORY/mcsteam_gravity_0001_02-${t}.json`,
    );
    expect(out.videos.map((v) => path.relative(evalDir, v))).toEqual([
      `mcsteam_gravity_0001_02.json/eval7_level2_mcsteam_mcsteam_gravity_0001_02._depth_${t}.mp4`,
      `mcsteam_gravity_0001_02.json/eval7_level2_mcsteam_mcsteam_gravity_0001_02._segmentation_${t}.mp4`,
      `mcsteam_gravity_0001_02.json/eval7_level2_mcsteam_mcsteam_gravity_0001_02._visual_${t}.mp4`,
    ]);
  });

  it("names the outputs after the scene's name, not its file name; clears old histories first", async () => {
    const evalDir = makeTemp("mcsteam-eval-");
    mkdirSync(path.join(evalDir, "SCENE_HISTORY"));
    writeFileSync(path.join(evalDir, "SCENE_HISTORY", "old_scene-20200101-000000.json"), "{}");
    const file = path.join(ws.scenesDir, "collision-variant-a.json");
    const r = await runScript("ray_script.sh", [ws.mcsConfigs.level1, file, evalDir]);
    expect(r.code, output(r)).toBe(0);
    mcsOutputs(evalDir, "mcsteam_collision_0001_01", "level1", r);
    expect(existsSync(path.join(evalDir, "collision-variant-a"))).toBe(false);
  });

  it("exits 0 when the performer crashes; MCS's atexit handler writes the history with score -1", async () => {
    const evalDir = makeTemp("mcsteam-eval-");
    const file = path.join(ws.faultsDir, "mcsteam_fault_crash_0001_01.json");
    const r = await runScript("ray_script.sh", [ws.mcsConfigs.level1, file, evalDir]);
    expect(r.code, output(r)).toBe(0);
    expect(r.stderr).toContain("RuntimeError: fixture: crash after 2 steps");
    const out = mcsOutputs(evalDir, "mcsteam_fault_crash_0001_01", "level1", r);
    // end_scene(score=-1) goes through a pydantic float field: "-1.0", not "-1".
    expect(out.historyJson.score).toEqual({ classification: null, confidence: "-1.0" });
    expect(out.historyJson.steps.map((s) => s.step)).toEqual([0, 1, 2]);
  });

  it("exits 0 with no outputs when the performer crashes before start_scene", async () => {
    const evalDir = makeTemp("mcsteam-eval-");
    const file = path.join(ws.faultsDir, "mcsteam_fault_exit_before_start_0001_01.json");
    const r = await runScript("ray_script.sh", [ws.mcsConfigs.level1, file, evalDir]);
    expect(r.code, output(r)).toBe(0);
    expect(r.stderr).toContain("RuntimeError: fixture: exit_before_start");
    expect(existsSync(path.join(evalDir, "SCENE_HISTORY"))).toBe(false);
    expect(existsSync(path.join(evalDir, "mcsteam_fault_exit_before_start_0001_01"))).toBe(false);
  });

  it("fails to start the X server while MCS_ATTEMPT <= xserver_fail_attempts, then succeeds", async () => {
    const file = path.join(ws.faultsDir, "mcsteam_fault_xserver_0001_01.json");
    // No X server running: the earlier tests' one (found with pgrep on this whole machine) is stopped.
    await stopLeftovers(["Xorg.pid"]);
    const foreign = foreignXorg();
    const tmp = nodeTmp();
    const cwd = makeTemp("mcsteam-cwd-");
    const first = makeTemp("mcsteam-eval-");
    const r1 = await runScript("ray_script.sh", [ws.mcsConfigs.level1, file, first], {
      tmp,
      cwd,
      env: { MCS_ATTEMPT: "1" },
    });
    expect(r1.code, output(r1)).toBe(1);
    expect(r1.stdout.split("\n")).toContain("Error:  Unable to start X Server!!");
    expect(r1.stdout).not.toContain("Performer python");
    expect(readFileSync(path.join(cwd, "startx-err.txt"), "utf8")).toContain("no screens found");
    expect(existsSync(path.join(first, "SCENE_HISTORY"))).toBe(false);

    const second = makeTemp("mcsteam-eval-");
    const r2 = await runScript("ray_script.sh", [ws.mcsConfigs.level1, file, second], {
      tmp,
      cwd,
      env: { MCS_ATTEMPT: "2" },
    });
    expect(r2.code, output(r2)).toBe(0);
    if (!foreign) {
      expect(r2.stdout).toContain("Successfully started X Server");
      expect(readFileSync(path.join(cwd, "startx-out.txt"), "utf8")).toContain("mcsteam stand-in");
    }
    mcsOutputs(second, "mcsteam_fault_xserver_0001_01", "level1", r2);
  });

  it("runs bare `python`: a python without MCS first on PATH makes the performer fail", async () => {
    // A stand-in for Ray's venv python: the system python3, no MCS.
    const system = ["/usr/bin/python3", "/usr/local/bin/python3"].find((p) => existsSync(p));
    expect(system, "a system python3").toBeDefined();
    const check = spawnSync(system!, ["-c", "import machine_common_sense"], { encoding: "utf8" });
    expect(check.status, "the system python3 has no MCS").not.toBe(0);
    const wrongBin = makeTemp("mcsteam-wrong-bin-");
    symlinkSync(system!, path.join(wrongBin, "python"));

    const evalDir = makeTemp("mcsteam-eval-");
    const file = path.join(ws.scenesDir, "mcsteam_gravity_0001_01.json");
    const r = await runScript("ray_script.sh", [ws.mcsConfigs.level1, file, evalDir], {
      pathFirst: [wrongBin, ws.imageBin],
    });
    expect(r.code, output(r)).toBe(0); // the team scripts' unset at the end
    expect(r.stdout).toContain(`Performer python: ${wrongBin}/python\n`);
    expect(r.stderr).toMatch(/ModuleNotFoundError: No module named '(numpy|machine_common_sense)'/);
    expect(existsSync(path.join(evalDir, "SCENE_HISTORY"))).toBe(false);
  });

  it("a hung performer: MCS's inactivity timer writes the history, and the process stays hung", async () => {
    const evalDir = makeTemp("mcsteam-eval-");
    const file = path.join(ws.faultsDir, "mcsteam_fault_hang_0001_01.json");
    const config = mcsConfigWith({ timeout: 2 });
    let pgid = 0;
    const running = runScript("ray_script.sh", [config, file, evalDir], {
      started: (pid) => (pgid = pid),
    });
    const historyDir = path.join(evalDir, "SCENE_HISTORY");
    await waitFor(
      "the history",
      () => existsSync(historyDir) && readdirSync(historyDir).length > 0,
      20_000,
    );
    const historyAt = performance.now();
    await new Promise((r) => setTimeout(r, 1_500));
    expect(alive(pgid), "the run script is still waiting for the performer").toBe(true);
    killGroup(pgid, "SIGTERM");
    const r = await running;
    expect(performance.now() - historyAt).toBeGreaterThan(1_000);
    expect(r.stdout).toContain("Attempting to end scene due to inactivity");
    expect(r.stdout).toContain("fixture: KeyboardInterrupt ignored, still hanging");
    const out = mcsOutputs(evalDir, "mcsteam_fault_hang_0001_01", "level1", r);
    expect(out.historyJson.score).toEqual({ classification: null, confidence: "-1.0" });
    expect(out.historyJson.steps.map((s) => s.step)).toEqual([0, 1, 2]);
  });
});

describe("ray_script_monitor.sh (the MESS way)", () => {
  it("ends a performer MCS's timer ended but that stays hung, then exits 0", async () => {
    const evalDir = makeTemp("mcsteam-eval-");
    const file = path.join(ws.faultsDir, "mcsteam_fault_hang_0001_01.json");
    const r = await runScript(
      "ray_script_monitor.sh",
      [mcsConfigWith({ timeout: 2 }), file, evalDir],
      {
        env: { MCSTEAM_MONITOR_GRACE: "1" },
        timeoutMs: 30_000,
      },
    );
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain("Attempting to end scene due to inactivity");
    expect(r.stdout).toMatch(/monitor\.py: performer pid \d+ still running after its scene ended/);
    const out = mcsOutputs(evalDir, "mcsteam_fault_hang_0001_01", "level1", r);
    expect(out.historyJson.score.confidence).toBe("-1.0");
  });

  it("ends a performer that hangs after ending its scene; leaves a normal one alone", async () => {
    const env = { MCSTEAM_MONITOR_GRACE: "1" };
    const hung = makeTemp("mcsteam-eval-");
    const normal = makeTemp("mcsteam-eval-");
    const [r, ok] = await Promise.all([
      runScript(
        "ray_script_monitor.sh",
        [
          ws.mcsConfigs.level1,
          path.join(ws.faultsDir, "mcsteam_fault_hang_after_end_0001_01.json"),
          hung,
        ],
        { env, timeoutMs: 30_000 },
      ),
      runScript(
        "ray_script_monitor.sh",
        [ws.mcsConfigs.level1, path.join(ws.scenesDir, "mcsteam_gravity_0001_01.json"), normal],
        { env },
      ),
    ]);
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain("still running after its scene ended: terminating it");
    const out = mcsOutputs(hung, "mcsteam_fault_hang_after_end_0001_01", "level1", r);
    expect(out.historyJson.score).toEqual({ classification: "1.0", confidence: "0.75" });

    expect(ok.code, output(ok)).toBe(0);
    expect(ok.stdout).not.toContain("terminating it");
    mcsOutputs(normal, "mcsteam_gravity_0001_01", "level1", ok);
  });
});

describe("ray_script_service.sh and node_services.sh (the CORA way)", () => {
  const serviceLog = (tmp: string) =>
    readFileSync(path.join(nodeDirOf(tmp), "services.log"), "utf8");

  it("starts the node service itself when node_services.sh did not", async () => {
    const tmp = nodeTmp();
    const scene = path.join(ws.scenesDir, "mcsteam_gravity_0001_01.json");
    const evalDir = makeTemp("mcsteam-eval-");
    const r = await runScript("ray_script_service.sh", [ws.mcsConfigs.level1, scene, evalDir], {
      tmp,
    });
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout).toContain("Node service not running: started by run script");
    const pid = /started pid (\d+) by run script/.exec(serviceLog(tmp))?.[1];
    expect(pid, serviceLog(tmp)).toBeDefined();
    expect(r.stdout).toContain(`scene mcsteam_gravity_0001_01 used service pid ${pid}\n`);
    expect(serviceLog(tmp)).toContain(`scene mcsteam_gravity_0001_01 used service pid ${pid}\n`);
    mcsOutputs(evalDir, "mcsteam_gravity_0001_01", "level1", r);
  });

  it("uses the service node_services.sh started for every scene; it stops with that session", async () => {
    const tmp = nodeTmp();
    const evalDir = makeTemp("mcsteam-eval-");
    let session = 0;
    const hook = await runScript("node_services.sh", [ws.mcsConfigs.level1, evalDir], {
      tmp,
      started: (pid) => (session = pid),
    });
    expect(hook.code, output(hook)).toBe(0);
    const pid = /started pid (\d+) by node_services\.sh/.exec(serviceLog(tmp))?.[1];
    expect(pid, serviceLog(tmp)).toBeDefined();
    expect(readFileSync(path.join(nodeDirOf(tmp), "service.pid"), "utf8")).toBe(`${pid}\n`);

    // Two scenes side by side on the node (each with an eval dir of its own: the run scripts
    // clear their eval dir's SCENE_HISTORY/).
    const names = ["mcsteam_gravity_0001_01", "mcsteam_retrieval_0001_01"];
    await Promise.all(
      names.map(async (name) => {
        const sceneEval = makeTemp("mcsteam-eval-");
        const r = await runScript(
          "ray_script_service.sh",
          [ws.mcsConfigs.level1, path.join(ws.scenesDir, `${name}.json`), sceneEval],
          { tmp },
        );
        expect(r.code, output(r)).toBe(0);
        expect(r.stdout).toContain(`Node service is running (pid ${pid})`);
        expect(r.stdout).toContain(`scene ${name} used service pid ${pid}\n`);
        mcsOutputs(sceneEval, name, "level1", r);
      }),
    );
    expect(serviceLog(tmp).match(/started pid/g)).toHaveLength(1);
    for (const name of names)
      expect(serviceLog(tmp)).toContain(`scene ${name} used service pid ${pid}\n`);

    // The pipeline stops the hook's session when the run ends.
    killGroup(session, "SIGTERM");
    await waitFor("the service to stop", () => !alive(Number(pid)), 10_000);
    expect(serviceLog(tmp)).toContain(`stopped pid ${pid} (signal 15)`);
    expect(statSync(nodeDirOf(tmp)).isDirectory()).toBe(true);
    expect(existsSync(path.join(nodeDirOf(tmp), "service.pid"))).toBe(false);
  });
});
