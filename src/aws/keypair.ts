/**
 * The run's own SSH key. Left to itself, Ray's AWS bootstrap (`_configure_key_pair`) creates an
 * EC2 key pair `ray-autoscaler_<region>` and keeps its private half in `~/.ssh` of whoever ran
 * `ray up`: on an ephemeral runner that file is gone after the job, so every run created one more
 * key pair (`ray-autoscaler_1_<region>`, `_2_` ...) and nothing deleted them. Instead the action
 * generates an ed25519 key per run (under RUNNER_TEMP, mode 0600, never logged), imports its public
 * half as an EC2 key pair named after the cluster, and gives Ray the private key through
 * `auth.ssh_private_key` and the key pair through each node type's `KeyName`: with both set, Ray's
 * bootstrap leaves key pairs alone. Teardown and the janitor delete the key pair by its name.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DeleteKeyPairCommand, ImportKeyPairCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { keyPairNameFor, RAY_CLUSTER_TAG } from "./ray-names.js";

export { keyPairNameFor } from "./ray-names.js";

/** The run's private key file in `keyDir` (one file per cluster). */
export function runKeyFile(keyDir: string, clusterName: string): string {
  return path.join(keyDir, `${keyPairNameFor(clusterName)}.pem`);
}

export interface SshKey {
  /** OpenSSH private key file text (`-----BEGIN OPENSSH PRIVATE KEY-----`). */
  privateKey: string;
  /** `ssh-ed25519 AAAA... comment`: what EC2 ImportKeyPair takes. */
  publicKey: string;
}

/** A new ed25519 key in OpenSSH's own formats (PROTOCOL.key), from node:crypto alone. */
export function generateSshKey(comment: string): SshKey {
  const pair = generateKeyPairSync("ed25519");
  const pub = Buffer.from(pair.publicKey.export({ format: "jwk" }).x!, "base64url");
  const seed = Buffer.from(pair.privateKey.export({ format: "jwk" }).d!, "base64url");
  const type = "ssh-ed25519";
  const publicBlob = Buffer.concat([sshString(type), sshString(pub)]);
  const check = randomBytes(4);
  const secret = Buffer.concat([
    check,
    check,
    sshString(type),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  // Unencrypted keys pad the private section to the cipher "none"'s block size, 8, with 1, 2, 3 ...
  const padding = Buffer.from(
    Array.from({ length: (8 - (secret.length % 8)) % 8 }, (_, i) => i + 1),
  );
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"), // cipher
    sshString("none"), // kdf
    sshString(""), // kdf options
    uint32(1), // number of keys
    sshString(publicBlob),
    sshString(Buffer.concat([secret, padding])),
  ]);
  const lines = body
    .toString("base64")
    .match(/.{1,70}/g)!
    .join("\n");
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `${type} ${publicBlob.toString("base64")} ${comment}`,
  };
}

/** Generates the run's key into `file` (directory 0700, file 0600); returns the public key. */
export function writeRunKey(file: string, comment: string): string {
  const key = generateSshKey(comment);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  rmSync(file, { force: true });
  writeFileSync(file, key.privateKey, { mode: 0o600, flag: "wx" });
  return key.publicKey;
}

/**
 * Imports the run's public key as the key pair `name`, tagged with the cluster name. A key pair of
 * that name can only be left from an earlier try of this very run, whose private key is gone:
 * it is replaced.
 */
export async function importKeyPair(
  ec2: EC2Client,
  name: string,
  publicKey: string,
  clusterName: string,
): Promise<void> {
  const command = () =>
    new ImportKeyPairCommand({
      KeyName: name,
      PublicKeyMaterial: Buffer.from(publicKey, "utf8"),
      TagSpecifications: [
        { ResourceType: "key-pair", Tags: [{ Key: RAY_CLUSTER_TAG, Value: clusterName }] },
      ],
    });
  try {
    await ec2.send(command());
  } catch (error) {
    if ((error as Error).name !== "InvalidKeyPair.Duplicate")
      throw awsError("ImportKeyPair", error);
    await deleteKeyPair(ec2, name);
    await ec2.send(command()).catch((again: unknown) => {
      throw awsError("ImportKeyPair", again);
    });
  }
}

/** Deletes the key pair `name` (EC2 answers success for a name it does not know). */
export async function deleteKeyPair(ec2: EC2Client, name: string): Promise<void> {
  try {
    await ec2.send(new DeleteKeyPairCommand({ KeyName: name }));
  } catch (error) {
    if ((error as Error).name !== "InvalidKeyPair.NotFound") throw awsError("DeleteKeyPair", error);
  }
}

/** An AWS error that names the action, so a missing permission reads `ec2:<action>`. */
export function awsError(action: string, error: unknown): Error {
  const e = error as Error;
  return new Error(`EC2 ${action} failed (ec2:${action}): ${e.name}: ${e.message}`);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function sshString(data: Buffer | string): Buffer {
  const b = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  return Buffer.concat([uint32(b.length), b]);
}
