/** The request: every input, typed and validated, from CLI flags or action inputs alike. */
import { InputError } from "./errors.js";

export const METADATA_LEVELS = ["level1", "level2", "oracle"] as const;
export type Metadata = (typeof METADATA_LEVELS)[number];
export type Target = "local" | "aws";

export interface Request {
  module: string;
  scenes: string;
  metadata: Metadata;
  target: Target;
  retries: number;
  /** undefined: the module's own `scene_timeout_minutes` (or the default). */
  sceneTimeoutMinutes: number | undefined;
  /** MCS-config `key=value` overrides, applied to the plan's copy only. */
  overrides: Record<string, string>;
  resume: boolean;
  dryRun: boolean;
  /** Local target: where runs and the results store live. */
  outDir: string;
  /** Local target: Ray CPU slots (default: all cores). */
  numCpus: number | undefined;
  /** The fewest workers whose estimate finishes within this many minutes (src/forecast.ts). */
  deadlineMinutes?: number;
  /** Refuse a run estimated above it; the driver stops starting scenes before passing it. */
  budgetUsd?: number;
}

/** Inputs as text, the way both the command line and `core.getInput` deliver them. */
export type RawRequest = Partial<Record<keyof Request, string>>;

export const MODULE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

export function parseRequest(raw: RawRequest, target: Target): Request {
  const module = (raw.module ?? "").trim();
  if (module === "") throw new InputError("module", "is required (e.g. demo)");
  if (!MODULE_NAME.test(module)) {
    throw new InputError(
      "module",
      `"${module}" is not a module name: use letters, digits, "-" and "_" only (e.g. demo)`,
    );
  }
  return {
    module,
    scenes: nonEmpty(raw.scenes, "scenes/subset"),
    metadata: parseMetadata(raw.metadata),
    target,
    retries: parseCount("retries", raw.retries, 2),
    sceneTimeoutMinutes: parsePositive("scene-timeout-minutes", raw.sceneTimeoutMinutes),
    overrides: parseOverrides(raw.overrides ?? ""),
    resume: parseBool("resume", raw.resume),
    dryRun: parseBool("dry-run", raw.dryRun),
    outDir: nonEmpty(raw.outDir, ".mcs-local"),
    numCpus: raw.numCpus?.trim() ? parsePositiveCount("num-cpus", raw.numCpus) : undefined,
    deadlineMinutes: parseBounded("deadline-minutes", raw.deadlineMinutes, DEADLINE_MINUTES),
    budgetUsd: parseBounded("budget-usd", raw.budgetUsd, BUDGET_USD),
  };
}

/** What a deadline or a budget may be: beyond these it is a typo, not a plan. */
export const DEADLINE_MINUTES = {
  min: 1,
  max: 10_080,
  what: "minutes",
  example: "120",
  maxText: "10080 (a week)",
};
export const BUDGET_USD = {
  min: 0.01,
  max: 1_000_000,
  what: "US dollars",
  example: "250",
  maxText: "1000000",
};

/** A decimal number within [min, max] (digits and one point: not 1e3, 0x10, Infinity), or none. */
function parseBounded(
  input: string,
  value: string | undefined,
  bound: typeof DEADLINE_MINUTES,
): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  const n = Number(text);
  if (!/^(\d+\.?\d*|\.\d+)$/.test(text) || n < bound.min || n > bound.max) {
    throw new InputError(
      input,
      `"${text}" is not a number of ${bound.what} from ${bound.min} to ${bound.maxText} (e.g. ${bound.example})`,
    );
  }
  return n;
}

function nonEmpty(value: string | undefined, fallback: string): string {
  return value?.trim() || fallback;
}

function parseMetadata(value: string | undefined): Metadata {
  const level = nonEmpty(value, "level2");
  if (!(METADATA_LEVELS as readonly string[]).includes(level)) {
    throw new InputError(
      "metadata",
      `"${level}" is not a level: use ${METADATA_LEVELS.join(", ")}`,
    );
  }
  return level as Metadata;
}

function parseCount(input: string, value: string | undefined, fallback: number): number {
  const text = nonEmpty(value, String(fallback));
  if (!/^\d+$/.test(text) || Number(text) > 1000) {
    throw new InputError(input, `"${text}" is not a non-negative integer (e.g. ${fallback})`);
  }
  return Number(text);
}

function parsePositiveCount(input: string, value: string): number {
  const n = parseCount(input, value, 1);
  if (n === 0) throw new InputError(input, `must be at least 1 (e.g. 4)`);
  return n;
}

function parsePositive(input: string, value: string | undefined): number | undefined {
  if (!value?.trim()) return undefined;
  const n = Number(value.trim());
  if (!Number.isFinite(n) || n <= 0) {
    throw new InputError(input, `"${value.trim()}" is not a positive number of minutes (e.g. 60)`);
  }
  return n;
}

function parseBool(input: string, value: string | undefined): boolean {
  const text = nonEmpty(value, "false").toLowerCase();
  if (text === "true") return true;
  if (text === "false") return false;
  throw new InputError(input, `"${value}" is not true or false`);
}

/**
 * `key=value` lines (blank lines and `#` comments allowed); `key+=suffix` appends to the
 * module's value, e.g. `s3_folder+=-test` sends a test run's results beside the real ones.
 * Appends are kept with a trailing "+" on the key. A value with `%` is refused, as in the files.
 */
export function parseOverrides(text: string): Record<string, string> {
  const overrides: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const pair = /^([A-Za-z0-9_.-]+\+?)\s*=\s*(.*)$/.exec(line);
    if (!pair) {
      throw new InputError(
        "mcs-config-overrides",
        `"${line}" is not a key=value line (e.g. s3_folder=eval-test)`,
      );
    }
    // Lower-cased, as configparser (and src/ini.ts) read keys: S3_Folder= replaces s3_folder.
    const key = pair[1]!.toLowerCase();
    // Refused as in the config files (src/ini.ts): configparser on the node would interpolate
    // it (`%(s3_bucket)s` becomes the bucket's name there) while this side reads it verbatim.
    if (pair[2]!.includes("%")) {
      throw new InputError(
        "mcs-config-overrides",
        `"${key.replace(/\+$/, "")}" has a %, which configparser on the node interpolates; remove it`,
      );
    }
    overrides[key] = pair[2]!;
  }
  return overrides;
}
