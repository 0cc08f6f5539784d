/**
 * AWS on loopback: a moto server (STS, S3) from the test venv, and an STS "trust policy" proxy in
 * front of it. moto assumes any role for any token; the proxy adds what real STS checks before
 * that (a well-formed, unexpired JWT for the right audience; roles whose trust policy refuses the
 * token) and records every credential and web-identity token it passes, so tests can assert no
 * secret leaked into logs, outputs or the job summary. Everything else is forwarded unchanged.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { VENV } from "./sshd.js";

/** Static keys for the test process's own S3 calls and the node's environment (moto accepts any). */
export const TEST_KEYS = { accessKeyId: "testing", secretAccessKey: "testing" } as const;
export const TEST_REGION = "us-east-1";

export interface MotoServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  pid: number;
  /** moto's request log (stdout and stderr). */
  log: string;
  /** Stops moto by PID and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

const live = new Map<ChildProcess, string>(); // moto -> its log directory
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const [child, dir] of live) {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts `python -m moto.server` on a free loopback port; resolves once it listens. */
export async function startMoto(options: { venv?: string } = {}): Promise<MotoServer> {
  const python = path.join(options.venv ?? VENV, "bin", "python");
  const dir = mkdtempSync(path.join(os.tmpdir(), "mcs-moto-"));
  const log = path.join(dir, "moto.log");
  // moto logs every request: a file, not a pipe nobody drains.
  const out = openSync(log, "a");
  installExitHook();
  const child = spawn(python, ["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"], {
    stdio: ["ignore", out, out],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PYTHONUNBUFFERED: "1" },
  });
  closeSync(out);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${python} -m moto.server`);
  live.set(child, dir);
  const stop = async () => {
    if (live.has(child)) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited(child);
      clearTimeout(timer);
      live.delete(child);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    const match = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
    if (match) return { url: match[1]!, pid, log, stop };
    await sleep(50);
  }
  const text = readFileSync(log, "utf8");
  await stop();
  throw new Error(`moto did not start:\n${text}`);
}

// ---------------------------------------------------------------------------------------------
// S3 helpers (path-style, dummy keys: moto checks neither)

export function s3Client(endpoint: string): S3Client {
  return new S3Client({
    region: TEST_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: TEST_KEYS,
    maxAttempts: 1,
  });
}

export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  await s3Client(endpoint).send(new CreateBucketCommand({ Bucket: bucket }));
}

/** Every key under `prefix` in `bucket`, sorted. */
export async function listKeys(endpoint: string, bucket: string, prefix = ""): Promise<string[]> {
  const s3 = s3Client(endpoint);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const item of page.Contents ?? []) if (item.Key) keys.push(item.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

export async function readObject(endpoint: string, bucket: string, key: string): Promise<string> {
  const out = await s3Client(endpoint).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return out.Body ? await out.Body.transformToString() : "";
}

export async function putObject(
  endpoint: string,
  bucket: string,
  key: string,
  body: string,
): Promise<void> {
  await s3Client(endpoint).send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

// ---------------------------------------------------------------------------------------------
// The STS trust-policy proxy

export interface IssuedCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration?: string;
  /** The STS action that returned them (AssumeRoleWithWebIdentity, AssumeRole ...). */
  action: string;
  roleArn?: string;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  /** The AWS query-protocol action (STS), if any. */
  action?: string;
  roleArn?: string;
  status: number;
  /** Set when the proxy answered itself instead of forwarding. */
  refused?: string;
}

export interface StsProxyOptions {
  /** Role ARNs whose trust policy refuses every token: 403 AccessDenied. */
  refuse?: Iterable<string>;
  /** The audience a token must carry (default sts.amazonaws.com); null: any. */
  audience?: string | null;
  /** Only tokens this accepts pass (e.g. those the OIDC fixture issued): else InvalidIdentityToken. */
  acceptToken?: (jwt: string) => boolean;
}

export interface StsProxy {
  /** `http://127.0.0.1:PORT`: the action's AWS_ENDPOINT_URL. */
  url: string;
  upstream: string;
  /** Role ARNs to refuse (mutable). */
  refuse: Set<string>;
  /** Every credential set moto issued through the proxy, in order. */
  credentials: IssuedCredentials[];
  /** Every WebIdentityToken presented to AssumeRoleWithWebIdentity (refused ones too). */
  webIdentityTokens: string[];
  requests: ProxiedRequest[];
  /** Secret values seen: secret keys, session tokens, web-identity tokens (for leak checks). */
  secrets(): string[];
  close(): Promise<void>;
}

