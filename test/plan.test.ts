import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { InputError } from "../src/errors.js";
import { parseIni } from "../src/ini.js";
import { loadModule, type Module } from "../src/module.js";
import { buildPlan, describePlan, newRunId, type PlanContext, type PlanFile } from "../src/plan.js";
import { pinnedRayVersion } from "../src/ray/install.js";
import { parseRequest, type RawRequest } from "../src/request.js";
import { loadScenes, type Scene } from "../src/scenes.js";
import { schemaProblem } from "../src/schemas.js";
import { copyWorkspace, makeTemp, REPO, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

const RUN_ID = "20261125-151500-ab12";
const SUBSET = path.join(REPO, "scenes/subset");
const PYTHON = path.join(process.env.MCS_VENV ?? path.join(REPO, ".venv"), "bin", "python");

/** Every file under `dir`, relative, sorted. */
function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => statSync(path.join(dir, f)).isFile())
    .sort();
}

interface Built {
  dir: string;
  store: string;
  planFile: PlanFile;
  plan: ReturnType<typeof buildPlan>;
  scenes: Scene[];
  mod: Module;
}

function build(
  raw: RawRequest = {},
  options: { workspace?: string; toolRoot?: string; mod?: Module; scenes?: Scene[] } = {},
): Built {
  const request = parseRequest({ module: "demo", ...raw }, "local");
  const workspace = options.workspace ?? REPO;
  const mod = options.mod ?? loadModule(workspace, "demo", request.metadata);
  const scenes = options.scenes ?? loadScenes(SUBSET, "scenes/subset");
  const out = makeTemp("mcs-plan-");
  const ctx: PlanContext = {
    toolRoot: options.toolRoot ?? REPO,
    dir: path.join(out, "runs", RUN_ID, "plan"),
    runId: RUN_ID,
    store: path.join(out, "store"),
    rayVersion: pinnedRayVersion(REPO),
    clusterName: null,
  };
  const plan = buildPlan(request, mod, scenes, ctx);
  const planFile = JSON.parse(readFileSync(path.join(ctx.dir, "plan.json"), "utf8")) as PlanFile;
  return { dir: ctx.dir, store: ctx.store, planFile, plan, scenes, mod };
}

