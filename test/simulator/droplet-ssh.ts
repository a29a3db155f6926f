// Each active droplet is a real SSH server (test/support/exec-ssh-server.ts) at its own loopback address
// 127.A.B.C, A.B random per simulator instance. Every exec runs as
//   unshare --mount --propagation private -- sh -c SETUP sh COMMAND [NAME FILE MODE]...
// SETUP mounts a private tmpfs over /dev/disk/by-id (in the new mount namespace only), bind-mounts each
// attached volume's file at /dev/disk/by-id/scsi-0DO_Volume_<name> (read-only while the file is shared
// with a snapshot, so a droplet cannot change a snapshot's bytes), then execs `sh -c COMMAND`.
// The host sees none of it; a detached volume is absent from the next exec's namespace.
import { randomInt } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { utils } from 'ssh2';
import { ExecSshServer, generateEd25519, type SpawnSpec } from '../support/exec-ssh-server';
import { hostKeyFromUserData } from './cloud-config';
import type { DropletSshInfo } from './types';

export const DEVICE_DIR = '/dev/disk/by-id';
export const devicePath = (volumeName: string): string => `${DEVICE_DIR}/scsi-0DO_Volume_${volumeName}`;

const SETUP = [
  'set -e',
  'cmd=$1; shift',
  `mount -t tmpfs -o mode=755,size=1m dosim ${DEVICE_DIR}`,
  'while [ $# -ge 3 ]; do',
  `  p=${DEVICE_DIR}/scsi-0DO_Volume_$1`,
  '  : > "$p"',
  '  mount --bind "$2" "$p"',
  '  if [ "$3" = ro ]; then mount -o remount,bind,ro "$p"; fi',
  '  shift 3',
  'done',
  'set +e',
  'exec sh -c "$cmd"',
].join('\n');

export interface AttachedVolumeFile {
  name: string;
  file: string;
}

export interface DropletSshHooks {
  /** Volumes attached to the droplet right now. */
  attachedVolumes: (dropletId: number) => AttachedVolumeFile[];
  /** Keys allowed to log in. */
  authorizedKeys: (dropletId: number) => readonly string[];
  dropAfterBytes: () => number | undefined;
  onDrop: () => void;
  stallAfterBytes: () => number | undefined;
  onStall: () => void;
  stallInputAfterBytes?: () => number | undefined;
  onInputStall?: () => void;
  /** A user droplet's exec, recorded (user-droplet.ts); `base` is how any droplet's exec is spawned. */
  wrapExec?: (dropletId: number, command: string, base: (command: string) => SpawnSpec) => SpawnSpec;
}

interface RunningDroplet {
  server: ExecSshServer;
  info: DropletSshInfo;
}

function publicLine(privateKey: string): string | undefined {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error) return undefined;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) return undefined;
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

/** Whether exec requests can see volumes (needs root for unshare/mount). */
export function namespacesAvailable(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export class DropletSshManager {
  private readonly running = new Map<number, RunningDroplet>();
  private readonly prefix: [number, number];
  private nextHost = 0;
  private readonly useNamespaces: boolean;

  constructor(
    private readonly port: number,
    private readonly hooks: DropletSshHooks,
  ) {
    // Not from the seed: two test processes with the same seed must not share addresses.
    this.prefix = [randomInt(1, 255), randomInt(0, 256)];
    this.useNamespaces = namespacesAvailable();
    if (this.useNamespaces) mkdirSync(DEVICE_DIR, { recursive: true });
  }

  private nextIp(): string {
    const n = this.nextHost++;
    const b = (this.prefix[1] + Math.floor(n / 254)) % 256;
    return `127.${this.prefix[0]}.${b}.${(n % 254) + 1}`;
  }

  private spawnSpec(dropletId: number, command: string): SpawnSpec {
    if (!this.useNamespaces) return { file: 'sh', args: ['-c', command] };
    const args = ['--mount', '--propagation', 'private', '--', 'sh', '-c', SETUP, 'sh', command];
    for (const v of this.hooks.attachedVolumes(dropletId)) {
      let mode = 'rw';
      try {
        if (statSync(v.file).nlink > 1) mode = 'ro';
      } catch {
        continue; // the file is gone (volume deleted behind the scenes)
      }
      args.push(v.name, v.file, mode);
    }
    return { file: 'unshare', args };
  }

  /** Start the droplet's SSH server; resolves with its address once it listens. */
  async start(dropletId: number, userData: string | undefined): Promise<DropletSshInfo> {
    const fromUserData = hostKeyFromUserData(userData);
    const fromUserDataPublic = fromUserData ? publicLine(fromUserData.privateKey) : undefined;
    let hostKey: string;
    let hostPublicKey: string;
    let hostKeySource: DropletSshInfo['hostKeySource'];
    if (fromUserData && fromUserDataPublic) {
      hostKey = fromUserData.privateKey;
      hostPublicKey = fromUserDataPublic;
      hostKeySource = 'user_data';
    } else {
      const pair = generateEd25519();
      hostKey = pair.privateKey;
      hostPublicKey = publicLine(pair.privateKey) ?? pair.publicKey;
      hostKeySource = 'random';
    }
    let lastError: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      const ip = this.nextIp();
      const server = new ExecSshServer({
        host: ip,
        port: this.port,
        hostKey,
        authorizedKeys: () => this.hooks.authorizedKeys(dropletId),
        spawnCommand: (command) =>
          this.hooks.wrapExec
            ? this.hooks.wrapExec(dropletId, command, (c) => this.spawnSpec(dropletId, c))
            : this.spawnSpec(dropletId, command),
        dropAfterBytes: this.hooks.dropAfterBytes,
        onDrop: this.hooks.onDrop,
        stallAfterBytes: this.hooks.stallAfterBytes,
        onStall: this.hooks.onStall,
        stallInputAfterBytes: this.hooks.stallInputAfterBytes,
        onInputStall: this.hooks.onInputStall,
        killProcessGroup: true,
      });
      try {
        const { port } = await server.listen();
        const info: DropletSshInfo = { ip, port, hostPublicKey, hostKeySource };
        this.running.set(dropletId, { server, info });
        return info;
      } catch (err) {
        lastError = err;
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
      }
    }
    throw new Error(`droplet ${dropletId}: cannot listen for SSH: ${String(lastError)}`);
  }

  info(dropletId: number): DropletSshInfo | undefined {
    return this.running.get(dropletId)?.info;
  }

  /** Close the droplet's sessions and stop listening. */
  async stop(dropletId: number): Promise<void> {
    const r = this.running.get(dropletId);
    if (!r) return;
    this.running.delete(dropletId);
    await r.server.close();
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.stop(id)));
  }
}
