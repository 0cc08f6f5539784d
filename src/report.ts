/**
 * The run report (DESIGN.md §3): one Markdown text for a local report.md and for the GitHub job
 * summary, and a plain-text table for a terminal. Both read only the run summary.
 *
 * GitHub drops a job summary over 1 MiB whole, so renderMarkdown measures every piece it adds
 * and stops deliberately (with a note linking the full run-summary.json) when its budget is spent.
 */
import type { AttemptRecord, RunSummary, SceneResult, SceneStatus } from "./summary.js";

/** Where an output key lives: `href` to click (console URL, relative path), `uri` to copy. */
export interface LinkTarget {
  href: string;
  uri: string;
}

export interface Phase {
  name: string;
  seconds: number;
}

export interface ReportOptions {
  link: (key: string) => LinkTarget;
  /** How long each phase of the run took, shown as a small table. */
  phases?: Phase[];
  /** The report never exceeds this many bytes (UTF-8). Default DEFAULT_BUDGET_BYTES. */
  budgetBytes?: number;
  /** Replaces the default "MCS run: module · metadata · run id" heading. */
  title?: string;
}

/** Well under GitHub's 1 MiB job-summary limit, leaving room for other steps' summaries. */
export const DEFAULT_BUDGET_BYTES = 900 * 1024;
/** Each failed scene's log excerpt is cut to its last ~2 KiB. */
export const EXCERPT_MAX_BYTES = 2 * 1024;
/** Failure details may use at most this share of what is left after the header. */
const FAILURE_DETAILS_SHARE = 0.5;

/** What a truncation note is about: failure details or per-scene table rows. */
type Omitted = "details" | "rows";

const STATUS_ICON: Record<SceneStatus, string> = { SUCCESS: "✅", FAILED: "❌", PENDING: "⏳" };

// ── Markdown ──────────────────────────────────────────────────────────────────────────────────

export function renderMarkdown(summary: RunSummary, options: ReportOptions): string {
  const budgetBytes = Math.max(0, Math.floor(options.budgetBytes ?? DEFAULT_BUDGET_BYTES));
  const full = options.link(summary.summary_key);
  const note = (count: number, what: Omitted) => truncationNote(count, what, budgetBytes, full);
  const scenes = orderScenes(summary.scenes);
  const failed = scenes.filter((scene) => scene.status === "FAILED");

  // Room for both possible notes is set aside before anything else is added.
  const failedNoteBytes = failed.length > 0 ? byteLength(note(failed.length, "details")) : 0;
  const tableNoteBytes = byteLength(note(scenes.length, "rows"));
  const out = createBudget(budgetBytes - failedNoteBytes - tableNoteBytes);

  if (add(out, renderHeader(summary, options, full))) {
    const detailsLimit = Math.floor(out.left * FAILURE_DETAILS_SHARE);
    const shownFailures = addWhileFits(out, failureDetails(failed, options.link), detailsLimit);
    out.left += failedNoteBytes;
    if (shownFailures < failed.length) add(out, note(failed.length - shownFailures, "details"));
    const shownRows = addWhileFits(out, sceneTable(scenes, options.link), out.left);
    out.left += tableNoteBytes;
    if (shownRows < scenes.length) add(out, note(scenes.length - shownRows, "rows"));
  } else {
    out.left += failedNoteBytes + tableNoteBytes;
    add(out, note(scenes.length, "rows"));
  }
  return clampBytes(out.parts.join("").trimEnd() + "\n", budgetBytes);
}

/** One sentence on how the run went, e.g. "2 of 8 scenes failed." (no Markdown). */
export function outcomeText(summary: RunSummary): string {
  const { total, succeeded, failed, pending } = summary.totals;
  const done = succeeded + failed;
  const counts = `${count(succeeded)} succeeded, ${count(failed)} failed`;
  if (summary.state === "interrupted") {
    return `Interrupted: ${count(done)} of ${scenesText(total)} finished (${counts}, ${count(pending)} not run).`;
  }
  if (summary.state === "running") {
    return `Still running: ${count(done)} of ${scenesText(total)} finished (${counts}) as of ${summary.updated_at}.`;
  }
  if (total === 0) return "No scenes were run.";
  const notRun = pending > 0 ? ` ${count(pending)} not run.` : "";
  if (failed > 0) return `${count(failed)} of ${scenesText(total)} failed.${notRun}`;
  if (pending > 0) return `${count(succeeded)} of ${scenesText(total)} succeeded.${notRun}`;
  return total === 1 ? "The scene succeeded." : `All ${scenesText(total)} succeeded.`;
}

