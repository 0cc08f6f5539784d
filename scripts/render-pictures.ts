/**
 * Pictures of the report, so a reviewer can look at what a user sees (issue 10): a sample job
 * summary (the 10,000-scene run of bench/report.bench.ts with a trend of earlier runs, rendered by
 * src/report.ts as engine.ts calls it) and a sample pull-request comment (src/combine.ts plus the
 * marker and Run details link, as pr-eval.yml's comment job builds it), each turned into HTML the
 * way GitHub shows Markdown (GFM by marked, GitHub's Markdown CSS, ```mermaid blocks drawn by
 * Mermaid in the page) and photographed whole by Debian's headless Chromium.
 *
 *   npx tsx scripts/render-pictures.ts                       the samples, into out/pictures
 *   npx tsx scripts/render-pictures.ts --markdown FILE.md    any Markdown (--frame comment)
 *
 * Writes <name>.md, .html, .png (the whole page) and, for a page taller than TOP_HEIGHT,
 * <name>-top.png (down to the last chart). Prints each Mermaid block's outcome, the sections'
 * heights, and warnings for charts whose labels overlap and tables wider than the page. Exits 1,
 * naming the block, when a Mermaid block draws no chart.
 *
 * Needs Debian's `chromium` (apt-get installs it, and two font packages, when run as root;
 * CHROMIUM_PATH picks another build). Mermaid, marked and github-markdown-css are not project
 * dependencies: `npm pack` fetches the pinned versions once, checked against their pinned sha512,
 * into ~/.cache/mcs-pipeline/pictures (MCS_PICTURES_CACHE). Chromium is driven through the
 * DevTools protocol over --remote-debugging-pipe, so there is no puppeteer either.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { PR_COMMENT_MARKER } from "../src/action/pr-comment.js";
import { renderCombined } from "../src/combine.js";
import { renderMarkdown } from "../src/report.js";
import { buildSummary, link, PHASES, sampleNodes, type RunSpec } from "../bench/sample-run.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

// ── pinned packages ───────────────────────────────────────────────────────────────────────────

interface Pinned {
  name: string;
  version: string;
  integrity: string;
  /** Files taken from the tarball's package/ folder. */
  files: string[];
}

const MERMAID: Pinned = {
  name: "mermaid",
  version: "12.3.0",
  integrity:
    "sha512-4113TdXeLAsMruJ79OpFL5O8+LTFXhQqZ260rF3tgUmiNAtRm4Uume04I+65PRN6yZ69J4f8rVYWW8zRk65UYw==",
  files: ["dist/mermaid.min.js", "LICENSE"],
};
const MARKED: Pinned = {
  name: "marked",
  version: "18.2.1",
  integrity:
    "sha512-ii4bxCTCqqwpT86XZWgJNs+ZnAIZksmLGYMViWA7PDIXYIeNo1x6cDdX3JOip9NM/cI6p8z57FxliACboTruMA==",
  files: ["lib/marked.esm.js", "LICENSE"],
};
const MARKDOWN_CSS: Pinned = {
  name: "github-markdown-css",
  version: "5.9.0",
  integrity:
    "sha512-tmT5sY+zvg2302XLYEfH2mtkViIM1SWf2nvYoF5N1ZsO0V6B2qZTiw3GOzw4vpjLygK/KG35qRlPFweHqfzz5w==",
  files: ["github-markdown-light.css", "license"],
};

function cacheDir(): string {
  if (process.env.MCS_PICTURES_CACHE) return path.resolve(process.env.MCS_PICTURES_CACHE);
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(cache, "mcs-pipeline", "pictures");
}

