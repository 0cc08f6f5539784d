/**
 * assumeRoleWithOidc's retries (src/aws/oidc.ts): a transient STS failure (throttling, a 5xx, the
 * IdP unreachable) is retried after a jittered, doubling delay, up to `attempts` calls in all; a
 * final answer (the role, its trust policy or the token is wrong) is not retried. Against a
 * loopback STS stand-in that answers each AssumeRoleWithWebIdentity from a script, and the
 * loopback OIDC endpoint; `AWS_ENDPOINT_URL` points the SDK at the stand-in, as in the action tests.
 */
import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { assumeRoleWithOidc, type AssumeOptions } from "../src/aws/oidc.js";
import { InputError } from "../src/errors.js";
import { startOidcServer, type OidcServer } from "./support/oidc.js";

const ROLE = "arn:aws:iam::123456789012:role/mcs-eval";

/** What the stand-in answers to one call: a named STS error, or credentials. */
type Answer = "ok" | [status: number, code: string];
const THROTTLED: Answer = [400, "Throttling"];
const INTERNAL: Answer = [500, "InternalFailure"];
const UNAVAILABLE: Answer = [503, "ServiceUnavailable"];
const IDP_DOWN: Answer = [400, "IDPCommunicationError"];

interface StsCall {
  at: number;
  action: string | null;
  roleArn: string | null;
  sessionName: string | null;
  token: string | null;
  answered: string;
}

interface StsStandIn {
  url: string;
  /** Answers for the next calls, in order; once used up, every call gets credentials. */
  script: Answer[];
  calls: StsCall[];
  close(): Promise<void>;
}

const xmlError = (code: string) =>
  `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>` +
  `<Type>${code === "InternalFailure" || code === "ServiceUnavailable" ? "Receiver" : "Sender"}</Type>` +
  `<Code>${code}</Code><Message>${code} (stand-in)</Message></Error>` +
  `<RequestId>${randomUUID()}</RequestId></ErrorResponse>`;

const credentialsXml = () =>
  `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">` +
  `<AssumeRoleWithWebIdentityResult><Credentials>` +
  `<AccessKeyId>ASIA${randomBytes(8).toString("hex").toUpperCase()}</AccessKeyId>` +
  `<SecretAccessKey>${randomBytes(20).toString("base64")}</SecretAccessKey>` +
  `<SessionToken>${randomBytes(40).toString("base64")}</SessionToken>` +
  `<Expiration>${new Date(Date.now() + 3_600_000).toISOString()}</Expiration>` +
  `</Credentials><SubjectFromWebIdentityToken>repo:mcs-org/mcs-pipeline:ref:refs/heads/main` +
  `</SubjectFromWebIdentityToken></AssumeRoleWithWebIdentityResult>` +
  `<ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata>` +
  `</AssumeRoleWithWebIdentityResponse>`;

