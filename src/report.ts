/**
 * The run report (DESIGN.md §3): one Markdown text for a local report.md and for the GitHub job
 * summary, and a plain-text table for a terminal. Both read only the run summary.
 *
 * GitHub drops a job summary over 1 MiB whole, so renderMarkdown measures every piece it adds
 * and stops deliberately (with a note linking the full run-summary.json) when its budget is spent:
 * the aggregates first (results and durations by category, failure classes, what changed since
 * the previous run, with Mermaid charts), then the lists (newly failing, failure details, flaky,
 * newly passing) and at most DEFAULT_SCENE_ROWS rows of the per-scene table. renderFullMarkdown
 * renders everything, every row: report-full.md, beside the run summary in the artifact.
 */
import {
  aggregate,
  type Aggregates,
  type CategoryStats,
  categoryOf,
  passShare,
  trend,
  compare,
  type Changes,
  durations,
} from "./report-aggregates.js";
import { estimateCost } from "./cost.js";
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
  /** `version`: the S3 version the run wrote (its summary's `outputs.versions`), when known. */
  link: (key: string, version?: string) => LinkTarget;
  /** How long each phase of the run took, shown as a small table. */
  phases?: Phase[];
  /** The report never exceeds this many bytes (UTF-8). Default DEFAULT_BUDGET_BYTES. */
  budgetBytes?: number;
  /** Replaces the default "MCS run: module · metadata · run id" heading. */
  title?: string;
  /** At most this many rows of the per-scene table (failed first). Default DEFAULT_SCENE_ROWS. */
  maxSceneRows?: number;
  /** Where the whole per-scene table is (Markdown), named when rows are left out. */
  fullReport?: string;
  /** The summary the run's `previous` names: what changed is shown against it. */
  previous?: RunSummary;
  /**
   * Earlier runs of the same module and level, newest first (the chain of `previous`): with at
   * least one, the report shows the pass-rate trend by category.
   */
  history?: RunSummary[];
}

/** Well under GitHub's 1 MiB job-summary limit, leaving room for other steps' summaries. */
export const DEFAULT_BUDGET_BYTES = 900 * 1024;
/** Each failed scene's log excerpt is cut to its last ~2 KiB. */
export const EXCERPT_MAX_BYTES = 2 * 1024;
/** The per-scene table of a run this large is in the full report only (failed rows first). */
export const DEFAULT_SCENE_ROWS = 1000;
/** The file the full report is written to, beside the run summary (or report.md). */
export const FULL_REPORT_FILE = "report-full.md";
/** Share of what is left that each list may use; the per-scene table gets the rest. */
const LIST_SHARE = { newlyFailing: 0.2, details: 0.5, flaky: 0.2, newlyPassing: 0.2 } as const;
/** A bar chart shows at most this many categories (the largest). */
const CHART_CATEGORIES = 25;

const STATUS_ICON: Record<SceneStatus, string> = { SUCCESS: "✅", FAILED: "❌", PENDING: "⏳" };

// ── Markdown ──────────────────────────────────────────────────────────────────────────────────