/** The package's folder in the cache, fetched first if missing: `npm pack`, hash, extract. */
function ensurePackage(pin: Pinned): string {
  const dir = path.join(cacheDir(), `${pin.name}@${pin.version}`);
  if (pin.files.every((file) => existsSync(path.join(dir, file)))) return dir;
  console.log(`Fetching ${pin.name}@${pin.version} into ${dir} (once; not a project dependency)`);
  mkdirSync(path.dirname(dir), { recursive: true });
  const staging = mkdtempSync(path.join(path.dirname(dir), `.${pin.name}-`));
  try {
    const packed = JSON.parse(
      execFileSync(
        "npm",
        ["pack", `${pin.name}@${pin.version}`, "--json", "--pack-destination", staging],
        { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
      ),
    ) as { filename: string }[];
    const tarball = path.join(staging, packed[0]!.filename);
    const digest = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (digest !== pin.integrity) {
      throw new Error(`${pin.name}@${pin.version}: integrity ${digest}, not the pinned one`);
    }
    execFileSync("tar", ["-xzf", tarball, "-C", staging, ...pin.files.map((f) => `package/${f}`)]);
    rmSync(dir, { recursive: true, force: true });
    renameSync(path.join(staging, "package"), dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return dir;
}

// ── Chromium ──────────────────────────────────────────────────────────────────────────────────

const DEBIAN_PACKAGES = {
  browser: "chromium",
  fonts: ["fonts-liberation", "fonts-noto-color-emoji"],
};

function debianInstalled(name: string): boolean {
  try {
    const status = execFileSync("dpkg-query", ["-W", "-f=${Status}", name], { encoding: "utf8" });
    return status.includes("install ok installed");
  } catch {
    return false;
  }
}

/**
 * Debian's Chromium binary, run without its /usr/bin/chromium wrapper (desktop flags; the one
 * that matters here, --disable-dev-shm-usage, we pass ourselves). Missing: installed with apt-get when we are root, else the command to run is the error. The
 * fonts stand in for GitHub's (Arial-metric Liberation Sans; colour emoji for ✅ ❌ ⏳).
 */
function ensureChromium(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  const wanted = [DEBIAN_PACKAGES.browser, ...DEBIAN_PACKAGES.fonts];
  const missing = wanted.filter((name) => !debianInstalled(name));
  const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (missing.length > 0 && process.getuid?.() === 0) {
    console.log(`Installing Debian's ${missing.join(", ")} (running as root): ${command}`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const install = () =>
      execFileSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], {
        stdio: "inherit",
        env,
      });
    try {
      install();
    } catch {
      console.log("apt-get install failed; updating the package lists and trying once more");
      execFileSync("apt-get", ["update"], { stdio: "inherit", env });
      install();
    }
  } else if (missing.includes(DEBIAN_PACKAGES.browser)) {
    throw new Error(
      `Debian's chromium is not installed. Run as root: ${command} (or set CHROMIUM_PATH)`,
    );
  } else if (missing.length > 0) {
    console.warn(`Fonts missing (text will look less like GitHub's): sudo ${command}`);
  }
  const candidates = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
  const found = candidates.find((file) => existsSync(file));
  if (!found) throw new Error(`no Chromium at ${candidates.join(" or ")}; set CHROMIUM_PATH`);
  return found;
}

/** Any one DevTools call (a screenshot of a 100,000-pixel page takes ~10 s). */
const CALL_TIMEOUT_MS = 180_000;

interface Pending {
  resolve: (result: Record<string, unknown>) => void;
  reject: (error: Error) => void;
  method: string;
}

interface CdpEvent {
  method: string;
  params: Record<string, unknown>;
  sessionId?: string;
}

/** The DevTools protocol over Chromium's --remote-debugging-pipe: NUL-ended JSON messages. */
class Cdp {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waiters: { match: (event: CdpEvent) => boolean; done: () => void }[] = [];
  private buffered = Buffer.alloc(0);
  private closed: Error | undefined;

  constructor(
    private readonly input: Writable,
    output: Readable,
  ) {
    output.on("data", (chunk: Buffer) => this.receive(chunk));
    output.on("close", () => this.fail(new Error("Chromium closed the DevTools pipe")));
    for (const stream of [input, output]) {
      stream.on("error", (error) => this.fail(new Error(`the DevTools pipe: ${error.message}`)));
    }
  }

  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    const message = JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from Chromium in ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      const settle =
        <T>(done: (value: T) => void) =>
        (value: T) => {
          clearTimeout(timer);
          done(value);
        };
      this.pending.set(id, { resolve: settle(resolve), reject: settle(reject), method });
      this.input.write(message + "\0");
    });
  }

  /** Resolves on the next `method` event of the session (register before causing it). */
  once(method: string, sessionId: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${method} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        match: (event) => event.method === method && event.sessionId === sessionId,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    let end: number;
    while ((end = this.buffered.indexOf(0)) >= 0) {
      const text = this.buffered.subarray(0, end).toString("utf8");
      this.buffered = this.buffered.subarray(end + 1);
      this.dispatch(JSON.parse(text) as Record<string, unknown>);
    }
  }

  private dispatch(message: Record<string, unknown>): void {
    if (typeof message.id === "number") {
      const call = this.pending.get(message.id);
      if (!call) return;
      this.pending.delete(message.id);
      const error = message.error as { message?: string } | undefined;
      if (error) call.reject(new Error(`${call.method}: ${error.message ?? "failed"}`));
      else call.resolve((message.result ?? {}) as Record<string, unknown>);
      return;
    }
    const event = message as unknown as CdpEvent;
    const index = this.waiters.findIndex((waiter) => waiter.match(event));
    if (index >= 0) this.waiters.splice(index, 1)[0]!.done();
  }

  fail(error: Error): void {
    if (this.closed) return; // the first cause is the one to tell
    this.closed = error;
    for (const call of this.pending.values()) call.reject(error);
    this.pending.clear();
  }
}

