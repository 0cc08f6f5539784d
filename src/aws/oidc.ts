/**
 * GitHub OIDC → AWS: a fresh ID token (audience sts.amazonaws.com) exchanged with STS
 * AssumeRoleWithWebIdentity for short-lived credentials. No long-lived keys anywhere.
 * The post step calls this again: credentials from hours earlier may have expired.
 */
import { readFileSync } from "node:fs";
import * as core from "@actions/core";
import { AssumeRoleWithWebIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { InputError } from "../errors.js";
import {
  serveCredentials,
  SHADOWING_VARIABLES,
  type AwsCredentials,
  type CredentialServer,
} from "./credentials.js";

export type { CredentialServer } from "./credentials.js";

export interface AssumeOptions {
  roleArn: string;
  region: string;
  durationSeconds: number;
  /** Shows in CloudTrail: who did this (the run id and attempt). */
  sessionName: string;
  attempts?: number;
  baseDelayMs?: number;
}

/** The audience the action asks GitHub for, which the trust policy requires. */
const AUDIENCE = "sts.amazonaws.com";
/** GitHub's OIDC provider: the prefix of the trust policy's condition keys. */
const ISSUER = "token.actions.githubusercontent.com";

/** STS errors a new attempt will not cure: the role, its trust policy or the token is wrong. */
const FINAL_ERRORS = new Set([
  "AccessDenied",
  "InvalidIdentityToken",
  "InvalidIdentityTokenException",
  "IDPRejectedClaim",
  "IDPRejectedClaimException",
  "ExpiredTokenException",
  "MalformedPolicyDocument",
  "ValidationError",
]);

export async function assumeRoleWithOidc(options: AssumeOptions): Promise<AwsCredentials> {
  const token = await idToken();
  const sts = new STSClient({ region: options.region, maxAttempts: 1 });
  const attempts = options.attempts ?? 4;
  for (let attempt = 1; ; attempt++) {
    try {
      const out = await sts.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: options.roleArn,
          RoleSessionName: options.sessionName,
          WebIdentityToken: token,
          DurationSeconds: options.durationSeconds,
        }),
      );
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken) {
        throw new Error("STS returned no credentials");
      }
      return {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        expiration: c.Expiration,
      };
    } catch (error) {
      const name = (error as Error).name;
      if (FINAL_ERRORS.has(name)) throw refused(options.roleArn, error as Error, token);
      if (attempt >= attempts) {
        throw new Error(
          `STS AssumeRoleWithWebIdentity failed ${attempts} times: ${(error as Error).message}`,
        );
      }
      // Full jitter: parallel jobs of a matrix must not retry in step.
      const delay = Math.random() * (options.baseDelayMs ?? 1000) * 2 ** (attempt - 1);
      core.info(`STS: ${name} (${(error as Error).message}); retrying in ${Math.round(delay)} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Mask the secrets, then hand them to this step's children (ray, boto3, the AWS SDK) through
 * the process environment only: not GITHUB_ENV, so no file on the runner ever holds them.
 */
export function exportCredentials(creds: AwsCredentials, region: string): void {
  for (const secret of [creds.accessKeyId, creds.secretAccessKey, creds.sessionToken]) {
    core.setSecret(secret);
  }
  const vars = {
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_SESSION_TOKEN: creds.sessionToken,
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
  };
  Object.assign(process.env, vars);
}

/**
 * Credentials for a whole run, however long: a loopback endpoint (credentials.ts) that re-assumes
 * the role before they expire, its secrets masked, its renewals logged. This process's
 * environment is pointed at it, so every child (ray, boto3) and default SDK client uses it; the
 * action's own clients may take `provider`. close() it when done.
 */
export async function roleCredentials(options: AssumeOptions): Promise<CredentialServer> {
  const server = await serveCredentials(() => assumeRoleWithOidc(options), {
    region: options.region,
    log: (line) => core.info(line),
    mask: (secret) => core.setSecret(secret),
  });
  for (const name of SHADOWING_VARIABLES) Reflect.deleteProperty(process.env, name);
  Object.assign(process.env, server.env);
  return server;
}

async function idToken(): Promise<string> {
  if (!process.env.ACTIONS_ID_TOKEN_REQUEST_URL || !process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN) {
    // The job's permissions or its trigger are at fault, not an input: a plain error.
    throw new Error(
      forkPullRequest()
        ? "pull requests from forks get no OIDC token, so this run cannot reach AWS: run it from a branch of this repository or by hand (workflow_dispatch)"
        : "no OIDC token: give the job `permissions: id-token: write` (and contents: read)",
    );
  }
  try {
    return await core.getIDToken(AUDIENCE);
  } catch (error) {
    const detail = (error as Error).message.replace(/\s+/g, " ").trim();
    throw new Error(`could not get a GitHub OIDC token (${detail})`);
  }
}

function forkPullRequest(): boolean {
  if (
    !process.env.GITHUB_EVENT_NAME?.startsWith("pull_request") ||
    !process.env.GITHUB_EVENT_PATH
  ) {
    return false;
  }
  try {
    const event = JSON.parse(readFileSync(process.env.GITHUB_EVENT_PATH, "utf8"));
    return event.pull_request?.head?.repo?.fork === true;
  } catch {
    return false;
  }
}

/**
 * What STS refused, in one line: the `sub` and `aud` this job's token presented (read from its
 * payload; the token itself is never printed) and a trust condition that would admit it. Since
 * mid-2026 GitHub puts immutable IDs in the subjects of new, renamed and transferred repositories
 * (`repo:OWNER@<owner id>/NAME@<repo id>:...`; docs.github.com/en/actions/reference/security/oidc
 * #immutable-subject-claims), so a trust written for `repo:OWNER/NAME:...` refuses them: the
 * line shows which form the token carries.
 */
function refused(roleArn: string, error: Error, token: string): InputError {
  const why = `${error.name}: ${error.message}`.replace(/\s+/g, " ").trim();
  const claims = payload(token);
  const sub = typeof claims?.sub === "string" ? claims.sub : undefined;
  const aud = [claims?.aud].flat().filter((a): a is string => typeof a === "string");
  if (!sub) {
    return new InputError(
      "role-to-assume",
      `AWS refused ${roleArn} (${why}); this job's OIDC token has no readable sub claim, so its` +
        ` trust policy cannot be matched to it`,
    );
  }
  // repo:OWNER[@id]/NAME[@id]:<context>: the setup stack's GitHubRepository and GitHubSubjects.
  const parts = /^repo:([^:/]+\/[^:]+):(.+)$/.exec(sub);
  const stack = parts
    ? ` (the setup stack: GitHubRepository ${parts[1]}, GitHubSubjects including ${parts[2]})`
    : "";
  return new InputError(
    "role-to-assume",
    `AWS refused ${roleArn} (${why}): this job's OIDC token presented sub ${sub} and aud` +
      ` ${aud.join(",") || "(none)"}; a trust policy admits it with StringEquals` +
      ` ${ISSUER}:aud = ${AUDIENCE} and StringLike ${ISSUER}:sub = ${sub}${stack}`,
  );
}

/** A JWT's claims, unverified (STS verifies); undefined when it is not one. */
function payload(jwt: string): Record<string, unknown> | undefined {
  try {
    const claims: unknown = JSON.parse(
      Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8"),
    );
    return typeof claims === "object" && claims !== null
      ? (claims as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
