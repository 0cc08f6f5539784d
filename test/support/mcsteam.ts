/**
 * The mcsteam test module (test/fixtures/mcsteam/): a stand-in team whose performer runs the
 * real machine-common-sense 0.7.4 package (see its deploy_files/mcsteam/README.md), and
 * workspaces holding it beside copies of the repo's module files.
 */
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ensureMcsVenv, mcsImageBin } from "./mcs-venv.js";
import { copyWorkspace, REPO } from "./workspace.js";

/** The fixture's own files, laid out as a workspace's. */
export const MCSTEAM_FIXTURE = path.join(REPO, "test", "fixtures", "mcsteam");

/** The module's run scripts: the baseline way, the CORA way (node service), the MESS way (monitor). */
export type McsteamRunScript = "ray_script.sh" | "ray_script_service.sh" | "ray_script_monitor.sh";

export const MCSTEAM_LEVELS = ["level1", "level2"] as const;

export interface TeamWorkspaceOptions {
  /** run_script in configs/mcsteam_aws.ini (default ray_script.sh). */
  runScript?: McsteamRunScript;
  /** Keys to set in configs/mcsteam_aws.ini's [MCS]; null removes one (e.g. node_services). */
  awsConfig?: Record<string, string | number | boolean | null>;
  /** Keys to set in every configs/mcs_config_mcsteam_LEVEL.ini's [MCS]; null removes one. */
  mcsConfig?: Record<string, string | number | boolean | null>;
  /** The image's python, written to image.env (default: the cached MCS venv's). */
  python?: string;
}

export interface TeamWorkspace {
  /** The workspace root: configs/, autoscaler/, deploy_files/, scenes/. */
  dir: string;
  /** configs/mcsteam_aws.ini */
  awsConfig: string;
  /** configs/mcs_config_mcsteam_LEVEL.ini by level. */
  mcsConfigs: Record<(typeof MCSTEAM_LEVELS)[number], string>;
  /** autoscaler/ray_mcsteam_aws.yaml */
  autoscaler: string;
  /** deploy_files/mcsteam/ */
  deployDir: string;
  /** deploy_files/mcsteam/<run script> */
  runScript: string;
  /** scenes/mcsteam/: the fixture's ordinary scenes. */
  scenesDir: string;
  /** scenes/mcsteam-faults/: the fault-injection scenes. */
  faultsDir: string;
  /** The image's python (PERFORMER_PYTHON in image.env). */
  python: string;
  /** The directory with the image's `python`/`python3`: put it first on a node's PATH. */
  imageBin: string;
}

/** Sets (or, for null, removes) `key = value` lines in an ini file's [MCS] section. */
export function setIniKeys(
  file: string,
  keys: Record<string, string | number | boolean | null>,
): void {
  const lines = readFileSync(file, "utf8").split("\n");
  const start = lines.findIndex((line) => line.trim().toLowerCase() === "[mcs]");
  if (start < 0) throw new Error(`${file} has no [MCS] section`);
  let end = lines.findIndex((line, i) => i > start && /^\s*\[/.test(line));
  if (end < 0) end = lines.length;
  for (const [key, value] of Object.entries(keys)) {
    const at = lines.findIndex(
      (line, i) =>
        i > start && i < end && line.split(/[=:]/)[0]!.trim().toLowerCase() === key.toLowerCase(),
    );
    if (value === null) {
      if (at >= 0) {
        lines.splice(at, 1);
        end--;
      }
    } else if (at >= 0) lines[at] = `${key} = ${value}`;
    else {
      // After the section's last key, not after its trailing blank lines.
      let last = end;
      while (last - 1 > start && lines[last - 1]!.trim() === "") last--;
      lines.splice(last, 0, `${key} = ${value}`);
      end++;
    }
  }
  writeFileSync(file, lines.join("\n"));
}

/**
 * A temp workspace (removed by `removeTemps()`) with copies of the repo's configs/,
 * autoscaler/, deploy_files/ and scenes/ plus the mcsteam module: its configs, its deploy
 * folder with image.env written (the image facts), autoscaler/ray_mcsteam_aws.yaml (a copy of
 * the demo's), and its scenes in scenes/mcsteam/ and scenes/mcsteam-faults/. Builds the MCS
 * venv first when it is not cached (~25 s).
 */
export function makeTeamWorkspace(options: TeamWorkspaceOptions = {}): TeamWorkspace {
  const venvPython = ensureMcsVenv();
  const python = options.python ?? venvPython;
  const imageBin = mcsImageBin(venvPython);
  const dir = copyWorkspace();
  const fixture = (part: string) => path.join(MCSTEAM_FIXTURE, part);

  for (const name of readdirSync(fixture("configs")))
    cpSync(path.join(fixture("configs"), name), path.join(dir, "configs", name));
  const deployDir = path.join(dir, "deploy_files", "mcsteam");
  cpSync(fixture("deploy_files/mcsteam"), deployDir, {
    recursive: true,
    filter: (source) => path.basename(source) !== "image.env",
  });
  writeFileSync(
    path.join(deployDir, "image.env"),
    `# The mcsteam image: its performer venv (written by the tests).\nPERFORMER_PYTHON=${python}\nIMAGE_BIN=${imageBin}\n`,
  );

  const autoscaler = path.join(dir, "autoscaler", "ray_mcsteam_aws.yaml");
  const demo = readFileSync(path.join(dir, "autoscaler", "ray_demo_aws.yaml"), "utf8");
  if (!/^cluster_name: mcs-demo$/m.test(demo))
    throw new Error("autoscaler/ray_demo_aws.yaml has no `cluster_name: mcs-demo` line");
  writeFileSync(
    autoscaler,
    demo
      .replace(
        /^# .*demo module.*$/m,
        "# Ray cluster-launcher config for the mcsteam test module (a copy of the demo's).",
      )
      .replace(/^cluster_name: mcs-demo$/m, "cluster_name: mcs-mcsteam"),
  );

  const scenesDir = path.join(dir, "scenes", "mcsteam");
  const faultsDir = path.join(dir, "scenes", "mcsteam-faults");
  cpSync(fixture("scenes"), scenesDir, { recursive: true });
  cpSync(fixture("faults"), faultsDir, { recursive: true });

  const awsConfig = path.join(dir, "configs", "mcsteam_aws.ini");
  const runScript = options.runScript ?? "ray_script.sh";
  setIniKeys(awsConfig, { run_script: runScript, ...options.awsConfig });
  const mcsConfigs = Object.fromEntries(
    MCSTEAM_LEVELS.map((level) => [
      level,
      path.join(dir, "configs", `mcs_config_mcsteam_${level}.ini`),
    ]),
  ) as TeamWorkspace["mcsConfigs"];
  if (options.mcsConfig)
    for (const file of Object.values(mcsConfigs)) setIniKeys(file, options.mcsConfig);
  for (const file of [...Object.values(mcsConfigs), path.join(deployDir, runScript)])
    if (!existsSync(file)) throw new Error(`mcsteam workspace: ${file} is missing`);

  return {
    dir,
    awsConfig,
    mcsConfigs,
    autoscaler,
    deployDir,
    runScript: path.join(deployDir, runScript),
    scenesDir,
    faultsDir,
    python,
    imageBin,
  };
}
