/**
 * A node booted from a stock image, as near as this machine gets to an EC2 instance (DESIGN §6):
 * a minimal Debian bookworm root filesystem built with mmdebstrap from Debian's packages, holding
 * what a stock Ubuntu or Debian cloud image gives Ray's launcher (python3 without pip or venv's
 * ensurepip, sshd, sudo, rsync, procps, CA certificates, and cloud-init's user `ubuntu` with
 * passwordless sudo), entered with unshare: its own mount, PID and UTS namespaces, a fresh copy of
 * the rootfs as its root (chroot), the rootfs's own sshd as the namespace's init, listening on port
 * 22 of a loopback address of its own. The network is this machine's: the node reaches Debian's
 * mirror itself (and PyPI, for what the wheel cache lacks).
 *
 * Cached under MCS_TEST_CACHE (default ~/.cache/mcs-pipeline): the rootfs tarball, keyed by a hash
 * of everything that goes into it; the node's apt archives (a bind mount); and the wheels of the
 * requirements the node will install, downloaded once by this machine's pip, which the node's pip
 * then takes from there alone (`find-links` and `no-index` in its /etc/pip.conf; with an index as
 * well pip prefers the index's copy of a wheel, and pip's HTTP cache is no help behind a proxy that
 * drops the headers it needs). Otherwise the node's pip gets this machine's settings that reach
 * PyPI (index, certificate bundle, timeout).
 *
 * Every mount is made inside the node's mount namespace (private), so nothing is left mounted
 * once its processes are gone; stop() ends them by PID (the namespace's init) and checks that.
 * Needs root, unshare, and mmdebstrap on a cache miss (apt-get install mmdebstrap).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { addressBlock } from "./multinode.js";
import {
  canConnect,
  childrenOf,
  execCommand,
  exited,
  keygen,
  sleep,
  SSH_OPTIONS,
  VENV,
  within,
  type ExecOptions,
  type ExecResult,
} from "./sshd.js";

export const DEBIAN_MIRROR = "http://deb.debian.org/debian";

/**
 * What goes into the rootfs; its hash names the cached tarball. Not python3-venv, not pip: the
 * rendered setup commands must install what they need.
 */
export const ROOTFS_SPEC = {
  suite: "bookworm",
  mirror: DEBIAN_MIRROR,
  variant: "apt",
  include: [
    "python3",
    "openssh-server",
    "sudo",
    "rsync",
    "procps",
    "ca-certificates",
    "passwd",
    "netbase",
  ],
  customize: [
    // cloud-init's default user on an Ubuntu image.
    'chroot "$1" useradd --create-home --shell /bin/bash --user-group ubuntu',
    'echo "ubuntu ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/90-cloud-init-users"',
    'chmod 0440 "$1/etc/sudoers.d/90-cloud-init-users"',
  ],
};

export const NODE_USER = "ubuntu";
/** The rootfs's python3 (bookworm's): the wheels this machine downloads must fit it. */
const NODE_PYTHON = "3.11";
/** Where the node sees the wheel cache. */
const NODE_WHEELS = "/var/cache/mcs-wheels";
const NODE_HOSTNAME = "bare-node";

export function cacheDir(): string {
  return process.env.MCS_TEST_CACHE ?? path.join(os.homedir(), ".cache", "mcs-pipeline");
}

export interface Rootfs {
  tarball: string;
  /** True when this call built it (a cache miss). */
  built: boolean;
  ms: number;
}

