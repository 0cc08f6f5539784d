/**
 * AWS credentials that outlive STS's one-hour limit: re-fetched (a fresh OIDC token, a fresh
 * AssumeRoleWithWebIdentity) before they expire, and served on loopback with the container
 * credentials protocol (AWS_CONTAINER_CREDENTIALS_FULL_URI), which boto3 (inside `ray`) and the
 * JS SDK both poll again as their copy nears expiry. Nothing is written to a file.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { AwsCredentialIdentityProvider } from "@aws-sdk/types";

/** A set of temporary credentials (STS's AssumeRoleWithWebIdentity gives them). */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration?: Date;
}

export interface CredentialServerOptions {
  region: string;
  /** One line per renewal or failed attempt; never a secret. */
  log?: (line: string) => void;
  /** Called with every secret before it is served (the action passes `core.setSecret`). */
  mask?: (secret: string) => void;
}

export interface CredentialServer {
  /** The variables that point a child's SDK at this server (set them with `childEnv`). */
  env: Record<string, string>;
  /**
   * `base` (default process.env) without any variable that would make a child's SDK pick other
   * credentials (SHADOWING_VARIABLES), plus `env`: the environment to spawn children with.
   */
  childEnv(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** For in-process SDK clients: the current credentials, renewed when needed. */
  provider: AwsCredentialIdentityProvider;
  /** Stops the server and every timer. */
  close(): Promise<void>;
}

/**
 * Variables that come before the container provider in botocore's or the JS SDK's default chain
 * (or change which container endpoint they read): a runner may have any of them.
 */
export const SHADOWING_VARIABLES = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_SECURITY_TOKEN",
  "AWS_CREDENTIAL_EXPIRATION",
  "AWS_PROFILE",
  "AWS_DEFAULT_PROFILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_ROLE_ARN",
  "AWS_ROLE_SESSION_NAME",
  "AWS_CREDENTIAL_FILE",
  // Both SDKs prefer these to FULL_URI and AUTHORIZATION_TOKEN.
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
] as const;

/** Credentials with less than this left count as expired (the request they sign is in flight). */
const EXPIRY_MARGIN_MS = 2_000;
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;

interface Current {
  credentials: AwsCredentials & { expiration: Date };
  /** When to fetch the next set: half the lifetime STS gave them. */
  renewAt: number;
}

const utc = (date: Date) => `${date.toISOString().slice(11, 19)} UTC`;
const oneLine = (error: unknown) =>
  (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();

export async function serveCredentials(
  fetch: () => Promise<AwsCredentials>,
  options: CredentialServerOptions,
): Promise<CredentialServer> {
  const log = options.log ?? (() => undefined);
  const mask = options.mask ?? (() => undefined);
  const token = randomBytes(32).toString("base64url");
  const path = `/${randomBytes(16).toString("hex")}`;
  mask(token);

  async function fetchChecked(): Promise<Current> {
    const credentials = await fetch();
    const { expiration } = credentials;
    if (!expiration) throw new Error("STS returned credentials without an expiration");
    const now = Date.now();
    if (expiration.getTime() - now <= EXPIRY_MARGIN_MS) {
      throw new Error(`STS returned credentials that expire at ${expiration.toISOString()}`);
    }
    for (const secret of [
      credentials.accessKeyId,
      credentials.secretAccessKey,
      credentials.sessionToken,
    ]) {
      mask(secret);
    }
    return {
      credentials: { ...credentials, expiration },
      renewAt: now + (expiration.getTime() - now) / 2,
    };
  }

  // The first set: a failure here is the caller's (nothing to serve yet).
  let current = await fetchChecked();
  log(`AWS credentials obtained (expire ${utc(current.credentials.expiration)})`);

  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<Current> | undefined;
  let failures = 0;
  let closed = false;

  function schedule(at: number) {
    clearTimeout(timer);
    if (closed) return;
    timer = setTimeout(() => void renew().catch(() => undefined), Math.max(0, at - Date.now()));
    timer.unref();
  }

  /** One fetch at a time; everyone who asks meanwhile shares it. */
  function renew(): Promise<Current> {
    inflight ??= (async () => {
      clearTimeout(timer);
      try {
        current = await fetchChecked();
        failures = 0;
        log(`AWS credentials renewed (expire ${utc(current.credentials.expiration)})`);
        schedule(current.renewAt);
        return current;
      } catch (error) {
        failures++;
        // Bounded, jittered (half to full) exponential backoff.
        const cap = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (failures - 1));
        const delay = cap * (0.5 + Math.random() / 2);
        const expires = current.credentials.expiration;
        const state = expires.getTime() > Date.now() ? "expire" : "expired";
        log(
          `AWS credentials: renewal failed (${oneLine(error)}); retrying in ${Math.round(delay / 1000)} s` +
            ` (current ones ${state} ${utc(expires)})`,
        );
        schedule(Date.now() + delay);
        throw error;
      }
    })().finally(() => (inflight = undefined));
    return inflight;
  }

  /** The credentials to hand out now; throws when they have expired and renewal fails. */
  async function valid(): Promise<Current["credentials"]> {
    if (current.credentials.expiration.getTime() - Date.now() > EXPIRY_MARGIN_MS) {
      return current.credentials;
    }
    return (await renew()).credentials;
  }

  schedule(current.renewAt);

  const expected = Buffer.from(token);
  const server = http.createServer((req, res) => {
    req.resume();
    const send = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    const given = req.headers.authorization;
    if (given === undefined) return send(401, { Code: "Unauthorized", Message: "no token" });
    const buffer = Buffer.from(given);
    if (buffer.length !== expected.length || !timingSafeEqual(buffer, expected)) {
      return send(403, { Code: "Forbidden", Message: "wrong token" });
    }
    if (req.url !== path) return send(404, { Code: "NotFound", Message: "not found" });
    if (req.method !== "GET") return send(405, { Code: "MethodNotAllowed", Message: "GET only" });
    valid().then(
      (c) =>
        send(200, {
          AccessKeyId: c.accessKeyId,
          SecretAccessKey: c.secretAccessKey,
          Token: c.sessionToken,
          Expiration: c.expiration.toISOString(),
        }),
      (error) =>
        send(500, {
          Code: "CredentialsUnavailable",
          Message: `AWS credentials expired and could not be renewed: ${oneLine(error)}`,
        }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  // A forgotten close() must not keep the action's process alive.
  server.unref();
  const { port } = server.address() as AddressInfo;

  const env: Record<string, string> = {
    AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${port}${path}`,
    AWS_CONTAINER_AUTHORIZATION_TOKEN: token,
    AWS_REGION: options.region,
    AWS_DEFAULT_REGION: options.region,
    // Profiles (~/.aws/credentials and config, ~/.boto) come before the container provider.
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    AWS_CONFIG_FILE: "/dev/null",
    BOTO_CONFIG: "/dev/null",
  };

  return {
    env,
    childEnv: (base = process.env) => {
      const shadowing = new Set<string>(SHADOWING_VARIABLES);
      const kept = Object.entries(base).filter(([name]) => !shadowing.has(name));
      return { ...Object.fromEntries(kept), ...env };
    },
    provider: async () => {
      const c = await valid();
      return {
        accessKeyId: c.accessKeyId,
        secretAccessKey: c.secretAccessKey,
        sessionToken: c.sessionToken,
        expiration: c.expiration,
      };
    },
    close: () => {
      closed = true;
      clearTimeout(timer);
      return new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
