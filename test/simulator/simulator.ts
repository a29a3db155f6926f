// The Simulator: wires state, disk, SSH droplets, faults and the HTTP API, and offers test helpers.
import { randomBytes, randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cloud } from './cloud';
import { DiskStore } from './disk';
import { DropletSshManager } from './droplet-ssh';
import { FaultInjector } from './faults';
import { ApiHttpServer, type HandledCall } from './http-server';
import { RateLimiter } from './ratelimit';
import { buildRoutes } from './routes';
import { Rng } from './rng';
import { State, type ActionRec, type DropletRec, type SnapshotRec, type SshKeyRec, type VolumeRec } from './state';
import type {
  ActionInfo,
  CallLogEntry,
  CreationCounts,
  DropletInfo,
  DropletSshInfo,
  Faults,
  LiveResources,
  ResolvedOptions,
  ResourceSeconds,
  RuntimeOptions,
  SimulatorOptions,
  SnapshotInfo,
  SshKeyInfo,
  VolumeInfo,
} from './types';

function resolveOptions(o: SimulatorOptions): ResolvedOptions {
  return {
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 0,
    dataDir: o.dataDir,
    tokens: o.tokens && o.tokens.length > 0 ? [...o.tokens] : [`dosim_${randomBytes(16).toString('hex')}`],
    actionDelayMs: o.actionDelayMs ?? 200,
    dropletActiveDelayMs: o.dropletActiveDelayMs ?? 500,
    snapshotIntervalMs: o.snapshotIntervalMs ?? 10 * 60_000,
    maxSnapshotsPerVolume: o.maxSnapshotsPerVolume ?? 25,
    maxVolumesPerDroplet: o.maxVolumesPerDroplet ?? 7,
    dropletLimit: o.dropletLimit ?? 25,
    rateLimitPerMinute: o.rateLimitPerMinute ?? 250,
    rateLimitPerHour: o.rateLimitPerHour ?? 5000,
    sshKeyListPerMinute: o.sshKeyListPerMinute ?? 10,
    sshPort: o.sshPort ?? 22,
    seed: o.seed ?? randomInt(0, 2 ** 31),
  };
}

const volumeInfo = (v: VolumeRec, file: string): VolumeInfo => ({
  id: v.id,
  name: v.name,
  region: v.region,
  sizeGigabytes: v.sizeGigabytes,
  dropletIds: [...v.dropletIds],
  tags: [...v.tags],
  snapshotId: v.snapshotId,
  createdAt: v.createdAt,
  file,
});

const snapshotInfo = (s: SnapshotRec, file: string): SnapshotInfo => ({
  id: s.id,
  name: s.name,
  region: s.region,
  volumeId: s.volumeId,
  minDiskSize: s.minDiskSize,
  sizeGigabytes: s.sizeGigabytes,
  tags: [...s.tags],
  createdAt: s.createdAt,
  file,
});

const dropletInfo = (d: DropletRec): DropletInfo => ({
  id: d.id,
  name: d.name,
  region: d.region,
  size: d.size,
  status: d.status,
  tags: [...d.tags],
  volumeIds: [...d.volumeIds],
  ip: d.ip,
  createdAt: d.createdAt,
});

const keyInfo = (k: SshKeyRec): SshKeyInfo => ({
  id: k.id,
  name: k.name,
  fingerprint: k.fingerprint,
  publicKey: k.publicKey,
});

const actionInfo = (a: ActionRec): ActionInfo => ({
  id: a.id,
  type: a.type,
  status: a.status,
  dropletId: a.dropletId,
  volumeId: a.volumeId,
  startedAt: a.startedAt,
  completedAt: a.completedAt,
});