describe("buildPlan: the staging directory", () => {
  it("writes plan.json with the run's identity, names, limits and scenes", () => {
    const { dir, store, planFile, plan, scenes } = build();
    expect(pinnedRayVersion(REPO)).toMatch(/^\d+\.\d+\.\d+$/);
    expect(planFile).toEqual({
      schema_version: 1,
      run_id: RUN_ID,
      module: "demo",
      metadata: "level2",
      target: "local",
      cluster_name: null,
      ray_version: pinnedRayVersion(REPO),
      store,
      summary_key: `demo-eval/demo-eval_level2_demo_${RUN_ID}_run-summary.json`,
      latest_key: "demo-eval/demo-eval_level2_demo_latest-run.json",
      legacy_summary_key: "demo-eval/demo-eval_level2_demo_run-summary.json",
      names: {
        folder: "demo-eval",
        movies_folder: "demo-eval-movies",
        prefix: "demo-eval_level2_demo",
      },
      retries: 2,
      // The demo module's own scene_timeout_minutes (10).
      scene_timeout_s: 600,
      resume: false,
      resources: { num_cpus: 1, num_gpus: 0 },
      run_script: "deploy/ray_script.sh",
      eval_dir: null,
      history_required: true,
      scene_end_grace_s: 120,
      node_services: null,
      mcs_config: "configs/mcs_config.ini",
      scenes: scenes.map((s) => ({
        name: s.name,
        file: `scenes/${s.name}.json`,
        expected_cost: s.lastStep,
        category: s.category,
      })),
      node_types: {}, // a local run has no node prices (an AWS plan: dry-run.test.ts)
    });
    expect(planFile.scenes).toHaveLength(9);
    // The subset's goal.category values, carried into the plan for the driver's summary.
    expect(planFile.scenes.find((s) => s.name === "demo_gravity_support_0001_01")?.category).toBe(
      "intuitive physics",
    );
    expect(plan).toEqual({ ...planFile, dir, mcsTimeouts: { timeout: 300, controller: 60 } });
    // Every relative path in plan.json resolves inside the staging directory.
    for (const rel of [
      planFile.run_script,
      planFile.mcs_config,
      ...planFile.scenes.map((s) => s.file!),
    ]) {
      expect(existsSync(path.join(dir, rel)), rel).toBe(true);
    }
  });

  it("holds exactly the driver, the deploy files, the configs, the scenes and the lists", () => {
    const { dir } = build();
    const top = readdirSync(dir).sort();
    expect(top).toEqual(["configs", "deploy", "pipeline", "plan.json", "scenes", "scenes.txt"]);
    expect(readdirSync(path.join(dir, "configs")).sort()).toEqual(["exec.ini", "mcs_config.ini"]);
  });

  it("copies the driver from pipeline/ without tests or caches", () => {
    const { dir } = build();
    const copied = files(path.join(dir, "pipeline"));
    expect(copied).toContain("run_eval.py");
    expect(copied).toContain(path.join("mcs_pipeline", "driver.py"));
    expect(copied).toContain("requirements.txt");
    for (const f of copied) {
      expect(f).not.toMatch(/(^|\/)(tests|__pycache__|\.pytest_cache)\//);
      expect(f).not.toMatch(/\.pyc$/);
    }
    expect(existsSync(path.join(dir, "pipeline/tests"))).toBe(false);
    const source = readFileSync(path.join(REPO, "pipeline/mcs_pipeline/driver.py"), "utf8");
    expect(readFileSync(path.join(dir, "pipeline/mcs_pipeline/driver.py"), "utf8")).toBe(source);
  });

  it("leaves out tests/, __pycache__/ and .pytest_cache/ at any depth", () => {
    const toolRoot = makeTemp("mcs-tool-");
    const put = (rel: string, text = "x") => {
      mkdirSync(path.dirname(path.join(toolRoot, rel)), { recursive: true });
      writeFileSync(path.join(toolRoot, rel), text);
    };
    put("pipeline/run_eval.py");
    put("pipeline/mcs_pipeline/driver.py");
    put("pipeline/mcs_pipeline/tests_helper.py");
    put("pipeline/tests/test_driver.py");
    put("pipeline/tests/conftest.py");
    put("pipeline/mcs_pipeline/tests/test_inner.py");
    put("pipeline/__pycache__/run_eval.cpython-312.pyc");
    put("pipeline/mcs_pipeline/__pycache__/driver.cpython-312.pyc");
    put("pipeline/.pytest_cache/v/cache/lastfailed");
    const { dir } = build({}, { toolRoot });
    expect(files(path.join(dir, "pipeline"))).toEqual(
      [
        "run_eval.py",
        path.join("mcs_pipeline", "driver.py"),
        path.join("mcs_pipeline", "tests_helper.py"),
      ].sort(),
    );
  });

  it("copies the deploy files and makes a relative run script executable", () => {
    const ws = copyWorkspace(["configs", "autoscaler", "deploy_files"]);
    const script = path.join(ws, "deploy_files/demo/ray_script.sh");
    chmodSync(script, 0o644);
    const { dir } = build({}, { workspace: ws });
    expect(files(path.join(dir, "deploy"))).toEqual(files(path.join(ws, "deploy_files/demo")));
    for (const f of files(path.join(dir, "deploy"))) {
      expect(readFileSync(path.join(dir, "deploy", f), "utf8")).toBe(
        readFileSync(path.join(ws, "deploy_files/demo", f), "utf8"),
      );
    }
    const mode = statSync(path.join(dir, "deploy/ray_script.sh")).mode;
    expect(mode & 0o111, `mode ${mode.toString(8)}`).toBe(0o111);
    expect(readFileSync(path.join(dir, "deploy/ray_script.sh"), "utf8")).toMatch(/^#!/);
  });

  it("keeps an absolute run script as it is and does not look for it", () => {
    const mod = loadModule(REPO, "demo", "level2");
    mod.exec = new Map(mod.exec).set("run_script", "/opt/team/run_scene.sh");
    const { planFile } = build({}, { mod });
    expect(planFile.run_script).toBe("/opt/team/run_scene.sh");
  });

  it("writes the MCS config with overrides applied; the repo file and the module stay as they were", () => {
    const repoFile = path.join(REPO, "configs/mcs_config_demo_level2.ini");
    const before = readFileSync(repoFile, "utf8");
    const mod = loadModule(REPO, "demo", "level2");
    const { dir, planFile } = build(
      { overrides: "s3_folder=demo-eval-test\ndemo_step_seconds = 0\nnew_key=added" },
      { mod },
    );
    const written = parseIni(
      readFileSync(path.join(dir, "configs/mcs_config.ini"), "utf8"),
      "copy",
    );
    const original = parseIni(before, "repo");
    expect(Object.fromEntries(written.get("MCS")!)).toEqual({
      ...Object.fromEntries(original.get("MCS")!),
      s3_folder: "demo-eval-test",
      demo_step_seconds: "0",
      new_key: "added",
    });
    expect(readFileSync(repoFile, "utf8")).toBe(before);
    expect(mod.mcsConfig.get("MCS")!.get("s3_folder")).toBe("demo-eval");
    expect(mod.mcsConfig.get("MCS")!.has("new_key")).toBe(false);
    // The results location follows the override.
    expect(planFile.names.folder).toBe("demo-eval-test");
    expect(planFile.summary_key).toBe(
      `demo-eval-test/demo-eval_level2_demo_${RUN_ID}_run-summary.json`,
    );
    expect(planFile.latest_key).toBe("demo-eval-test/demo-eval_level2_demo_latest-run.json");
  });

  it("appends with key+=suffix: a test run's results go beside the real ones", () => {
    const { planFile } = build({
      overrides: "s3_folder+=-test\ns3_movies_folder+=-test\nevaluation=false",
    });
    expect(planFile.names).toEqual({
      folder: "demo-eval-test",
      movies_folder: "demo-eval-movies-test",
      prefix: "demo-eval_level2_demo",
    });
  });

  it("without overrides the MCS config is the repo's, key for key", () => {
    const { dir } = build({ metadata: "oracle" });
    const written = parseIni(
      readFileSync(path.join(dir, "configs/mcs_config.ini"), "utf8"),
      "copy",
    );
    const repo = parseIni(
      readFileSync(path.join(REPO, "configs/mcs_config_demo_oracle.ini"), "utf8"),
      "repo",
    );
    expect(Object.fromEntries(written.get("MCS")!)).toEqual(Object.fromEntries(repo.get("MCS")!));
  });

  it("derives names and flags from the overridden config", () => {
    const mod = loadModule(REPO, "demo", "level1");
    mod.mcsConfig.get("MCS")!.delete("s3_movies_folder");
    const { planFile } = build(
      { metadata: "level1", overrides: "team=opics\nevaluation_name=eval7\nhistory_enabled=False" },
      { mod },
    );
    expect(planFile.names).toEqual({
      folder: "demo-eval",
      movies_folder: "demo-eval",
      prefix: "eval7_level1_opics",
    });
    expect(planFile.summary_key).toBe(`demo-eval/eval7_level1_opics_${RUN_ID}_run-summary.json`);
    expect(planFile.latest_key).toBe("demo-eval/eval7_level1_opics_latest-run.json");
    expect(planFile.legacy_summary_key).toBe("demo-eval/eval7_level1_opics_run-summary.json");
    expect(planFile.history_required).toBe(false);
  });

  it.each([
    ["no", false],
    ["0", false],
    ["OFF", false],
    ["yes", true],
    ["1", true],
    ["On", true],
  ])("reads history_enabled=%s as configparser's getboolean does (MCS's reader)", (value, on) => {
    expect(build({ overrides: `history_enabled=${value}` }).planFile.history_required).toBe(on);
  });

  it("a development run (evaluation = false) may turn histories off; an evaluation may not", () => {
    expect(build({ overrides: "history_enabled=off" }).planFile.history_required).toBe(false);
    let thrown: unknown;
    try {
      build({ overrides: "evaluation=true\nvideo_enabled=true\nhistory_enabled=off" });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InputError);
    expect((thrown as InputError).input).toBe("mcs-config-overrides");
    expect((thrown as InputError).message).toMatch(
      /evaluation = true needs history_enabled = true/,
    );
  });

  it.each([
    ["s3_folder=../elsewhere", /s3_folder="\.\.\/elsewhere" is not a safe S3 name/],
    ["metadata=oracle", /says metadata=oracle but its name says level2/],
    ["team=", /set team/],
  ])("rejects an override that breaks the config: %s", (overrides, pattern) => {
    let thrown: unknown;
    try {
      build({ overrides });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InputError);
    expect((thrown as InputError).input).toBe("mcs-config-overrides");
    expect((thrown as InputError).message).toMatch(/^MCS config with overrides/);
    expect((thrown as InputError).message).toMatch(pattern);
  });

  it("writes exec.ini with the module's settings plus scene_location and scene_list", () => {
    const { dir } = build();
    const exec = parseIni(readFileSync(path.join(dir, "configs/exec.ini"), "utf8"), "exec.ini");
    expect(Object.fromEntries(exec.get("MCS")!)).toEqual({
      run_script: "ray_script.sh",
      num_cpus: "1",
      num_gpus: "0",
      scene_timeout_minutes: "10",
      scene_location: "scenes/",
      scene_list: "scenes.txt",
    });
  });

  it("owns scene_location and scene_list even when the module sets them", () => {
    const ws = copyWorkspace(["configs", "autoscaler", "deploy_files"]);
    const execFile = path.join(ws, "configs/demo_aws.ini");
    writeFileSync(
      execFile,
      readFileSync(execFile, "utf8") +
        "scene_location = /home/ubuntu/scenes/\nscene_list = /home/ubuntu/list.txt\neval_dir = /tmp/eval\n",
    );
    const { dir, planFile } = build({}, { workspace: ws });
    const exec = parseIni(readFileSync(path.join(dir, "configs/exec.ini"), "utf8"), "exec.ini");
    expect(exec.get("MCS")!.get("scene_location")).toBe("scenes/");
    expect(exec.get("MCS")!.get("scene_list")).toBe("scenes.txt");
    expect(planFile.eval_dir).toBe("/tmp/eval");
  });

  it("copies each scene as scenes/<name>.json and lists them in scenes.txt", () => {
    const { dir, scenes } = build();
    expect(readFileSync(path.join(dir, "scenes.txt"), "utf8")).toBe(
      scenes.map((s) => `${s.name}.json\n`).join(""),
    );
    expect(readdirSync(path.join(dir, "scenes")).sort()).toEqual(
      scenes.map((s) => `${s.name}.json`).sort(),
    );
    for (const s of scenes) {
      expect(readFileSync(path.join(dir, "scenes", `${s.name}.json`), "utf8")).toBe(
        readFileSync(s.file, "utf8"),
      );
    }
  });

  it("names a scene's copy by its scene name, not its file name", () => {
    const sceneDir = makeTemp("mcs-scenes-");
    writeFileSync(
      path.join(sceneDir, "file_name.json"),
      JSON.stringify({ name: "inner_name", goal: { last_step: 7 } }),
    );
    const { dir, planFile } = build({}, { scenes: loadScenes(sceneDir, "s") });
    expect(readdirSync(path.join(dir, "scenes"))).toEqual(["inner_name.json"]);
    expect(readFileSync(path.join(dir, "scenes.txt"), "utf8")).toBe("inner_name.json\n");
    expect(planFile.scenes).toEqual([
      { name: "inner_name", file: "scenes/inner_name.json", expected_cost: 7, category: null },
    ]);
  });

  it("takes retries, resume and the request's timeout over the module's", () => {
    const { planFile } = build({ retries: "0", resume: "true", sceneTimeoutMinutes: "1.5" });
    expect(planFile.retries).toBe(0);
    expect(planFile.resume).toBe(true);
    expect(planFile.scene_timeout_s).toBe(90);
  });

  it("falls back to 6 hours when neither the request nor the module sets a timeout", () => {
    // A backstop above MCS's own timeouts: a long legitimate scene is never cut short.
    const mod = loadModule(REPO, "demo", "level2");
    mod.sceneTimeoutMinutes = undefined;
    const { plan, planFile } = build({}, { mod });
    expect(planFile.scene_timeout_s).toBe(6 * 3600);
    expect(describePlan(plan)).toContain("timeout 360 min per scene\n");
  });

  it("says when the wall clock would end a scene before MCS's own timeouts", () => {
    const { plan } = build({ sceneTimeoutMinutes: "5" });
    expect(describePlan(plan)).toContain(
      "timeout 5 min per scene (not above MCS's own timeout 300 s + controller_timeout 60 s: a scene whose performer stops stepping is ended by the wall clock, not by MCS)",
    );
    expect(describePlan(build({ sceneTimeoutMinutes: "6.1" }).plan)).not.toContain("not above");
  });
});

describe("buildPlan: plan.json matches pipeline/mcs_pipeline/schemas/plan.schema.json", () => {
  it("writes plans the schema accepts, here and in the staged driver's own copy (jsonschema)", () => {
    const plans = [
      build(),
      build({ metadata: "oracle", retries: "0", resume: "true", sceneTimeoutMinutes: "1.5" }),
    ];
    for (const { dir, planFile } of plans) {
      expect(schemaProblem(planFile, "plan.schema.json")).toBeUndefined();
      // The driver on the head validates with the copy the plan carries: it is there, and agrees.
      const check = [
        "import json, sys",
        "sys.path.insert(0, sys.argv[1] + '/pipeline')",
        "from mcs_pipeline import schemas",
        "print(schemas.problem(json.load(open(sys.argv[1] + '/plan.json')), schemas.PLAN))",
      ].join("\n");
      expect(execFileSync(PYTHON, ["-c", check, dir], { encoding: "utf8" }).trim()).toBe("None");
    }
  });

  it("refuses to write a plan that does not match, naming the field and the schema path", () => {
    const [first] = loadScenes(SUBSET, "scenes/subset");
    const scenes: Scene[] = [{ ...first!, lastStep: 0 }];
    expect(() => build({}, { scenes })).toThrowError(
      "mcs-pipeline bug: the plan it built does not match the schema: scenes[0].expected_cost must be > 0, got 0 (plan.schema.json#/properties/scenes/items/properties/expected_cost/exclusiveMinimum)",
    );
  });
});

describe("newRunId", () => {
  it("sorts by time: date-time-random", () => {
    const id = newRunId(new Date("2026-11-25T15:15:00.123Z"));
    expect(id).toMatch(/^20261125-151500-[0-9a-f]{4}$/);
    expect(newRunId(new Date("2026-11-25T15:15:01Z")) > id).toBe(true);
  });

  it("differs between two runs in the same second", () => {
    const now = new Date();
    const ids = new Set(Array.from({ length: 20 }, () => newRunId(now)));
    expect(ids.size).toBeGreaterThan(15);
  });
});

describe("describePlan", () => {
  it("prints the plan's essentials, one fact a line", () => {
    const { plan, dir, store } = build({ resume: "true" });
    const lines = describePlan(plan).split("\n");
    expect(lines).toEqual([
      `plan ${RUN_ID}: module demo, metadata level2, target local`,
      "  scenes:        9 (longest first by goal.last_step)",
      `  staging:       ${dir}`,
      `  results:       ${store} (summary demo-eval/demo-eval_level2_demo_${RUN_ID}_run-summary.json)`,
      "  latest run:    demo-eval/demo-eval_level2_demo_latest-run.json (resume and scheduling find the previous run there)",
      "  retries:       2; timeout 10 min per scene",
      `  resources:     {"num_cpus":1,"num_gpus":0} per scene; Ray ${pinnedRayVersion(REPO)}`,
      "  resume:        scenes already SUCCESS in the latest run's summary are skipped",
    ]);
  });
});
