/**
 * The self-renewing credential server (src/aws/credentials.ts) against loopback AWS that is as
 * strict as the real one about credential lifetime: moto behind the STS proxy with 20-second
 * credentials, and the OIDC endpoint. A real boto3 process and an in-process JS SDK client keep
 * calling S3 for three lifetimes; every call must pass with the credentials of the moment.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { afterAll, beforeAll, describe, expect, it, type ExpectStatic } from "vitest";
import {
  serveCredentials,
  SHADOWING_VARIABLES,
  type AwsCredentials,
  type CredentialServer,
} from "../src/aws/credentials.js";
import { assumeRoleWithOidc } from "../src/aws/oidc.js";
import { startLoopbackAws, type LoopbackAws } from "./support/loopback.js";
import { createBucket, TEST_REGION, type StsProxy } from "./support/moto.js";
import { canConnect, sleep, VENV } from "./support/sshd.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const LIFETIME_SECONDS = 20;
/** Three lifetimes and a bit. */
const RUN_SECONDS = 62;
const INTERVAL_MS = 2_000;
const BUCKET = "mcs-credentials";
const ROLE = "arn:aws:iam::123456789012:role/mcs-pipeline";

let aws: LoopbackAws | undefined;
let proxy: StsProxy;
let server: CredentialServer | undefined;
/** What the server logged, masked, and fetched. */
const logged: string[] = [];
const masked = new Set<string>();
const fetched: AwsCredentials[] = [];
const children = new Set<ChildProcess>();

const PROCESS_ENV = [
  "ACTIONS_ID_TOKEN_REQUEST_URL",
  "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
  "AWS_ENDPOINT_URL",
] as const;
const saved = Object.fromEntries(PROCESS_ENV.map((name) => [name, process.env[name]]));

function assume(): Promise<AwsCredentials> {
  return assumeRoleWithOidc({
    roleArn: ROLE,
    region: TEST_REGION,
    durationSeconds: 900,
    sessionName: "mcs-credentials-test",
    attempts: 2,
  });
}

