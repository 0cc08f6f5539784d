/**
 * An `s3://bucket/prefix/` scene set: listed (ListObjectsV2, every page) and checked as far as
 * the listing allows, never downloaded. The head node (or the local driver) fetches each scene
 * itself, so no scene of a private evaluation set passes through the runner.
 */
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import type { AwsCredentialIdentityProvider } from "@aws-sdk/types";
import { InputError } from "../errors.js";
import { SCENE_NAME } from "../scenes.js";

export interface S3Scene {
  name: string;
  /** s3://bucket/key */
  uri: string;
  bytes: number;
}

export interface S3SceneSet {
  /** The set as the request names it, a folder: s3://bucket/prefix/ */
  uri: string;
  scenes: S3Scene[];
  bytes: number;
}

export const isS3Uri = (scenes: string) => scenes.startsWith("s3://");

/** How to reach S3: the region and, on AWS, the run's refreshing credentials (else the default chain). */
export interface S3Access {
  region: string;
  credentials?: AwsCredentialIdentityProvider;
}

/** The region for the default chain: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
export const defaultS3Access = (): S3Access => ({
  region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || "us-east-1",
});

/** Every `.json` object under the set's folder, sorted by key; an InputError for `scenes` when the set is unusable. */
export async function listS3Scenes(
  uri: string,
  access: S3Access,
  pageSize?: number,
): Promise<S3SceneSet> {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) {
    throw new InputError("scenes", `"${uri}" is not an S3 folder: write s3://bucket/prefix/`);
  }
  const bucket = m[1]!;
  const prefix = m[2] ? `${m[2].replace(/\/+$/, "")}/` : "";
  const folder = `s3://${bucket}/${prefix}`;
  const s3 = new S3Client({
    region: access.region,
    credentials: access.credentials,
    forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL),
  });
  const objects: { key: string; bytes: number }[] = [];
  let other = 0;
  try {
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ContinuationToken: token,
          MaxKeys: pageSize,
        }),
      );
      for (const { Key: key, Size: bytes = 0 } of page.Contents ?? []) {
        if (!key || key.endsWith("/")) continue; // a console "folder"
        if (key.endsWith(".json")) objects.push({ key, bytes });
        else other++;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } catch (error) {
    throw listingError(folder, error as Error);
  } finally {
    s3.destroy();
  }
  if (objects.length === 0) {
    const others = other ? ` (only ${other} other objects)` : "";
    throw new InputError("scenes", `${folder} holds no .json scene files${others}`);
  }
  objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const seen = new Map<string, string>();
  const scenes = objects.map(({ key, bytes }) => {
    const name = key.slice(key.lastIndexOf("/") + 1, -".json".length);
    const sceneUri = `s3://${bucket}/${key}`;
    if (!SCENE_NAME.test(name)) {
      throw new InputError(
        "scenes",
        `${sceneUri}: a scene's name (its file name) must be letters, digits, ".", "-" or "_"`,
      );
    }
    if (bytes <= 0) throw new InputError("scenes", `${sceneUri} is empty (0 bytes)`);
    const other = seen.get(name);
    if (other) throw new InputError("scenes", `${sceneUri} and ${other} are both named ${name}`);
    seen.set(name, sceneUri);
    return { name, uri: sceneUri, bytes };
  });
  return { uri: folder, scenes, bytes: scenes.reduce((sum, s) => sum + s.bytes, 0) };
}

/** One line that says what went wrong and what to do about it. */
function listingError(folder: string, error: Error): InputError {
  const name = error.name;
  if (name === "CredentialsProviderError" || /credential/i.test(error.message)) {
    return new InputError(
      "scenes",
      `${folder} could not be listed without AWS credentials (${error.message}): give credentials that may s3:ListBucket on it, or a scene directory in the repository`,
    );
  }
  if (name === "NoSuchBucket") {
    return new InputError("scenes", `${folder}: there is no bucket ${folder.split("/")[2]}`);
  }
  if (name === "AccessDenied" || name === "Forbidden") {
    return new InputError(
      "scenes",
      `${folder} could not be listed: access denied (the role needs s3:ListBucket on the bucket)`,
    );
  }
  return new InputError("scenes", `${folder} could not be listed: ${name}: ${error.message}`);
}
