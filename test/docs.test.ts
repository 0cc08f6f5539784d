/**
 * The README and the docs/ pages against the code: links and anchors resolve, every page is
 * linked from the README, the inputs and outputs tables are action.yml's, the CLI page's flags
 * and commands are what `--help` prints, the README's AWS walk-through names only what the
 * setup stack, the action and the workflows define, and the README stays a first visit's length
 * with its two set-up commands. Fast: files and one `--help`, no servers.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";

const REPO = path.resolve(import.meta.dirname, "..");
const README = path.join(REPO, "README.md");
const DOCS = path.join(REPO, "docs");
const pages = readdirSync(DOCS)
  .filter((f) => f.endsWith(".md"))
  .sort()
  .map((f) => path.join(DOCS, f));
const read = (file: string) => readFileSync(file, "utf8");
const rel = (file: string) => path.relative(REPO, file);

/** The README's two set-up commands, kept verbatim: a local run, and every test. */
const SETUP_COMMANDS = [
  "node dist/cli/index.js run --module demo --scenes scenes/subset",
  "npm ci && npm test",
];
const README_MAX_LINES = 230;

// ---------------------------------------------------------------------------------------------
// Markdown, as much of it as these pages use.

/** The text outside fenced code blocks (fence lines and their contents become blank lines). */
function prose(markdown: string): string {
  let fence: string | undefined;
  return markdown
    .split("\n")
    .map((line) => {
      const open = /^\s*(`{3,}|~{3,})/.exec(line);
      if (fence === undefined && open) {
        fence = open[1]!;
        return "";
      }
      if (fence !== undefined) {
        if (line.trim().startsWith(fence) && line.trim().replace(/[`~]/g, "") === "") {
          fence = undefined;
        }
        return "";
      }
      return line;
    })
    .join("\n");
}

/** The contents of the fenced code blocks, with their info strings. */
function codeBlocks(markdown: string): { lang: string; text: string }[] {
  const blocks: { lang: string; text: string }[] = [];
  let current: { fence: string; lang: string; lines: string[]; indent: number } | undefined;
  for (const line of markdown.split("\n")) {
    if (!current) {
      const open = /^(\s*)(`{3,}|~{3,})\s*(\S*)/.exec(line);
      if (open) current = { fence: open[2]!, lang: open[3]!, lines: [], indent: open[1]!.length };
    } else if (line.trim().startsWith(current.fence) && line.trim().replace(/[`~]/g, "") === "") {
      blocks.push({ lang: current.lang, text: current.lines.join("\n") });
      current = undefined;
    } else current.lines.push(line.slice(current.indent));
  }
  return blocks;
}

