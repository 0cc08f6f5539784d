/**
 * run-summary.json: the record the Ray driver (pipeline/mcs_pipeline/summary.py) keeps in the
 * results store (DESIGN.md §3): written whole at the end and on interruption, and on a timer while
 * it runs (changes beyond a byte budget go to journal chunks until the next whole write). The
 * report reads only this, with its journal applied (a driver killed before its last write leaves
 * the file behind the journal). The format is described once, in
 * pipeline/mcs_pipeline/schemas/run-summary.schema.json, which both sides validate against; the
 * types below are hand-written, and test/schemas.test.ts holds them to that file.
 */
import { describe, schemaProblem } from "./schemas.js";

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
  "performer_crash",
  "inactivity",
  "node_services",
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
  /** This attempt's log key (null when the task left none; older summaries lack it). */
  log?: string | null;
}

/** Keys relative to the store root. */
export interface SceneOutputs {
  history: string | null;
  log: string | null;
  videos: string[];
  /**
   * The S3 version each of these keys was written as (key → VersionId): a later run replaces
   * them, and the report links this run's. Absent for a local store, a bucket without versioning
   * and in older summaries.
   */
  versions?: Record<string, string>;
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
  /** The scene file's goal.category; null when it has none, absent in older summaries. */
  category?: string | null;
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
  /** Where the changes made after this file are: chunks `<prefix><n:06d>.json` from `next` on. */
  journal?: JournalRef;
  /** The previous run of this module and level, to compare with; absent in older summaries. */
  previous?: PreviousRun | null;
  /** The cluster's nodes from Ray's node table, for the cost estimate; absent when unknown. */
  nodes?: NodeRecord[];
  /**
   * What each step before the driver started took (the front end's phases, launch-phases.json in
   * the plan): the next run's estimate takes its start-up time from them (src/estimate.ts).
   */
  launch_phases?: { name: string; seconds: number }[];
  /** The run's budget in USD (the plan's budget_usd); null or absent: none. */
  budget_usd?: number | null;
  /** Why an interrupted run stopped starting scenes when nobody cancelled it (the budget). */
  stop_reason?: string | null;
}

/** One node of the cluster: its type, price and lifetime (pipeline/mcs_pipeline/nodes.py). */
export interface NodeRecord {
  node_id: string;
  address: string;
  node_type: string | null;
  instance_type: string | null;
  head: boolean;
  spot: boolean;
  started_at: string;
  /** null: alive when the summary was saved (until `updated_at`). */
  ended_at: string | null;
  usd_per_hour: number | null;
  price_source: string | null;
}

/** A run named by another: its id and its summary's key in the same store. */
export interface PreviousRun {
  run_id: string;
  summary_key: string;
}

export interface JournalRef {
  prefix: string;
  next: number;
}

/** One journal chunk: the scenes that changed, as they were at `updated_at`. */
export interface JournalChunk {
  schema_version: typeof SCHEMA_VERSION;
  run_id: string;
  seq: number;
  updated_at: string;
  scenes: SceneResult[];
}

const SCHEMA = "run-summary.schema.json";

/**
 * Parse and validate a run summary against run-summary.schema.json; a problem throws an Error
 * whose one-line message names `source`, the offending field and the schema path, e.g.
 * `s3://b/k: invalid run summary: scenes[3].status must be one of SUCCESS, FAILED, PENDING, got
 * "DONE" (run-summary.schema.json#/$defs/sceneStatus/enum)`.
 */
export function parseSummary(text: string, source: string): RunSummary {
  const doc = parseJson(text, source);
  const version = (doc as { schema_version?: unknown } | null)?.schema_version;
  const problem =
    version !== undefined && version !== SCHEMA_VERSION
      ? `schema_version ${describe(version)} is not supported (expected ${SCHEMA_VERSION})`
      : schemaProblem(doc, SCHEMA);
  if (problem) throw new Error(`${source}: invalid run summary: ${problem}`);
  return doc as RunSummary;
}

/** Reads the store: the text at a key, or undefined when there is no such key. */
export interface SummaryStore {
  read(key: string): Promise<string | undefined>;
  /** For messages: where a key is (a path, an s3:// URI). */
  uri(key: string): string;
}

/**
 * The run summary at `key` as complete as the store has it, as read_summary (summary.py) reads it
 * for a resume: the file, and the scenes of the journal chunks written after it. `text` is the
 * file, or (when chunks were applied) the summary with them. A chunk that is not this summary's
 * journal ends the reading (said through `warn`); a missing or invalid file throws.
 */
export async function readSummary(
  store: SummaryStore,
  key: string,
  warn: (line: string) => void,
): Promise<{ summary: RunSummary; text: string }> {
  const text = await store.read(key);
  if (text === undefined) throw new Error(`${store.uri(key)}: no such file or object`);
  const summary = parseSummary(text, store.uri(key));
  const journal = summary.journal;
  if (!journal) return { summary, text };
  const index = new Map(summary.scenes.map((scene, i) => [scene.name, i]));
  let seq = journal.next;
  for (let data; (data = await store.read(chunkKey(journal.prefix, seq))) !== undefined; seq++) {
    const chunk = readChunk(data, summary.run_id, seq);
    if (typeof chunk === "string") {
      const where = store.uri(chunkKey(journal.prefix, seq));
      warn(`ignoring ${where} and later chunks: not this summary's journal (${chunk})`);
      break;
    }
    for (const scene of chunk.scenes) {
      const i = index.get(scene.name);
      if (i !== undefined) summary.scenes[i] = scene; // a chunk only updates the file's scenes
    }
    summary.updated_at = chunk.updated_at;
  }
  if (seq === journal.next) return { summary, text };
  summary.journal = { ...journal, next: seq };
  summary.totals = countTotals(summary.scenes);
  return { summary, text: JSON.stringify(summary) };
}

export function chunkKey(prefix: string, seq: number): string {
  return `${prefix}${String(seq).padStart(6, "0")}.json`;
}

/** The chunk `seq` of run `runId`'s journal, or what is wrong with `text` as that. */
function readChunk(text: string, runId: string, seq: number): JournalChunk | string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return `not valid JSON: ${oneLine(errorMessage(error))}`;
  }
  const problem = schemaProblem(doc, SCHEMA, "journalChunk");
  if (problem) return problem;
  const chunk = doc as JournalChunk;
  if (chunk.run_id !== runId) return `it is run ${chunk.run_id}'s`;
  return chunk.seq === seq ? chunk : `its seq is ${chunk.seq}, not ${seq}`;
}

export function countTotals(scenes: SceneResult[]): RunTotals {
  const count = (status: SceneStatus) => scenes.filter((s) => s.status === status).length;
  return {
    total: scenes.length,
    succeeded: count("SUCCESS"),
    failed: count("FAILED"),
    pending: count("PENDING"),
    retried: scenes.filter((s) => s.attempts > 1).length,
  };
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not valid JSON (${oneLine(errorMessage(error))})`);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}