/** The rootfs tarball for ROOTFS_SPEC: from the cache, or built with mmdebstrap (~20 s). */
export async function ensureRootfs(): Promise<Rootfs> {
  const start = performance.now();
  const key = createHash("sha256").update(JSON.stringify(ROOTFS_SPEC)).digest("hex").slice(0, 16);
  const dir = path.join(cacheDir(), "rootfs");
  const tarball = path.join(dir, `${ROOTFS_SPEC.suite}-${key}.tar`);
  if (existsSync(tarball)) return { tarball, built: false, ms: performance.now() - start };
  if (!onPath("mmdebstrap")) {
    throw new Error(
      "the bare-node test builds its rootfs with mmdebstrap: apt-get install mmdebstrap",
    );
  }
  mkdirSync(dir, { recursive: true });
  const partial = `${tarball}.${process.pid}.partial`;
  // On a host that is not Debian (CI's Ubuntu), apt must be told Debian's archive key.
  const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
  const result = await execCommand(
    "mmdebstrap",
    [
      `--variant=${ROOTFS_SPEC.variant}`,
      "--mode=root",
      "--format=tar",
      ...(existsSync(keyring) ? [`--keyring=${keyring}`] : []),
      `--include=${ROOTFS_SPEC.include.join(",")}`,
      ...ROOTFS_SPEC.customize.map((hook) => `--customize-hook=${hook}`),
      ROOTFS_SPEC.suite,
      partial,
      ROOTFS_SPEC.mirror,
    ],
    { timeoutMs: 600_000 },
  );
  if (result.code !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`mmdebstrap failed (exit ${result.code}):\n${result.stderr.slice(-4000)}`);
  }
  renameSync(partial, tarball);
  return { tarball, built: true, ms: performance.now() - start };
}

export interface Wheels {
  /** The wheel cache on this machine (bind-mounted read-only into the node). */
  dir: string;
  /** Every wheel the requirements need is there (the node's pip needs no index). */
  complete: boolean;
  /** True when this call downloaded them; false when cached or skipped. */
  downloaded: boolean;
  /** Why nothing was downloaded for the node, if so. */
  skipped?: string;
  ms: number;
}

/**
 * The wheels of `requirements` in the cache, downloaded once by the test venv's pip: binary only,
 * for this machine's platform, so only when its Python is the node's (else the node's pip
 * downloads them itself). A marker per requirement set and Python records what is complete.
 */
export async function ensureWheels(requirements: string[]): Promise<Wheels> {
  const start = performance.now();
  const dir = path.join(cacheDir(), "wheels");
  mkdirSync(dir, { recursive: true });
  const done = (downloaded: boolean, skipped?: string): Wheels => ({
    dir,
    complete: skipped === undefined,
    downloaded,
    skipped,
    ms: performance.now() - start,
  });
  if (requirements.length === 0) return done(false, "no requirements");
  const python = path.join(VENV, "bin", "python");
  const version = await execCommand(python, [
    "-c",
    "import sys; print('%d.%d' % sys.version_info[:2])",
  ]);
  if (version.stdout.trim() !== NODE_PYTHON) {
    return done(
      false,
      `this machine's Python is ${version.stdout.trim()}, the node's ${NODE_PYTHON}`,
    );
  }
  const key = createHash("sha256")
    .update(JSON.stringify([NODE_PYTHON, ...requirements]))
    .digest("hex");
  const marker = path.join(dir, `.complete-${key.slice(0, 16)}`);
  if (existsSync(marker)) return done(false);
  const pip = await execCommand(
    python,
    ["-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", dir, ...requirements],
    { timeoutMs: 600_000 },
  );
  if (pip.code !== 0) return done(false, `pip download failed: ${pip.stderr.slice(-500)}`);
  writeFileSync(marker, `${requirements.join("\n")}\n`);
  return done(true);
}