/** GitHub's anchor for a heading (github-slugger): lower case, punctuation dropped, `-` for spaces. */
function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link: its text
    .replace(/`([^`]*)`/g, "$1") // code: its text
    .replace(/(\*\*|__)(.*?)\1/g, "$2") // strong emphasis
    .replace(/<[^>]+>/g, "") // inline HTML
    .trim();
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a file's headings get, duplicates numbered as GitHub numbers them. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(markdown).split("\n")) {
    const heading = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = slug(heading[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The links of a Markdown file (outside code), as written. */
function links(markdown: string): string[] {
  const text = prose(markdown).replace(/`[^`\n]*`/g, "");
  return [...text.matchAll(/!?\[(?:[^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map(
    (m) => m[1]!,
  );
}

const EXTERNAL = /^[a-z][a-z0-9+.-]*:/i;

/** What is wrong with each relative link of `file` (empty: all resolve). */
function brokenLinks(file: string, markdown = read(file)): string[] {
  const problems: string[] = [];
  for (const target of links(markdown)) {
    if (EXTERNAL.test(target)) continue;
    const [pathPart = "", anchor] = target.split("#", 2) as [string, string | undefined];
    const resolved = pathPart
      ? path.resolve(path.dirname(file), decodeURIComponent(pathPart))
      : file;
    if (!resolved.startsWith(REPO + path.sep)) {
      problems.push(`${target}: outside the repository`);
      continue;
    }
    if (pathPart && !existsSync(resolved)) {
      problems.push(`${target}: no file ${rel(resolved)}`);
      continue;
    }
    if (anchor === undefined) continue;
    if (resolved !== file && (statSync(resolved).isDirectory() || !resolved.endsWith(".md"))) {
      problems.push(`${target}: an anchor into ${rel(resolved)}, which has no headings`);
    } else if (!anchors(resolved === file ? markdown : read(resolved)).has(anchor)) {
      problems.push(`${target}: ${rel(resolved)} has no heading #${anchor}`);
    }
  }
  return problems;
}

/** The rows of the first table whose header row is `header` (cells unescaped, code kept). */
function table(markdown: string, header: string[]): string[][] {
  const cells = (line: string) =>
    line
      .trim()
      .replace(/^\|/, "")
      .replace(/\|$/, "")
      .split(/(?<!\\)\|/)
      .map((c) => c.trim().replace(/\\\|/g, "|"));
  const lines = prose(markdown).split("\n");
  const start = lines.findIndex(
    (l) => l.trim().startsWith("|") && JSON.stringify(cells(l)) === JSON.stringify(header),
  );
  if (start < 0) throw new Error(`no table with the header | ${header.join(" | ")} |`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.trim().startsWith("|")) break;
    rows.push(cells(line));
  }
  return rows;
}

/** `code` → code; anything else as it is. */
const unquote = (cell: string) => /^`(.*)`$/.exec(cell)?.[1] ?? cell;

// ---------------------------------------------------------------------------------------------
// What the code says.

type Io = Record<string, { required?: boolean; default?: unknown; description?: string }>;
const action = parseYaml(read(path.join(REPO, "action.yml"))) as { inputs: Io; outputs: Io };

/** action.yml's inputs as the table shows them: name, required, default. */
function actionInputs(): string[][] {
  return Object.entries(action.inputs).map(([name, spec]) => [
    name,
    spec.required ? "yes" : "no",
    spec.default === undefined ? "" : String(spec.default),
  ]);
}

/**
 * The CLI's usage (`--help`): its commands, and for each the flags it takes — those its own
 * line names and those of every `options (...)` section naming it.
 */
function parseUsage(usage: string): Map<string, Set<string>> {
  const commands = new Map<string, Set<string>>();
  let owners: string[] = [];
  let inCommands = false;
  for (const line of usage.split("\n")) {
    const options = /^options \(([^)]*)\):/.exec(line);
    if (options) {
      inCommands = false;
      owners = options[1]!.split(",").map((c) => c.trim());
      continue;
    }
    if (/^commands:/.test(line)) {
      inCommands = true;
      owners = [];
      continue;
    }
    const command = inCommands ? /^ {2}([a-z][a-z-]*)\s/.exec(line) : null;
    if (command) owners = [command[1]!];
    for (const owner of owners) {
      if (!commands.has(owner)) commands.set(owner, new Set());
      for (const flag of line.matchAll(/--[a-z][a-z0-9-]*/g)) commands.get(owner)!.add(flag[0]);
    }
  }
  return commands;
}

/** flag → the commands that take it. */
function byFlag(commands: Map<string, Set<string>>): Map<string, string[]> {
  const flags = new Map<string, string[]>();
  for (const [command, set] of commands) {
    for (const flag of set) flags.set(flag, [...(flags.get(flag) ?? []), command]);
  }
  return new Map([...flags].map(([flag, cmds]) => [flag, [...cmds].sort()]));
}

const usage = execFileSync(process.execPath, [path.join(REPO, "dist/cli/index.js"), "--help"], {
  encoding: "utf8",
});

/** The CLI page's tables: its commands, and for each flag the commands it names. */
function documentedCli(markdown: string): {
  commands: string[];
  flags: Map<string, string[]>;
} {
  const commands = table(markdown, ["command", "what"]).map((r) => unquote(r[0]!));
  const flags = new Map(
    table(markdown, ["flag", "commands", "what"]).map((r) => [
      unquote(r[0]!),
      r[1]!
        .split(",")
        .map((c) => c.trim())
        .sort(),
    ]),
  );
  return { commands, flags };
}

// ---------------------------------------------------------------------------------------------

describe("links", () => {
  for (const file of [README, ...pages]) {
    it(`${rel(file)}: every relative link names a file, every #anchor a heading of it`, () => {
      expect(brokenLinks(file)).toEqual([]);
    });
  }

  it("the link check catches a missing file, a missing heading and a link out of the repo", () => {
    const file = path.join(DOCS, "x.md");
    const md =
      "# X\n\n## Two words\n[a](../README.md#nope) [b](nope.md) [c](#two-words) [d](../../x)\n";
    expect(brokenLinks(file, md)).toEqual([
      "../README.md#nope: README.md has no heading #nope",
      "nope.md: no file docs/nope.md",
      "../../x: outside the repository",
    ]);
  });

  it("anchors follow GitHub's slugs", () => {
    expect([
      ...anchors("# `collect` mode\n## The repository's name\n## A, b\n## A, b\n```\n# no\n```"),
    ]).toEqual(["collect-mode", "the-repositorys-name", "a-b", "a-b-1"]);
    expect(slug("Many nodes, lost nodes, spot workers")).toBe("many-nodes-lost-nodes-spot-workers");
    expect(slug("`evaluation` and `history_enabled`")).toBe("evaluation-and-history_enabled");
  });
});

describe("the README", () => {
  const readme = read(README);

  it("links every docs/ page", () => {
    const linked = new Set(
      links(readme)
        .filter((t) => !EXTERNAL.test(t))
        .map((t) => path.resolve(REPO, t.split("#")[0]!)),
    );
    expect(pages.filter((p) => !linked.has(p)).map(rel)).toEqual([]);
  });

  it(`stays under ${README_MAX_LINES} lines and keeps its two set-up commands verbatim`, () => {
    expect(readme.split("\n").length).toBeLessThan(README_MAX_LINES);
    const blocks = codeBlocks(readme).map((b) => b.text.trim());
    for (const command of SETUP_COMMANDS) expect(blocks).toContain(command);
  });

  it("runs the CLI with a command and flags it has", () => {
    const commands = parseUsage(usage);
    const run = SETUP_COMMANDS[0]!.split(" ");
    expect(commands.has(run[2]!)).toBe(true);
    for (const flag of run.filter((w) => w.startsWith("--")))
      expect(commands.get(run[2]!)).toContain(flag);
  });

  // The walk-through from nothing to a dispatched run, as far as files can tell.
  describe("its AWS walk-through", () => {
    const setup = readme.slice(readme.indexOf("## Run it on AWS"), readme.indexOf("## Read on"));
    const shell = codeBlocks(setup)
      .filter((b) => b.lang === "sh" || b.lang === "bash")
      .map((b) => b.text)
      .join("\n");
    const template = parseYaml(
      read(path.join(REPO, "cloudformation/mcs-pipeline-setup.yaml")),
      { logLevel: "silent" }, // CloudFormation's !Ref and friends are tags yaml does not know
    ) as { Parameters: Record<string, { Default?: unknown }>; Outputs: Record<string, unknown> };

    it("deploys the stack with every required parameter, and names only the stack's", () => {
      expect(shell).toContain("--template-file cloudformation/mcs-pipeline-setup.yaml");
      const deploy = /aws cloudformation deploy[\s\S]*?--parameter-overrides([^\n]*)/.exec(shell);
      const given = [...(deploy?.[1] ?? "").matchAll(/\b(\w+)=/g)].map((m) => m[1]!);
      const required = Object.entries(template.Parameters)
        .filter(([, p]) => p.Default === undefined)
        .map(([name]) => name);
      expect(given.sort()).toEqual(required.sort());
      // Every Name=value the section suggests adding is a parameter of the template.
      const named = [...prose(setup).matchAll(/`([A-Z][A-Za-z]+)=[^`]*`/g)].map((m) => m[1]!);
      expect(named.length).toBeGreaterThan(0);
      for (const name of named) expect(Object.keys(template.Parameters)).toContain(name);
    });

    it("sets a variable from each of the stack's outputs", () => {
      const used = [...shell.matchAll(/\$\(out (\w+)\)/g)].map((m) => m[1]!);
      expect(used.sort()).toEqual(Object.keys(template.Outputs).sort());
    });

    it("its workflow passes the action only inputs it has, the required ones, and variables it sets", () => {
      const workflow = codeBlocks(setup)
        .filter((b) => b.lang === "yaml")
        .map((b) => parseYaml(b.text) as { on?: unknown; jobs?: Record<string, unknown> })
        .find((w) => w.jobs);
      const steps = Object.values(workflow?.jobs ?? {}).flatMap(
        (j) => (j as { steps?: { uses?: string; with?: Record<string, unknown> }[] }).steps ?? [],
      );
      const step = steps.find((s) => /mcs-pipeline@/.test(s.uses ?? ""));
      expect(step?.with).toBeDefined();
      const names = Object.keys(step!.with!);
      for (const name of names) expect(Object.keys(action.inputs)).toContain(name);
      for (const [name, spec] of Object.entries(action.inputs))
        if (spec.required) expect(names).toContain(name);
      expect(workflow!.on).toBe("workflow_dispatch");
      const vars = [...JSON.stringify(step!.with).matchAll(/vars\.(\w+)/g)].map((m) => m[1]!);
      const set = [...shell.matchAll(/gh variable set (\w+)/g)].map((m) => m[1]!);
      expect(vars.length).toBeGreaterThan(0);
      for (const name of vars) expect(set).toContain(name);
    });

    it("dispatches workflows that exist, with inputs they take", () => {
      const saved = /`\.github\/workflows\/([\w.-]+\.yml)`/.exec(setup)?.[1];
      const runs = [...setup.matchAll(/gh workflow run ([\w.-]+\.yml)([^\n`]*)/g)];
      expect(runs.length).toBeGreaterThan(0);
      for (const [, file, rest] of runs) {
        if (file === saved) continue; // the workflow the README has you commit
        const wf = parseYaml(read(path.join(REPO, ".github/workflows", file!))) as {
          on: { workflow_dispatch: { inputs: Record<string, unknown> } };
        };
        for (const [, input] of rest!.matchAll(/-f ([\w-]+)=/g))
          expect(Object.keys(wf.on.workflow_dispatch.inputs)).toContain(input);
      }
    });
  });
});

