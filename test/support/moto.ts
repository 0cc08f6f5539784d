/**
 * AWS on loopback: a moto server (STS, S3) from the test venv, and an STS "trust policy" proxy in
 * front of it. moto assumes any role for any token; the proxy adds what real STS checks before
 * that (a well-formed, unexpired JWT for the right audience; roles whose trust policy refuses the
 * token) and records every credential and web-identity token it passes, so tests can assert no
 * secret leaked into logs, outputs or the job summary. Everything else is forwarded unchanged,
 * unless `credentialLifetimeSeconds` makes it as strict as AWS about credentials: then what STS
 * issues expires after that lifetime, and any other request must be signed with a key it issued,
 * carry that key's session token and arrive before the key expires.
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

export interface MotoOptions {
  venv?: string;
  env?: Record<string, string>;
  /** A Python file to run instead of moto.server, taking its arguments (e.g. moto_cfn.py). */
  script?: string;
}

/** Starts `python -m moto.server` on a free loopback port; resolves once it listens. */
export async function startMoto(options: MotoOptions = {}): Promise<MotoServer> {
  const python = path.join(options.venv ?? VENV, "bin", "python");
  const dir = mkdtempSync(path.join(os.tmpdir(), "mcs-moto-"));
  const log = path.join(dir, "moto.log");
  // moto logs every request: a file, not a pipe nobody drains.
  const out = openSync(log, "a");
  installExitHook();
  const entry = options.script ? [options.script] : ["-m", "moto.server"];
  const child = spawn(python, [...entry, "-H", "127.0.0.1", "-p", "0"], {
    stdio: ["ignore", out, out],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PYTHONUNBUFFERED: "1",
      ...options.env,
    },
  });
  closeSync(out);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${python} ${entry.join(" ")}`);
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
  /** The AWS query-protocol action (STS, EC2, IAM), if any. */
  action?: string;
  /** The JSON-protocol operation (X-Amz-Target, e.g. AmazonSSM.GetParameters), if any. */
  target?: string;
  roleArn?: string;
  status: number;
  /** The access key that signed the request (SigV4 header or presigned query), if any. */
  accessKeyId?: string;
  /** Set when the proxy answered itself instead of forwarding (the error code it answered). */
  refused?: string;
  /** The query-protocol parameters (EC2, IAM, STS), a web-identity token left out. */
  params?: Record<string, string>;
}

export interface StsProxyOptions {
  /** Role ARNs whose trust policy refuses every token: 403 AccessDenied. */
  refuse?: Iterable<string>;
  /** The audience a token must carry (default sts.amazonaws.com); null: any. */
  audience?: string | null;
  /** Only tokens this accepts pass (e.g. those the OIDC fixture issued): else InvalidIdentityToken. */
  acceptToken?: (jwt: string) => boolean;
  /**
   * The role's trust policy, as the test evaluates it (moto evaluates none): does it admit a
   * token with these claims? No: 403 AccessDenied, as STS answers.
   */
  trust?: (roleArn: string, claims: Record<string, unknown>) => boolean;
  /**
   * Strict mode: credentials STS returns expire this many seconds after they are issued (the
   * `<Expiration>` moto returned is rewritten), and every other request must be signed with an
   * issued, unexpired key and carry its session token, or it is refused as AWS would refuse it.
   */
  credentialLifetimeSeconds?: number;
}

export interface StsProxy {
  /** `http://127.0.0.1:PORT`: the action's AWS_ENDPOINT_URL. */
  url: string;
  upstream: string;
  /** Role ARNs to refuse (mutable). */
  refuse: Set<string>;
  /**
   * Roles' MaxSessionDuration (mutable), which moto's STS ignores: a longer DurationSeconds is
   * refused with 400 ValidationError, as STS refuses it.
   */
  maxSessionDuration: Map<string, number>;
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

type Service = "s3" | "sts" | "ec2";