export function renderMarkdown(summary: RunSummary, options: ReportOptions): string {
  const budgetBytes = Math.max(0, Math.floor(options.budgetBytes ?? DEFAULT_BUDGET_BYTES));
  const maxRows = Math.max(0, Math.floor(options.maxSceneRows ?? DEFAULT_SCENE_ROWS));
  const full = options.link(summary.summary_key);
  const facts = aggregate(summary, options.previous);
  const scenes = orderScenes(summary.scenes);
  const failed = scenes.filter((scene) => scene.status === "FAILED");
  const changes = facts.changes;
  /** `kind` scenes `left out`: "… 3 more flaky scenes not listed (…)". */
  const note = (kind: string, leftOut: string) => (n: number) =>
    truncationNote(`${count(n)} more ${kind}${noun(n, "scene")} ${leftOut}`, budgetBytes, full);
  const rowsNote = (n: number) =>
    truncationNote(
      `${count(n)} more ${noun(n, "scene")} not shown`,
      budgetBytes,
      full,
      scenes.length > maxRows ? maxRows : undefined,
      options.fullReport,
    );
  const lists: BudgetedList[] = [
    ...(changes
      ? [
          {
            chunks: sceneList("Newly failing", changes.newlyFailing, (s) => s.failure_class ?? ""),
            total: changes.newlyFailing.length,
            share: LIST_SHARE.newlyFailing,
            note: note("newly failing ", "not listed"),
          },
        ]
      : []),
    {
      chunks: failureDetails(failed, options.link),
      total: failed.length,
      share: LIST_SHARE.details,
      note: note("failed ", "not detailed here"),
    },
    {
      chunks: sceneList("Flaky: passed only on a retry", facts.flaky, (s) =>
        s.history.map(attemptOutcome).join(" → "),
      ),
      total: facts.flaky.length,
      share: LIST_SHARE.flaky,
      note: note("flaky ", "not listed"),
    },
    ...(changes
      ? [
          {
            chunks: sceneList("Newly passing", changes.newlyPassing, () => ""),
            total: changes.newlyPassing.length,
            share: LIST_SHARE.newlyPassing,
            note: note("newly passing ", "not listed"),
          },
        ]
      : []),
    {
      chunks: sceneTable(scenes.slice(0, maxRows), options.link),
      total: scenes.length,
      share: 1,
      note: rowsNote,
    },
  ];
  return addLists(renderHeader(summary, facts, options, full), lists, budgetBytes, () =>
    rowsNote(scenes.length),
  );
}

/** Flaky scenes a digest names; the job summary lists them all. */
const DIGEST_FLAKY = 20;

/**
 * One run's aggregates for a report of several runs (the PR comment, the scheduled run's summary):
 * the cost, results by category, by failure class, and the flaky scenes.
 */
export function renderDigest(summary: RunSummary, previous?: RunSummary): string {
  const facts = aggregate(summary, previous);
  const flaky = facts.flaky.slice(0, DIGEST_FLAKY).map((scene) => code(scene.name));
  const more = facts.flaky.length - flaky.length;
  return [
    ...costSection(summary, "####"),
    categorySection(facts.categories, "####"),
    ...(summary.totals.failed > 0 ? [failureClassSection(facts.failureClasses)] : []),
    ...(flaky.length > 0
      ? [
          `**Flaky** (passed only on a retry): ${flaky.join(", ")}` +
            (more > 0 ? ` and ${count(more)} more` : ""),
        ]
      : []),
  ].join("\n\n");
}

/** Everything, every row, no budget: the report-full.md of the artifact. */
export function renderFullMarkdown(summary: RunSummary, options: ReportOptions): string {
  return renderMarkdown(summary, {
    ...options,
    budgetBytes: Number.POSITIVE_INFINITY,
    maxSceneRows: Number.POSITIVE_INFINITY,
  });
}