export class Simulator {
  /** e.g. "http://127.0.0.1:41234" — WITHOUT "/v2". */
  readonly apiUrl: string;
  readonly token: string;
  readonly tokens: readonly string[];
  readonly dataDir: string;
  readonly seed: number;
  private readonly log: CallLogEntry[] = [];
  private closed = false;
  /**
   * Test hook, awaited after a request took effect and before it is answered: a test can kill the
   * client's worker here, so the resource exists but the client never learns of it.
   */
  onHandled: ((call: HandledCall) => Promise<void> | void) | undefined;

  /** @internal use startSimulator() */
  constructor(
    private readonly parts: {
      apiUrl: string;
      options: ResolvedOptions;
      runtime: RuntimeOptions;
      dataDir: string;
      ownsDataDir: boolean;
      state: State;
      cloud: Cloud;
      disk: DiskStore;
      ssh: DropletSshManager;
      faults: FaultInjector;
      http: ApiHttpServer;
    },
  ) {
    this.apiUrl = parts.apiUrl;
    this.tokens = parts.options.tokens;
    this.token = parts.options.tokens[0] ?? '';
    this.dataDir = parts.dataDir;
    this.seed = parts.options.seed;
  }

  /** @internal */
  record(entry: Omit<CallLogEntry, 'seq'>): void {
    this.log.push({ seq: this.log.length + 1, ...entry });
  }

  // ---- configuration and faults ----

  /** Change delays and limits while running. */
  configure(changes: Partial<RuntimeOptions>): void {
    Object.assign(this.parts.runtime, changes);
  }

  get options(): Readonly<RuntimeOptions> & { sshPort: number } {
    return { ...this.parts.runtime, sshPort: this.parts.options.sshPort };
  }

  /**
   * Hold actions and droplet activation where they are (their delays still run) until the returned function is
   * called: the in-between states stay observable on a machine of any speed.
   */
  holdTransitions(): () => void {
    return this.parts.cloud.holdTransitions();
  }

  /** Replace the fault set (`setFaults({})` clears every fault). */
  setFaults(faults: Faults): void {
    this.parts.faults.set(faults);
  }

  /** The current faults, with one-shot counters as they stand. */
  get faults(): Faults {
    return this.parts.faults.get();
  }

  // ---- test helpers over the disk ----

  private liveVolume(id: string): VolumeRec {
    const v = this.parts.state.volume(id);
    if (!v) throw new Error(`no live volume ${id}`);
    return v;
  }

  /** Create a volume without HTTP (not counted in creationCounts, not in the call log). */
  async createVolume(input: {
    name: string;
    region: string;
    sizeGigabytes: number;
    tags?: string[];
    description?: string;
  }): Promise<VolumeInfo> {
    const v = await this.parts.cloud.createVolume(
      {
        name: input.name,
        region: input.region,
        sizeGigabytes: input.sizeGigabytes,
        tags: input.tags,
        description: input.description,
      },
      false,
    );
    return volumeInfo(v, this.parts.disk.volumePath(v.id));
  }

  /** Write bytes into a volume (copy-on-write when its file is shared with a snapshot). */
  async writeVolume(volumeId: string, offset: number, data: Buffer): Promise<void> {
    this.liveVolume(volumeId);
    await this.parts.disk.write(volumeId, offset, data);
  }

  async readVolume(volumeId: string, offset: number, length: number): Promise<Buffer> {
    this.liveVolume(volumeId);
    return this.parts.disk.read(this.parts.disk.volumePath(volumeId), offset, length);
  }

  /** Path of the volume's bytes (read it, never write it: use writeVolume). */
  volumeFile(volumeId: string): string {
    this.liveVolume(volumeId);
    return this.parts.disk.volumePath(volumeId);
  }

  /** Path of the snapshot's frozen bytes. */
  snapshotFile(snapshotId: string): string {
    if (!this.parts.state.snapshot(snapshotId)) throw new Error(`no live snapshot ${snapshotId}`);
    return this.parts.disk.snapshotPath(snapshotId);
  }

