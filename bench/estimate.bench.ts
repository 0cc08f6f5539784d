/**
 * The estimate's accuracy (src/estimate.ts), measured on recorded runs. By hand:
 *   npx tsx bench/estimate.bench.ts            replay bench/recorded/ (fast, deterministic)
 *   npx tsx bench/estimate.bench.ts --record   record it again (slow: ~2 minutes a campaign)
 * Target: wall time within ±15% of the actual on runs with a previous run of the same scenes.
 * It reports, it does not gate: exit 0 whatever the figures (1 only when data is missing).
 *
 * Recording: for each campaign, heavy-tailed scenes over the real MCS goal categories
 * (scenes/generate.py: goal.last_step Pareto-distributed, a few long scenes), run three times in a
 * row into one --out by the real CLI (dist/cli/index.js run --module demo, this machine's Ray, 2
 * CPU slots) in a temp workspace whose configs/demo_aws.ini prices the machine ([prices] local).
 * Each run's run-summary.json (its journal applied) goes to bench/recorded/<campaign>/run-<k>.json.
 *
 * Replay: each run k >= 2 estimated from runs k-1..1 (read through previousRuns, as a plan reads
 * them) on the machine's shape; its actual wall time is its launch_phases plus the driver's
 * started_at..finished_at, its actual cost what the report prices (src/cost.ts). Ratios are
 * estimate (mid) / actual; "in range" is the actual within the estimate's low..high.
 */
import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as prettier from "prettier";
import { machineShape } from "../src/cluster-shape.js";
import type { Plan } from "../src/plan.js";
import { LOCAL_RUN_NODE_TYPE } from "../src/prices.js";
import { parseSummary, readSummary, type RunSummary } from "../src/summary.js";
import { replay, tally, type Measured, type Replayed, type Tally } from "./estimate-replay.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const RECORDED = path.join(REPO, "bench", "recorded");
const CLI = path.join(REPO, "dist", "cli", "index.js");
const TOLERANCE = 0.15;

/** How the campaigns are recorded: the same settings, different seeds. */
const RECORDING = {
  runs: 3,
  cpus: 2,
  usdPerHour: 3.6,
  stepSeconds: 0.02,
  count: 24,
  minSteps: 30,
  maxSteps: 1000,
  seeds: [1, 2, 3],
};

interface Meta {
  campaign: string;
  seed: number;
  count: number;
  min_steps: number;
  max_steps: number;
  step_seconds: number;
  cpus: number;
  usd_per_hour: number;
  /** What one scene asks for (configs/demo_aws.ini [MCS] num_cpus, num_gpus). */
  scene_resources: { num_cpus: number; num_gpus: number };
  recorded_at: string;
  /** This machine while recording: its cores and 1-minute load before each run. */
  machine_cores: number;
  runs: { file: string; run_id: string; cli_seconds: number; load_before: number }[];
}

// ---------------------------------------------------------------------------------------------
// Recording

async function record(): Promise<void> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build first`);
  const started = Date.now();
  const ws = mkdtempSync(path.join(os.tmpdir(), "mcs-estimate-bench-"));
  try {
    for (const part of ["configs", "autoscaler", "deploy_files"])
      cpSync(path.join(REPO, part), path.join(ws, part), { recursive: true });
    const ini = path.join(ws, "configs", "demo_aws.ini");
    if (/^\[prices\]/m.test(readFileSync(ini, "utf8")))
      throw new Error(`${ini} already has [prices]: the bench adds its own`);
    appendFileSync(ini, `\n[prices]\nlocal = ${RECORDING.usdPerHour}\n`);
    for (const seed of RECORDING.seeds) await recordCampaign(ws, seed);
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
  console.log(`recorded in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