export interface BareNode {
  /** The node's directory on this machine: the rootfs copy (`root/`), keys, sshd's output. */
  dir: string;
  rootfs: Rootfs;
  wheels: Wheels;
  /** Milliseconds: unpacking the rootfs, and from then until sshd accepted connections. */
  extractMs: number;
  bootMs: number;
  host: string;
  port: 22;
  user: typeof NODE_USER;
  privateKey: string;
  /** PID (in our namespace) of the node's init, its sshd. */
  initPid: number;
  pidNamespace: string;
  /** Runs `command` on the node over SSH as Ray does: in `bash --login -c -i`. */
  ssh(command: string, options?: ExecOptions): Promise<ExecResult>;
  /** Mounts this machine's namespace shows under `dir` (none, ever: they are the node's own). */
  mountsLeft(): string[];
  /** Ends every process of the node (its init, by PID), then removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The node's init: mounts in the new (private) mount namespace, then sshd from the rootfs as
 * PID 1. Arguments: rootfs, apt archives, wheels, listen address, hostname.
 */
const INIT = `
R=$1
hostname "$5"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount --bind "$2" "$R/var/cache/apt/archives"
mount --bind -o ro "$3" "$R${NODE_WHEELS}"
mkdir -p "$R/run/sshd"
exec chroot "$R" /usr/sbin/sshd -D -e -o ListenAddress="$4" -o Port=22 -o PasswordAuthentication=no
`;

const live = new Map<number, { unshare: ChildProcess; init?: number }>();
let exitHook = false;

export interface BareNodeOptions {
  /** Requirements whose wheels this machine downloads once for the node's pip (e.g. Ray's). */
  wheels?: string[];
}

/** Boots a bare node: a fresh copy of the cached rootfs, its sshd on 127.A.B.2:22. */
export async function startBareNode(options: BareNodeOptions = {}): Promise<BareNode> {
  if (process.getuid?.() !== 0) throw new Error("the bare node needs root (namespaces, chroot)");
  const rootfs = await ensureRootfs();
  const wheels = await ensureWheels(options.wheels ?? []);
  const base = os.tmpdir().length <= 24 ? os.tmpdir() : "/tmp";
  const dir = mkdtempSync(path.join(base, "mcs-bare-"));
  const root = path.join(dir, "root");
  mkdirSync(root);
  let extractMs = performance.now();
  const tar = await execCommand("tar", ["-xf", rootfs.tarball, "-C", root, "--numeric-owner"]);
  extractMs = performance.now() - extractMs;
  if (tar.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`unpacking ${rootfs.tarball} failed: ${tar.stderr}`);
  }
  const [uid, gid] = nodeUserIds(root);
  const home = path.join(root, "home", NODE_USER);

  // What EC2 and cloud-init give an instance: the key pair's key, name resolution.
  const privateKey = path.join(dir, "client_key");
  await keygen(privateKey);
  const ssh = path.join(home, ".ssh");
  mkdirSync(ssh, { mode: 0o700 });
  writeFileSync(path.join(ssh, "authorized_keys"), readFileSync(`${privateKey}.pub`), {
    mode: 0o600,
  });
  for (const p of [ssh, path.join(ssh, "authorized_keys")]) chownSync(p, uid, gid);
  copyFileSync("/etc/resolv.conf", path.join(root, "etc", "resolv.conf"));
  writeFileSync(path.join(root, "etc", "hostname"), `${NODE_HOSTNAME}\n`);
  writeFileSync(
    path.join(root, "etc", "hosts"),
    `127.0.0.1 localhost\n127.0.1.1 ${NODE_HOSTNAME}\n`,
  );
  await writePipConfig(root, wheels.complete);

  // The caches: apt's where the node's apt keeps it, the wheels where pip.conf points.
  const aptCache = path.join(cacheDir(), "node-apt-archives");
  for (const d of [aptCache, path.join(root, NODE_WHEELS)]) mkdirSync(d, { recursive: true });

