// Shared fixtures of the transfer tests: an SSH server whose "droplet" runs exec requests locally, and images.
import { randomBytes, createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import {
  ExecSshServer,
  generateEd25519,
  type ExecSshServerOptions,
  type SpawnSpec,
} from '../support/exec-ssh-server.js';
import { syncVolume, type SyncVolumeOptions, type SyncVolumeResult } from '../../activities/transfer/core.js';

export interface Droplet {
  server: ExecSshServer;
  host: string;
  port: number;
  hostPublicKey: string;
  clientKey: string;
  /** Faults: set per test. */
  faults: {
    dropAfterBytes?: number;
    /** Wrap the remote command (fault injection on the "droplet" side). */
    wrap?: (command: string) => SpawnSpec | undefined;
  };
  close(): Promise<void>;
}

type KeyPair = { privateKey: string; publicKey: string };

/** A "droplet"; its host key and the client key it accepts are random unless given (e.g. a run's derived keys). */
export async function startDroplet(
  extra: Partial<ExecSshServerOptions> = {},
  keys: { host?: KeyPair; client?: KeyPair } = {},
): Promise<Droplet> {
  const hostKey = keys.host ?? generateEd25519();
  const clientKey = keys.client ?? generateEd25519();
  const faults: Droplet['faults'] = {};
  const server = new ExecSshServer({
    hostKey: hostKey.privateKey,
    authorizedKeys: () => [clientKey.publicKey],
    dropAfterBytes: () => {
      const n = faults.dropAfterBytes;
      return n;
    },
    onDrop: () => {
      faults.dropAfterBytes = undefined; // one-shot
    },
    spawnCommand: (command) => faults.wrap?.(command) ?? { file: 'sh', args: ['-c', command] },
    killProcessGroup: true,
    ...extra,
  });
  const { host, port } = await server.listen();
  return {
    server,
    host,
    port,
    hostPublicKey: hostKey.publicKey,
    clientKey: clientKey.privateKey,
    faults,
    close: () => server.close(),
  };
}

export async function tempDir(prefix = 'dosvob-transfer-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A test file's droplet and temporary directory, there while its tests run; `dir()` names a fresh directory in it. */
export interface DropletFixture {
  readonly d: Droplet;
  readonly root: string;
  dir(): string;
}

/** One droplet and one temporary directory for all the tests of the calling file: started before them, gone after. */
export function dropletFixture(prefix: string): DropletFixture {
  let droplet: Droplet | undefined;
  let tmp: { dir: string; cleanup: () => Promise<void> } | undefined;
  let n = 0;
  before(async () => {
    droplet = await startDroplet();
    tmp = await tempDir(prefix);
  });
  after(async () => {
    await droplet?.close();
    await tmp?.cleanup();
  });
  const root = (): string => {
    if (!tmp) throw new Error('the droplet fixture is used outside its tests');
    return tmp.dir;
  };
  return {
    get d() {
      if (!droplet) throw new Error('the droplet fixture is used outside its tests');
      return droplet;
    },
    get root() {
      return root();
    },
    dir: () => join(root(), `t${++n}`),
  };
}

export const MiB = 1 << 20;

/** Deterministic pseudo-random bytes (fast): SHA-256 in counter mode. */
export function pseudoRandom(seed: string, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let off = 0;
  let ctr = 0;
  // Expand a 1 MiB pool once per seed, then vary it per 1 MiB chunk by xor with a counter hash.
  while (off < length) {
    const h = createHash('sha256').update(`${seed}:${ctr++}`).digest();
    const n = Math.min(h.length, length - off);
    h.copy(out, off, 0, n);
    off += n;
  }
  return out;
}

/**
 * Create a device file of `sizeBytes`, written region by region: `fill(i)` says what region i holds
 * ('zero' leaves a hole, 'random' writes random bytes, a Buffer writes that).
 */
export async function makeDevice(
  path: string,
  sizeBytes: number,
  regionSize: number,
  fill: (i: number) => 'zero' | 'random' | Buffer,
): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(sizeBytes);
    for (let i = 0; i * regionSize < sizeBytes; i++) {
      const len = Math.min(regionSize, sizeBytes - i * regionSize);
      const f = fill(i);
      if (f === 'zero') continue;
      const data = f === 'random' ? randomBytes(len) : f.subarray(0, len);
      await fh.write(data, 0, data.length, i * regionSize);
    }
  } finally {
    await fh.close();
  }
}

/** Overwrite region i with random data or zeros (writing zeros, not punching: the device is "a disk"). */
export async function mutateRegion(
  path: string,
  regionSize: number,
  i: number,
  what: 'zero' | 'random',
): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const data = what === 'zero' ? Buffer.alloc(regionSize) : randomBytes(regionSize);
    await fh.write(data, 0, data.length, i * regionSize);
  } finally {
    await fh.close();
  }
}

export async function resize(path: string, sizeBytes: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
}

export async function filesEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  return x.equals(y);
}

export async function allocatedBytes(path: string): Promise<number> {
  const st = await stat(path);
  return st.blocks * 512;
}

export async function nonZeroBytes(path: string): Promise<number> {
  const data = await readFile(path);
  const page = 4096;
  const zero = Buffer.alloc(page);
  let n = 0;
  for (let off = 0; off < data.length; off += page) {
    const chunk = data.subarray(off, Math.min(off + page, data.length));
    if (!chunk.equals(zero.subarray(0, chunk.length))) n += chunk.length;
  }
  return n;
}

export function baseOptions(
  d: Droplet,
  backupsDir: string,
  devicePath: string,
  extra: Partial<SyncVolumeOptions> = {},
): SyncVolumeOptions {
  return {
    backupsDir,
    volumeName: 'vol1',
    volumeId: 'vol-id-1',
    snapshotId: 'snap-1',
    snapshotCreatedAt: '2026-11-26T00:00:00Z',
    devicePath,
    blockSize: 256 * 1024,
    stripes: 2,
    segmentBytes: 4 * MiB,
    ssh: { host: d.host, port: d.port, username: 'root', hostPublicKey: d.hostPublicKey, privateKey: d.clientKey },
    ...extra,
  };
}

export async function sync(
  d: Droplet,
  backupsDir: string,
  devicePath: string,
  extra: Partial<SyncVolumeOptions> = {},
): Promise<SyncVolumeResult> {
  return syncVolume(baseOptions(d, backupsDir, devicePath, extra));
}