describe("docs/inputs-outputs.md", () => {
  const page = read(path.join(DOCS, "inputs-outputs.md"));

  it("lists action.yml's inputs in its order, with their required flags and defaults", () => {
    const rows = table(page, ["input", "required", "default", "what"]);
    expect(rows.map((r) => [unquote(r[0]!), r[1]!, unquote(r[2]!)])).toEqual(actionInputs());
    for (const row of rows) expect(row[3], `${row[0]} is described`).toMatch(/\w/);
  });

  it("lists action.yml's outputs in its order", () => {
    const rows = table(page, ["output", "what"]);
    expect(rows.map((r) => unquote(r[0]!))).toEqual(Object.keys(action.outputs));
    for (const row of rows) expect(row[1], `${row[0]} is described`).toMatch(/\w/);
  });
});

describe("docs/cli.md", () => {
  const page = read(path.join(DOCS, "cli.md"));
  const cli = parseUsage(usage);

  it("reads --help as the CLI prints it", () => {
    expect([...cli.keys()].sort()).toEqual(
      ["affected", "combine", "plan", "pr-comment", "preflight", "run", "setup"].sort(),
    );
    expect([...cli.get("preflight")!].sort()).toEqual(["--metadata", "--module", "--region"]);
  });

  it("has exactly the commands --help prints", () => {
    expect(documentedCli(page).commands.sort()).toEqual([...cli.keys()].sort());
  });

  it("has exactly the flags --help prints, each with the commands that take it", () => {
    const documented = documentedCli(page).flags;
    const printed = byFlag(cli);
    expect([...documented.keys()].sort()).toEqual([...printed.keys()].sort());
    for (const [flag, commands] of printed) expect(documented.get(flag), flag).toEqual(commands);
  });

  it("mentions no flag the CLI does not have", () => {
    const known = new Set([...byFlag(cli).keys(), "--help"]);
    const mentioned = new Set([...page.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)].map((m) => m[0]));
    expect([...mentioned].filter((f) => !known.has(f))).toEqual([]);
  });
});