/** One sentence on how the run went, e.g. "2 of 8 scenes failed." (no Markdown). */
export function outcomeText(summary: RunSummary): string {
  const { total, succeeded, failed, pending } = summary.totals;
  const done = succeeded + failed;
  const counts = `${count(succeeded)} succeeded, ${count(failed)} failed`;
  if (summary.state === "interrupted") {
    // Stopped by the driver itself (the budget): the reason says how far it got and why.
    const why = summary.stop_reason ? ` Stopped by the ${summary.stop_reason}` : "";
    return `Interrupted: ${count(done)} of ${scenesText(total)} finished (${counts}, ${count(pending)} not run).${why}`;
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

function renderHeader(
  summary: RunSummary,
  facts: Aggregates,
  options: ReportOptions,
  full: LinkTarget,
): string {
  const title =
    options.title ?? `MCS run: ${summary.module} · ${summary.metadata} · ${summary.run_id}`;
  const about = [
    `Module ${code(summary.module)}`,
    `metadata ${code(summary.metadata)}`,
    `run ${code(summary.run_id)}`,
    ...(summary.cluster_name ? [`cluster ${code(summary.cluster_name)}`] : []),
    `started ${summary.started_at}`,
  ];
  const sections = [
    `## ${oneLine(title)}`,
    `**${outcomeIcon(summary)} ${outcomeText(summary)}**`,
    `${about.join(" · ")}  \nFull results: ${mdLink("run-summary.json", full.href)} ${code(full.uri)}`,
    totalsTable(summary, facts),
    ...(facts.passedAfterLostNode > 0
      ? [
          `_${count(facts.passedAfterLostNode)} more passed on a retry after only lost nodes ` +
            "(node_lost): not counted as flaky._",
        ]
      : []),
    durationTable(summary),
    ...(options.phases && options.phases.length > 0 ? [phaseTable(options.phases)] : []),
    ...costSection(summary),
    ...changesSection(summary, facts.changes),
    ...trendSection(summary, options.history ?? []),
    categorySection(facts.categories),
    ...(summary.totals.failed > 0 ? [failureClassSection(facts.failureClasses)] : []),
  ];
  return sections.join("\n\n") + "\n\n";
}

function totalsTable(summary: RunSummary, facts: Aggregates): string {
  const t = summary.totals;
  const resumed = summary.scenes.filter((scene) => scene.resumed).length;
  const flaky = facts.flaky.length;
  const values = [t.total, t.succeeded, t.failed, t.pending, t.retried, flaky, resumed].map(count);
  const headers = ["total", "succeeded", "failed", "pending", "retried", "flaky", "resumed"];
  return table(headers, [values], "rrrrrrr");
}

function durationTable(summary: RunSummary): string {
  // Resumed scenes were not run again: their durations belong to an earlier run.
  const d = durations(summary.scenes);
  const end = summary.finished_at ?? summary.updated_at;
  const wall = (Date.parse(end) - Date.parse(summary.started_at)) / 1000;
  const row = [
    formatSeconds(Number.isFinite(wall) && wall >= 0 ? wall : null),
    count(d.timed),
    formatSeconds(d.p50),
    formatSeconds(d.p90),
    formatSeconds(d.max),
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

/** Node-hours by instance type and what they cost; a cluster run only (a local run costs nothing). */
function costSection(summary: RunSummary, heading = "###"): string[] {
  const cost = summary.cluster_name === null ? undefined : estimateCost(summary);
  if (!cost) return [];
  const rows = cost.lines.map((line) => [
    escapeCell(oneLine(line.label)) + (line.spot ? " (spot)" : ""),
    count(line.nodes),
    line.hours.toFixed(2),
    line.usdPerHour === null ? "—" : formatPrice(line.usdPerHour),
    line.usd === null ? "no price" : formatUsd(line.usd),
  ]);
  const total = [
    "**total**",
    `**${count(cost.nodes)}**`,
    `**${cost.hours.toFixed(2)}**`,
    "",
    `**${formatUsd(cost.usd)}**`,
  ];
  const notes = [
    "An estimate, not a bill: node-hours from Ray's own record of when each node started and " +
      `stopped (alive nodes until ${summary.updated_at}), times prices from ` +
      `${cost.sources.map(escapeCell).join("; ") || "nowhere"}.`,
    ...(cost.spotAtListPrice
      ? [
          "Spot nodes at the on-demand list price: an upper bound (declare the spot price in [prices]).",
        ]
      : []),
    ...(cost.unpricedHours > 0
      ? [
          `${cost.unpricedHours.toFixed(2)} node-hours have no price and are not in the total: ` +
            "declare one in the module's configs/M_aws.ini [prices] (node type or instance type = USD per hour).",
        ]
      : []),
  ];
  return [
    `${heading} Cost (estimate): ${formatUsd(cost.usd)}\n\n` +
      `${table(["instance", "nodes", "node-hours", "price/hour", "cost"], [...rows, total], "lrrrr")}` +
      `\n\n_${notes.join(" ")}_`,
  ];
}

/** At least cents: $0.30, $0.096, $3.06. */
function formatPrice(usd: number): string {
  return `$${usd.toFixed(Math.max(2, (String(usd).split(".")[1] ?? "").length))}`;
}

export function formatUsd(usd: number): string {
  return usd > 0 && usd < 0.005 ? "<$0.01" : `$${usd.toFixed(2)}`;
}

/** Runs a trend shows at the most (this one included). */
export const TREND_RUNS = 6;

/** The share passed by category over this run and the earlier ones: a table, a chart overall. */
function trendSection(summary: RunSummary, history: RunSummary[]): string[] {
  if (history.length === 0) return [];
  const points = trend([...history.slice(0, TREND_RUNS - 1)].reverse().concat(summary));
  const last = points.length - 1;
  const categories = [...new Set(points.flatMap((p) => [...p.byCategory.keys()]))].sort(compare);
  const rate = (share: number | null | undefined) => formatPercent(share ?? null);
  const headers = ["category", ...points.map((p, i) => (i === last ? "this run" : code(p.run_id)))];
  const rows = [
    ["**all scenes**", ...points.map((p) => `**${rate(p.passed)}**`)],
    ...categories.map((c) => [escapeCell(c), ...points.map((p) => rate(p.byCategory.get(c)))]),
  ];
  const percents = points.map((p) => 100 * (p.passed ?? 0));
  // From just below the lowest point: 92 % and 97 % on a 0-100 axis are one flat line.
  const finished = points.filter((p) => p.passed !== null).map((p) => 100 * p.passed!);
  const floor = Math.max(0, Math.floor(Math.min(...finished, 100) / 5) * 5 - 5);
  const chart = mermaid([
    chartColour(BLUE),
    "xychart-beta",
    '  title "Scenes passed, %, run by run"',
    `  x-axis [${points.map((p, i) => mermaidText(i === last ? "this run" : runLabel(p.run_id))).join(", ")}]`,
    `  y-axis "passed %" ${floor} --> 100`,
    `  line [${percents.map((v) => v.toFixed(1)).join(", ")}]`,
  ]);
  return [
    `### Trend over the last ${count(points.length)} runs\n\n` +
      "Share of the finished scenes that passed, oldest run first.\n\n" +
      `${table(headers, rows, `l${"r".repeat(points.length)}`)}\n\n${chart}`,
  ];
}

/** What changed since the previous run: counts here, the scenes in the lists below. */
function changesSection(summary: RunSummary, changes: Changes | undefined): string[] {
  if (summary.previous === undefined) return []; // a summary from before it named its previous
  const heading = "### Since the previous run";
  if (summary.previous === null) {
    return [`${heading}\n\nNo earlier run of this module and level to compare with.`];
  }
  const run = code(summary.previous.run_id);
  if (!changes) return [`${heading}\n\nThe previous run ${run}: its summary could not be read.`];
  const was = changes.previous.totals;
  const row = [
    `${count(was.succeeded)} → ${count(summary.totals.succeeded)}`,
    `${count(was.failed)} → ${count(summary.totals.failed)}`,
    ...[changes.newlyFailing.length, changes.newlyPassing.length, changes.stillFailing].map(count),
  ];
  return [
    `${heading}\n\nCompared with run ${run} (started ${changes.previous.started_at}).\n\n` +
      table(
        ["succeeded", "failed", "newly failing", "newly passing", "still failing"],
        [row],
        "rrrrr",
      ),
  ];
}

/** Results and durations by category, and a bar chart of the share passed. */
function categorySection(categories: CategoryStats[], heading = "###"): string {
  const headers = [
    "category",
    "scenes",
    "succeeded",
    "failed",
    "pending",
    "flaky",
    "passed",
    "median",
    "p90",
    "max",
    "failures",
  ];
  const rows = categories.map((c) => [
    escapeCell(oneLine(c.category)),
    ...[c.total, c.succeeded, c.failed, c.pending, c.flaky].map(count),
    formatPercent(passRate(c)),
    formatSeconds(c.durations.p50),
    formatSeconds(c.durations.p90),
    formatSeconds(c.durations.max),
    escapeCell(c.failures.map(([failure, n]) => `${failure} ${count(n)}`).join(", ")),
  ]);
  const charted = categories
    .filter((c) => passRate(c) !== null)
    .sort((a, b) => b.total - a.total || compare(a.category, b.category))
    .slice(0, CHART_CATEGORIES);
  const more = categories.length > charted.length ? ` (the ${charted.length} largest)` : "";
  // The share failed, from 0, in bars side by side: 97 % passed everywhere would look the same.
  const failed = charted.map((c) => 100 * (1 - (passRate(c) ?? 0)));
  const top = Math.min(100, Math.ceil(Math.max(...failed, 0) / 5) * 5 + 5);
  const chart =
    charted.length === 0 || failed.every((share) => share === 0)
      ? []
      : [
          mermaid([
            chartColour(RED, { height: 120 + 28 * charted.length }),
            "xychart-beta horizontal",
            `  title "Scenes failed by category, %${more}"`,
            `  x-axis [${charted.map((c) => mermaidText(c.category)).join(", ")}]`,
            `  y-axis "failed %" 0 --> ${top}`,
            `  bar [${failed.map((share) => share.toFixed(1)).join(", ")}]`,
          ]),
        ];
  return [`${heading} Results by category`, table(headers, rows, "lrrrrrrrrrl"), ...chart].join(
    "\n\n",
  );
}

/** Of the scenes that finished, the share that succeeded; null when none finished. */
function passRate(c: CategoryStats): number | null {
  return passShare(c.succeeded, c.failed);
}

function failureClassSection(failureClasses: [string, number][]): string {
  const rows = failureClasses.map(([failure, n]) => [failure, count(n)]);
  const slices = failureClasses.map(([failure, n]) => `  ${mermaidText(failure)} : ${n}`);
  return [
    table(["failure class", "scenes"], rows, "lr"),
    mermaid([PIE_COLOURS, "pie title Failed scenes by failure class", ...slices]),
  ].join("\n\n");
}

/** A list of scenes under a heading (on the first chunk), one line each: category and `what`. */
function* sceneList(
  title: string,
  scenes: SceneResult[],
  what: (scene: SceneResult) => string,
): Generator<string> {
  let first = true;
  for (const scene of scenes) {
    const heading = first ? `### ${title} (${count(scenes.length)})\n\n` : "";
    first = false;
    const detail = [categoryOf(scene), what(scene)].filter((part) => part !== "");
    yield `${heading}- ${code(scene.name)} — ${oneLine(detail.join(" · "))}\n`;
  }
  if (!first) yield "\n";
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
    categoryOf(scene),
    scene.failure_class ?? "unknown failure",
    plural(scene.attempts, "attempt"),
    scene.exit_code === null ? "no exit code" : `exit code ${scene.exit_code}`,
    ...(scene.node ? [`node ${code(scene.node)}`] : []),
    ...(scene.outputs.log
      ? [mdLink("log", outputTarget(scene, scene.outputs.log, link).href)]
      : []),
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

function attemptOutcome(attempt: AttemptRecord): string {
  return attempt.failure_class ?? "ok";
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
    "category",
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
    const head = first ? `### Scenes\n\n${tableHead(headers, "lllrrllll")}\n` : "";
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
      oneLine(categoryOf(scene)),
      `${STATUS_ICON[scene.status]} ${scene.status}${scene.resumed ? " (resumed)" : ""}`,
      String(scene.attempts),
      formatSeconds(scene.duration_s),
      scene.failure_class ?? "",
      outputLink(scene, "history", history, link),
      outputLink(scene, "log", log, link),
      videos.map((key, i) => outputLink(scene, videoLabel(i), key, link)).join("<br>"),
    ].map(escapeCell),
  );
}

function outputLink(
  scene: SceneResult,
  label: string,
  key: string | null,
  link: ReportOptions["link"],
): string {
  if (key === null) return "—";
  const target = outputTarget(scene, key, link);
  return `${mdLink(label, target.href)} ${code(target.uri)}`;
}

/** A scene's output as its run wrote it: the version it recorded, else the key as it is now. */
function outputTarget(scene: SceneResult, key: string, link: ReportOptions["link"]): LinkTarget {
  return link(key, scene.outputs.versions?.[key]);
}

/** `_… <what> (the cap). Full table: …. Full results: run-summary.json_`. */
function truncationNote(
  what: string,
  budgetBytes: number,
  full: LinkTarget,
  maxRows?: number,
  fullReport?: string,
): string {
  const caps = [
    `the report is capped at ${formatBytes(budgetBytes)}`,
    ...(maxRows !== undefined ? [`${count(maxRows)} rows`] : []),
  ];
  const table = fullReport ? ` The full table: ${fullReport}.` : "";
  return (
    `\n_… ${what} (${caps.join(" and ")}).${table} ` +
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

/** A list the report shows as much of as its share of the budget allows, then a note. */
interface BudgetedList {
  chunks: Iterable<string>;
  total: number;
  /** Of the bytes left when the list starts. */
  share: number;
  /** Says how many of `total` were left out. */
  note: (omitted: number) => string;
}

/**
 * The header, then each list while it fits its share, each cut short with its note. Room for
 * every note is set aside before anything else is added, so a note always fits; when even the
 * header does not, only `headerless()` (a note) is.
 */
function addLists(
  header: string,
  lists: BudgetedList[],
  budgetBytes: number,
  headerless: () => string,
): string {
  const reserved = lists.map((list) => (list.total > 0 ? byteLength(list.note(list.total)) : 0));
  const all = reserved.reduce((sum, n) => sum + n, 0);
  const out = createBudget(budgetBytes - all);
  if (add(out, header)) {
    lists.forEach((list, i) => {
      const shown = addWhileFits(out, list.chunks, Math.floor(out.left * list.share));
      out.left += reserved[i] ?? 0;
      if (shown < list.total) add(out, list.note(list.total - shown));
    });
  } else {
    out.left += all;
    add(out, headerless());
  }
  return clampBytes(out.parts.join("").trimEnd() + "\n", budgetBytes);
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

/** GitHub's own blue and red: Mermaid's default pale lavender is barely visible. */
const BLUE = "#0969da";
const RED = "#cf222e";
const PIE_COLOURS = `%%{init: ${JSON.stringify({
  themeVariables: {
    ...Object.fromEntries(
      [RED, "#bc4c00", "#9a6700", "#8250df", BLUE, "#1a7f37", "#57606a"].map((c, i) => [
        `pie${i + 1}`,
        c,
      ]),
    ),
    pieOpacity: "1",
    pieSectionTextColor: "#ffffff",
  },
})}}%%`;

/** A Mermaid directive colouring an xychart's plots (and sizing it). */
function chartColour(colour: string, size: { height?: number } = {}): string {
  return `%%{init: ${JSON.stringify({ themeVariables: { xyChart: { plotColorPalette: colour } }, xyChart: size })}}%%`;
}

/** A run id that sorts by time (20261125-151500-ab12) as its start, "11-25 15:15"; else itself. */
function runLabel(runId: string): string {
  const m = /^\d{4}(\d\d)(\d\d)-(\d\d)(\d\d)\d\d-/.exec(runId);
  return m ? `${m[1]}-${m[2]} ${m[3]}:${m[4]}` : runId;
}

function mermaid(lines: string[]): string {
  return ["```mermaid", ...lines, "```"].join("\n");
}

/** A quoted Mermaid label: no quotes, backticks or line breaks inside; at most 40 characters. */
function mermaidText(text: string): string {
  const clean = oneLine(text).replace(/["`\\]/g, "'");
  return JSON.stringify([...clean].length > 40 ? `${[...clean].slice(0, 39).join("")}…` : clean);
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

function formatPercent(share: number | null): string {
  return share === null ? "—" : `${(100 * share).toFixed(1)}%`;
}

export function formatSeconds(seconds: number | null, none = "—"): string {
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