function outcomeIcon(summary: RunSummary): string {
  const { failed, pending } = summary.totals;
  if (summary.state === "interrupted") return "⚠️";
  if (summary.state === "running") return "⏳";
  if (failed > 0) return "❌";
  return pending > 0 ? "⚠️" : "✅";
}

function renderHeader(summary: RunSummary, options: ReportOptions, full: LinkTarget): string {
  const title =
    options.title ?? `MCS run: ${summary.module} · ${summary.metadata} · ${summary.run_id}`;
  const facts = [
    `Module ${code(summary.module)}`,
    `metadata ${code(summary.metadata)}`,
    `run ${code(summary.run_id)}`,
    ...(summary.cluster_name ? [`cluster ${code(summary.cluster_name)}`] : []),
    `started ${summary.started_at}`,
  ];
  const sections = [
    `## ${oneLine(title)}`,
    `**${outcomeIcon(summary)} ${outcomeText(summary)}**`,
    `${facts.join(" · ")}  \nFull results: ${mdLink("run-summary.json", full.href)} ${code(full.uri)}`,
    totalsTable(summary),
    durationTable(summary),
    ...(options.phases && options.phases.length > 0 ? [phaseTable(options.phases)] : []),
    ...(summary.totals.failed > 0 ? [failureClassTable(summary.scenes)] : []),
  ];
  return sections.join("\n\n") + "\n\n";
}

function totalsTable(summary: RunSummary): string {
  const t = summary.totals;
  const resumed = summary.scenes.filter((scene) => scene.resumed).length;
  const values = [t.total, t.succeeded, t.failed, t.pending, t.retried, resumed].map(count);
  const headers = ["total", "succeeded", "failed", "pending", "retried", "resumed"];
  return table(headers, [values], "rrrrrr");
}

function durationTable(summary: RunSummary): string {
  // Resumed scenes were not run again: their durations belong to an earlier run.
  const durations = summary.scenes
    .filter((scene) => !scene.resumed && scene.duration_s !== null)
    .map((scene) => scene.duration_s as number)
    .sort((a, b) => a - b);
  const end = summary.finished_at ?? summary.updated_at;
  const wall = (Date.parse(end) - Date.parse(summary.started_at)) / 1000;
  const row = [
    formatSeconds(Number.isFinite(wall) && wall >= 0 ? wall : null),
    count(durations.length),
    formatSeconds(percentile(durations, 0.5)),
    formatSeconds(percentile(durations, 0.9)),
    formatSeconds(durations.at(-1) ?? null),
  ];
  return table(
    ["wall time", "scenes timed", "median scene", "p90 scene", "max scene"],
    [row],
    "rrrrr",
  );
}

function phaseTable(phases: Phase[]): string {
  const rows = phases.map((phase) => [
    escapeCell(oneLine(phase.name)),
    formatSeconds(phase.seconds),
  ]);
  const total = phases.reduce((sum, phase) => sum + phase.seconds, 0);
  return table(["phase", "time"], [...rows, ["**total**", `**${formatSeconds(total)}**`]], "lr");
}

