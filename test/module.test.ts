import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkMcsConfig, knownModules, loadModule } from "../src/module.js";
import { parseIni } from "../src/ini.js";
import {
  copyWorkspace,
  expectInputError,
  makeTemp,
  REPO,
  removeTemps,
} from "./support/workspace.js";

afterAll(removeTemps);

const MODULE_PARTS = ["configs", "autoscaler", "deploy_files"];

/** A temp workspace with the demo module's files, `file` (relative) rewritten by `edit`. */
function broken(file: string, edit: (text: string) => string): string {
  const ws = copyWorkspace(MODULE_PARTS);
  const target = path.join(ws, file);
  writeFileSync(target, edit(readFileSync(target, "utf8")));
  return ws;
}

const EXEC = "configs/demo_aws.ini";
const MCS2 = "configs/mcs_config_demo_level2.ini";
const YAML = "autoscaler/ray_demo_aws.yaml";

/** The 1-based line of `text` that starts with `prefix`. */
const lineOf = (text: string, prefix: string) =>
  text.split("\n").findIndex((l) => l.startsWith(prefix)) + 1;

describe("loadModule: the demo module", () => {
  it("finds and reads every file by convention", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    const mod = loadModule(ws, "demo", "level2");
    expect(mod.name).toBe("demo");
    expect(mod.metadata).toBe("level2");
    expect(mod.execConfigPath).toBe(path.join(ws, EXEC));
    expect(mod.mcsConfigPath).toBe(path.join(ws, MCS2));
    expect(mod.clusterYamlPath).toBe(path.join(ws, YAML));
    expect(mod.deployDir).toBe(path.join(ws, "deploy_files/demo"));
    expect(Object.fromEntries(mod.exec)).toEqual({
      run_script: "ray_script.sh",
      num_cpus: "1",
      num_gpus: "0",
      scene_timeout_minutes: "10",
    });
    expect(mod.resources).toEqual({ num_cpus: 1, num_gpus: 0 });
    expect(mod.sceneTimeoutMinutes).toBe(10);
    const mcs = mod.mcsConfig.get("MCS")!;
    expect(mcs.get("metadata")).toBe("level2");
    expect(mcs.get("s3_folder")).toBe("demo-eval");
    expect(mcs.get("team")).toBe("demo");
    expect(mod.cluster.cluster_name).toBe("mcs-demo");
    expect(mod.cluster.provider).toMatchObject({ type: "aws", cache_stopped_nodes: false });
  });

  it.each(["level1", "level2", "oracle"] as const)("loads metadata level %s", (level) => {
    const mod = loadModule(REPO, "demo", level);
    expect(mod.metadata).toBe(level);
    expect(mod.mcsConfig.get("MCS")!.get("metadata")).toBe(level);
    expect(mod.mcsConfigPath).toBe(path.join(REPO, `configs/mcs_config_demo_${level}.ini`));
  });

  it("defaults resources to one CPU and one GPU, and has no timeout of its own", () => {
    const ws = broken(EXEC, (t) =>
      t
        .replace(/^num_cpus.*$/m, "")
        .replace(/^num_gpus.*$/m, "")
        .replace(/^scene_timeout.*$/m, ""),
    );
    const mod = loadModule(ws, "demo", "level2");
    expect(mod.resources).toEqual({ num_cpus: 1, num_gpus: 1 });
    expect(mod.sceneTimeoutMinutes).toBeUndefined();
  });

  it("accepts an absolute run_script (already on the node) without checking it here", () => {
    const ws = broken(EXEC, (t) =>
      t.replace("run_script = ray_script.sh", "run_script = /opt/run.sh"),
    );
    expect(loadModule(ws, "demo", "level2").exec.get("run_script")).toBe("/opt/run.sh");
  });
});

describe("knownModules", () => {
  it("lists the modules that have configs/M_aws.ini, sorted", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    expect(knownModules(ws)).toEqual(["demo"]);
    writeFileSync(path.join(ws, "configs/opics_aws.ini"), "[MCS]\n");
    writeFileSync(path.join(ws, "configs/baseline_aws.ini"), "[MCS]\n");
    writeFileSync(path.join(ws, "configs/notes.txt"), "");
    expect(knownModules(ws)).toEqual(["baseline", "demo", "opics"]);
  });

  it("is empty without a configs/ directory", () => {
    expect(knownModules(makeTemp())).toEqual([]);
  });
});

