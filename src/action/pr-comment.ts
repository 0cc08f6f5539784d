/**
 * The pull request's one sticky comment, created or updated (found by a hidden marker) through
 * @actions/github. What cannot comment (no pull request, no token, a read-only token as a fork's
 * or Dependabot's) is a warning, not a failed job: the report is on the run page anyway.
 */
import * as core from "@actions/core";
import { context, getOctokit } from "@actions/github";
import { EnvironmentError } from "../errors.js";

export const PR_COMMENT_MARKER = "<!-- mcs-pr-eval -->";

export type PrCommentResult =
  { action: "created" | "updated"; url: string } | { action: "skipped"; reason: string };

export async function upsertPrComment(body: string, token: string): Promise<PrCommentResult> {
  const number = context.payload.pull_request?.number;
  if (number === undefined) {
    return {
      action: "skipped",
      reason: `${context.eventName || "this"} is not a pull_request event`,
    };
  }
  if (!token) return { action: "skipped", reason: "no token (set GITHUB_TOKEN)" };
  const octokit = getOctokit(token);
  const { owner, repo } = context.repo;
  const text = `${PR_COMMENT_MARKER}\n${body}`;
  try {
    const comments = await octokit.paginate(octokit.rest.issues.listComments, {
      owner,
      repo,
      issue_number: number,
      per_page: 100,
    });
    const mine = comments.find((c) => c.body?.includes(PR_COMMENT_MARKER));
    const { data } = mine
      ? await octokit.rest.issues.updateComment({ owner, repo, comment_id: mine.id, body: text })
      : await octokit.rest.issues.createComment({ owner, repo, issue_number: number, body: text });
    return { action: mine ? "updated" : "created", url: data.html_url };
  } catch (error) {
    const status = (error as { status?: unknown }).status;
    if (status === 403 || status === 404) {
      return {
        action: "skipped",
        reason:
          `the token may not comment on #${number} (HTTP ${status}): a fork's or Dependabot's` +
          " token is read-only; the job needs permissions: pull-requests: write",
      };
    }
    throw new EnvironmentError(
      `commenting on #${number} failed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/** `pr-comment --body FILE`: the CLI's command (the workflow's comment job runs it). */
export async function prCommentCommand(body: string): Promise<void> {
  const result = await upsertPrComment(body, process.env.GITHUB_TOKEN ?? "");
  if (result.action === "skipped") core.warning(`No pull request comment: ${result.reason}`);
  else console.log(`Pull request comment ${result.action}: ${result.url}`);
}