function stsError(res: http.ServerResponse, status: number, code: string, message: string) {
  const requestId = randomUUID();
  res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": requestId });
  res.end(
    `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n` +
      `  <Error>\n    <Type>Sender</Type>\n    <Code>${code}</Code>\n` +
      `    <Message>${message}</Message>\n  </Error>\n` +
      `  <RequestId>${requestId}</RequestId>\n</ErrorResponse>\n`,
  );
}

function decodeJwt(token: string): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(parts[0]!, "base64url").toString("utf8"));
    const payload: unknown = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    if (typeof header !== "object" || header === null) return undefined;
    if (typeof payload !== "object" || payload === null) return undefined;
    return payload as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Why real STS would refuse this AssumeRoleWithWebIdentity call, or undefined. */
function refusal(
  form: URLSearchParams,
  options: StsProxyOptions,
  refuse: Set<string>,
): [number, string, string] | undefined {
  const token = form.get("WebIdentityToken") ?? "";
  const claims = decodeJwt(token);
  if (!claims) return [400, "InvalidIdentityToken", "The ID token provided is not a valid JWT."];
  if (options.acceptToken && !options.acceptToken(token)) {
    return [400, "InvalidIdentityToken", "Couldn't verify the signature of the ID token."];
  }
  const audience = options.audience === undefined ? "sts.amazonaws.com" : options.audience;
  const aud = claims.aud;
  if (audience !== null && !(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
    return [400, "InvalidIdentityToken", "Incorrect token audience"];
  }
  if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) {
    const now = new Date().toISOString();
    const exp = new Date(claims.exp * 1000).toISOString();
    return [
      400,
      "ExpiredTokenException",
      `Token expired: current date/time ${now} must be before the expiration date/time ${exp}`,
    ];
  }
  if (refuse.has(form.get("RoleArn") ?? "")) {
    return [403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"];
  }
  return undefined;
}

function tag(xml: string, name: string): string | undefined {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
}

/** A loopback proxy to `upstream` (moto) that plays STS's trust policy and records credentials. */
export async function startStsProxy(
  upstream: string,
  options: StsProxyOptions = {},
): Promise<StsProxy> {
  const up = new URL(upstream);
  const refuse = new Set(options.refuse ?? []);
  const credentials: IssuedCredentials[] = [];
  const webIdentityTokens: string[] = [];
  const requests: ProxiedRequest[] = [];

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? "/", "http://proxy");
      const form = new URLSearchParams(url.search);
      if (req.headers["content-type"]?.startsWith("application/x-www-form-urlencoded")) {
        for (const [k, v] of new URLSearchParams(body.toString("utf8"))) form.append(k, v);
      }
      const action = form.get("Action") ?? undefined;
      const record: ProxiedRequest = { method: req.method ?? "GET", path: url.pathname, status: 0 };
      if (action) record.action = action;
      const roleArn = form.get("RoleArn");
      if (roleArn) record.roleArn = roleArn;
      requests.push(record);

      if (action === "AssumeRoleWithWebIdentity") {
        webIdentityTokens.push(form.get("WebIdentityToken") ?? "");
        const refused = refusal(form, options, refuse);
        if (refused) {
          record.status = refused[0];
          record.refused = refused[1];
          stsError(res, ...refused);
          return;
        }
      }
      // The body is already buffered (and Node answered any 100-continue itself).
      const headers = { ...req.headers };
      delete headers.expect;
      const forward = http.request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers },
        (answer) => {
          const parts: Buffer[] = [];
          answer.on("data", (d: Buffer) => parts.push(d));
          answer.on("end", () => {
            const payload = Buffer.concat(parts);
            record.status = answer.statusCode ?? 502;
            if (action && record.status < 300) {
              const xml = payload.toString("utf8");
              const accessKeyId = tag(xml, "AccessKeyId");
              const secretAccessKey = tag(xml, "SecretAccessKey");
              const sessionToken = tag(xml, "SessionToken");
              if (accessKeyId && secretAccessKey && sessionToken) {
                const issued: IssuedCredentials = {
                  accessKeyId,
                  secretAccessKey,
                  sessionToken,
                  action,
                };
                const expiration = tag(xml, "Expiration");
                if (expiration) issued.expiration = expiration;
                if (roleArn) issued.roleArn = roleArn;
                credentials.push(issued);
              }
            }
            const back = { ...answer.headers };
            delete back["transfer-encoding"];
            back["content-length"] = String(payload.length);
            res.writeHead(record.status, back);
            res.end(payload);
          });
        },
      );
      forward.on("error", (error) => {
        record.status = 502;
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`sts proxy: upstream ${upstream}: ${error.message}`);
      });
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    upstream,
    refuse,
    credentials,
    webIdentityTokens,
    requests,
    secrets: () => [
      ...credentials.flatMap((c) => [c.secretAccessKey, c.sessionToken]),
      ...webIdentityTokens.filter(Boolean),
    ],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
