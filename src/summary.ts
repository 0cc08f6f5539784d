/**
 * run-summary.json: the record the Ray driver (pipeline/mcs_pipeline/summary.py) keeps in the
 * results store (DESIGN.md §3): written whole at the end and on interruption, and on a timer while
 * it runs (changes beyond a byte budget go to journal chunks until the next whole write). The
 * report reads only this.
 */

export const SCHEMA_VERSION = 1;

export const SCENE_STATUSES = ["SUCCESS", "FAILED", "PENDING"] as const;
export type SceneStatus = (typeof SCENE_STATUSES)[number];

/** `task_error`: the Ray task itself raised (the driver's failed_task_result), not the script. */
export const FAILURE_CLASSES = [
  "timeout",
  "xserver",
  "oom",
  "script_error",
  "missing_outputs",
  "node_lost",
  "task_error",
] as const;
export type FailureClass = (typeof FAILURE_CLASSES)[number];

export const RUN_STATES = ["running", "finished", "interrupted"] as const;
export type RunState = (typeof RUN_STATES)[number];

/** One attempt of one scene. */
export interface AttemptRecord {
  attempt: number;
  exit_code: number | null;
  failure_class: FailureClass | null;
  duration_s: number | null;
  node: string | null;
  started_at: string | null;
  /** This attempt's log key (older summaries lack it). */
  log?: string;
}

/** Keys relative to the store root. */
export interface SceneOutputs {
  history: string | null;
  log: string | null;
  videos: string[];
}

export interface SceneResult {
  name: string;
  status: SceneStatus;
  attempts: number;
  exit_code: number | null;
  failure_class: FailureClass | null;
  /** Of the last attempt. */
  duration_s: number | null;
  node: string | null;
  expected_cost: number;
  /** A SUCCESS carried over from an earlier run, not run again. */
  resumed: boolean;
  outputs: SceneOutputs;
  /** The last lines of the scene log (failed scenes only). */
  log_excerpt: string | null;
  history: AttemptRecord[];
}

export interface RunTotals {
  total: number;
  succeeded: number;
  failed: number;
  pending: number;
  retried: number;
}

export interface RunSummary {
  schema_version: typeof SCHEMA_VERSION;
  run_id: string;
  module: string;
  metadata: string;
  cluster_name: string | null;
  /** `s3://bucket[/prefix]` or an absolute local directory. */
  store: string;
  summary_key: string;
  state: RunState;
  started_at: string;
  updated_at: string;
  finished_at: string | null;
  totals: RunTotals;
  scenes: SceneResult[];
}

/**
 * Parse and validate a run summary. Unknown fields are dropped; a problem throws an Error whose
 * one-line message names `source` and the offending field, e.g.
 * `s3://b/k: invalid run summary: scenes[3].status must be one of SUCCESS, FAILED, PENDING, got "DONE"`.
 */