  /** Whether the volume's file is still a hardlink shared with a snapshot (no bytes copied yet). */
  async volumeSharesSnapshotFile(volumeId: string): Promise<boolean> {
    this.liveVolume(volumeId);
    return this.parts.disk.isShared(volumeId);
  }

  /** Someone deletes the volume outside dosvob (even if attached): it is gone from the API and the disk. */
  async deleteVolumeBehindTheScenes(volumeId: string): Promise<void> {
    await this.parts.cloud.deleteVolumeBehindTheScenes(this.liveVolume(volumeId));
  }

  /**
   * Move a live droplet's, volume's or snapshot's creation time `ms` into the past (its `created_at`), as if it had
   * been made that long ago: for sweeps that judge another installation's leftovers by their age.
   */
  backdate(kind: 'droplet' | 'volume' | 'snapshot', id: string | number, ms: number): void {
    const { state } = this.parts;
    const rec =
      kind === 'droplet'
        ? state.droplet(Number(id))
        : kind === 'volume'
          ? state.volume(String(id))
          : state.snapshot(String(id));
    if (!rec) throw new Error(`no live ${kind} ${id}`);
    rec.createdAt -= ms;
  }

  /** Add an account SSH key without HTTP (not counted in creationCounts). */
  addSshKey(name: string, publicKey: string): SshKeyInfo {
    return keyInfo(this.parts.cloud.addKey(name, publicKey, false));
  }

  /** Where the droplet's SSH server answers; undefined until it is active. */
  dropletSsh(dropletId: number): DropletSshInfo | undefined {
    return this.parts.ssh.info(dropletId);
  }

  // ---- inspection ----

  liveResources(): LiveResources {
    const { state, disk } = this.parts;
    return {
      droplets: state.liveDroplets().map(dropletInfo),
      volumes: state.liveVolumes().map((v) => volumeInfo(v, disk.volumePath(v.id))),
      snapshots: state.liveSnapshots().map((s) => snapshotInfo(s, disk.snapshotPath(s.id))),
      sshKeys: [...state.sshKeys.values()].map(keyInfo),
      pendingActions: state.pendingActions().map(actionInfo),
    };
  }

  /** Live resources whose name starts with `prefix` (SSH keys included). */
  resourcesByPrefix(prefix: string): LiveResources {
    const all = this.liveResources();
    return {
      droplets: all.droplets.filter((d) => d.name.startsWith(prefix)),
      volumes: all.volumes.filter((v) => v.name.startsWith(prefix)),
      snapshots: all.snapshots.filter((s) => s.name.startsWith(prefix)),
      sshKeys: all.sshKeys.filter((k) => k.name.startsWith(prefix)),
      pendingActions: all.pendingActions,
    };
  }

  /** Live resources carrying `tag` (SSH keys have no tags: always empty). */
  resourcesByTag(tag: string): LiveResources {
    const all = this.liveResources();
    return {
      droplets: all.droplets.filter((d) => d.tags.includes(tag)),
      volumes: all.volumes.filter((v) => v.tags.includes(tag)),
      snapshots: all.snapshots.filter((s) => s.tags.includes(tag)),
      sshKeys: [],
      pendingActions: all.pendingActions,
    };
  }

  action(actionId: number): ActionInfo | undefined {
    const a = this.parts.state.actions.get(actionId);
    return a && actionInfo(a);
  }

  /** Resource usage so far, deleted resources included. */
  resourceSeconds(now = Date.now()): ResourceSeconds {
    const { state } = this.parts;
    const life = (r: { createdAt: number; deletedAt: number | undefined }): number =>
      ((r.deletedAt ?? now) - r.createdAt) / 1000;
    let dropletSeconds = 0;
    let dropletBilledSeconds = 0;
    for (const d of state.droplets.values()) {
      dropletSeconds += life(d);
      dropletBilledSeconds += Math.max(60, life(d));
    }
    let volumeGibSeconds = 0;
    for (const v of state.volumes.values()) volumeGibSeconds += v.sizeGigabytes * life(v);
    let snapshotGibSeconds = 0;
    for (const s of state.snapshots.values()) snapshotGibSeconds += s.sizeGigabytes * life(s);
    return { dropletSeconds, dropletBilledSeconds, volumeGibSeconds, snapshotGibSeconds };
  }