/** `service`'s own error shape (S3 REST XML, STS query XML, EC2 XML). */
function awsError(
  res: http.ServerResponse,
  service: Service,
  status: number,
  code: string,
  message: string,
) {
  if (service === "sts") return stsError(res, status, code, message);
  const requestId = randomUUID();
  const body =
    service === "s3"
      ? `<Error><Code>${code}</Code><Message>${message}</Message>` +
        `<RequestId>${requestId}</RequestId><HostId>${randomUUID()}</HostId></Error>`
      : `<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error>` +
        `</Errors><RequestID>${requestId}</RequestID></Response>`;
  res.writeHead(status, { "content-type": "application/xml", "x-amz-request-id": requestId });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}\n`);
}

/** The SigV4 signer of a request: `Credential=AKID/date/region/service/aws4_request`. */
function signer(
  req: http.IncomingMessage,
  url: URL,
): { accessKeyId: string; service: string; sessionToken?: string } | undefined {
  const header = /Credential=([^/,\s]+)\/[^/]*\/[^/]*\/([^/]+)\//.exec(
    req.headers.authorization ?? "",
  );
  const query = /^([^/]+)\/[^/]*\/[^/]*\/([^/]+)\//.exec(
    url.searchParams.get("X-Amz-Credential") ?? "",
  );
  const match = header ?? query;
  if (!match) return undefined;
  const token = req.headers["x-amz-security-token"] ?? url.searchParams.get("X-Amz-Security-Token");
  return {
    accessKeyId: match[1]!,
    service: match[2]!,
    ...(typeof token === "string" ? { sessionToken: token } : {}),
  };
}

const UNSIGNED_ACTIONS = new Set(["AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"]);

type Fault = "unsigned" | "unknown" | "token" | "expired";
type Answer = [status: number, code: string, message: string];

const INVALID_TOKEN = "The security token included in the request is invalid.";
/** What each service answers for each fault, as AWS does. */
const FAULTS: Record<Service, Record<Fault, Answer>> = {
  s3: {
    unsigned: [403, "AccessDenied", "Access Denied"],
    unknown: [
      403,
      "InvalidAccessKeyId",
      "The AWS Access Key Id you provided does not exist in our records.",
    ],
    token: [400, "InvalidToken", "The provided token is malformed or otherwise invalid."],
    expired: [400, "ExpiredToken", "The provided token has expired."],
  },
  sts: {
    unsigned: [403, "MissingAuthenticationToken", "Request is missing Authentication Token"],
    unknown: [403, "InvalidClientTokenId", INVALID_TOKEN],
    token: [403, "InvalidClientTokenId", INVALID_TOKEN],
    expired: [403, "ExpiredToken", "The security token included in the request is expired"],
  },
  ec2: {
    unsigned: [401, "AuthFailure", "AWS was not able to validate the provided access credentials"],
    unknown: [401, "AuthFailure", "AWS was not able to validate the provided access credentials"],
    token: [401, "AuthFailure", "AWS was not able to validate the provided access credentials"],
    expired: [400, "ExpiredToken", "The security token included in the request is expired"],
  },
};

/** Why real AWS would refuse this request's credentials (strict mode), or undefined. */
function credentialRefusal(
  req: http.IncomingMessage,
  url: URL,
  form: URLSearchParams,
  issued: Map<string, IssuedCredentials>,
): [Service, number, string, string] | undefined {
  const action = form.get("Action");
  const sig = signer(req, url);
  const scope = sig?.service;
  const service: Service =
    scope === "s3" || scope === "sts" || scope === "ec2"
      ? scope
      : !action
        ? "s3"
        : form.get("Version") === "2011-06-15"
          ? "sts"
          : "ec2";
  const known = sig && issued.get(sig.accessKeyId);
  let fault: Fault | undefined;
  if (!sig) fault = action && UNSIGNED_ACTIONS.has(action) ? undefined : "unsigned";
  else if (!known) fault = "unknown";
  else if (sig.sessionToken !== known.sessionToken) fault = "token";
  else if (known.expiration && Date.parse(known.expiration) <= Date.now()) fault = "expired";
  return fault && [service, ...FAULTS[service][fault]];
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
  maxSessionDuration: Map<string, number>,
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
  const roleArn = form.get("RoleArn") ?? "";
  if (refuse.has(roleArn) || (options.trust && !options.trust(roleArn, claims))) {
    return [403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"];
  }
  const max = maxSessionDuration.get(roleArn);
  if (max !== undefined && Number(form.get("DurationSeconds") ?? 3600) > max) {
    const text = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.";
    return [400, "ValidationError", text];
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
  const maxSessionDuration = new Map<string, number>();
  const credentials: IssuedCredentials[] = [];
  const webIdentityTokens: string[] = [];
  const requests: ProxiedRequest[] = [];
  const lifetime = options.credentialLifetimeSeconds;
  const byKey = new Map<string, IssuedCredentials>();

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
      const target = req.headers["x-amz-target"];
      if (typeof target === "string") record.target = target;
      const accessKeyId = signer(req, url)?.accessKeyId;
      if (accessKeyId) record.accessKeyId = accessKeyId;
      const roleArn = form.get("RoleArn");
      if (roleArn) record.roleArn = roleArn;
      if (action) {
        record.params = Object.fromEntries([...form].filter(([k]) => k !== "WebIdentityToken"));
      }
      requests.push(record);

      if (action === "AssumeRoleWithWebIdentity") {
        webIdentityTokens.push(form.get("WebIdentityToken") ?? "");
        const refused = refusal(form, options, refuse, maxSessionDuration);
        if (refused) {
          record.status = refused[0];
          record.refused = refused[1];
          stsError(res, ...refused);
          return;
        }
      }
      if (lifetime !== undefined) {
        const refused = credentialRefusal(req, url, form, byKey);
        if (refused) {
          record.status = refused[1];
          record.refused = refused[2];
          awsError(res, ...refused);
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
            let payload = Buffer.concat(parts);
            record.status = answer.statusCode ?? 502;
            if (action && record.status < 300) {
              let xml = payload.toString("utf8");
              const accessKeyId = tag(xml, "AccessKeyId");
              const secretAccessKey = tag(xml, "SecretAccessKey");
              const sessionToken = tag(xml, "SessionToken");
              if (accessKeyId && secretAccessKey && sessionToken) {
                if (lifetime !== undefined) {
                  const expires = new Date(Date.now() + lifetime * 1000).toISOString();
                  xml = xml.replace(
                    /<Expiration>[^<]*<\/Expiration>/,
                    `<Expiration>${expires}</Expiration>`,
                  );
                  payload = Buffer.from(xml, "utf8");
                }
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
                byKey.set(accessKeyId, issued);
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
    maxSessionDuration,
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
