/** The S3 side of the results store: read what the driver wrote, and link to it. */
import { GetObjectCommand, NoSuchKey, S3Client } from "@aws-sdk/client-s3";
import type { AwsCredentialIdentityProvider } from "@aws-sdk/types";
import type { LinkTarget } from "../report.js";

export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: m[1]!, prefix: m[2]!.replace(/\/$/, "") };
}

/**
 * Reads keys of an `s3://` store: the text at a key, or undefined when there is none (which S3
 * says only with s3:ListBucket: without it a missing key is AccessDenied). One client for all the
 * reads. `credentials`: the run's refreshing provider (the default chain when absent).
 */
export function s3TextReader(
  store: string,
  region: string,
  credentials?: AwsCredentialIdentityProvider,
): (key: string) => Promise<string | undefined> {
  const { bucket, prefix } = parseS3Uri(store);
  // Path-style works with S3-compatible endpoints (AWS_ENDPOINT_URL) as well as AWS itself.
  const s3 = new S3Client({
    region,
    credentials,
    forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL),
  });
  return async (key) => {
    const Key = prefix ? `${prefix}/${key}` : key;
    try {
      const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key }));
      if (!out.Body) throw new Error(`s3://${bucket}/${Key} is empty`);
      return await out.Body.transformToString();
    } catch (error) {
      if (error instanceof NoSuchKey) return undefined;
      throw error;
    }
  };
}

/**
 * A console link to click and the s3:// URI to copy, for one key of the store. `version`: the
 * object version a run wrote (a versioned bucket), which the console link opens whatever later
 * runs wrote to the key since; without one, the key's current object.
 */
export function s3Link(store: string, region: string, key: string, version?: string): LinkTarget {
  const { bucket, prefix } = parseS3Uri(store);
  const full = prefix ? `${prefix}/${key}` : key;
  const query =
    `region=${encodeURIComponent(region)}&prefix=${encodeURIComponent(full)}` +
    (version ? `&versionId=${encodeURIComponent(version)}` : "");
  return {
    href: `https://s3.console.aws.amazon.com/s3/object/${bucket}?${query}`,
    uri: `s3://${bucket}/${full}`,
  };
}

export function s3FolderUrl(store: string, region: string, folder: string): string {
  const { bucket, prefix } = parseS3Uri(store);
  const full = `${prefix ? `${prefix}/` : ""}${folder}/`;
  return `https://s3.console.aws.amazon.com/s3/buckets/${bucket}?region=${encodeURIComponent(region)}&prefix=${encodeURIComponent(full)}`;
}