  /** Every API request so far (request and response bodies included). */
  get callLog(): readonly CallLogEntry[] {
    return this.log;
  }

  clearCallLog(): void {
    this.log.length = 0;
  }

  /** Requests per "METHOD /v2/path-template" (unmatched paths under their raw path). */
  callCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const e of this.log) {
      const key = `${e.method} ${e.template ?? e.path}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }

  /** Successful creations through the API (helpers such as createVolume() are not counted). */
  creationCounts(): CreationCounts {
    return { ...this.parts.cloud.created };
  }

  /** Resolves when no action is in progress (or after timeoutMs, rejecting). */
  async waitForIdle(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.parts.state.pendingActions().length > 0) {
      if (Date.now() > deadline) throw new Error('simulator: actions still pending');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stop the HTTP and SSH servers and timers; remove the data dir unless it was given. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.parts.cloud.close();
    await Promise.all([this.parts.http.close(), this.parts.ssh.stopAll()]);
    if (this.parts.ownsDataDir) await fs.rm(this.parts.dataDir, { recursive: true, force: true });
  }
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const resolved = resolveOptions(options);
  const runtime: RuntimeOptions = {
    actionDelayMs: resolved.actionDelayMs,
    dropletActiveDelayMs: resolved.dropletActiveDelayMs,
    snapshotIntervalMs: resolved.snapshotIntervalMs,
    maxSnapshotsPerVolume: resolved.maxSnapshotsPerVolume,
    maxVolumesPerDroplet: resolved.maxVolumesPerDroplet,
    dropletLimit: resolved.dropletLimit,
    rateLimitPerMinute: resolved.rateLimitPerMinute,
    rateLimitPerHour: resolved.rateLimitPerHour,
    sshKeyListPerMinute: resolved.sshKeyListPerMinute,
  };
  const ownsDataDir = resolved.dataDir === undefined;
  const dataDir = resolved.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'dosvob-sim-')));
  const disk = new DiskStore(dataDir);
  await disk.init();
  const rng = new Rng(resolved.seed);
  const state = new State(rng.int(0, 99_999));
  const faults = new FaultInjector(resolved.seed);
  faults.set(options.faults ?? {});
  const simRef: { current?: Simulator } = {};
  const ssh = new DropletSshManager(resolved.sshPort, {
    attachedVolumes: (dropletId) =>
      (state.droplet(dropletId)?.volumeIds ?? []).flatMap((id) => {
        const v = state.volume(id);
        return v ? [{ name: v.name, file: disk.volumePath(v.id) }] : [];
      }),
    authorizedKeys: (dropletId) => state.droplets.get(dropletId)?.sshPublicKeys ?? [],
    dropAfterBytes: () => faults.sshDropAfterBytes(),
    onDrop: () => faults.sshDropped(),
    stallAfterBytes: () => faults.get().sshStallAfterBytes,
    onStall: () => faults.sshStalled(),
  });
  const cloud = new Cloud(state, disk, faults, ssh, runtime, rng);
  const http = new ApiHttpServer({
    routes: buildRoutes(cloud),
    tokens: () => resolved.tokens,
    limiter: new RateLimiter(),
    faults,
    options: runtime,
    log: (entry) => simRef.current?.record(entry),
    afterHandle: (call) => simRef.current?.onHandled?.(call),
  });
  const { host, port } = await http.listen(resolved.host, resolved.port);
  const sim = new Simulator({
    apiUrl: `http://${host}:${port}`,
    options: resolved,
    runtime,
    dataDir,
    ownsDataDir,
    state,
    cloud,
    disk,
    ssh,
    faults,
    http,
  });
  simRef.current = sim;
  return sim;
}