describe("loadModule: broken modules throw an InputError naming the file and the fix", () => {
  it("an unknown module lists the known ones", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    writeFileSync(path.join(ws, "configs/opics_aws.ini"), "[MCS]\n");
    expectInputError(
      () => loadModule(ws, "cora", "level2"),
      "module",
      /^unknown module "cora": known modules are demo, opics \(a module needs configs\/cora_aws\.ini\)$/,
    );
  });

  it("an empty workspace says there are none", () => {
    expectInputError(
      () => loadModule(makeTemp(), "demo", "level2"),
      "module",
      /known modules are \(none\)/,
    );
  });

  it("a missing MCS config for the level names the file and the levels there are", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    rmSync(path.join(ws, "configs/mcs_config_demo_level1.ini"));
    expectInputError(
      () => loadModule(ws, "demo", "level1"),
      "metadata",
      /^module "demo" has no MCS config for level1: add configs\/mcs_config_demo_level1\.ini or choose one of: level2, oracle$/,
    );
  });

  it("no MCS config at all", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    for (const l of ["level1", "level2", "oracle"]) {
      rmSync(path.join(ws, `configs/mcs_config_demo_${l}.ini`));
    }
    expectInputError(
      () => loadModule(ws, "demo", "oracle"),
      "metadata",
      /choose one of: \(none\)$/,
    );
  });

  it("a missing cluster YAML", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    rmSync(path.join(ws, YAML));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^module "demo" is missing autoscaler\/ray_demo_aws\.yaml$/,
    );
  });

  it("a missing deploy folder, or a file in its place", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    rmSync(path.join(ws, "deploy_files/demo"), { recursive: true });
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^module "demo" is missing deploy_files\/demo\/$/,
    );
    writeFileSync(path.join(ws, "deploy_files/demo"), "not a folder");
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /is missing deploy_files\/demo\//,
    );
  });

  it("a malformed execution INI names file:line", () => {
    let line = 0;
    const ws = broken(EXEC, (t) => {
      const out = t.replace("num_cpus = 1", "num_cpus 1");
      line = lineOf(out, "num_cpus 1");
      return out;
    });
    expect(line).toBeGreaterThan(1);
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      new RegExp(`^malformed INI: configs/demo_aws\\.ini:${line}: expected "key = value"`),
    );
  });

  it("a malformed MCS config names file:line", () => {
    let line = 0;
    const ws = broken(MCS2, (t) => {
      const out = t + "team = twice\n";
      line = out.split("\n").length - 1;
      return out;
    });
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      new RegExp(
        `^malformed INI: configs/mcs_config_demo_level2\\.ini:${line}: "team" is set twice$`,
      ),
    );
  });

  it("an execution INI without [MCS]", () => {
    const ws = broken(EXEC, (t) => t.replace("[MCS]", "[mcs]"));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^configs\/demo_aws\.ini: has no \[MCS\] section$/,
    );
  });

  it("no run_script", () => {
    const ws = broken(EXEC, (t) => t.replace(/^run_script.*$/m, ""));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^configs\/demo_aws\.ini: set run_script in \[MCS\]$/,
    );
  });

  it("a run_script that is not in the deploy folder", () => {
    const ws = broken(EXEC, (t) => t.replace("run_script = ray_script.sh", "run_script = run.sh"));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^configs\/demo_aws\.ini: run_script "run\.sh" is not a file in deploy_files\/demo\/$/,
    );
  });

  it("a run_script that climbs out of the deploy folder", () => {
    // It exists in the workspace, but the staging dir holds only deploy/: the plan cannot run it.
    const ws = broken(EXEC, (t) =>
      t.replace("run_script = ray_script.sh", "run_script = ../../configs/demo_aws.ini"),
    );
    expectInputError(() => loadModule(ws, "demo", "level2"), "module", /run_script/);
  });

  it.each([
    ["num_gpus = 0", "num_gpus = lots", /num_gpus="lots" is not a non-negative number/],
    ["num_cpus = 1", "num_cpus = -1", /num_cpus="-1" is not a non-negative number/],
    ["num_cpus = 1", "num_cpus =", /num_cpus="" is not a non-negative number/],
    [
      "scene_timeout_minutes = 10",
      "scene_timeout_minutes = ten",
      /scene_timeout_minutes="ten" is not a non-negative number/,
    ],
  ])("a bad number: %s → %s", (from, to, pattern) => {
    const ws = broken(EXEC, (t) => t.replace(from, to));
    const error = expectInputError(() => loadModule(ws, "demo", "level2"), "module", pattern);
    expect(error.message).toMatch(/^configs\/demo_aws\.ini: /);
  });

  it.each(["maybe", "", "enabled"])("a history_enabled configparser cannot read: %j", (value) => {
    const ws = broken(MCS2, (t) =>
      t.replace("history_enabled = true", `history_enabled = ${value}`),
    );
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "metadata",
      new RegExp(
        `^configs/mcs_config_demo_level2\\.ini: history_enabled="${value}" is not a boolean \\(use true or false; MCS also reads yes/no, on/off, 1/0\\)$`,
      ),
    );
  });

  it.each(["history_enabled", "video_enabled"])(
    "a real evaluation (evaluation = true) without %s",
    (key) => {
      const ws = broken(MCS2, (t) =>
        t
          .replace("evaluation = false", "evaluation = yes")
          .replace("video_enabled = false", "video_enabled = on")
          .replace(`${key} = ${key === "video_enabled" ? "on" : "true"}`, `${key} = off`),
      );
      expectInputError(
        () => loadModule(ws, "demo", "level2"),
        "metadata",
        new RegExp(
          `^configs/mcs_config_demo_level2\\.ini: evaluation = true needs ${key} = true \\(an evaluation is scored from the scene histories and videos\\); set it, or evaluation = false for a development run$`,
        ),
      );
    },
  );

  it("a node_services script that is not in the deploy folder", () => {
    const ws = broken(EXEC, (t) => t + "node_services = services.sh\n");
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^configs\/demo_aws\.ini: node_services "services\.sh" is not a file in deploy_files\/demo\/$/,
    );
  });

  it("an MCS config missing required keys lists them", () => {
    const ws = broken(MCS2, (t) => t.replace(/^s3_folder.*$/m, "").replace(/^team.*$/m, "team ="));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "metadata",
      /^configs\/mcs_config_demo_level2\.ini: set s3_folder, team$/,
    );
  });

  it("an MCS config whose metadata disagrees with its name", () => {
    const ws = broken(MCS2, (t) => t.replace("metadata = level2", "metadata = oracle"));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "metadata",
      /^configs\/mcs_config_demo_level2\.ini says metadata=oracle but its name says level2; make them agree$/,
    );
  });

  it.each([
    ["s3_folder = demo-eval", 's3_folder="../elsewhere"', "s3_folder = ../elsewhere"],
    ["team = demo", 'team="de mo"', "team = de mo"],
    ["s3_bucket = mcs-demo-results", 's3_bucket="b;rm"', "s3_bucket = b;rm"],
    ["s3_movies_folder = demo-eval-movies", 's3_movies_folder="m//x"', "s3_movies_folder = m//x"],
  ])("an unsafe S3 name: %s", (from, shown, to) => {
    const ws = broken(MCS2, (t) => t.replace(from, to));
    const error = expectInputError(() => loadModule(ws, "demo", "level2"), "metadata");
    expect(error.message).toBe(
      `configs/mcs_config_demo_level2.ini: ${shown} is not a safe S3 name`,
    );
  });

  // A local store joins keys onto its root: ".." segments would write outside it.
  it('an S3 name with ".." segments is unsafe', () => {
    const ws = broken(MCS2, (t) =>
      t.replace("s3_folder = demo-eval", "s3_folder = x/../../escaped"),
    );
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "metadata",
      /s3_folder="x\/\.\.\/\.\.\/escaped"/,
    );
  });

  it("a folder path with slashes is a safe S3 name", () => {
    const ws = broken(MCS2, (t) =>
      t.replace("s3_folder = demo-eval", "s3_folder = evals/2026/demo"),
    );
    expect(loadModule(ws, "demo", "level2").mcsConfig.get("MCS")!.get("s3_folder")).toBe(
      "evals/2026/demo",
    );
  });

  it("malformed YAML (bad indentation) names the file, in one line", () => {
    const ws = broken(YAML, (t) => t.replace("  type: aws\n", "type: aws\n"));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^malformed YAML in autoscaler\/ray_demo_aws\.yaml: \S/,
    );
  });

  it("YAML that is not a mapping", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    writeFileSync(path.join(ws, YAML), "- a\n- b\n");
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /^autoscaler\/ray_demo_aws\.yaml: expected a Ray cluster config \(a mapping\)$/,
    );
    writeFileSync(path.join(ws, YAML), "");
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      /expected a Ray cluster config/,
    );
  });

  it.each(["cluster_name", "provider"])("a cluster YAML without %s", (key) => {
    const ws = broken(YAML, (t) =>
      key === "provider"
        ? t.replace("provider:", "provider_x:")
        : t.replace(/^cluster_name:.*$/m, ""),
    );
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "module",
      new RegExp(`^autoscaler/ray_demo_aws\\.yaml: set ${key}$`),
    );
  });

  it("checks the files in order: a broken YAML is not reported before a missing MCS config", () => {
    const ws = broken(YAML, () => "key: [unclosed\n");
    renameSync(path.join(ws, MCS2), path.join(ws, "configs/elsewhere.ini"));
    expectInputError(
      () => loadModule(ws, "demo", "level2"),
      "metadata",
      /no MCS config for level2/,
    );
  });

  it("does not need the run script to be executable (the plan makes it so)", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    chmodSync(path.join(ws, "deploy_files/demo/ray_script.sh"), 0o644);
    expect(loadModule(ws, "demo", "level2").exec.get("run_script")).toBe("ray_script.sh");
  });

  it("finds a new module by the same conventions", () => {
    const ws = copyWorkspace(MODULE_PARTS);
    writeFileSync(
      path.join(ws, "configs/team_x_aws.ini"),
      "[MCS]\nrun_script = go.sh\nnum_gpus = 1\n",
    );
    writeFileSync(
      path.join(ws, "configs/mcs_config_team_x_oracle.ini"),
      "[MCS]\nmetadata = oracle\ns3_bucket = b\ns3_folder = f\nteam = x\nevaluation_name = e\n",
    );
    writeFileSync(
      path.join(ws, "autoscaler/ray_team_x_aws.yaml"),
      "cluster_name: x\nprovider: {type: aws}\n",
    );
    mkdirSync(path.join(ws, "deploy_files/team_x"));
    writeFileSync(path.join(ws, "deploy_files/team_x/go.sh"), "#!/bin/sh\n");
    const mod = loadModule(ws, "team_x", "oracle");
    expect(mod.resources).toEqual({ num_cpus: 1, num_gpus: 1 });
    expect(mod.cluster).toEqual({ cluster_name: "x", provider: { type: "aws" } });
    expectInputError(
      () => loadModule(ws, "team_x", "level1"),
      "metadata",
      /choose one of: oracle$/,
    );
  });
});

describe("checkMcsConfig", () => {
  const config = (extra = "") =>
    parseIni(
      `[MCS]\nmetadata = level1\ns3_bucket = b\ns3_folder = f\nteam = t\nevaluation_name = e\n${extra}`,
      "c.ini",
    );

  it("passes a complete config", () => {
    expect(() => checkMcsConfig(config(), "level1", "c.ini")).not.toThrow();
  });

  it("names the source it is given", () => {
    expectInputError(
      () => checkMcsConfig(config(), "oracle", "MCS config with overrides"),
      "metadata",
      /^MCS config with overrides says metadata=level1 but its name says oracle/,
    );
  });

  it("requires an [MCS] section", () => {
    expectInputError(
      () => checkMcsConfig(parseIni("[other]\na = 1\n", "c.ini"), "level1", "c.ini"),
      "module",
      /^c\.ini: has no \[MCS\] section$/,
    );
  });
});
