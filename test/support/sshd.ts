/**
 * The launcher tests' "head node": Debian's sshd on 127.0.0.1, started by the fixture in its own
 * PID namespace (`unshare --pid --fork --mount-proc`). `ray down` runs `ray stop` on the node,
 * which kills Ray processes BY NAME; inside the namespace it only sees what was started through
 * this sshd, never the machine's other Ray instances. Stopping the namespace's init (sshd) ends
 * every process in it.
 *
 * The node's environment (like an instance profile's) comes from sshd's `SetEnv`: HOME and
 * RAY_TMPDIR inside the fixture directory, the venv first on PATH, plus `env` (AWS_ENDPOINT_URL ...).
 * Ray reaches the node only through `auth.ssh_proxy_command: "nc %h PORT"`.
 *
 * Needs root (CI runs as root): unshare of a PID namespace, and sshd's privilege separation.
 */
import {
  spawn,
  type ChildProcess,
  type ChildProcessByStdio,
  type ChildProcessWithoutNullStreams,
} from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { REPO } from "./workspace.js";

/** The pinned Ray venv the tests use (client and node alike). */
export const VENV = path.join(REPO, ".venv");

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time, milliseconds. */
  ms: number;
}

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** SIGTERM after this long (then SIGKILL 5 s later); default 120 s. */
  timeoutMs?: number;
}

/**
 * Runs a command asynchronously (never spawnSync: the fixtures' HTTP servers live in this
 * process) and resolves when it EXITS with what it printed so far. Resolving on exit rather than
 * on stdio close matters for `ray` and `ssh`: an ssh ControlPersist master (and its ProxyCommand)
 * can keep inherited pipes open for 10 s after the command is done.
 */
export function execCommand(
  file: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    let kill: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
    }, options.timeoutMs ?? 120_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    onDrainedExit(child, (code, signal) => {
      clearTimeout(timer);
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - start });
    });
  });
}

/**
 * Calls `done` once `child` has exited and its pipes have delivered what it wrote just before:
 * on `close`, or 200 ms after `exit` when a grandchild (ssh ControlPersist's ProxyCommand, a
 * daemon) holds the pipes open. The pipes are then closed on our side.
 */
export function onDrainedExit(
  child: ChildProcessWithoutNullStreams | ChildProcessByStdio<null, Readable, Readable>,
  done: (code: number | null, signal: NodeJS.Signals | null) => void,
): void {
  child.once("exit", (code, signal) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      child.stdout.removeAllListeners("data");
      child.stderr.removeAllListeners("data");
      child.stdout.destroy();
      child.stderr.destroy();
      done(code, signal);
    };
    const grace = setTimeout(finish, 200);
    child.once("close", () => {
      clearTimeout(grace);
      finish();
    });
  });
}

/**
 * Ports for fixed listeners (a head's GCS, sshd) are taken between Ray's worker ports (10002 to
 * 19999 by default) and the kernel's ephemeral range, which every `listen(0)` and outgoing
 * connection draws from: no other cluster on this machine can take one between our pick and its use.
 */
const FIXED_PORTS_LOW = 20_000;
function fixedPortsHigh(): number {
  try {
    const low = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0],
    );
    if (low > FIXED_PORTS_LOW + 1000) return low - 1;
  } catch {
    // not Linux: fall through
  }
  return 32_767;
}

/** `count` distinct TCP ports free on 127.0.0.1 right now (held together, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  const high = fixedPortsHigh();
  try {
    for (let tries = 0; servers.length < count; tries++) {
      if (tries > 200) throw new Error(`no ${count} free ports in ${FIXED_PORTS_LOW}-${high}`);
      const port = FIXED_PORTS_LOW + Math.floor(Math.random() * (high - FIXED_PORTS_LOW + 1));
      const server = net.createServer();
      const bound = await new Promise<boolean>((resolve) => {
        server.once("error", () => resolve(false));
        server.listen(port, "127.0.0.1", () => resolve(true));
      });
      if (bound) servers.push(server);
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** A `machine` node's home, as the node sees it (a mount point, empty in our namespace). */
export const MACHINE_HOME = "/run/mcs-test-machine/home";

/** This host's /etc/passwd with `user`'s home directory replaced. */
function passwdWithHome(user: string, home: string): string {
  return readFileSync("/etc/passwd", "utf8").replace(/^[^\n]*$/gm, (line) => {
    const fields = line.split(":");
    if (fields[0] !== user || fields.length < 7) return line;
    fields[5] = home;
    return fields.join(":");
  });
}

