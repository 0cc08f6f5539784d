/**
 * GitHub's OIDC ID-token endpoint on loopback, speaking the protocol `core.getIDToken` uses:
 * `GET <ACTIONS_ID_TOKEN_REQUEST_URL>&audience=AUD` with `Authorization: Bearer <request token>`
 * answers `{"value": "<jwt>"}`. Each answer is a fresh, well-formed (unsigned) JWT with GitHub's
 * claims; a wrong bearer gets 401. Tests can make it fail on purpose (`failWith`) and shorten
 * token lifetimes (the STS proxy refuses expired tokens like STS does).
 */
import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface IssuedToken {
  jwt: string;
  /** The `aud` claim (the requested audience, else GitHub's default: the owner's URL). */
  audience: string;
  subject: string;
  /** Unix seconds. */
  issuedAt: number;
  expiresAt: number;
}

export interface OidcRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  audience: string | null;
  authorized: boolean;
  status: number;
}

export interface OidcServerOptions {
  /** ACTIONS_ID_TOKEN_REQUEST_TOKEN; default random. */
  requestToken?: string;
  /** ID-token lifetime; GitHub's is 300 s. */
  lifetimeSeconds?: number;
  /** owner/name: default the runner harness's GITHUB_REPOSITORY. */
  repository?: string;
  /**
   * The immutable IDs of the owner and the repository (the `repository_owner_id` and
   * `repository_id` claims). With `immutableSubject`, the subject carries them as GitHub's does
   * for repositories created, renamed or transferred since its switch in 2026, or opted in:
   * `repo:OWNER@<owner id>/NAME@<repo id>:...` (docs.github.com/en/actions/reference/security/
   * oidc#immutable-subject-claims).
   */
  ids?: { owner: number; repository: number };
  /** The subject in the immutable form (`ids` required); default the name-only form. */
  immutableSubject?: boolean;
  /** What follows the repository in the subject; default `ref:refs/heads/main`. */
  context?: string;
  /** The whole `sub` claim, overriding the three above. */
  subject?: string;
}

/** The `sub` claim GitHub gives a job of `repository` in `context` (ref:..., pull_request ...). */
export function subjectOf(
  repository: string,
  context = "ref:refs/heads/main",
  ids?: { owner: number; repository: number },
): string {
  const [owner, name] = repository.split("/");
  return ids
    ? `repo:${owner}@${ids.owner}/${name}@${ids.repository}:${context}`
    : `repo:${repository}:${context}`;
}

export interface OidcServer {
  /** ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:P/_apis/token?api-version=2.0` (has `?`). */
  url: string;
  /** ACTIONS_ID_TOKEN_REQUEST_TOKEN */
  requestToken: string;
  /** Lifetime of tokens issued from now on (mutable). */
  lifetimeSeconds: number;
  /** When set, every authorized request gets this answer instead of a token (mutable). */
  failWith: { status: number; body?: string } | null;
  /** Tokens issued, in order. */
  issued: IssuedToken[];
  /** Every request, answered or refused, in order. */
  requests: OidcRequest[];
  /** The two runner variables that point `core.getIDToken` here. */
  env(): { ACTIONS_ID_TOKEN_REQUEST_URL: string; ACTIONS_ID_TOKEN_REQUEST_TOKEN: string };
  close(): Promise<void>;
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

export async function startOidcServer(options: OidcServerOptions = {}): Promise<OidcServer> {
  const requestToken = options.requestToken ?? randomBytes(24).toString("hex");
  const repository = options.repository ?? "mcs-org/mcs-pipeline";
  const owner = repository.split("/")[0]!;
  const ids = options.ids ?? { owner: 71_000_001, repository: 910_000_001 };
  if (options.immutableSubject && !options.ids) throw new Error("immutableSubject needs ids");
  const subject =
    options.subject ??
    subjectOf(repository, options.context, options.immutableSubject ? ids : undefined);
  const issued: IssuedToken[] = [];
  const requests: OidcRequest[] = [];

  const state: Pick<OidcServer, "lifetimeSeconds" | "failWith"> = {
    lifetimeSeconds: options.lifetimeSeconds ?? 300,
    failWith: null,
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://oidc");
    const audience = url.searchParams.get("audience");
    const authorized = req.headers.authorization === `Bearer ${requestToken}`;
    const record: OidcRequest = {
      method: req.method ?? "GET",
      url: req.url ?? "/",
      audience,
      authorized,
      status: 0,
    };
    requests.push(record);
    const send = (status: number, body: string, type = "application/json") => {
      record.status = status;
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    req.resume();
    if (req.method !== "GET" || url.pathname !== "/_apis/token") {
      return send(404, JSON.stringify({ message: "Not Found" }));
    }
    if (!authorized) return send(401, JSON.stringify({ message: "Bad credentials" }));
    if (state.failWith) {
      return send(state.failWith.status, state.failWith.body ?? "", "text/plain");
    }
    const now = Math.floor(Date.now() / 1000);
    const aud = audience ?? `https://github.com/${owner}`;
    const token: IssuedToken = {
      jwt: [
        b64({ alg: "RS256", typ: "JWT", kid: "mcs-test-key", x5t: "mcs-test-key" }),
        b64({
          jti: randomUUID(),
          sub: subject,
          aud,
          ref: "refs/heads/main",
          repository,
          repository_id: String(ids.repository),
          repository_owner: owner,
          repository_owner_id: String(ids.owner),
          run_id: "4242",
          run_attempt: "1",
          event_name: "workflow_dispatch",
          iss: "https://token.actions.githubusercontent.com",
          nbf: now - 5,
          iat: now,
          exp: now + state.lifetimeSeconds,
        }),
        randomBytes(64).toString("base64url"),
      ].join("."),
      audience: aud,
      subject,
      issuedAt: now,
      expiresAt: now + state.lifetimeSeconds,
    };
    issued.push(token);
    send(200, JSON.stringify({ count: 1, value: token.jwt }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/_apis/token?api-version=2.0`;

  return Object.assign(state, {
    url,
    requestToken,
    issued,
    requests,
    env: () => ({
      ACTIONS_ID_TOKEN_REQUEST_URL: url,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken,
    }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** The claims of a JWT (no signature check): for assertions on what the action sent. */
export function jwtClaims(jwt: string): Record<string, unknown> {
  const payload = jwt.split(".")[1];
  if (payload === undefined) throw new Error("not a JWT");
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
}
