/**
 * The pull request's sticky comment (src/action/pr-comment.ts, through @actions/github), run as
 * pr-eval.yml's comment job runs it: `node dist/cli/index.js pr-comment --body FILE` with the
 * runner's GITHUB_* environment, against a loopback server that speaks the REST endpoints used
 * (list issue comments, paginated; create; update) and checks the token.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PR_COMMENT_MARKER } from "../src/action/pr-comment.js";
import { makeTemp, removeTemps, REPO } from "./support/workspace.js";

afterAll(removeTemps);

const TOKEN = "ghs_loopback";
const OWNER = "octo";
const NAME = "mcs";
const PR = 8;

interface Comment {
  id: number;
  body: string;
  html_url: string;
}
interface Call {
  method: string;
  path: string;
  body?: { body?: string };
}

/** A GitHub API stand-in: PR #8's comments, 2 per page; `writes` answers POST/PATCH. */
class FakeGitHub {
  comments: Comment[] = [];
  calls: Call[] = [];
  writes = 200;
  private server!: Server;
  url = "";

  async start() {
    this.server = createServer((req, res) => {
      void this.handle(req).then(([status, data, headers = {}]) => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(data));
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close() {
    return new Promise((r) => this.server.close(r));
  }

  private async handle(req: IncomingMessage): Promise<[number, unknown, Record<string, string>?]> {
    let text = "";
    for await (const chunk of req) text += chunk;
    const url = new URL(req.url!, this.url);
    const call: Call = { method: req.method!, path: url.pathname };
    if (text) call.body = JSON.parse(text);
    this.calls.push(call);
    if (req.headers.authorization !== `token ${TOKEN}`)
      return [401, { message: "Bad credentials" }];
    const issue = `/repos/${OWNER}/${NAME}/issues/${PR}/comments`;
    if (req.method === "GET" && url.pathname === issue) {
      const page = Number(url.searchParams.get("page") ?? 1);
      const per = 2;
      const last = Math.max(1, Math.ceil(this.comments.length / per));
      const link: Record<string, string> = {};
      if (page < last)
        link.link = `<${this.url}${issue}?per_page=100&page=${page + 1}>; rel="next"`;
      return [200, this.comments.slice((page - 1) * per, page * per), link];
    }
    if (this.writes !== 200)
      return [this.writes, { message: "Resource not accessible by integration" }];
    if (req.method === "POST" && url.pathname === issue) {
      const comment = this.comment(this.comments.length + 100, call.body!.body!);
      this.comments.push(comment);
      return [201, comment];
    }
    const edit = new RegExp(`^/repos/${OWNER}/${NAME}/issues/comments/(\\d+)$`).exec(url.pathname);
    const existing = this.comments.find((c) => c.id === Number(edit?.[1]));
    if (req.method === "PATCH" && existing) {
      existing.body = call.body!.body!;
      return [200, existing];
    }
    return [404, { message: "Not Found" }];
  }

  comment(id: number, body: string): Comment {
    return {
      id,
      body,
      html_url: `https://github.com/${OWNER}/${NAME}/pull/${PR}#issuecomment-${id}`,
    };
  }
}

const github = new FakeGitHub();
beforeAll(() => github.start());
afterAll(() => github.close());
beforeEach(() => {
  github.comments = [];
  github.calls = [];
  github.writes = 200;
});

/** The comment job's step: the CLI bundle with the runner's environment for `event`. */
async function commentStep(body: string, options: { event?: string; token?: string } = {}) {
  const dir = makeTemp("mcs-pr-comment-");
  const event = options.event ?? "pull_request";
  writeFileSync(path.join(dir, "comment.md"), body);
  const payload =
    event === "pull_request"
      ? {
          number: PR,
          pull_request: { number: PR },
          repository: { name: NAME, owner: { login: OWNER } },
        }
      : { ref: "refs/heads/main" };
  writeFileSync(path.join(dir, "event.json"), JSON.stringify(payload));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GITHUB_ACTIONS: "true",
    GITHUB_API_URL: github.url,
    GITHUB_SERVER_URL: "https://github.com",
    GITHUB_REPOSITORY: `${OWNER}/${NAME}`,
    GITHUB_EVENT_NAME: event,
    GITHUB_EVENT_PATH: path.join(dir, "event.json"),
  };
  if (options.token !== "") env.GITHUB_TOKEN = options.token ?? TOKEN;
  const child = spawn(
    process.execPath,
    [path.join(REPO, "dist/cli/index.js"), "pr-comment", "--body", "comment.md"],
    { cwd: dir, env },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on("close", r));
  return { code, stdout, stderr };
}

describe("pr-comment (the comment job's step)", () => {
  it("creates the comment, with the hidden marker, when the pull request has none", async () => {
    github.comments = [github.comment(1, "LGTM"), github.comment(2, "a question")];
    const run = await commentStep("## Test evaluation\n\n| a | b |\n");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("Pull request comment created:");
    expect(github.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      `GET /repos/${OWNER}/${NAME}/issues/${PR}/comments`,
      `POST /repos/${OWNER}/${NAME}/issues/${PR}/comments`,
    ]);
    expect(github.comments.at(-1)!.body).toBe(
      `${PR_COMMENT_MARKER}\n## Test evaluation\n\n| a | b |\n`,
    );
  });

  it("updates its own comment, found by the marker past the first page, and no other", async () => {
    github.comments = [
      github.comment(1, "LGTM"),
      github.comment(2, "mentions mcs-pr-eval in passing"),
      github.comment(3, "another"),
      github.comment(4, `${PR_COMMENT_MARKER}\nold table`),
      github.comment(5, "later"),
    ];
    const run = await commentStep("new table\n");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("Pull request comment updated:");
    expect(github.calls.filter((c) => c.method !== "GET")).toEqual([
      {
        method: "PATCH",
        path: `/repos/${OWNER}/${NAME}/issues/comments/4`,
        body: { body: `${PR_COMMENT_MARKER}\nnew table\n` },
      },
    ]);
    expect(github.comments.map((c) => c.body)).toEqual([
      "LGTM",
      "mentions mcs-pr-eval in passing",
      "another",
      `${PR_COMMENT_MARKER}\nnew table\n`,
      "later",
    ]);
  });

  it("a read-only token (a fork's, Dependabot's) is a warning, not a failed job", async () => {
    github.writes = 403;
    const run = await commentStep("table\n");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /^::warning::No pull request comment: the token may not comment on #8 \(HTTP 403\): a fork's or Dependabot's token is read-only/m,
    );
  });

  it("not a pull request, or no token: a warning and no request", async () => {
    const push = await commentStep("table\n", { event: "push" });
    expect(push.code).toBe(0);
    expect(push.stdout).toContain(
      "::warning::No pull request comment: push is not a pull_request event",
    );
    const tokenless = await commentStep("table\n", { token: "" });
    expect(tokenless.code).toBe(0);
    expect(tokenless.stdout).toContain("::warning::No pull request comment: no token");
    expect(github.calls).toEqual([]);
  });

  it("any other API failure fails the step with one line", async () => {
    github.writes = 500;
    const run = await commentStep("table\n");
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/^mcs-pipeline: commenting on #8 failed: /);
  });
});
