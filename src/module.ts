/**
 * A module, found by convention (DESIGN §4) and checked file by file:
 * autoscaler/ray_M_aws.yaml, configs/M_aws.ini, configs/mcs_config_M_LEVEL.ini, deploy_files/M/.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { InputError } from "./errors.js";
import { iniBoolean, type Ini, parseIni } from "./ini.js";
import { METADATA_LEVELS, type Metadata } from "./request.js";

export interface Module {
  name: string;
  metadata: Metadata;
  clusterYamlPath: string;
  cluster: Record<string, unknown>;
  execConfigPath: string;
  /** The `[MCS]` section of configs/M_aws.ini. */
  exec: Map<string, string>;
  mcsConfigPath: string;
  mcsConfig: Ini;
  deployDir: string;
  resources: { num_cpus: number; num_gpus: number };
  sceneTimeoutMinutes: number | undefined;
  /** configs/M_aws.ini `scene_end_grace_seconds`: how long a run script may go on after MCS
   *  wrote the scene's history (undefined: the driver's default). */
  sceneEndGraceSeconds: number | undefined;
  /** configs/M_aws.ini `node_services`: a script in the deploy folder (or absolute on the node)
   *  started once per node before its first scene; undefined when the module has none. */
  nodeServices: string | undefined;
  /** configs/M_aws.ini `[prices]`: USD per hour by node type or instance type (src/prices.ts). */
  prices: Map<string, number>;
}

export const REQUIRED_MCS_KEYS = ["metadata", "s3_bucket", "s3_folder", "team", "evaluation_name"];

export function knownModules(workspace: string): string[] {
  const dir = path.join(workspace, "configs");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => /^(.+)_aws\.ini$/.exec(f)?.[1])
    .filter((m): m is string => m !== undefined)
    .sort();
}

export function loadModule(workspace: string, name: string, metadata: Metadata): Module {
  const rel = (p: string) => path.relative(workspace, p) || ".";
  const execConfigPath = path.join(workspace, "configs", `${name}_aws.ini`);
  if (!existsSync(execConfigPath)) {
    const known = knownModules(workspace);
    throw new InputError(
      "module",
      `unknown module "${name}": known modules are ${known.join(", ") || "(none)"}` +
        ` (a module needs ${rel(execConfigPath)})`,
    );
  }
  const mcsConfigPath = path.join(workspace, "configs", `mcs_config_${name}_${metadata}.ini`);
  if (!existsSync(mcsConfigPath)) {
    const levels = METADATA_LEVELS.filter((l) =>
      existsSync(path.join(workspace, "configs", `mcs_config_${name}_${l}.ini`)),
    );
    throw new InputError(
      "metadata",
      `module "${name}" has no MCS config for ${metadata}: add ${rel(mcsConfigPath)}` +
        ` or choose one of: ${levels.join(", ") || "(none)"}`,
    );
  }
  const clusterYamlPath = path.join(workspace, "autoscaler", `ray_${name}_aws.yaml`);
  const deployDir = path.join(workspace, "deploy_files", name);
  for (const [file, isDir] of [
    [clusterYamlPath, false],
    [deployDir, true],
  ] as const) {
    if (!existsSync(file) || statSync(file).isDirectory() !== isDir) {
      throw new InputError("module", `module "${name}" is missing ${rel(file)}${isDir ? "/" : ""}`);
    }
  }

  const execIni = readIni(execConfigPath, rel);
  const exec = mcsSection(execIni, rel(execConfigPath));
  const priceSection = execIni.get("prices") ?? new Map<string, string>();
  const priceSource = `${rel(execConfigPath)} [prices]`;
  const runScript = exec.get("run_script");
  if (!runScript) throw new InputError("module", `${rel(execConfigPath)}: set run_script in [MCS]`);
  for (const key of ["run_script", "node_services"]) {
    const script = exec.get(key);
    if (script === undefined || path.isAbsolute(script)) continue;
    const local = path.resolve(deployDir, script);
    const inDeploy = !path.relative(deployDir, local).startsWith("..");
    if (!script || !inDeploy || !existsSync(local) || statSync(local).isDirectory()) {
      throw new InputError(
        "module",
        `${rel(execConfigPath)}: ${key} "${script}" is not a file in ${rel(deployDir)}/`,
      );
    }
  }
  const mcsConfig = readIni(mcsConfigPath, rel);
  checkMcsConfig(mcsConfig, metadata, rel(mcsConfigPath));

  return {
    name,
    metadata,
    clusterYamlPath,
    cluster: readClusterYaml(clusterYamlPath, rel(clusterYamlPath)),
    execConfigPath,
    exec,
    mcsConfigPath,
    mcsConfig,
    deployDir,
    resources: {
      num_cpus: number(exec, "num_cpus", 1, rel(execConfigPath)),
      num_gpus: number(exec, "num_gpus", 1, rel(execConfigPath)),
    },
    sceneTimeoutMinutes: exec.has("scene_timeout_minutes")
      ? number(exec, "scene_timeout_minutes", 60, rel(execConfigPath))
      : undefined,
    sceneEndGraceSeconds: exec.has("scene_end_grace_seconds")
      ? number(exec, "scene_end_grace_seconds", 0, rel(execConfigPath))
      : undefined,
    nodeServices: exec.get("node_services") || undefined,
    prices: new Map(
      [...priceSection.keys()].map((k) => [k, number(priceSection, k, 0, priceSource)]),
    ),
  };
}

