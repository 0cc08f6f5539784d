/**
 * What the action tests' runs talk to, all on loopback: moto (S3, STS ...) behind the STS proxy
 * that accepts only the OIDC endpoints' own tokens, those OIDC endpoints, and the AWS settings a
 * test node gets in place of an instance profile.
 */
import { randomInt } from "node:crypto";
import {
  startMoto,
  startStsProxy,
  TEST_KEYS,
  TEST_REGION,
  type MotoOptions,
  type MotoServer,
  type StsProxy,
  type StsProxyOptions,
} from "./moto.js";
import { startOidcServer, type OidcServer, type OidcServerOptions } from "./oidc.js";
import { ActionJob, type JobOptions } from "./runner.js";

/** The role the STS proxy lets every token assume (its trust policy refuses none by default). */
export const TEST_ROLE = "arn:aws:iam::123456789012:role/mcs-eval";

export interface LoopbackAws {
  moto: MotoServer;
  proxy: StsProxy;
  /** The OIDC endpoint (the first one, when addOidc has started others). */
  oidc: OidcServer;
  /**
   * Another OIDC endpoint (another repository, subject ...) whose tokens the proxy accepts too,
   * as STS accepts every token GitHub signs; stop() closes it with the rest.
   */
  addOidc(options?: OidcServerOptions): Promise<OidcServer>;
  /**
   * Stops what it started (by PID, or closes it), whatever state it is in: moto too, unless it
   * was handed one already running.
   */
  stop(): Promise<void>;
}

export interface LoopbackAwsOptions {
  /**
   * How moto starts (its script, environment), or a moto already running to stand in front of
   * (its caller stops it).
   */
  moto?: MotoOptions | MotoServer;
  /** The STS proxy's trust rules and credential lifetime. */
  proxy?: Omit<StsProxyOptions, "acceptToken">;
  /** The OIDC endpoint's repository and subject. */
  oidc?: OidcServerOptions;
}

/** moto, the STS proxy in front of it (only our OIDC endpoints' tokens pass), the endpoint. */
export async function startLoopbackAws(options: LoopbackAwsOptions = {}): Promise<LoopbackAws> {
  const given = options.moto;
  const running = given !== undefined && "url" in given;
  const moto = running ? given : await startMoto(given);
  const endpoints: OidcServer[] = [];
  const [proxy, endpoint] = await Promise.allSettled([
    startStsProxy(moto.url, {
      ...options.proxy,
      // Only tokens our OIDC endpoints issued pass, as only GitHub-signed ones pass real STS.
      acceptToken: (jwt) => endpoints.some((o) => o.issued.some((t) => t.jwt === jwt)),
    }),
    startOidcServer(options.oidc),
  ]);
  if (endpoint.status === "fulfilled") endpoints.push(endpoint.value);
  const stop = async () => {
    await Promise.allSettled([
      running ? undefined : moto.stop(),
      proxy.status === "fulfilled" && proxy.value.close(),
      ...endpoints.map((o) => o.close()),
    ]);
  };
  if (proxy.status === "rejected" || endpoint.status === "rejected") {
    await stop();
    throw proxy.status === "rejected" ? proxy.reason : (endpoint as PromiseRejectedResult).reason;
  }
  return {
    moto,
    proxy: proxy.value,
    oidc: endpoints[0]!,
    addOidc: async (oidcOptions) => {
      const added = await startOidcServer(oidcOptions);
      endpoints.push(added);
      return added;
    },
    stop,
  };
}

/** A node's own AWS settings, like an instance profile's: the driver writes to moto directly. */
export function nodeAwsEnv(motoUrl: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: motoUrl,
    AWS_ACCESS_KEY_ID: TEST_KEYS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_KEYS.secretAccessKey,
    AWS_DEFAULT_REGION: TEST_REGION,
    AWS_EC2_METADATA_DISABLED: "true",
  };
}

/** A check-run id of its own: what the runner makes of action.yml's `job-key` default. */
export function newJobKey(): string {
  return String(randomInt(10_000_000_000, 99_999_999_999));
}

/**
 * A job of the demo module in `workspace` (scenes/subset, us-east-1: the action's defaults) that
 * authenticates through `aws`, with a job key of its own, `inputs` over those, and the job's
 * other settings (its venv, environment ...) from `job`.
 */
export function demoJob(
  aws: LoopbackAws,
  workspace: string,
  inputs: Record<string, string> = {},
  job: Omit<JobOptions, "oidc" | "awsEndpoint" | "workspace" | "inputs"> = {},
): ActionJob {
  return new ActionJob({
    ...job,
    oidc: aws.oidc,
    awsEndpoint: aws.proxy.url,
    workspace,
    inputs: { module: "demo", "role-to-assume": TEST_ROLE, "job-key": newJobKey(), ...inputs },
  });
}