export function parseSummary(text: string, source: string): RunSummary {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not valid JSON (${oneLine(errorMessage(error))})`);
  }
  try {
    return readSummary(doc);
  } catch (error) {
    throw new Error(`${source}: invalid run summary: ${oneLine(errorMessage(error))}`);
  }
}

function readSummary(doc: unknown): RunSummary {
  const f = fields(doc, "");
  const version = (doc as Record<string, unknown>).schema_version;
  if (version !== SCHEMA_VERSION) {
    throw new Error(
      version === undefined
        ? "schema_version is missing"
        : `schema_version ${describe(version)} is not supported (expected ${SCHEMA_VERSION})`,
    );
  }
  return {
    schema_version: SCHEMA_VERSION,
    run_id: f.string("run_id"),
    module: f.string("module"),
    metadata: f.string("metadata"),
    cluster_name: f.nullable("cluster_name", isString, "a string"),
    store: f.string("store"),
    summary_key: f.string("summary_key"),
    state: f.oneOf("state", RUN_STATES),
    started_at: f.string("started_at"),
    updated_at: f.string("updated_at"),
    finished_at: f.nullable("finished_at", isString, "a string"),
    totals: readTotals(f.value("totals"), f.at("totals")),
    scenes: f.array("scenes").map((scene, i) => readScene(scene, `scenes[${i}]`)),
  };
}

function readTotals(value: unknown, path: string): RunTotals {
  const f = fields(value, path);
  return {
    total: f.count("total"),
    succeeded: f.count("succeeded"),
    failed: f.count("failed"),
    pending: f.count("pending"),
    retried: f.count("retried"),
  };
}

function readScene(value: unknown, path: string): SceneResult {
  const f = fields(value, path);
  return {
    name: f.string("name"),
    status: f.oneOf("status", SCENE_STATUSES),
    attempts: f.count("attempts"),
    exit_code: f.nullable("exit_code", isInteger, "an integer"),
    failure_class: f.nullable(
      "failure_class",
      isOneOf(FAILURE_CLASSES),
      oneOfText(FAILURE_CLASSES),
    ),
    duration_s: f.nullable("duration_s", isNumber, "a number"),
    node: f.nullable("node", isString, "a string"),
    expected_cost: f.number("expected_cost"),
    resumed: f.boolean("resumed"),
    outputs: readOutputs(f.value("outputs"), f.at("outputs")),
    log_excerpt: f.nullable("log_excerpt", isString, "a string"),
    history: f.array("history").map((entry, i) => readAttempt(entry, `${f.at("history")}[${i}]`)),
  };
}

function readOutputs(value: unknown, path: string): SceneOutputs {
  const f = fields(value, path);
  return {
    history: f.nullable("history", isString, "a string"),
    log: f.nullable("log", isString, "a string"),
    videos: f.array("videos").map((key, i) => {
      if (!isString(key))
        throw new Error(`${path}.videos[${i}] must be a string, got ${describe(key)}`);
      return key;
    }),
  };
}

function readAttempt(value: unknown, path: string): AttemptRecord {
  const f = fields(value, path);
  const { log } = value as { log?: unknown };
  return {
    ...(typeof log === "string" ? { log } : {}),
    attempt: f.count("attempt"),
    exit_code: f.nullable("exit_code", isInteger, "an integer"),
    failure_class: f.nullable(
      "failure_class",
      isOneOf(FAILURE_CLASSES),
      oneOfText(FAILURE_CLASSES),
    ),
    duration_s: f.nullable("duration_s", isNumber, "a number"),
    node: f.nullable("node", isString, "a string"),
    started_at: f.nullable("started_at", isString, "a string"),
  };
}

// ── validation helpers ────────────────────────────────────────────────────────────────────────

type Check<T> = (value: unknown) => value is T;

/** Typed accessors for the fields of the object at `path`; each throws naming `path.key`. */
function fields(value: unknown, path: string) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${path || "the document"} must be an object, got ${describe(value)}`);
  }
  const obj = value as Record<string, unknown>;
  const at = (key: string): string => (path ? `${path}.${key}` : key);
  const get = <T>(key: string, check: Check<T>, want: string): T => {
    const v = obj[key];
    if (v === undefined) throw new Error(`${at(key)} is missing (expected ${want})`);
    if (!check(v)) throw new Error(`${at(key)} must be ${want}, got ${describe(v)}`);
    return v;
  };
  return {
    at,
    value: (key: string): unknown => obj[key],
    string: (key: string) => get(key, isString, "a string"),
    number: (key: string) => get(key, isNumber, "a number"),
    count: (key: string) => get(key, isCount, "a non-negative integer"),
    boolean: (key: string) => get(key, isBoolean, "a boolean"),
    array: (key: string) => get(key, isArray, "an array"),
    oneOf: <T extends string>(key: string, values: readonly T[]) =>
      get(key, isOneOf(values), oneOfText(values)),
    nullable: <T>(key: string, check: Check<T>, want: string) =>
      get(key, (v): v is T | null => v === null || check(v), `${want} or null`),
  };
}

const isString = (v: unknown): v is string => typeof v === "string";
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isInteger = (v: unknown): v is number => Number.isInteger(v);
const isCount = (v: unknown): v is number => isInteger(v) && v >= 0;
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isArray = (v: unknown): v is unknown[] => Array.isArray(v);
const isOneOf =
  <T extends string>(values: readonly T[]) =>
  (v: unknown): v is T =>
    (values as readonly unknown[]).includes(v);
const oneOfText = (values: readonly string[]): string => `one of ${values.join(", ")}`;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}..."` : text;
  }
  return String(value);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}