/** Checked again after overrides: an override must not break the config either. */
export function checkMcsConfig(ini: Ini, metadata: Metadata, source: string): void {
  const mcs = mcsSection(ini, source);
  const missing = REQUIRED_MCS_KEYS.filter((k) => !mcs.get(k));
  if (missing.length) throw new InputError("metadata", `${source}: set ${missing.join(", ")}`);
  if (mcs.get("metadata") !== metadata) {
    throw new InputError(
      "metadata",
      `${source} says metadata=${mcs.get("metadata")} but its name says ${metadata}; make them agree`,
    );
  }
  const flags = mcsFlags(mcs, source);
  if (flags.evaluation) {
    // As the original pipeline checked a real evaluation: it is scored from histories and videos.
    for (const key of ["history_enabled", "video_enabled"] as const) {
      if (!flags[key]) {
        throw new InputError(
          "metadata",
          `${source}: evaluation = true needs ${key} = true (an evaluation is scored from the scene histories and videos); set it, or evaluation = false for a development run`,
        );
      }
    }
  }
  for (const key of ["s3_bucket", "s3_folder", "s3_movies_folder", "team", "evaluation_name"]) {
    const value = mcs.get(key);
    if (
      value !== undefined &&
      !/^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/.test(value)
    ) {
      throw new InputError("metadata", `${source}: ${key}="${value}" is not a safe S3 name`);
    }
  }
}

/**
 * The MCS config's switches, read as MCS reads them (configparser's getboolean, MCS's fallbacks):
 * a value getboolean refuses is one error line here, not a surprise on the node.
 */
export function mcsFlags(mcs: Map<string, string>, source: string) {
  const flag = (key: string, fallback: boolean) => {
    const value = iniBoolean(mcs.get(key), fallback);
    if (value === undefined) {
      throw new InputError(
        "metadata",
        `${source}: ${key}="${mcs.get(key)}" is not a boolean (use true or false; MCS also reads yes/no, on/off, 1/0)`,
      );
    }
    return value;
  };
  return {
    evaluation: flag("evaluation", false),
    history_enabled: flag("history_enabled", true),
    video_enabled: flag("video_enabled", false),
  };
}

export function mcsSection(ini: Ini, source: string): Map<string, string> {
  const section = ini.get("MCS");
  if (!section) throw new InputError("module", `${source}: has no [MCS] section`);
  return section;
}

function readIni(file: string, rel: (p: string) => string): Ini {
  try {
    return parseIni(readFileSync(file, "utf8"), rel(file));
  } catch (error) {
    throw new InputError("module", `malformed INI: ${(error as Error).message}`);
  }
}

function readClusterYaml(file: string, source: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, "utf8"));
  } catch (error) {
    const first = (error as Error).message.split("\n")[0];
    throw new InputError("module", `malformed YAML in ${source}: ${first}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new InputError("module", `${source}: expected a Ray cluster config (a mapping)`);
  }
  const cluster = doc as Record<string, unknown>;
  for (const key of ["cluster_name", "provider"]) {
    if (!(key in cluster)) throw new InputError("module", `${source}: set ${key}`);
  }
  return cluster;
}

function number(section: Map<string, string>, key: string, fallback: number, source: string) {
  const text = section.get(key);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text === "" || !Number.isFinite(n) || n < 0) {
    throw new InputError("module", `${source}: ${key}="${text}" is not a non-negative number`);
  }
  return n;
}
