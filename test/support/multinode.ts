/**
 * A multi-node test cluster (DESIGN §6): a head and workers as separate "machines" on this host.
 * Each node is the sshd fixture in its own PID and mount namespaces (its own /tmp/ray, and its
 * own home at the user's home path, as every EC2 node has /home/ubuntu) on a loopback address of its
 * own, all in a block of 127.0.0.0/8 that no other cluster on this host uses: 127.A.B.2 for the
 * head, 127.A.B.3, 127.A.B.4 ... for the workers (never 127.0.0.1: Ray replaces that node IP
 * with the host's external address). Each sshd listens on port 22 of its address, as on EC2: the
 * head's autoscaler reaches the workers there (Ray drops `ssh_proxy_command` from the head's
 * bootstrap config).
 *
 * The nodes share this host's network namespace, so what Ray would bind on every machine at a
 * fixed port (the dashboard agent's 52365, on the node IP and on 127.0.0.1) gets a port of each
 * node's own, handed to the node through sshd's SetEnv as an instance's metadata would be:
 * MCS_NODE_IP, MCS_AGENT_PORT.
 */
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePorts, keygen, startSshd, type SshdFixture, type SshdOptions } from "./sshd.js";

const SSH_PORT = 22;

export interface TestNodes {
  head: SshdFixture;
  workers: SshdFixture[];
  /** Head first. */
  all: SshdFixture[];
  /** Stops every node (each namespace's init, by PID). */
  stop(): Promise<void>;
}

export interface TestNodesOptions extends Pick<SshdOptions, "env" | "venv" | "keep"> {
  /** Worker nodes besides the head (default 2). */
  workers?: number;
}

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** A block of `count` loopback addresses, 127.A.B.2 on, each with port 22 free. */
export async function addressBlock(count: number): Promise<string[]> {
  for (let tries = 0; tries < 20; tries++) {
    const block = `127.${randomInt(1, 255)}.${randomInt(0, 256)}`;
    const addresses = Array.from({ length: count }, (_, i) => `${block}.${i + 2}`);
    const free = await Promise.all(addresses.map((a) => bindable(a, SSH_PORT)));
    if (free.every(Boolean)) return addresses;
  }
  throw new Error("no block of loopback addresses with port 22 free");
}

/** Starts the head (127.A.B.2) and `workers` nodes (127.A.B.3 ...), each with sshd on port 22. */
export async function startNodes(options: TestNodesOptions = {}): Promise<TestNodes> {
  const count = 1 + (options.workers ?? 2);
  const base = os.tmpdir().length <= 24 ? os.tmpdir() : "/tmp";
  const keyDir = mkdtempSync(path.join(base, "mcs-key-"));
  const clientKey = path.join(keyDir, "client_key");
  await keygen(clientKey);

  const started: SshdFixture[] = [];
  const stop = async () => {
    await Promise.all(started.map((n) => n.stop()));
    rmSync(keyDir, { recursive: true, force: true });
  };
  try {
    const addresses = await addressBlock(count);
    const agentPorts = await freePorts(count);
    for (const [i, address] of addresses.entries()) {
      started.push(
        await startSshd({
          ...options,
          address,
          port: SSH_PORT,
          clientKey,
          machine: true,
          env: { ...options.env, MCS_NODE_IP: address, MCS_AGENT_PORT: String(agentPorts[i]) },
        }),
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const [head, ...workers] = started;
  return { head: head!, workers, all: started, stop };
}
