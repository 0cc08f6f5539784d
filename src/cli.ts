/**
 * The local CLI: `run` an evaluation on this machine's Ray, `plan` one (validate, start nothing),
 * `preflight` a module's AWS side, or `setup` the pinned Ray venv. Exit: 0 all succeeded, 1 some
 * failed, 2 bad input (or a preflight error), 3 the machine could not run it, 130 interrupted.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { prCommentCommand } from "./action/pr-comment.js";
import { affectedModules } from "./affected.js";
import { findSummaries, renderCombined } from "./combine.js";
import { credentialsFinding, preflight } from "./aws/preflight.js";
import { knownModules, loadModule, mcsSection } from "./module.js";
import { describePlan } from "./plan.js";
import { capture } from "./proc.js";
import { evaluate, planRun, planStore, type Environment } from "./engine.js";
import { describeForecast, forecast } from "./forecast.js";
import { EnvironmentError, InputError, type Finding } from "./errors.js";
import { ensureRay } from "./ray/install.js";
import { FULL_REPORT_FILE, renderTerminal } from "./report.js";
import { parseRequest, type RawRequest } from "./request.js";
import { localTarget, runDir } from "./targets/local.js";

const USAGE = `usage: node dist/cli/index.js <command> [options]

commands:
  run     run an evaluation on this machine's Ray; results, report.md under --out
  plan    build and print the plan, validating every input; starts nothing
  preflight  check a module's AWS side with the credentials of the environment: the bucket
          (in the region, writable), AMIs, instance profile, subnets, zones, vCPU quotas
  setup   create the Python venv with the pinned Ray (run and plan do this when needed)
  affected  print (JSON) the modules a git change affects: --base REF [--head REF]
  combine   one Markdown report of several runs: --summaries DIR [--previous DIR] [--title T]
  pr-comment  create or update the pull request's result comment: --body FILE (GITHUB_TOKEN)

options (run, plan):
  --module M                 module name (configs/M_aws.ini, ...); required
  --scenes PATH|S3           scene directory or file (default scenes/subset), or s3://bucket/prefix/
                             (listed here, fetched by the driver; AWS_ENDPOINT_URL is honoured)
  --metadata LEVEL           level1 | level2 | oracle (default level2)
  --retries N                retries for retryable failures (default 2)
  --scene-timeout-minutes N  per-scene wall clock (default: the module's, else 360)
  --set key=value            MCS-config override for this run (repeatable)
  --resume                   skip scenes that succeeded in the latest run of this module and level
  --out DIR                  runs and the local results store (default .mcs-local)
  --num-cpus N               Ray CPU slots (default: all cores)
  --deadline-minutes N       refuse (exit 2) a run the estimate from previous runs does not finish
                             within N minutes on this machine
  --budget-usd N             refuse (exit 2) a run estimated above N USD; the driver starts no
                             scene once the cost so far plus the running scenes' would pass it
                             (prices this machine by configs/M_aws.ini [prices] local = USD/hour)
options (preflight):
  --module M --metadata LEVEL  as for run
  --region R                 default: the cluster YAML's provider.region (AWS_ENDPOINT_URL is honoured)
options (setup):
  --dev                      also install the test tools (pytest, moto, cfn-lint)
`;

const OPTIONS = {
  module: { type: "string" },
  scenes: { type: "string" },
  metadata: { type: "string" },
  retries: { type: "string" },
  "scene-timeout-minutes": { type: "string" },
  set: { type: "string", multiple: true },
  resume: { type: "boolean" },
  out: { type: "string" },
  "num-cpus": { type: "string" },
  "deadline-minutes": { type: "string" },
  "budget-usd": { type: "string" },
  region: { type: "string" },
  dev: { type: "boolean" },
  base: { type: "string" },
  head: { type: "string" },
  summaries: { type: "string" },
  previous: { type: "string" },
  title: { type: "string" },
  body: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** `--retries -1` reaches our own check (and its one-line message) instead of parseArgs' puzzle. */