/** Runs a command to its end; its stdout and stderr. The child is killed by PID in afterAll. */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { env, cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * What a runner may already have, each of which would win over the container provider if it
 * stayed: static keys, a profile, a web-identity token file, ~/.aws files, another container URI.
 * None of these credentials exists in the proxy, so any of them winning fails the calls.
 */
function hostileEnv(): NodeJS.ProcessEnv {
  const home = makeTemp("mcs-creds-home-");
  mkdirSync(path.join(home, ".aws"));
  const profile = "aws_access_key_id = AKIASTATICFILE\naws_secret_access_key = static\n";
  writeFileSync(
    path.join(home, ".aws", "credentials"),
    `[default]\n${profile}[runner]\n${profile}`,
  );
  writeFileSync(path.join(home, ".aws", "config"), "[default]\nregion = eu-west-3\n");
  writeFileSync(path.join(home, ".boto"), `[Credentials]\n${profile}`);
  const tokenFile = path.join(home, "web-identity-token");
  writeFileSync(tokenFile, "not-a-jwt");
  const authFile = path.join(home, "container-token");
  writeFileSync(authFile, "wrong-token");
  return {
    PATH: process.env.PATH,
    HOME: home,
    AWS_ACCESS_KEY_ID: "AKIASTATICENV",
    AWS_SECRET_ACCESS_KEY: "static",
    AWS_SESSION_TOKEN: "static",
    AWS_PROFILE: "runner",
    AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
    AWS_ROLE_ARN: ROLE,
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "/v2/credentials/elsewhere",
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: authFile,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  };
}

const BOTO_LOOP = `
import json, sys, time
import boto3
from botocore.config import Config

bucket, prefix, seconds, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
# One client for the whole run, as in a long ray command; no retries hide a refusal.
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
end = time.time() + seconds
i = 0
while time.time() < end:
    key = f"{prefix}/{i}"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        print(json.dumps({"i": i, "ok": True}), flush=True)
    except Exception as e:
        print(json.dumps({"i": i, "ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
    i += 1
    time.sleep(interval)
`;

/** One S3 call with the JS SDK's default credential chain, in a child with the given env. */
const JS_ONCE = `
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
const s3 = new S3Client({ forcePathStyle: true, maxAttempts: 1 });
await s3.send(new PutObjectCommand({ Bucket: process.argv[1], Key: "js-child/once", Body: "x" }));
const creds = await s3.config.credentials();
console.log(JSON.stringify({ ok: true, accessKeyId: creds.accessKeyId }));
`;

interface Outcome {
  i: number;
  ok: boolean;
  error?: string;
}

/** The access keys that signed the requests under a prefix of the bucket, and any refusals. */
function usage(prefix: string) {
  const requests = proxy.requests.filter((r) => r.path.startsWith(`/${BUCKET}/${prefix}/`));
  return {
    requests: requests.length,
    keys: new Set(requests.map((r) => r.accessKeyId)),
    refused: requests.filter((r) => r.refused),
  };
}

/**
 * Every put+get pair under `prefix` succeeded, was forwarded (none refused), and the calls were
 * signed by at least three issued credential sets: the client kept up with the renewals.
 */
function expectServedThroughout(expect: ExpectStatic, prefix: string, outcomes: Outcome[]) {
  expect(outcomes.filter((o) => !o.ok)).toEqual([]);
  const used = usage(prefix);
  expect(used.refused).toEqual([]);
  expect(used.requests).toBe(outcomes.length * 2);
  expect(used.keys.size).toBeGreaterThanOrEqual(3);
}

function nonLoopbackAddress(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

beforeAll(async () => {
  aws = await startLoopbackAws({ proxy: { credentialLifetimeSeconds: LIFETIME_SECONDS } });
  proxy = aws.proxy;
  Object.assign(process.env, aws.oidc.env(), { AWS_ENDPOINT_URL: proxy.url });
  // Straight to moto: the proxy would refuse the test's static keys.
  await createBucket(aws.moto.url, BUCKET);
  server = await serveCredentials(
    async () => {
      const c = await assume();
      fetched.push(c);
      return c;
    },
    {
      region: TEST_REGION,
      log: (line) => logged.push(line),
      mask: (secret) => masked.add(secret),
    },
  );
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await Promise.allSettled([server?.close(), aws?.stop()]);
  for (const name of PROCESS_ENV) {
    if (saved[name] === undefined) Reflect.deleteProperty(process.env, name);
    else process.env[name] = saved[name];
  }
  removeTemps();
});

describe("credentials served on loopback, renewed before they expire", () => {
  it.concurrent(
    "boto3 in a child process keeps working across three credential lifetimes",
    async ({ expect }) => {
      const env = { ...server!.childEnv(hostileEnv()), AWS_ENDPOINT_URL: proxy.url };
      const python = path.join(VENV, "bin", "python");
      const args = [
        "-c",
        BOTO_LOOP,
        BUCKET,
        "boto",
        String(RUN_SECONDS),
        String(INTERVAL_MS / 1000),
      ];
      const { code, stdout, stderr } = await run(python, args, env);
      expect(code, stderr).toBe(0);
      const outcomes = stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Outcome);
      expect(outcomes.length).toBeGreaterThanOrEqual(25);
      expectServedThroughout(expect, "boto", outcomes);
    },
    RUN_SECONDS * 1000 + 60_000,
  );

  it.concurrent(
    "an in-process JS SDK client with `provider` keeps working across three lifetimes",
    async ({ expect }) => {
      const s3 = new S3Client({
        region: TEST_REGION,
        endpoint: proxy.url,
        forcePathStyle: true,
        credentials: server!.provider,
        maxAttempts: 1,
      });
      const outcomes: Outcome[] = [];
      const end = Date.now() + RUN_SECONDS * 1000;
      for (let i = 0; Date.now() < end; i++) {
        try {
          const Key = `js/${i}`;
          await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: "x" }));
          const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key }));
          await out.Body?.transformToString();
          outcomes.push({ i, ok: true });
        } catch (error) {
          outcomes.push({
            i,
            ok: false,
            error: `${(error as Error).name}: ${(error as Error).message}`,
          });
        }
        await sleep(INTERVAL_MS);
      }
      expectServedThroughout(expect, "js", outcomes);
    },
    RUN_SECONDS * 1000 + 60_000,
  );

  it.concurrent(
    "the JS SDK's default chain in a child picks the server over what the runner has",
    async ({ expect }) => {
      const env = { ...server!.childEnv(hostileEnv()), AWS_ENDPOINT_URL: proxy.url };
      const { code, stdout, stderr } = await run(
        process.execPath,
        ["--input-type=module", "-e", JS_ONCE, BUCKET],
        env,
      );
      expect(code, stderr).toBe(0);
      const { accessKeyId } = JSON.parse(stdout) as { accessKeyId: string };
      expect(proxy.credentials.map((c) => c.accessKeyId)).toContain(accessKeyId);
      expect(usage("js-child").refused).toEqual([]);
    },
  );

  it.concurrent(
    "the endpoint answers only its token, only GET on its path, only on 127.0.0.1",
    async ({ expect }) => {
      const env = server!.env;
      const uri = new URL(env.AWS_CONTAINER_CREDENTIALS_FULL_URI!);
      expect(uri.protocol).toBe("http:");
      expect(uri.hostname).toBe("127.0.0.1");
      expect(uri.pathname.length).toBeGreaterThan(16);
      const token = env.AWS_CONTAINER_AUTHORIZATION_TOKEN!;
      expect(Buffer.from(token, "base64url").length).toBeGreaterThanOrEqual(32);
      expect(masked.has(token)).toBe(true);
      expect(env).toMatchObject({
        AWS_REGION: TEST_REGION,
        AWS_DEFAULT_REGION: TEST_REGION,
        AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
        AWS_CONFIG_FILE: "/dev/null",
      });

      expect((await fetch(uri)).status).toBe(401);
      expect((await fetch(uri, { headers: { authorization: "wrong" } })).status).toBe(403);
      expect((await fetch(uri, { headers: { authorization: `${token}x` } })).status).toBe(403);
      const authorization = { authorization: token };
      expect((await fetch(new URL("/", uri), { headers: authorization })).status).toBe(404);
      expect((await fetch(uri, { method: "POST", headers: authorization })).status).toBe(405);
      const ok = await fetch(uri, { headers: authorization });
      expect(ok.status).toBe(200);
      const body = (await ok.json()) as Record<string, string>;
      expect(Object.keys(body).sort()).toEqual([
        "AccessKeyId",
        "Expiration",
        "SecretAccessKey",
        "Token",
      ]);
      expect(new Date(body.Expiration!).toISOString()).toBe(body.Expiration);
      expect(proxy.credentials.map((c) => c.sessionToken)).toContain(body.Token);

      const other = nonLoopbackAddress();
      if (other) expect(await canConnect(other, Number(uri.port))).toBe(false);
      expect(await canConnect("127.0.0.1", Number(uri.port))).toBe(true);
    },
  );

  it.concurrent(
    "the proxy is strict: expired, unknown or mismatched credentials are refused",
    async ({ expect }) => {
      const creds = await assume();
      const expires = Date.parse(
        proxy.credentials.find((c) => c.accessKeyId === creds.accessKeyId)!.expiration!,
      );
      expect(expires - Date.now()).toBeLessThanOrEqual(LIFETIME_SECONDS * 1000);
      const s3 = (credentials: AwsCredentials) =>
        new S3Client({
          region: TEST_REGION,
          endpoint: proxy.url,
          forcePathStyle: true,
          credentials,
          maxAttempts: 1,
        });
      const put = (credentials: AwsCredentials, Key: string) =>
        s3(credentials).send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: "x" }));
      const errorOf = (promise: Promise<unknown>) =>
        promise.then(
          () => "no error",
          (error: Error) => error.name,
        );

      await put(creds, "strict/fresh");
      expect(
        await errorOf(put({ ...creds, accessKeyId: "ASIAUNKNOWNKEY000000" }, "strict/unknown")),
      ).toBe("InvalidAccessKeyId");
      expect(await errorOf(put({ ...creds, sessionToken: "forged" }, "strict/forged"))).toBe(
        "InvalidToken",
      );

      await sleep(expires - Date.now() + 500);
      expect(await errorOf(put(creds, "strict/expired"))).toBe("ExpiredToken");
      const sts = new STSClient({
        region: TEST_REGION,
        endpoint: proxy.url,
        credentials: creds,
        maxAttempts: 1,
      });
      expect(await errorOf(sts.send(new GetCallerIdentityCommand({})))).toBe("ExpiredToken");

      const refused = proxy.requests.filter(
        (r) => r.accessKeyId === creds.accessKeyId && r.refused,
      );
      expect(refused.map((r) => r.refused)).toEqual([
        "InvalidToken",
        "ExpiredToken",
        "ExpiredToken",
      ]);
    },
  );

  it.concurrent(
    "renewal failures are retried and logged; expired and unrenewable is an error",
    async ({ expect }) => {
      let failing = false;
      let calls = 0;
      const lines: string[] = [];
      const served = await serveCredentials(
        async () => {
          calls++;
          if (failing) throw new Error("STS is down");
          return {
            accessKeyId: `AKID${calls}`,
            secretAccessKey: `secret${calls}`,
            sessionToken: `token${calls}`,
            expiration: new Date(Date.now() + 6_000),
          };
        },
        { region: TEST_REGION, log: (line) => lines.push(line) },
      );
      try {
        const {
          AWS_CONTAINER_CREDENTIALS_FULL_URI: uri,
          AWS_CONTAINER_AUTHORIZATION_TOKEN: token,
        } = served.env;
        const get = () => fetch(uri!, { headers: { authorization: token! } });
        failing = true;
        // Renewal starts at half the lifetime (3 s) and fails; the current set is still served.
        await sleep(3_600);
        const early = await get();
        expect(early.status).toBe(200);
        expect(((await early.json()) as { AccessKeyId: string }).AccessKeyId).toBe("AKID1");
        expect(calls).toBeGreaterThanOrEqual(2);
        // Past expiry (less than the 2 s margin left): an error, never the stale set.
        await sleep(1_000);
        const late = await get();
        expect(late.status).toBe(500);
        expect(((await late.json()) as { Message: string }).Message).toMatch(/STS is down/);
        await expect(served.provider()).rejects.toThrow(/STS is down/);
        const failures = lines.filter((l) => l.includes("renewal failed"));
        expect(failures.length).toBeGreaterThanOrEqual(2);
        expect(failures[0]).toMatch(
          /^AWS credentials: renewal failed \(STS is down\); retrying in \d+ s/,
        );
        // STS is back: the next request renews on demand.
        failing = false;
        const back = await get();
        expect(back.status).toBe(200);
        const renewed = (await back.json()) as { AccessKeyId: string };
        expect(renewed.AccessKeyId).toBe(`AKID${calls}`);
        expect(lines.at(-1)).toMatch(/^AWS credentials renewed \(expire \d\d:\d\d:\d\d UTC\)$/);
      } finally {
        await served.close();
      }
      // Closed: no timer fetches again.
      const after = calls;
      await sleep(4_000);
      expect(calls).toBe(after);
    },
  );

  it.concurrent(
    "a renewal the role's trust refuses: one log line with the token's sub and aud, no secret",
    async ({ expect }) => {
      const role = "arn:aws:iam::123456789012:role/mcs-trust-changed";
      const lines: string[] = [];
      const served = await serveCredentials(
        () =>
          assumeRoleWithOidc({
            roleArn: role,
            region: TEST_REGION,
            durationSeconds: 900,
            sessionName: "mcs-credentials-refused",
            attempts: 1,
          }),
        { region: TEST_REGION, log: (line) => lines.push(line) },
      );
      try {
        // From now on the trust policy refuses this job's token (e.g. it was rewritten for the
        // repository's ID-form subject); renewal starts at half the credentials' lifetime.
        proxy.refuse.add(role);
        const end = Date.now() + LIFETIME_SECONDS * 1000;
        while (!lines.some((l) => l.includes("renewal failed")) && Date.now() < end) {
          await sleep(250);
        }
        const failed = lines.find((l) => l.includes("renewal failed"));
        const sub = "repo:mcs-org/mcs-pipeline:ref:refs/heads/main";
        expect(failed, lines.join("\n")).toMatch(
          new RegExp(
            `^AWS credentials: renewal failed \\(AWS refused ${role.replace(/[/.]/g, "\\$&")}` +
              ` \\(AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity\\):` +
              ` this job's OIDC token presented sub ${sub} and aud sts\\.amazonaws\\.com; `,
          ),
        );
        expect(failed).toContain(`StringLike token.actions.githubusercontent.com:sub = ${sub} (`);
        expect(failed).toMatch(/\); retrying in \d+ s \(current ones expire \d\d:\d\d:\d\d UTC\)$/);
        const tokens = proxy.webIdentityTokens.flatMap((jwt) => jwt.split("."));
        const text = lines.join("\n");
        expect([...proxy.secrets(), ...tokens].filter((s) => text.includes(s))).toEqual([]);
      } finally {
        proxy.refuse.delete(role);
        await served.close();
      }
    },
  );

  it.concurrent("requests that need a renewal share one fetch", async ({ expect }) => {
    let calls = 0;
    const served = await serveCredentials(
      async () => {
        calls++;
        await sleep(calls === 1 ? 0 : 500);
        return {
          accessKeyId: `AKID${calls}`,
          secretAccessKey: `secret${calls}`,
          sessionToken: `token${calls}`,
          // The first set is within the 2 s margin almost at once.
          expiration: new Date(Date.now() + (calls === 1 ? 2_300 : 60_000)),
        };
      },
      { region: TEST_REGION },
    );
    try {
      await sleep(400);
      const { AWS_CONTAINER_CREDENTIALS_FULL_URI: uri, AWS_CONTAINER_AUTHORIZATION_TOKEN: token } =
        served.env;
      const keys = await Promise.all([
        ...Array.from({ length: 5 }, () => served.provider().then((c) => c.accessKeyId)),
        ...Array.from({ length: 5 }, () =>
          fetch(uri!, { headers: { authorization: token! } })
            .then((r) => r.json())
            .then((b) => (b as { AccessKeyId: string }).AccessKeyId),
        ),
      ]);
      expect(new Set(keys)).toEqual(new Set(["AKID2"]));
      expect(calls).toBe(2);
    } finally {
      await served.close();
    }
  });

  it.concurrent("credentials without an expiration are refused at start", async ({ expect }) => {
    await expect(
      serveCredentials(
        async () => ({ accessKeyId: "a", secretAccessKey: "b", sessionToken: "c" }),
        {
          region: TEST_REGION,
        },
      ),
    ).rejects.toThrow(/without an expiration/);
  });

  it("childEnv drops every variable that would shadow the server", () => {
    const base = Object.fromEntries(SHADOWING_VARIABLES.map((name) => [name, "x"]));
    const env = server!.childEnv({ ...base, PATH: "/bin" });
    for (const name of SHADOWING_VARIABLES) expect(env[name]).toBeUndefined();
    expect(env).toEqual({ PATH: "/bin", ...server!.env });
  });

  it("every credential set fetched was masked before it was served, and none was logged", () => {
    expect(fetched.length).toBeGreaterThanOrEqual(4);
    for (const c of fetched) {
      for (const secret of [c.accessKeyId, c.secretAccessKey, c.sessionToken]) {
        expect(masked.has(secret)).toBe(true);
      }
    }
    expect(logged[0]).toMatch(/^AWS credentials obtained \(expire \d\d:\d\d:\d\d UTC\)$/);
    expect(logged.filter((l) => l.startsWith("AWS credentials renewed")).length).toBe(
      fetched.length - 1,
    );
    const secrets = [
      ...proxy.secrets(),
      ...fetched.map((c) => c.accessKeyId),
      server!.env.AWS_CONTAINER_AUTHORIZATION_TOKEN!,
    ];
    const text = logged.join("\n");
    expect(secrets.filter((s) => text.includes(s))).toEqual([]);
  });
});