async function recordCampaign(ws: string, seed: number): Promise<void> {
  const r = RECORDING;
  const campaign = `seed-${seed}`;
  const scenes = path.join(ws, `scenes-${campaign}`);
  const out = path.join(ws, `out-${campaign}`);
  const dest = path.join(RECORDED, campaign);
  const started = Date.now();
  run("python3", [
    path.join(REPO, "scenes", "generate.py"),
    ...["--count", `${r.count}`, "--out", scenes, "--seed", `${seed}`],
    ...["--min-steps", `${r.minSteps}`, "--max-steps", `${r.maxSteps}`, "--prefix", campaign],
  ]);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const meta: Meta = {
    campaign,
    seed,
    count: r.count,
    min_steps: r.minSteps,
    max_steps: r.maxSteps,
    step_seconds: r.stepSeconds,
    cpus: r.cpus,
    usd_per_hour: r.usdPerHour,
    scene_resources: { num_cpus: 1, num_gpus: 0 },
    recorded_at: new Date().toISOString(),
    machine_cores: os.availableParallelism(),
    runs: [],
  };
  for (let k = 1; k <= r.runs; k++) {
    const before = new Set(
      existsSync(path.join(out, "runs")) ? readdirSync(path.join(out, "runs")) : [],
    );
    const load = os.loadavg()[0]!;
    const t0 = Date.now();
    const output = run(
      "node",
      [
        CLI,
        "run",
        "--module",
        "demo",
        "--scenes",
        scenes,
        "--out",
        out,
        "--num-cpus",
        `${r.cpus}`,
      ].concat(["--set", `demo_step_seconds=${r.stepSeconds}`]),
      ws,
    );
    const cliSeconds = (Date.now() - t0) / 1000;
    for (const line of output.split("\n"))
      if (/estimate|mcs-pipeline: done/.test(line)) console.log(`  ${line.trim()}`);
    const runId = readdirSync(path.join(out, "runs")).find((d) => !before.has(d));
    if (!runId) throw new Error(`run ${k} of ${campaign} left no run directory`);
    const plan = JSON.parse(
      readFileSync(path.join(out, "runs", runId, "plan", "plan.json"), "utf8"),
    ) as Pick<Plan, "store" | "summary_key">;
    const store = {
      read: async (key: string) => {
        const file = path.join(plan.store, key);
        return existsSync(file) ? readFileSync(file, "utf8") : undefined;
      },
      uri: (key: string) => path.join(plan.store, key),
    };
    const { summary } = await readSummary(store, plan.summary_key, (l) => console.warn(l));
    if (!summary.launch_phases) console.warn(`  ${runId}: the summary has no launch_phases`);
    const file = `run-${k}.json`;
    await writeFormatted(path.join(dest, file), summary);
    meta.runs.push({ file, run_id: runId, cli_seconds: cliSeconds, load_before: load });
    console.log(
      `${campaign} run ${k}: ${runId}, ${cliSeconds.toFixed(1)} s (load ${load.toFixed(2)})`,
    );
  }
  await writeFormatted(path.join(dest, "meta.json"), meta);
  console.log(`${campaign}: ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/** Runs a command to completion (its stderr shown), returning its stdout; throws on failure. */
function run(command: string, args: string[], cwd = REPO): string {
  const result = spawnSync(command, args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(" ")} exited ${result.status}:\n${result.stdout}`);
  return result.stdout;
}

/** JSON as prettier would have it, so `prettier --check bench/` passes on the recordings. */
async function writeFormatted(file: string, value: unknown): Promise<void> {
  const options = (await prettier.resolveConfig(file)) ?? {};
  writeFileSync(file, await prettier.format(JSON.stringify(value), { ...options, filepath: file }));
}

// ---------------------------------------------------------------------------------------------
// Replay

interface Campaign {
  meta: Meta;
  runs: RunSummary[];
}

function load(): Campaign[] {
  if (!existsSync(RECORDED)) return [];
  return readdirSync(RECORDED)
    .filter((d) => existsSync(path.join(RECORDED, d, "meta.json")))
    .sort()
    .map((d) => {
      const meta = JSON.parse(readFileSync(path.join(RECORDED, d, "meta.json"), "utf8")) as Meta;
      const runs = meta.runs.map(({ file }) => {
        const where = path.join(RECORDED, d, file);
        return parseSummary(readFileSync(where, "utf8"), where);
      });
      return { meta, runs };
    });
}

/** What machineShape needs of a plan: a scene's resources and the machine's price. */
function shapeOf(meta: Meta) {
  const plan = {
    resources: meta.scene_resources,
    node_types: {
      [LOCAL_RUN_NODE_TYPE]: {
        instance_type: null,
        head: true,
        spot: false,
        usd_per_hour: meta.usd_per_hour,
        price_source: "bench meta.json",
      },
    },
  } as unknown as Plan;
  return machineShape(plan, meta.cpus);
}

const secs = (s: number | null) => (s === null ? "–" : `${s.toFixed(1)} s`);
const usd = (d: number) => `$${d.toFixed(4)}`;
const pad = (text: string, width: number) => text.padEnd(width);

function row(what: string, m: Measured | null, fmt: (n: number) => string): string {
  if (!m) return `    ${pad(what, 5)} no price`;
  const range = `${fmt(m.estimate.low)}–${fmt(m.estimate.high)}`;
  return (
    `    ${pad(what, 5)} ${pad(fmt(m.estimate.mid), 10)}${pad(range, 20)}${pad(fmt(m.actual), 10)}` +
    `${pad(m.ratio.toFixed(3), 7)}${m.inside ? "yes" : "no"}`
  );
}