function joinNegativeValues(argv: string[]): string[] {
  return argv.flatMap((arg, i) =>
    /^-\d/.test(arg) && argv[i - 1]?.startsWith("--") && !argv[i - 1]!.includes("=")
      ? []
      : /^--[\w-]+$/.test(arg) && /^-\d/.test(argv[i + 1] ?? "")
        ? [`${arg}=${argv[i + 1]}`]
        : [arg],
  );
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: joinNegativeValues(argv),
    options: OPTIONS,
    allowPositionals: true,
  });
  const [command, ...extra] = positionals;
  if (values.help || command === undefined || command === "help") {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (extra.length)
    throw new InputError("arguments", `unexpected "${extra.join(" ")}"; see --help`);
  const toolRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const env: Environment = {
    toolRoot,
    workspace: process.cwd(),
    venvDir: path.resolve(process.env.MCS_VENV ?? path.join(toolRoot, ".venv")),
    python: process.env.MCS_PYTHON,
    log: (line) => console.log(line),
  };
  if (command === "setup") {
    await ensureRay({ ...env, dev: values.dev ?? false });
    return 0;
  }
  if (command === "affected") {
    if (!values.base)
      throw new InputError("base", "is required: the git ref the change starts from");
    const diff = await capture("git", [
      "diff",
      "--name-only",
      `${values.base}...${values.head ?? "HEAD"}`,
    ]);
    const changed = diff.split("\n").filter(Boolean);
    console.log(JSON.stringify(affectedModules(changed, knownModules(env.workspace))));
    return 0;
  }
  if (command === "combine") {
    if (!values.summaries)
      throw new InputError("summaries", "is required: a directory of run summaries");
    // The previous runs: a folder of their summaries, or what each run's artifact carries.
    const previous =
      values.previous && existsSync(values.previous)
        ? findSummaries(values.previous)
        : findSummaries(values.summaries, true);
    process.stdout.write(renderCombined(findSummaries(values.summaries), previous, values.title));
    return 0;
  }
  if (command === "pr-comment") {
    if (!values.body) throw new InputError("body", "is required: the comment's Markdown file");
    await prCommentCommand(readFileSync(values.body, "utf8"));
    return 0;
  }
  if (command === "preflight")
    return preflightCommand(env, values.module, values.metadata, values.region);
  if (command !== "run" && command !== "plan") {
    throw new InputError(
      "command",
      `unknown command "${command}": use run, plan, preflight, setup, affected, combine or pr-comment`,
    );
  }
  const raw: RawRequest = {
    module: values.module,
    scenes: values.scenes,
    metadata: values.metadata,
    retries: values.retries,
    sceneTimeoutMinutes: values["scene-timeout-minutes"],
    overrides: (values.set ?? []).join("\n"),
    resume: String(values.resume ?? false),
    dryRun: String(command === "plan"),
    outDir: values.out,
    numCpus: values["num-cpus"],
    deadlineMinutes: values["deadline-minutes"],
    budgetUsd: values["budget-usd"],
  };
  const request = parseRequest(raw, "local");
  const target = localTarget(request.outDir, request.numCpus);
  if (command === "plan") {
    const plan = await planRun(request, env, target);
    const outlook = await forecast(request, plan, planStore(target, plan), target, env.log);
    console.log(`${describePlan(plan)}\n${describeForecast(outlook)}`);
    return 0;
  }
  const outcome = await evaluate(request, env, target, {
    progress: (line) => console.log(line),
    onForecast: (outlook) => console.log(describeForecast(outlook)),
    fullReport: `[${FULL_REPORT_FILE}](${FULL_REPORT_FILE})`,
  });
  const reportPath = path.join(runDir(outcome.plan), "report.md");
  writeFileSync(reportPath, outcome.markdown!);
  writeFileSync(path.join(runDir(outcome.plan), FULL_REPORT_FILE), outcome.fullMarkdown!);
  console.log(`\n${renderTerminal(outcome.summary!)}\nreport: ${reportPath}`);
  return outcome.exitCode;
}

/**
 * The action's preflight for a module and level, with the environment's credentials (checked
 * first): each finding one line on stderr; 2 when any is an error.
 */
async function preflightCommand(
  env: Environment,
  module: string | undefined,
  metadata: string | undefined,
  region: string | undefined,
): Promise<number> {
  const request = parseRequest({ module, metadata }, "aws");
  const mod = loadModule(env.workspace, request.module, request.metadata);
  const rel = (file: string) => path.relative(env.workspace, file);
  const provider = mod.cluster.provider as { type?: string; region?: string };
  const yamlRegion = provider.type === "aws" ? provider.region : undefined;
  if (region && yamlRegion && region !== yamlRegion) {
    throw new InputError(
      "region",
      `is ${region} but ${rel(mod.clusterYamlPath)} runs in ${yamlRegion}: make them agree`,
    );
  }
  const where = region || yamlRegion || process.env.AWS_REGION || "us-east-1";
  const start = performance.now();
  let findings: Finding[] = await credentialsFinding(where);
  if (findings.length === 0) {
    findings = await preflight({
      region: where,
      bucket: mcsSection(mod.mcsConfig, rel(mod.mcsConfigPath)).get("s3_bucket")!,
      bucketSource: rel(mod.mcsConfigPath),
      cluster: mod.cluster,
      clusterSource: rel(mod.clusterYamlPath),
    });
  }
  for (const { level, text } of findings)
    console.error(`mcs-pipeline: preflight ${level}: ${text}`);
  const errors = findings.filter((f) => f.level === "error").length;
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  console.log(
    errors
      ? `preflight: ${errors} error(s) in ${where}; fix them before a run (${seconds} s)`
      : `preflight: ${mod.name} ${mod.metadata} passed in ${where}${findings.length ? ` with ${findings.length} warning(s)` : ""} (${seconds} s)`,
  );
  return errors ? 2 : 0;
}

/** CLI spellings of the request's inputs, for error lines. */
const FLAG: Record<string, string> = {
  overrides: "--set",
  "mcs-config-overrides": "--set",
  sceneTimeoutMinutes: "--scene-timeout-minutes",
  deadlineMinutes: "--deadline-minutes",
  budgetUsd: "--budget-usd",
};

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof InputError) {
      const flag =
        FLAG[error.input] ??
        (error.input === "command" || error.input === "arguments"
          ? error.input
          : `--${error.input}`);
      console.error(`mcs-pipeline: ${flag}: ${error.message}`);
      process.exit(2);
    }
    if (
      error instanceof Error &&
      error.name === "TypeError" &&
      "code" in error &&
      String(error.code).startsWith("ERR_PARSE_ARGS")
    ) {
      // Node's text goes on about positionals after "--"; its first sentence is what matters.
      console.error(`mcs-pipeline: ${error.message.split(/\.(\s|$)/)[0]} (see --help)`);
      process.exit(2);
    }
    console.error(
      `mcs-pipeline: ${error instanceof EnvironmentError ? "" : "internal error: "}${error instanceof Error ? error.message : String(error)}`,
    );
    process.exit(3);
  },
);