export interface SshdOptions {
  /** Extra node environment (sshd SetEnv), e.g. AWS_ENDPOINT_URL and the static AWS keys. */
  env?: Record<string, string>;
  /**
   * The node's own loopback address (default 127.0.0.1). Linux routes all of 127.0.0.0/8 to `lo`,
   * so 127.0.0.2 and 127.0.0.3 work as the addresses of other "machines" with no set-up.
   */
  address?: string;
  /** Listen on this port (default: a free one); the nodes of a cluster share one (multinode.ts). */
  port?: number;
  /** Authorize this client key instead of generating one (one key for every node of a cluster). */
  clientKey?: string;
  /**
   * A machine of its own in the mount namespace too: the node's home is at MACHINE_HOME, also in
   * the node's own /etc/passwd (as /home/ubuntu is on every EC2 node: absolute paths on the head
   * hold on the workers, and ssh finds `~/ray_bootstrap_key.pem`, for it reads `~` from passwd),
   * and its Ray temp dir is /tmp/ray, Ray's default, with no RAY_TMPDIR.
   */
  machine?: boolean;
  /** The venv whose bin/ comes first on the node's PATH; default the repo's .venv. */
  venv?: string;
  /** Leave the fixture directory behind after stop() (for debugging). */
  keep?: boolean;
}

export interface SshdFixture {
  /** The fixture directory: keys, sshd_config, log, home, Ray's temp dir. */
  root: string;
  /**
   * HOME of SSH sessions on the node, as this machine sees it (has .bash_profile/.bashrc; Ray puts
   * its bootstrap files here); on a `machine` node the node itself sees it at the user's home directory.
   */
  home: string;
  /**
   * RAY_TMPDIR on the node: Ray's sessions and sockets live under `<rayTmpDir>/ray`; on a
   * `machine` node this is its /tmp/ray.
   */
  rayTmpDir: string;
  /** A scratch dir for client-side TMPDIR (Ray's local-provider state, config cache). */
  clientTmp: string;
  /** The node's address (127.0.0.1 unless `address` said otherwise): its sshd and Ray's node IP. */
  host: string;
  port: number;
  /** The SSH user: whoever runs the tests. */
  user: string;
  /** Authorized client private key (ed25519, no passphrase). */
  privateKey: string;
  /** For Ray's `auth.ssh_proxy_command` (and ssh's ProxyCommand): `nc %h PORT`. */
  proxyCommand: string;
  venv: string;
  /** The node environment sshd sets for every session. */
  env: Record<string, string>;
  /** sshd's log (-E). */
  log: string;
  /** PID of the `unshare` process (in our namespace). */
  pid: number;
  /** PID (in our namespace) of sshd, the init of the node's PID namespace. */
  initPid: number;
  /** The namespace, as readlink(/proc/PID/ns/pid) spells it: `pid:[INODE]`. */
  pidNamespace: string;
  /** Arguments for `ssh` that log in to the node and run `command`. */
  sshArgs(command: string): string[];
  /** Runs `command` on the node over SSH. */
  ssh(command: string, options?: ExecOptions): Promise<ExecResult>;
  /** Stops sshd and everything in its namespace; waits for it. Idempotent. */
  stop(): Promise<void>;
}

interface LiveNode {
  init: number;
  root: string;
}
const live = new Map<number, LiveNode>(); // by unshare pid
let exitHookInstalled = false;

/** Last resort if the test process exits without stop(): SIGKILL each namespace's init by PID. */
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const [pid, { init, root }] of live) {
      for (const target of [init, pid]) {
        try {
          process.kill(target, "SIGKILL");
        } catch {
          // already gone
        }
      }
      try {
        rmSync(root, { recursive: true, force: true });
      } catch {
        // a dying process may still write there
      }
    }
  });
}

export const SSH_OPTIONS = [
  "-o",
  "StrictHostKeyChecking=no",
  "-o",
  "UserKnownHostsFile=/dev/null",
  "-o",
  "IdentitiesOnly=yes",
  "-o",
  "BatchMode=yes",
  "-o",
  "LogLevel=ERROR",
  "-o",
  "ConnectTimeout=10",
];