function printRun(r: Replayed, k: number): void {
  const b = r.estimate.basis;
  const scenes = r.setup.estimate === null ? null : r.estimate.planned.wall.mid - r.setup.estimate;
  const actualScenes = r.setup.actual === null ? null : r.wall.actual - r.setup.actual;
  console.log(
    `  run ${k} (${r.run.run_id}) from ${r.from.length} previous; scenes' times: own ${b.own}, ` +
      `category ${b.category}, run ${b.run}`,
  );
  console.log(
    `    start-up est ${secs(r.setup.estimate)} actual ${secs(r.setup.actual)}; ` +
      `scenes est ${secs(scenes)} actual ${secs(actualScenes)}`,
  );
  console.log(
    `    ${pad("", 5)} ${pad("estimate", 10)}${pad("range", 20)}${pad("actual", 10)}${pad("ratio", 7)}in range`,
  );
  console.log(row("wall", r.wall, secs));
  console.log(row("cost", r.usd, usd));
}

function summaryLine(what: string, t: Tally): string {
  return (
    `  ${pad(what, 10)} median ratio ${t.median.toFixed(3)}, worst ${t.worst.toFixed(3)} ` +
    `(|ratio-1| ${Math.abs(t.worst - 1).toFixed(3)}), ${t.within}/${t.n} within ±${TOLERANCE * 100}%, ` +
    `${t.inside}/${t.n} inside the range`
  );
}

async function replayAll(): Promise<void> {
  const campaigns = load();
  if (campaigns.length === 0) {
    console.error(`estimate.bench: no recordings in ${RECORDED}: run with --record first`);
    process.exitCode = 1;
    return;
  }
  const replayed: Replayed[] = [];
  for (const { meta, runs } of campaigns) {
    console.log(
      `${meta.campaign}: ${meta.count} scenes (seed ${meta.seed}, ${meta.min_steps}..${meta.max_steps} ` +
        `steps at ${meta.step_seconds} s), ${meta.cpus} CPUs at $${meta.usd_per_hour}/h, ${runs.length} runs`,
    );
    const shape = shapeOf(meta);
    for (let k = 1; k < runs.length; k++) {
      const r = await replay(runs, k, shape, (l) => console.warn(`    warning: ${l}`));
      if (!r) {
        console.log(`  run ${k + 1}: nothing to estimate from`);
        continue;
      }
      printRun(r, k + 1);
      replayed.push(r);
    }
  }
  const wall = tally(
    replayed.map((r) => r.wall),
    TOLERANCE,
  );
  const cost = tally(
    replayed.flatMap((r) => (r.usd ? [r.usd] : [])),
    TOLERANCE,
  );
  const other = await otherScenes(campaigns);
  const ok = wall.n > 0 && wall.within === wall.n ? "ok" : "MISSED";
  console.log(`estimate.bench: ${replayed.length} runs replayed (${campaigns.length} campaigns)`);
  console.log(summaryLine("wall time", wall));
  console.log(summaryLine("cost", cost));
  console.log(`  target    wall time within ±${TOLERANCE * 100}% on every replayed run: ${ok}`);
  if (other.length) {
    console.log(`  other scenes (by category, not under the target), ${other.length} runs:`);
    console.log(
      summaryLine(
        "wall time",
        tally(
          other.map((r) => r.wall),
          TOLERANCE,
        ),
      ),
    );
    console.log(
      summaryLine(
        "cost",
        tally(
          other.flatMap((r) => (r.usd ? [r.usd] : [])),
          TOLERANCE,
        ),
      ),
    );
  }
}

/**
 * Each campaign's first run estimated from another campaign's runs: other scenes of the same
 * categories, so every scene's time comes from its category's seconds per step.
 */
async function otherScenes(campaigns: Campaign[]): Promise<Replayed[]> {
  const replayed: Replayed[] = [];
  const lines: string[] = [];
  for (const a of campaigns) {
    for (const b of campaigns) {
      if (a === b || !b.runs[0]) continue;
      const runs = [...a.runs, b.runs[0]];
      const r = await replay(runs, a.runs.length, shapeOf(b.meta), () => {});
      if (!r) continue;
      replayed.push(r);
      const basis = r.estimate.basis;
      lines.push(
        `  ${b.meta.campaign} run 1 from ${a.meta.campaign}'s ${r.from.length} runs ` +
          `(category ${basis.category}, run ${basis.run}): wall ${r.wall.ratio.toFixed(3)}` +
          (r.usd ? `, cost ${r.usd.ratio.toFixed(3)}` : ""),
      );
    }
  }
  if (lines.length) console.log(`other scenes of the same categories (ratio estimate/actual):`);
  for (const line of lines) console.log(line);
  return replayed;
}

if (process.argv.includes("--record")) await record();
await replayAll();
