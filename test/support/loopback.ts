/**
 * What the action tests' runs talk to, all on loopback: moto (S3, STS ...) behind the STS proxy
 * that accepts only the OIDC endpoint's own tokens, that OIDC endpoint, and the AWS settings a
 * test node gets in place of an instance profile.
 */
import { randomInt } from "node:crypto";
import {
  startMoto,
  startStsProxy,
  TEST_KEYS,
  TEST_REGION,
  type MotoServer,
  type StsProxy,
  type StsProxyOptions,
} from "./moto.js";
import { startOidcServer, type OidcServer } from "./oidc.js";
import { ActionJob } from "./runner.js";

/** The role the STS proxy lets every token assume (its trust policy refuses none by default). */
export const TEST_ROLE = "arn:aws:iam::123456789012:role/mcs-eval";

export interface LoopbackAws {
  moto: MotoServer;
  proxy: StsProxy;
  oidc: OidcServer;
  /** Stops all three (by PID, or closes them), whatever state they are in. */
  stop(): Promise<void>;
}

/** moto, the STS proxy in front of it (only our OIDC endpoint's tokens pass), the endpoint. */
export async function startLoopbackAws(
  options: Omit<StsProxyOptions, "acceptToken"> = {},
): Promise<LoopbackAws> {
  const moto = await startMoto();
  let oidc: OidcServer | undefined;
  const [proxy, endpoint] = await Promise.allSettled([
    startStsProxy(moto.url, {
      ...options,
      // Only tokens our OIDC endpoint issued pass, as only GitHub-signed ones pass real STS.
      acceptToken: (jwt) => oidc?.issued.some((t) => t.jwt === jwt) ?? false,
    }),
    startOidcServer(),
  ]);
  if (endpoint.status === "fulfilled") oidc = endpoint.value;
  const stop = async () => {
    await Promise.allSettled([
      moto.stop(),
      proxy.status === "fulfilled" && proxy.value.close(),
      oidc?.close(),
    ]);
  };
  if (proxy.status === "rejected" || endpoint.status === "rejected") {
    await stop();
    throw proxy.status === "rejected" ? proxy.reason : (endpoint as PromiseRejectedResult).reason;
  }
  return { moto, proxy: proxy.value, oidc: oidc!, stop };
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
 * authenticates through `aws`, with a job key of its own and `inputs` over those.
 */
export function demoJob(
  aws: LoopbackAws,
  workspace: string,
  inputs: Record<string, string> = {},
): ActionJob {
  return new ActionJob({
    oidc: aws.oidc,
    awsEndpoint: aws.proxy.url,
    workspace,
    inputs: { module: "demo", "role-to-assume": TEST_ROLE, "job-key": newJobKey(), ...inputs },
  });
}