function setEnvLine(env: Record<string, string>): string {
  const items = Object.entries(env).map(([key, value]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`bad node env name ${key}`);
    if (/["\n\\]/.test(value)) throw new Error(`node env ${key}: no quotes/backslashes/newlines`);
    return `"${key}=${value}"`;
  });
  return `SetEnv ${items.join(" ")}`;
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export function within(promise: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends `sig` to `pid` if it is still there. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** SIGKILL to the namespace's init (the kernel ends the rest), then to `unshare`; waits for it. */
async function killNamespace(initPid: number | undefined, unshare: ChildProcess): Promise<void> {
  if (initPid !== undefined) signal(initPid, "SIGKILL");
  if (!(await within(exited(unshare), 5_000))) unshare.kill("SIGKILL");
  await exited(unshare);
}

export function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export async function keygen(file: string) {
  const r = await execCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);
  if (r.code !== 0) throw new Error(`ssh-keygen ${file} failed: ${r.stderr}`);
}

/** Starts sshd on a free loopback port in a new PID namespace and waits until it accepts. */
export async function startSshd(options: SshdOptions = {}): Promise<SshdFixture> {
  if (process.getuid?.() !== 0) {
    throw new Error("the sshd fixture needs root (PID namespace + sshd privilege separation)");
  }
  const onPath = (tool: string) =>
    (process.env.PATH ?? "").split(":").some((dir) => dir && existsSync(path.join(dir, tool)));
  if (!existsSync("/usr/sbin/sshd") || !onPath("nc") || !onPath("ssh-keygen")) {
    throw new Error(
      "the sshd fixture needs /usr/sbin/sshd, ssh-keygen and nc: " +
        "apt-get install openssh-server openssh-client rsync netcat-openbsd",
    );
  }
  const venv = options.venv ?? VENV;
  // Ray's unix sockets live under RAY_TMPDIR/ray/session_<date>_<pid>/sockets/: keep it short
  // (sun_path is 108 bytes).
  const base = os.tmpdir().length <= 24 ? os.tmpdir() : "/tmp";
  const root = mkdtempSync(path.join(base, "mcs-node-"));
  const home = path.join(root, "home");
  const rayTmpDir = path.join(root, "rt");
  const clientTmp = path.join(root, "ct");
  for (const dir of [home, rayTmpDir, clientTmp]) mkdirSync(dir, { recursive: true });
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });

  const hostKey = path.join(root, "ssh_host_ed25519_key");
  const privateKey = options.clientKey ?? path.join(root, "client_key");
  await Promise.all([keygen(hostKey), options.clientKey ? undefined : keygen(privateKey)]);
  const authorizedKeys = path.join(root, "authorized_keys");
  writeFileSync(authorizedKeys, readFileSync(`${privateKey}.pub`), { mode: 0o600 });

  // Ray runs remote commands through `bash --login -i`: /etc/profile resets PATH, so the
  // fixture's rc files put the venv first again.
  writeFileSync(path.join(home, ".bash_profile"), '. "$HOME/.bashrc"\n');
  writeFileSync(
    path.join(home, ".bashrc"),
    `# mcs-pipeline test node: the pinned Ray venv first\nexport PATH="${venv}/bin:$PATH"\n`,
  );

  const address = options.address ?? "127.0.0.1";
  const machine = options.machine ? MACHINE_HOME : undefined;
  const env: Record<string, string> = {
    HOME: machine ?? home,
    ...(!machine && { RAY_TMPDIR: rayTmpDir }),
    PATH: `${venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    ...options.env,
  };
  const user = os.userInfo().username;
  const log = path.join(root, "sshd.log");

  installExitHook();
  if (machine) {
    // Mount points: they must exist in our namespace, and stay empty here.
    for (const dir of [machine, "/tmp/ray"]) mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(root, "passwd"), passwdWithHome(user, machine));
  }
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const config = path.join(root, "sshd_config");
    writeFileSync(
      config,
      [
        `Port ${port}`,
        `ListenAddress ${address}`,
        `HostKey ${hostKey}`,
        `PidFile ${path.join(root, "sshd.pid")}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "LogLevel VERBOSE",
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "Subsystem sftp internal-sftp",
        setEnvLine(env),
        "",
      ].join("\n"),
    );
    const out = openSync(path.join(root, "unshare.out"), "a");
    const sshd = ["/usr/sbin/sshd", "-D", "-f", config, "-E", log];
    // A machine: in its own mount namespace (private, as unshare makes it), its home and Ray's
    // temp dir are bind mounts that no other node sees; then sshd becomes the namespace's init.
    const init = machine
      ? [
          "sh",
          "-ec",
          'mount --bind "$1" "$2"; mount --bind "$3" /tmp/ray; mount --bind "$4" /etc/passwd; shift 4; exec "$@"',
          "sh",
          home,
          machine,
          rayTmpDir,
          path.join(root, "passwd"),
          ...sshd,
        ]
      : sshd;
    const child = spawn(
      "unshare",
      ["--pid", "--fork", "--mount-proc", "--kill-child=TERM", ...init],
      { stdio: ["ignore", out, out] },
    );
    closeSync(out);
    const pid = child.pid;
    if (pid === undefined) throw new Error("could not start unshare");
    live.set(pid, { init: pid, root });

    // Ready when the port accepts connections; a dead unshare means sshd refused to start.
    let ready = false;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await canConnect(address, port)) {
        ready = true;
        break;
      }
      await sleep(25);
    }
    const initPid = childrenOf(pid)[0];
    if (ready && initPid !== undefined) {
      live.set(pid, { init: initPid, root });
      const pidNamespace = readlinkSync(`/proc/${initPid}/ns/pid`);
      const sshArgs = (command: string) => [
        "-i",
        privateKey,
        "-o",
        `ProxyCommand=nc %h ${port}`,
        ...SSH_OPTIONS,
        `${user}@${address}`,
        command,
      ];
      const stop = async () => {
        if (live.has(pid)) {
          // SIGTERM to unshare does nothing (it blocks SIGINT/SIGTERM while it waits for its
          // child): stop the namespace's init; the kernel then kills the rest of the namespace.
          signal(initPid, "SIGTERM");
          if (!(await within(exited(child), 5_000))) await killNamespace(initPid, child);
          live.delete(pid);
        }
        if (!options.keep) rmSync(root, { recursive: true, force: true });
      };
      return {
        root,
        home,
        rayTmpDir,
        clientTmp,
        host: address,
        port,
        user,
        privateKey,
        proxyCommand: `nc %h ${port}`,
        venv,
        env,
        log,
        pid,
        initPid,
        pidNamespace,
        sshArgs,
        ssh: (command, execOptions) => execCommand("ssh", sshArgs(command), execOptions),
        stop,
      };
    }

    // Not ready: stop what started, and retry only if another process took the port meanwhile.
    await killNamespace(initPid, child);
    live.delete(pid);
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    if (attempt < 3 && /Address already in use/.test(text)) continue;
    const unshareOut = readFileSync(path.join(root, "unshare.out"), "utf8");
    rmSync(root, { recursive: true, force: true });
    throw new Error(`sshd did not start on port ${port}:\n${text}\n${unshareOut}`);
  }
}