  const host = (await addressBlock(1))[0]!;
  const out = openSync(path.join(dir, "node.out"), "a");
  const boot = performance.now();
  const unshare = spawn(
    "unshare",
    [
      "--pid",
      "--fork",
      "--mount",
      "--uts",
      "--propagation",
      "private",
      "--kill-child=TERM",
      "sh",
      "-ec",
      INIT,
      "sh",
      root,
      aptCache,
      wheels.dir,
      host,
      NODE_HOSTNAME,
    ],
    { stdio: ["ignore", out, out] },
  );
  closeSync(out);
  if (unshare.pid === undefined) throw new Error("could not start unshare");
  const entry: { unshare: ChildProcess; init?: number } = { unshare };
  live.set(unshare.pid, entry);
  installExitHook();

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const init = entry.init ?? childrenOf(unshare.pid!)[0];
    // unshare ignores SIGTERM while it waits: end the namespace's init, and with it the rest.
    signal(init, "SIGTERM");
    if (!(await within(exited(unshare), 5_000))) {
      signal(init, "SIGKILL");
      if (!(await within(exited(unshare), 5_000))) unshare.kill("SIGKILL");
      await exited(unshare);
    }
    live.delete(unshare.pid!);
    const left = mountsUnder(dir);
    // Never remove a tree that still has something mounted in it (a bind of /dev ...).
    if (left.length > 0) throw new Error(`mounts left under ${dir}: ${left.join(", ")}`);
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && unshare.exitCode === null && unshare.signalCode === null) {
    if (await canConnect(host, 22)) break;
    await sleep(50);
  }
  const init = childrenOf(unshare.pid)[0];
  if (!(await canConnect(host, 22)) || init === undefined) {
    const text = readFileSync(path.join(dir, "node.out"), "utf8");
    await stop().catch(() => undefined);
    throw new Error(`the bare node's sshd did not start:\n${text}`);
  }
  entry.init = init;
  const bootMs = performance.now() - boot;
  const pidNamespace = readlinkSync(`/proc/${init}/ns/pid`);

  return {
    dir,
    rootfs,
    wheels,
    extractMs,
    bootMs,
    host,
    port: 22,
    user: NODE_USER,
    privateKey,
    initPid: init,
    pidNamespace,
    ssh: (command, options) =>
      execCommand(
        "ssh",
        [
          "-i",
          privateKey,
          ...SSH_OPTIONS,
          `${NODE_USER}@${host}`,
          `bash --login -c -i ${shellQuote(command)}`,
        ],
        options,
      ),
    mountsLeft: () => mountsUnder(dir),
    stop,
  };
}

/** The ubuntu user's uid and gid in the rootfs's own /etc/passwd. */
function nodeUserIds(root: string): [number, number] {
  const line = readFileSync(path.join(root, "etc", "passwd"), "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${NODE_USER}:`));
  const fields = line?.split(":");
  if (!fields) throw new Error(`the rootfs has no user ${NODE_USER}`);
  return [Number(fields[2]), Number(fields[3])];
}

/** pip settings of this machine that say how to reach the index, for the node's /etc/pip.conf. */
const PIP_NETWORK_KEYS = new Set([
  "index-url",
  "extra-index-url",
  "trusted-host",
  "cert",
  "client-cert",
  "proxy",
  "timeout",
  "default-timeout",
  "retries",
]);

/**
 * This machine's pip configuration (`pip config list`: files and PIP_* variables) as far as it
 * says how to reach PyPI, into the node's /etc/pip.conf; certificate files copied into the rootfs.
 */
async function writePipConfig(root: string, offline: boolean): Promise<void> {
  const list = await execCommand(path.join(VENV, "bin", "python"), ["-m", "pip", "config", "list"]);
  const settings = new Map<string, string>(); // later lines (PIP_* variables) win
  for (const line of list.stdout.split("\n")) {
    const m = /^[^.]*\.([\w-]+)='(.*)'$/.exec(line.trim());
    if (m && PIP_NETWORK_KEYS.has(m[1]!)) settings.set(m[1]!, m[2]!);
  }
  const lines: string[] = [];
  for (const [key, value] of settings) {
    if ((key === "cert" || key === "client-cert") && existsSync(value)) {
      const inside = `/usr/local/share/mcs-test/${key}-${path.basename(value)}`;
      mkdirSync(path.dirname(path.join(root, inside)), { recursive: true });
      copyFileSync(value, path.join(root, inside));
      lines.push(`${key} = ${inside}`);
    } else {
      lines.push(`${key} = ${value}`);
    }
  }
  lines.push(`find-links = ${NODE_WHEELS}`, ...(offline ? ["no-index = true"] : []));
  writeFileSync(path.join(root, "etc", "pip.conf"), `[global]\n${lines.join("\n")}\n`);
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => d && existsSync(path.join(d, tool)));
}

/** `text` as one single-quoted shell word. */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function signal(pid: number | undefined, name: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

/** Mount points under `dir` in this process's mount namespace (mountinfo's fifth field). */
function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}

/** Last resort if the test process exits without stop(): SIGKILL each node's init by PID. */
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const [pid, { init }] of live) {
      signal(init ?? childrenOf(pid)[0], "SIGKILL");
      signal(pid, "SIGKILL");
    }
  });
}