interface Browser {
  cdp: Cdp;
  process: ChildProcess;
  profile: string;
  stderr: () => string;
}

function launch(binary: string): Browser {
  const profile = mkdtempSync(path.join(os.tmpdir(), "mcs-pictures-chromium-"));
  const args = [
    "--headless",
    "--remote-debugging-pipe",
    `--user-data-dir=${profile}`,
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--font-render-hinting=none",
    // Chromium refuses root without it; we render only our own local pages.
    ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
    "about:blank",
  ];
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const cdp = new Cdp(child.stdio[3] as Writable, child.stdio[4] as Readable);
  child.on("error", (error) => cdp.fail(new Error(`${binary} did not start: ${error.message}`)));
  return { cdp, process: child, profile, stderr: () => stderr };
}

async function close(browser: Browser): Promise<void> {
  const exited = new Promise<void>((resolve) => {
    if (browser.process.exitCode !== null) resolve();
    else browser.process.once("exit", () => resolve());
  });
  await Promise.race([
    browser.cdp.send("Browser.close").catch(() => undefined),
    new Promise((resolve) => setTimeout(resolve, 2000)),
  ]);
  const timer = setTimeout(() => browser.process.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
  rmSync(browser.profile, { recursive: true, force: true });
}

/** What the page reports for each Mermaid block (see PAGE_SCRIPT). */
interface BlockResult {
  index: number;
  ok: boolean;
  type?: string | null;
  width?: number;
  height?: number;
  marks?: number;
  /** Pairs of its texts that overlap (crowded axis labels). */
  overlaps?: number;
  error?: string;
}

const MERMAID_TIMEOUT_MS = 60_000;
/** Pages taller than this also get a <name>-top.png: down to the last chart. */
const TOP_HEIGHT = 4000;

/** A heading of the page: where its section starts and how tall it is, in CSS pixels. */
interface Section {
  heading: string;
  y: number;
  height: number;
}

interface Layout {
  /** The frame's bottom plus the body's padding. */
  height: number;
  /** Below the last Mermaid block (0 without one). */
  chartsEnd: number;
  outline: Section[];
  /** Tables wider than the page (GitHub scrolls them sideways). */
  wide: { after: string; width: number; shown: number }[];
}

/** In the page, after Mermaid: the page's height, where the charts end, the sections. */
const LAYOUT_SCRIPT = `() => {
  const top = (el) => el.getBoundingClientRect().top + window.scrollY;
  const bottom = (el) => el.getBoundingClientRect().bottom + window.scrollY;
  const frame = document.querySelector(".frame");
  const height = Math.ceil(bottom(frame) + 16);
  const charts = [...document.querySelectorAll(".mermaid-block")];
  const last = charts[charts.length - 1];
  const chartsEnd = last ? Math.ceil(Math.min(height, bottom(last) + 24)) : 0;
  const headings = [...document.querySelectorAll(".markdown-body h2, .markdown-body h3")];
  const outline = headings.map((h, i) => {
    const next = headings[i + 1];
    const end = next ? top(next) : bottom(document.querySelector(".markdown-body"));
    return { heading: h.textContent.trim(), y: Math.round(top(h)), height: Math.round(end - top(h)) };
  });
  const wide = [...document.querySelectorAll(".markdown-body table")]
    .filter((table) => table.scrollWidth > table.clientWidth + 1)
    .map((table) => {
      const before = headings.filter((h) => top(h) < top(table)).pop();
      const head = [...table.querySelectorAll("th")].map((th) => th.textContent.trim()).join(" | ");
      const after = (before ? before.textContent.trim() : "(top)") + ": " + head;
      return { after, width: table.scrollWidth, shown: table.clientWidth };
    });
  return { height, chartsEnd, outline, wide };
}`;

interface Shot extends Pick<Layout, "height" | "outline" | "wide"> {
  blocks: BlockResult[];
  topPng?: string;
}

/** Load the page at `width`, wait for its Mermaid blocks, photograph the whole page height. */
async function photograph(
  browser: Browser,
  html: string,
  png: string,
  width: number,
): Promise<Shot> {
  const { cdp } = browser;
  const { targetId } = (await cdp.send("Target.createTarget", { url: "about:blank" })) as {
    targetId: string;
  };
  const { sessionId } = (await cdp.send("Target.attachToTarget", { targetId, flatten: true })) as {
    sessionId: string;
  };
  try {
    const call = (method: string, params: Record<string, unknown> = {}) =>
      cdp.send(method, params, sessionId);
    await call("Page.enable");
    await call("Emulation.setDeviceMetricsOverride", {
      width,
      height: 900,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const loaded = cdp.once("Page.loadEventFired", sessionId, MERMAID_TIMEOUT_MS);
    await call("Page.navigate", { url: pathToFileURL(html).href });
    await loaded;
    const evaluated = (await call("Runtime.evaluate", {
      expression: `Promise.race([window.mermaidDone, new Promise((_, reject) => setTimeout(() => reject(new Error("Mermaid did not finish in ${MERMAID_TIMEOUT_MS} ms")), ${MERMAID_TIMEOUT_MS}))])`,
      awaitPromise: true,
      returnByValue: true,
    })) as { result: { value?: BlockResult[] }; exceptionDetails?: { text?: string } };
    if (evaluated.exceptionDetails) {
      throw new Error(
        `the page's Mermaid script failed: ${JSON.stringify(evaluated.exceptionDetails)}`,
      );
    }
    const blocks = evaluated.result.value ?? [];
    const layout = (await call("Runtime.evaluate", {
      expression: `(${LAYOUT_SCRIPT})()`,
      returnByValue: true,
    })) as { result: { value: Layout } };
    const { height, chartsEnd, outline, wide } = layout.result.value;
    const shoot = async (file: string, clipHeight: number) => {
      const shot = (await call("Page.captureScreenshot", {
        format: "png",
        captureBeyondViewport: true,
        clip: { x: 0, y: 0, width, height: clipHeight, scale: 1 },
      })) as { data: string };
      writeFileSync(file, Buffer.from(shot.data, "base64"));
    };
    await shoot(png, height);
    // A page this long is hard to look at whole: the top (up to the last chart) on its own too.
    const top = chartsEnd > 0 ? chartsEnd : Math.min(height, TOP_HEIGHT);
    const topFile = png.replace(/\.png$/, "-top.png");
    const topPng = height > TOP_HEIGHT ? topFile : undefined;
    if (topPng) await shoot(topPng, top);
    else rmSync(topFile, { force: true }); // an earlier run's
    return { blocks, height, outline, wide, topPng };
  } finally {
    await cdp.send("Target.closeTarget", { targetId }).catch(() => undefined);
  }
}

// ── Markdown → HTML, as GitHub shows it ───────────────────────────────────────────────────────

interface MarkedInstance {
  parse(markdown: string, options: { async: false }): string;
}
type MarkedClass = new (...extensions: object[]) => MarkedInstance;

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

/** GitHub's page around the Markdown, roughly: the job-summary box, or a PR comment box. */
const FRAME_CSS = `
  body { margin: 0; padding: 16px; background: #f6f8fa; }
  .frame { box-sizing: border-box; margin: 0 auto; background: #fff; border: 1px solid #d1d9e0; border-radius: 6px; }
  .frame-head { padding: 8px 16px; border-bottom: 1px solid #d1d9e0; background: #f6f8fa; border-radius: 6px 6px 0 0;
    font: 14px -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; color: #59636e; }
  .frame-head b { color: #1f2328; }
  .markdown-body { padding: 16px 24px 24px; }
  .mermaid-block { margin: 0 0 16px; text-align: center; }
  .mermaid-block svg { max-width: 100%; height: auto; }
  .mermaid-block pre { display: none; }
  .mermaid-error { border: 2px solid #d1242f; border-radius: 6px; padding: 8px; text-align: left; }
  .mermaid-error pre { display: block; }
  .mermaid-error-note { color: #d1242f; font-weight: 600; }
`;

/** In the page: draw each Mermaid block (as GitHub does), say how each went in mermaidDone. */
const PAGE_SCRIPT = `
window.mermaidDone = (async () => {
  const blocks = [...document.querySelectorAll("div.mermaid-block")];
  if (typeof mermaid === "undefined") {
    return blocks.map((_, index) => ({ index, ok: false, error: "mermaid.min.js did not load" }));
  }
  mermaid.initialize({ startOnLoad: false, theme: "default", securityLevel: "strict" });
  const results = [];
  for (const [index, block] of blocks.entries()) {
    const source = block.querySelector("pre").textContent;
    const id = "mermaid-svg-" + index;
    try {
      const { svg } = await mermaid.render(id, source);
      block.insertAdjacentHTML("afterbegin", svg);
      const el = block.querySelector("svg");
      const box = el ? el.getBoundingClientRect() : { width: 0, height: 0 };
      const marks = el ? el.querySelectorAll("rect, path, circle, line, polyline").length : 0;
      const type = el ? el.getAttribute("aria-roledescription") : null;
      const ok = Boolean(el) && box.width > 0 && box.height > 0 && marks > 0 && type !== "error";
      // Text over text (axis labels crowding each other) is unreadable: count the pairs.
      const boxes = el ? [...el.querySelectorAll("text")].map((t) => t.getBoundingClientRect()) : [];
      let overlaps = 0;
      for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i], b = boxes[j];
          const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
          const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
          if (x > 2 && y > 2 && a.width > 0 && b.width > 0) overlaps++;
        }
      }
      results.push({ index, ok, type, width: box.width, height: box.height, marks, overlaps });
    } catch (error) {
      document.getElementById("d" + id)?.remove();
      const message = String((error && error.message) || error);
      block.classList.add("mermaid-error");
      const note = document.createElement("p");
      note.className = "mermaid-error-note";
      note.textContent = "Mermaid could not render this block: " + message;
      block.prepend(note);
      results.push({ index, ok: false, error: message });
    }
  }
  return results;
})();
`;

interface Page {
  html: string;
  /** Each Mermaid block's source, in page order. */
  mermaid: string[];
}

function toHtml(
  Marked: MarkedClass,
  markdown: string,
  options: {
    title: string;
    head: string;
    width: number;
    breaks: boolean;
    css: string;
    mermaidJs: string;
  },
): Page {
  const sources: string[] = [];
  const marked = new Marked({
    gfm: true,
    breaks: options.breaks,
    renderer: {
      code(token: { text: string; lang?: string }): string | false {
        if ((token.lang ?? "").trim() !== "mermaid") return false;
        sources.push(token.text);
        return `<div class="mermaid-block"><pre>${escapeHtml(token.text)}</pre></div>\n`;
      },
    },
  });
  const body = marked.parse(markdown, { async: false });
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(options.title)}</title>
<style>
${options.css}
${FRAME_CSS}
</style>
</head>
<body>
<div class="frame" style="width: ${options.width}px">
<div class="frame-head">${options.head}</div>
<article class="markdown-body">
${body}
</article>
</div>
<script src="${pathToFileURL(options.mermaidJs).href}"></script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
  return { html, mermaid: sources };
}

/** The job summary the action writes for the bench's run: renderMarkdown, as engine.ts calls it. */
function jobSummaryMarkdown(): string {
  // Newest first, as readHistory returns them: the first is the bench's previous run.
  const runs: RunSpec[] = [
    { seed: 42, runId: "20261125-151500-ab12", failedShare: 0.03 },
    { seed: 7, runId: "20261124-151500-cd34", failedShare: 0.03 },
    { seed: 11, runId: "20261123-151500-ef56", failedShare: 0.05 },
    { seed: 12, runId: "20261122-151500-a1b2", failedShare: 0.08 },
    { seed: 13, runId: "20261121-151500-c3d4", failedShare: 0.06 },
    { seed: 14, runId: "20261120-151500-e5f6", failedShare: 0.04 },
  ];
  const [summary, ...history] = runs.map((spec, i) => buildSummary(spec, runs[i + 1]));
  summary!.nodes = sampleNodes(summary!);
  return renderMarkdown(summary!, {
    link,
    phases: PHASES,
    previous: history[0],
    history,
    fullReport: "`report-full.md` in the run's artifact",
  });
}

/**
 * The PR comment of .github/workflows/pr-eval.yml: `combine --summaries summaries --title …` over
 * the matrix's run summaries (no --previous there), a Run details link, and the marker
 * upsertPrComment puts first.
 */
function prCommentMarkdown(): string {
  const current = [
    buildSummary({
      seed: 21,
      runId: "20261125-160000-aa01",
      failedShare: 0,
      scenes: 24,
      module: "demo",
    }),
    buildSummary({ seed: 22, runId: "20261125-160000-bb02", failedShare: 0.15, scenes: 24 }),
    buildSummary({
      seed: 23,
      runId: "20261125-160000-cc03",
      failedShare: 0.1,
      scenes: 24,
      module: "team-a",
      state: "interrupted",
    }),
  ];
  const body = [
    renderCombined(current, [], "Test evaluation (scenes/subset, level2)"),
    "",
    "[Run details](https://github.com/example/mcs-pipeline/actions/runs/1234567890)",
  ].join("\n");
  return `${PR_COMMENT_MARKER}\n${body}`;
}

// ── main ──────────────────────────────────────────────────────────────────────────────────────

interface Picture {
  name: string;
  title: string;
  head: string;
  /** The frame's width in CSS pixels: about GitHub's at a 1280-pixel window. */
  width: number;
  /** GitHub turns single newlines into <br> in comments, not in job summaries. */
  breaks: boolean;
  markdown: () => string;
}

const FRAMES = {
  summary: { head: "<b>eval / run</b> summary", width: 1000, breaks: false },
  comment: { head: "<b>github-actions</b> <span>bot</span> commented", width: 800, breaks: true },
} as const;

const SAMPLES: Picture[] = [
  {
    name: "job-summary",
    title: "Job summary (sample, 10,000 scenes)",
    ...FRAMES.summary,
    markdown: jobSummaryMarkdown,
  },
  {
    name: "pr-comment",
    title: "Pull request comment (sample)",
    ...FRAMES.comment,
    markdown: prCommentMarkdown,
  },
];

const USAGE = `Usage: npx tsx scripts/render-pictures.ts [--out DIR] [--markdown FILE... [--frame comment]]
  (no --markdown)  the sample job summary and PR comment: job-summary.png, pr-comment.png
  --markdown FILE  render this Markdown instead (repeatable), in a job-summary frame, or in a
                   PR-comment frame with --frame comment: <FILE's name>.png
  --out DIR        where the .md, .html and .png files go (default out/pictures)`;

function picturesOf(files: string[], frame: string): Picture[] {
  if (frame !== "summary" && frame !== "comment") {
    throw new Error(`--frame ${frame}: use summary or comment\n${USAGE}`);
  }
  if (files.length === 0) return SAMPLES;
  return files.map((file) => ({
    name: path.basename(file).replace(/\.(md|markdown)$/i, ""),
    title: path.basename(file),
    ...FRAMES[frame],
    markdown: () => readFileSync(file, "utf8"),
  }));
}

function size(bytes: number): string {
  return bytes < 1024 * 1024
    ? `${(bytes / 1024).toFixed(1)} KiB`
    : `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** "xychart-beta · title "…"": a block's type and title, to name it. */
function describeBlock(source: string): string {
  const lines = source
    .replace(/^\s*---\n[\s\S]*?\n---\s*\n/, "") // front matter (config)
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("%%")); // directives, comments
  const title = lines.find((line) => line.startsWith("title")) ?? lines[1] ?? "";
  return lines[0] === title ? title : `${lines[0]} · ${title}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      markdown: { type: "string", multiple: true },
      frame: { type: "string", default: "summary" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const pictures = picturesOf(values.markdown ?? [], values.frame);
  const out = path.resolve(values.out ?? path.join(ROOT, "out", "pictures"));
  mkdirSync(out, { recursive: true });
  const start = performance.now();

  const chromium = ensureChromium();
  const mermaidJs = path.join(ensurePackage(MERMAID), "dist/mermaid.min.js");
  const markedJs = path.join(ensurePackage(MARKED), "lib/marked.esm.js");
  const cssFile = path.join(ensurePackage(MARKDOWN_CSS), "github-markdown-light.css");
  const css = readFileSync(cssFile, "utf8");
  const { Marked } = (await import(pathToFileURL(markedJs).href)) as { Marked: MarkedClass };
  const ready = performance.now();

  const failures: string[] = [];
  const browser = launch(chromium);
  try {
    for (const picture of pictures) {
      const t0 = performance.now();
      const markdown = picture.markdown();
      const page = toHtml(Marked, markdown, { ...picture, css, mermaidJs });
      const fenced = markdown.match(/^ {0,3}```+\s*mermaid\s*$/gm)?.length ?? 0;
      if (fenced !== page.mermaid.length) {
        failures.push(
          `${picture.name}: ${fenced} mermaid fences, but ${page.mermaid.length} Mermaid blocks`,
        );
      }
      const file = (ext: string) => path.join(out, `${picture.name}${ext}`);
      writeFileSync(file(".md"), markdown);
      writeFileSync(file(".html"), page.html);
      const t1 = performance.now();
      const width = picture.width + 32;
      const shot = await photograph(browser, file(".html"), file(".png"), width);
      const t2 = performance.now();
      console.log(
        `${picture.name}: ${size(Buffer.byteLength(markdown))} of Markdown, ` +
          `${page.mermaid.length} Mermaid blocks; built in ${seconds(t1 - t0)}, ` +
          `photographed in ${seconds(t2 - t1)} (${width} × ${shot.height} px)`,
      );
      page.mermaid.forEach((source, index) => {
        const result = shot.blocks.find((block) => block.index === index);
        const what = describeBlock(source);
        if (result?.ok) {
          const box = `${Math.round(result.width ?? 0)} × ${Math.round(result.height ?? 0)} px`;
          console.log(`  ✓ Mermaid block ${index + 1} (${what}): a ${result.type} chart, ${box}`);
          if (result.overlaps) {
            console.log(`    warning: ${result.overlaps} pairs of its labels overlap (unreadable)`);
          }
        } else {
          const why =
            result?.error ??
            (result ? `no chart drawn (${JSON.stringify(result)})` : "not rendered");
          console.log(`  ✗ Mermaid block ${index + 1} (${what}): ${why}`);
          failures.push(`${picture.name}, Mermaid block ${index + 1} (${what}): ${why}`);
        }
      });
      for (const table of shot.wide) {
        console.log(
          `  warning: a table ${table.width} px wide, ${table.shown} px shown (scrolls ` +
            `sideways): ${table.after}`,
        );
      }
      console.log("  sections (y, height in px):");
      for (const section of shot.outline) {
        console.log(
          `    ${String(section.y).padStart(7)} ${String(section.height).padStart(7)}  ${section.heading}`,
        );
      }
      const written = [".md", ".html", ".png"].map(file);
      if (shot.topPng) written.push(shot.topPng);
      for (const full of written) {
        console.log(
          `  ${path.relative(process.cwd(), full) || full}  ${size(statSync(full).size)}`,
        );
      }
    }
  } catch (error) {
    const log = browser.stderr().trim();
    if (log) console.error(`Chromium's stderr (last lines):\n${log}`);
    throw error;
  } finally {
    await close(browser);
  }
  const end = performance.now();
  const version = execFileSync(chromium, ["--version"], { encoding: "utf8" }).trim();
  console.log(
    `Done in ${seconds(end - start)} (tools ${seconds(ready - start)}, ` +
      `pictures ${seconds(end - ready)}): Mermaid ${MERMAID.version}, marked ${MARKED.version}, ` +
      `github-markdown-css ${MARKDOWN_CSS.version}, ${version}`,
  );
  if (failures.length > 0) {
    console.error(`\nFAILED: ${failures.length} Mermaid problem(s):`);
    for (const failure of failures) console.error(`  - ${failure}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    console.error(`render-pictures: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