async function startStsStandIn(): Promise<StsStandIn> {
  const script: Answer[] = [];
  const calls: StsCall[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      const answer = standIn.script.shift() ?? "ok";
      calls.push({
        at: performance.now(),
        action: form.get("Action"),
        roleArn: form.get("RoleArn"),
        sessionName: form.get("RoleSessionName"),
        token: form.get("WebIdentityToken"),
        answered: answer === "ok" ? "ok" : answer[1],
      });
      const [status, body] =
        answer === "ok" ? [200, credentialsXml()] : [answer[0], xmlError(answer[1])];
      res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": randomUUID() });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const standIn: StsStandIn = {
    url: `http://127.0.0.1:${port}`,
    script,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return standIn;
}

let sts: StsStandIn;
let oidc: OidcServer;
const saved: Record<string, string | undefined> = {};
const VARS = [
  "AWS_ENDPOINT_URL",
  "ACTIONS_ID_TOKEN_REQUEST_URL",
  "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_PROFILE",
];

beforeAll(async () => {
  [sts, oidc] = await Promise.all([startStsStandIn(), startOidcServer()]);
  for (const name of VARS) saved[name] = process.env[name];
});

afterAll(async () => {
  for (const name of VARS) {
    if (saved[name] === undefined) Reflect.deleteProperty(process.env, name);
    else process.env[name] = saved[name];
  }
  await Promise.all([sts.close(), oidc.close()]);
});

/** The step's log (core.info and workflow commands go to stdout). */
let log: string[] = [];

beforeEach(() => {
  for (const name of VARS) Reflect.deleteProperty(process.env, name);
  Object.assign(process.env, oidc.env(), { AWS_ENDPOINT_URL: sts.url });
  sts.script.splice(0);
  sts.calls.splice(0);
  log = [];
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    log.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

const options = (extra: Partial<AssumeOptions> = {}): AssumeOptions => ({
  roleArn: ROLE,
  region: "us-east-1",
  durationSeconds: 900,
  sessionName: "mcs-123-1-eval",
  ...extra,
});

/** The delays the retries announced (`STS: <code> (...); retrying in N ms`), in order. */
const announced = () =>
  log
    .join("")
    .split("\n")
    .flatMap((line) => {
      const m = /^STS: (\S+) \(.*\); retrying in (\d+) ms$/.exec(line);
      return m ? [{ code: m[1]!, ms: Number(m[2]) }] : [];
    });

/** Milliseconds between consecutive calls the stand-in received. */
const gaps = () => sts.calls.slice(1).map((c, i) => c.at - sts.calls[i]!.at);

describe("assumeRoleWithOidc: transient STS errors are retried with jittered backoff", () => {
  it("throttling, a 500, a 503 and an unreachable IdP, then credentials: five calls, one token", async () => {
    sts.script.push(THROTTLED, INTERNAL, UNAVAILABLE, IDP_DOWN);
    const creds = await assumeRoleWithOidc(options({ attempts: 5, baseDelayMs: 5 }));
    expect(creds.accessKeyId).toMatch(/^ASIA/);
    expect(creds.sessionToken.length).toBeGreaterThan(20);
    expect(creds.expiration).toBeInstanceOf(Date);
    expect(sts.calls.map((c) => c.answered)).toEqual([
      "Throttling",
      "InternalFailure",
      "ServiceUnavailable",
      "IDPCommunicationError",
      "ok",
    ]);
    for (const call of sts.calls) {
      expect(call).toMatchObject({
        action: "AssumeRoleWithWebIdentity",
        roleArn: ROLE,
        sessionName: "mcs-123-1-eval",
        token: oidc.issued[0]!.jwt,
      });
    }
    // One ID token for all attempts (it lives 5 minutes; the retries take seconds).
    expect(oidc.issued).toHaveLength(1);
    // The SDK names the modelled errors `<code>Exception`.
    expect(announced().map((a) => a.code)).toEqual([
      "Throttling",
      "InternalFailure",
      "ServiceUnavailable",
      "IDPCommunicationErrorException",
    ]);
  });

  it("each delay doubles (the jitter held at its top): 100, 200, 400 ms, slept in full", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    sts.script.push(THROTTLED, THROTTLED, THROTTLED);
    await assumeRoleWithOidc(options({ attempts: 4, baseDelayMs: 100 }));
    expect(announced().map((a) => a.ms)).toEqual([100, 200, 400]);
    const slept = gaps();
    expect(slept).toHaveLength(3);
    // Timers may fire a little late, never early (1 ms for rounding).
    for (const [i, ms] of [99, 199, 399].entries()) expect(slept[i]).toBeGreaterThanOrEqual(ms);
  });

  it("the delay is random below its cap (full jitter): parallel jobs do not retry in step", async () => {
    const first: number[] = [];
    for (let run = 0; run < 6; run++) {
      sts.script.push(THROTTLED, THROTTLED);
      log = [];
      await assumeRoleWithOidc(options({ attempts: 3, baseDelayMs: 40 }));
      const [a, b] = announced();
      expect(a!.ms).toBeGreaterThanOrEqual(0);
      expect(a!.ms).toBeLessThanOrEqual(40);
      expect(b!.ms).toBeLessThanOrEqual(80);
      first.push(a!.ms);
    }
    // Six draws from [0, 40]: all equal only if nothing is random.
    expect(new Set(first).size).toBeGreaterThan(1);
  });

  it("gives up after `attempts` calls, saying how often it tried and the last error", async () => {
    sts.script.push(INTERNAL, INTERNAL, INTERNAL, INTERNAL, INTERNAL);
    const error = await assumeRoleWithOidc(options({ attempts: 3, baseDelayMs: 5 })).catch(
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      /^STS AssumeRoleWithWebIdentity failed 3 times: InternalFailure \(stand-in\)$/,
    );
    expect(sts.calls).toHaveLength(3);
    expect(announced()).toHaveLength(2);
  });

  it("tries four times by default", async () => {
    sts.script.push(...Array<Answer>(6).fill(THROTTLED));
    const error = await assumeRoleWithOidc(options({ baseDelayMs: 5 })).catch((e: Error) => e);
    expect((error as Error).message).toMatch(/failed 4 times: Throttling/);
    expect(sts.calls).toHaveLength(4);
  });
});

describe("assumeRoleWithOidc: final STS answers are not retried", () => {
  it.each([
    [403, "AccessDenied"],
    [400, "InvalidIdentityToken"],
    [400, "IDPRejectedClaim"],
    [400, "ExpiredTokenException"],
  ] as const)(
    "%i %s: one call, an error naming the role and its trust policy",
    async (status, code) => {
      sts.script.push([status, code]);
      const error = await assumeRoleWithOidc(options({ attempts: 4, baseDelayMs: 5 })).catch(
        (e: Error) => e,
      );
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).input).toBe("role-to-assume");
      expect((error as Error).message).toMatch(
        new RegExp(`^AWS refused ${ROLE.replace(/[/.]/g, "\\$&")} \\(${code}(Exception)?: `),
      );
      expect((error as Error).message).toMatch(/trust policy/);
      expect(sts.calls).toHaveLength(1);
      expect(announced()).toEqual([]);
    },
  );
});