export interface NodeProcess {
  pid: number;
  /** The command line (argv joined with spaces), as /proc shows it. */
  command: string;
}

/**
 * Processes started through the fixture's sshd and still running (Ray's raylet, GCS, workers,
 * drivers, leftover shells): everything in the node's PID namespace except sshd itself.
 * Empty once the namespace is gone.
 */
export function rayProcessesOf(fixture: Pick<SshdFixture, "pidNamespace">): NodeProcess[] {
  const found: NodeProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== fixture.pidNamespace) continue;
      const comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      if (comm.startsWith("sshd")) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (/\) Z /.test(stat)) continue; // a zombie has already exited
      const command = readFileSync(`/proc/${entry}/cmdline`, "utf8")
        .split("\0")
        .filter(Boolean)
        .join(" ");
      found.push({ pid: Number(entry), command: command || `[${comm}]` });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/**
 * Drops every SSH connection to the node, as a network failure would: SIGKILL, by PID, each
 * per-connection sshd process in the node's namespace (never the listener, the namespace's init).
 * Returns the PIDs killed.
 */
export function dropConnections(fixture: Pick<SshdFixture, "pidNamespace" | "initPid">): number[] {
  const killed: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === fixture.initPid) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== fixture.pidNamespace) continue;
      if (!readFileSync(`/proc/${entry}/comm`, "utf8").startsWith("sshd")) continue;
      process.kill(Number(entry), "SIGKILL");
      killed.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return killed;
}

/** Polls until `rayProcessesOf(fixture)` is empty; returns what is left after `timeoutMs`. */
export async function waitForNoRayProcesses(
  fixture: Pick<SshdFixture, "pidNamespace">,
  timeoutMs = 10_000,
): Promise<NodeProcess[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = rayProcessesOf(fixture);
    if (left.length === 0 || Date.now() >= deadline) return left;
    await sleep(100);
  }
}