function failureClassTable(scenes: SceneResult[]): string {
  const counts = new Map<string, number>();
  for (const scene of scenes) {
    if (scene.status !== "FAILED") continue;
    const key = scene.failure_class ?? "unknown";
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const rows = [...counts]
    .sort((a, b) => b[1] - a[1] || compare(a[0], b[0]))
    .map(([failure, n]) => [failure, count(n)]);
  return table(["failure class", "scenes"], rows, "lr");
}

/** Failed scenes: a heading line each, the attempts when retried, and the log excerpt. */
function* failureDetails(failed: SceneResult[], link: ReportOptions["link"]): Generator<string> {
  let first = true;
  for (const scene of failed) {
    const heading = first ? `### Failed scenes (${count(failed.length)})\n\n` : "";
    first = false;
    yield heading + failureDetail(scene, link);
  }
}

function failureDetail(scene: SceneResult, link: ReportOptions["link"]): string {
  const facts = [
    scene.failure_class ?? "unknown failure",
    plural(scene.attempts, "attempt"),
    scene.exit_code === null ? "no exit code" : `exit code ${scene.exit_code}`,
    ...(scene.node ? [`node ${code(scene.node)}`] : []),
    ...(scene.outputs.log ? [mdLink("log", link(scene.outputs.log).href)] : []),
  ];
  const parts = [`#### ${STATUS_ICON.FAILED} ${code(scene.name)} — ${facts.join(" · ")}`];
  if (scene.history.length > 1) {
    parts.push(`Attempts: ${scene.history.map(attemptText).join(" → ")}`);
  }
  parts.push(
    scene.log_excerpt === null
      ? "_No log excerpt._"
      : `<details><summary>log</summary>\n\n${fenced(cleanExcerpt(scene.log_excerpt))}\n\n</details>`,
  );
  return parts.join("\n\n") + "\n\n";
}

function attemptText(attempt: AttemptRecord): string {
  const what = attempt.failure_class ?? "ok";
  const exit = attempt.exit_code === null ? "" : `, exit ${attempt.exit_code}`;
  const took = attempt.duration_s === null ? "" : `, ${formatSeconds(attempt.duration_s)}`;
  return `${attempt.attempt}. ${what}${exit}${took}`;
}

/** The per-scene table, one chunk per row; the heading and header row travel with the first. */
function* sceneTable(scenes: SceneResult[], link: ReportOptions["link"]): Generator<string> {
  const headers = [
    "scene",
    "status",
    "attempts",
    "duration",
    "failure",
    "history",
    "log",
    "videos",
  ];
  let first = true;
  for (const scene of scenes) {
    const head = first ? `### Scenes\n\n${tableHead(headers, "llrrllll")}\n` : "";
    first = false;
    yield head + sceneRow(scene, link) + "\n";
  }
}

function sceneRow(scene: SceneResult, link: ReportOptions["link"]): string {
  const { history, log, videos } = scene.outputs;
  const videoLabel = (i: number) => (videos.length > 1 ? `video ${i + 1}` : "video");
  return tableRow(
    [
      code(scene.name),
      `${STATUS_ICON[scene.status]} ${scene.status}${scene.resumed ? " (resumed)" : ""}`,
      String(scene.attempts),
      formatSeconds(scene.duration_s),
      scene.failure_class ?? "",
      outputLink("history", history, link),
      outputLink("log", log, link),
      videos.map((key, i) => outputLink(videoLabel(i), key, link)).join("<br>"),
    ].map(escapeCell),
  );
}

function outputLink(label: string, key: string | null, link: ReportOptions["link"]): string {
  if (key === null) return "—";
  const target = link(key);
  return `${mdLink(label, target.href)} ${code(target.uri)}`;
}

function truncationNote(n: number, what: Omitted, budgetBytes: number, full: LinkTarget): string {
  const missing =
    what === "details"
      ? `failed ${noun(n, "scene")} not detailed here`
      : `${noun(n, "scene")} not shown`;
  return (
    `\n_… ${count(n)} more ${missing} (the report is capped at ${formatBytes(budgetBytes)}). ` +
    `Full results: ${mdLink("run-summary.json", full.href)} ${code(full.uri)}_\n\n`
  );
}

// ── budget ────────────────────────────────────────────────────────────────────────────────────

interface Budget {
  parts: string[];
  /** Bytes that may still be added. */
  left: number;
}

function createBudget(bytes: number): Budget {
  return { parts: [], left: bytes };
}

function add(out: Budget, chunk: string): boolean {
  return addWhileFits(out, [chunk], out.left) === 1;
}

/** Add chunks in order until one would exceed `limit` (or the budget); returns how many went in. */
function addWhileFits(out: Budget, chunks: Iterable<string>, limit: number): number {
  let added = 0;
  let used = 0;
  for (const chunk of chunks) {
    const size = byteLength(chunk);
    if (used + size > limit || size > out.left) break;
    out.parts.push(chunk);
    out.left -= size;
    used += size;
    added++;
  }
  return added;
}

/** Last resort for absurdly small budgets: cut at a UTF-8 character boundary. */
function clampBytes(text: string, maxBytes: number): string {
  const buffer = Buffer.from(text);
  if (buffer.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && ((buffer[end] ?? 0) & 0xc0) === 0x80) end--;
  return buffer.subarray(0, end).toString();
}

function byteLength(text: string): number {
  return Buffer.byteLength(text);
}

// ── Markdown helpers ──────────────────────────────────────────────────────────────────────────

function table(headers: string[], rows: string[][], align: string): string {
  return [tableHead(headers, align), ...rows.map(tableRow)].join("\n");
}

function tableHead(headers: string[], align: string): string {
  const rule = headers.map((_, i) => (align[i] === "r" ? "---:" : "---"));
  return `${tableRow(headers)}\n${tableRow(rule)}`;
}

function tableRow(cells: string[]): string {
  return `| ${cells.join(" | ")} |`;
}

/** A table cell stays one cell: `|` escaped (GFM honours `\|` even in code spans), no newlines. */
function escapeCell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\r\n|\r|\n/g, " ");
}