describe("assumeRoleWithOidc: a refusal says what the token presented, in one line", () => {
  const TOKEN_MAIN = "repo:mcs-org/mcs-pipeline:ref:refs/heads/main";
  const CONDITION = (sub: string) =>
    `a trust policy admits it with StringEquals token.actions.githubusercontent.com:aud =` +
    ` sts.amazonaws.com and StringLike token.actions.githubusercontent.com:sub = ${sub}`;

  /** The refusal of a token from `issuer` (AccessDenied, as STS answers an unmatched trust). */
  async function refusal(issuer: OidcServer): Promise<string> {
    Object.assign(process.env, issuer.env());
    sts.script.push([403, "AccessDenied"]);
    const error = await assumeRoleWithOidc(options({ attempts: 1 })).catch((e: Error) => e);
    expect(error).toBeInstanceOf(InputError);
    const { message } = error as InputError;
    // One line; neither the token nor any part of it (the payload is only read).
    expect(message).not.toMatch(/\n/);
    const jwt = issuer.issued.at(-1)!.jwt;
    expect(sts.calls.at(-1)!.token).toBe(jwt);
    for (const part of jwt.split(".")) expect(message).not.toContain(part);
    // The log has it only in `::add-mask::` (core.getIDToken masks it), which the runner eats.
    const shown = log
      .join("")
      .split("\n")
      .filter((line) => !line.startsWith("::add-mask::"));
    expect(shown.join("\n")).not.toContain(jwt.split(".")[1]);
    return message;
  }

  it("a name-form token: its sub and aud, the condition, the stack's parameters", async () => {
    const message = await refusal(oidc);
    expect(message).toBe(
      `AWS refused ${ROLE} (AccessDenied: AccessDenied (stand-in)): this job's OIDC` +
        ` token presented sub ${TOKEN_MAIN} and aud sts.amazonaws.com; ${CONDITION(TOKEN_MAIN)}` +
        ` (the setup stack: GitHubRepository mcs-org/mcs-pipeline, GitHubSubjects including` +
        ` ref:refs/heads/main)`,
    );
  });

  it("an ID-form token (a repository created since mid-2026): the sub with the IDs", async () => {
    const ids = await startOidcServer({
      ids: { owner: 1234567, repository: 987654321 },
      immutableSubject: true,
      context: "pull_request",
    });
    try {
      const sub = "repo:mcs-org@1234567/mcs-pipeline@987654321:pull_request";
      const message = await refusal(ids);
      expect(message).toContain(`presented sub ${sub} and aud sts.amazonaws.com; `);
      expect(message).toContain(CONDITION(sub));
      expect(message).toMatch(
        / \(the setup stack: GitHubRepository mcs-org@1234567\/mcs-pipeline@987654321, GitHubSubjects including pull_request\)$/,
      );
    } finally {
      await ids.close();
    }
  });

  it("a customized subject (not repo:...): the condition, no stack parameters", async () => {
    const custom = await startOidcServer({ subject: "repository_owner:mcs-org" });
    try {
      const message = await refusal(custom);
      expect(message).toMatch(
        /presented sub repository_owner:mcs-org and aud sts\.amazonaws\.com; .* StringLike token\.actions\.githubusercontent\.com:sub = repository_owner:mcs-org$/,
      );
    } finally {
      await custom.close();
    }
  });
});
