/** The S3 side of the results store: read what the driver wrote, and link to it. */
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import type { AwsCredentialIdentityProvider } from "@aws-sdk/types";
import type { LinkTarget } from "../report.js";

export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: m[1]!, prefix: m[2]!.replace(/\/$/, "") };
}

/** `credentials`: the run's refreshing provider (the default chain when absent). */
export async function readS3Text(
  store: string,
  key: string,
  region: string,
  credentials?: AwsCredentialIdentityProvider,
): Promise<string> {
  const { bucket, prefix } = parseS3Uri(store);
  // Path-style works with S3-compatible endpoints (AWS_ENDPOINT_URL) as well as AWS itself.
  const s3 = new S3Client({
    region,
    credentials,
    forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL),
  });
  const out = await s3.send(
    new GetObjectCommand({ Bucket: bucket, Key: prefix ? `${prefix}/${key}` : key }),
  );
  if (!out.Body) throw new Error(`s3://${bucket}/${key} is empty`);
  return out.Body.transformToString();
}

/** A console link to click and the s3:// URI to copy, for one key of the store. */
export function s3Link(store: string, region: string, key: string): LinkTarget {
  const { bucket, prefix } = parseS3Uri(store);
  const full = prefix ? `${prefix}/${key}` : key;
  const query = `region=${encodeURIComponent(region)}&prefix=${encodeURIComponent(full)}`;
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