/** Inline code that survives backticks in the text. */
function code(text: string): string {
  const runs = text.match(/`+/g) ?? [];
  const fence = "`".repeat(runs.reduce((max, run) => Math.max(max, run.length), 0) + 1);
  const pad = text.startsWith("`") || text.endsWith("`") ? " " : "";
  return `${fence}${pad}${oneLine(text)}${pad}${fence}`;
}

/** A fenced block longer than any backtick run inside, so ``` in a log cannot close it. */
function fenced(text: string): string {
  const runs = text.match(/`{3,}/g) ?? [];
  const fence = "`".repeat(runs.reduce((max, run) => Math.max(max, run.length + 1), 3));
  return `${fence}text\n${text}\n${fence}`;
}

function mdLink(label: string, href: string): string {
  // Characters that would end or break a Markdown link destination (or a table cell).
  const safe = href.replace(/[\s()<>|\\`]/g, (c) =>
    c === "(" ? "%28" : c === ")" ? "%29" : encodeURIComponent(c),
  );
  return `[${label}](${safe})`;
}

/** Log text fit for a code block: no ANSI colours or control characters, last ~2 KiB of lines. */
function cleanExcerpt(text: string): string {
  const clean = text
    .replace(/\r\n?/g, "\n")
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "")
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "")
    .trimEnd();
  const buffer = Buffer.from(clean);
  if (buffer.length <= EXCERPT_MAX_BYTES) return clean;
  let start = buffer.length - EXCERPT_MAX_BYTES;
  while (start < buffer.length && ((buffer[start] ?? 0) & 0xc0) === 0x80) start++;
  let tail = buffer.subarray(start).toString();
  const newline = tail.indexOf("\n");
  if (newline >= 0 && newline < tail.length - 1) tail = tail.slice(newline + 1);
  return `… (earlier lines cut)\n${tail}`;
}

// ── terminal ──────────────────────────────────────────────────────────────────────────────────

/** A plain-text aligned table (failed scenes first) with the totals below. */
export function renderTerminal(summary: RunSummary, maxRows = 50): string {
  const scenes = orderScenes(summary.scenes);
  const shown = scenes.slice(0, Math.max(0, Math.floor(maxRows)));
  const rows = [
    ["SCENE", "STATUS", "ATTEMPTS", "DURATION", "FAILURE"],
    ...shown.map((scene) => [
      oneLine(scene.name),
      scene.status + (scene.resumed ? " (resumed)" : ""),
      String(scene.attempts),
      formatSeconds(scene.duration_s, "-"),
      scene.failure_class ?? "",
    ]),
  ];
  const lines = alignColumns(rows, [false, false, true, true, false]);
  if (scenes.length > shown.length) lines.push(`… ${count(scenes.length - shown.length)} more`);
  const t = summary.totals;
  const resumed = summary.scenes.filter((scene) => scene.resumed).length;
  return [
    `${summary.module} ${summary.metadata} run ${summary.run_id}: ${outcomeText(summary)}`,
    "",
    ...lines,
    "",
    `total ${count(t.total)} · succeeded ${count(t.succeeded)} · failed ${count(t.failed)} · ` +
      `pending ${count(t.pending)} · retried ${count(t.retried)} · resumed ${count(resumed)}`,
  ].join("\n");
}

function alignColumns(rows: string[][], right: boolean[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, [...cell].length)));
  }
  return rows.map((row) =>
    row
      .map((cell, i) => {
        const pad = " ".repeat((widths[i] ?? 0) - [...cell].length);
        return right[i] ? pad + cell : cell + pad;
      })
      .join("  ")
      .trimEnd(),
  );
}

// ── shared ────────────────────────────────────────────────────────────────────────────────────

/** Failed scenes first, then the rest; each group by name. */
function orderScenes(scenes: SceneResult[]): SceneResult[] {
  const failedFirst = (scene: SceneResult) => (scene.status === "FAILED" ? 0 : 1);
  return [...scenes].sort((a, b) => failedFirst(a) - failedFirst(b) || compare(a.name, b.name));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Nearest-rank percentile of an ascending list. */
function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? null;
}

function formatSeconds(seconds: number | null, none = "—"): string {
  if (seconds === null || !Number.isFinite(seconds)) return none;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const kib = bytes / 1024;
  return `${Number.isInteger(kib) ? kib : kib.toFixed(1)} KiB`;
}

function count(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function plural(n: number, word: string): string {
  return `${count(n)} ${noun(n, word)}`;
}

function noun(n: number, word: string): string {
  return n === 1 ? word : `${word}s`;
}

function scenesText(n: number): string {
  return plural(n, "scene");
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ");
}
