// The Simulator: wires state, disk, SSH droplets, faults and the HTTP API, and offers test helpers.
import { execFileSync } from 'node:child_process';
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
import { PROFILES, TimingSampler, stepOfRequest } from './profiles';
import { buildRoutes, type Route } from './routes';
import { Rng } from './rng';
import {
  attachLoop,
  loopMountsAvailable,
  UserDropletShells,
  type LoopMount,
  type UserDropletShell,
} from './user-droplet';
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
      userShells: UserDropletShells;
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

  /**
   * A user's droplet (not dosvob's: no tag), e.g. the one a hook freezes: with the given host key (through cloud-config,
   * as dosvob's own droplets get theirs), the keys allowed to log in, and volumes attached. Its exec is the recorded
   * shell (user-droplet.ts). Resolves once it is active and its SSH server listens.
   */
  async createUserDroplet(input: {
    name: string;
    region: string;
    hostKey?: { privateKey: string; publicKey: string };
    authorizedKeys: readonly string[];
    volumeIds?: string[];
    /**
     * Volumes it mounts for real (only where loopMountsAvailable(): a loop device, mounted at `at` under /mnt in every
     * exec); `format` makes the filesystem first, as DigitalOcean's filesystem_type does. A volume made from a
     * snapshot (still sharing its file) cannot be mounted: its file would change under the loop device.
     */
    mounts?: { volumeId: string; at: string; format?: 'ext4' }[];
    timeoutMs?: number;
  }): Promise<{ droplet: DropletInfo; ssh: DropletSshInfo; shell: UserDropletShell }> {
    const { cloud, state, ssh, userShells, disk } = this.parts;
    const mounts: LoopMount[] = [];
    if (input.mounts && input.mounts.length > 0) {
      if (!loopMountsAvailable()) throw new Error('loop mounts need root and loop devices (loopMountsAvailable())');
      for (const m of input.mounts) {
        this.liveVolume(m.volumeId);
        if (await disk.isShared(m.volumeId)) throw new Error(`volume ${m.volumeId} shares its file with a snapshot`);
        const file = disk.volumePath(m.volumeId);
        if (m.format === 'ext4') execFileSync('mkfs.ext4', ['-q', '-F', file], { stdio: 'ignore' });
        mounts.push({ device: attachLoop(file), at: m.at });
      }
    }
    const userData = input.hostKey
      ? [
          '#cloud-config',
          'ssh_keys:',
          '  ed25519_private: |',
          ...input.hostKey.privateKey
            .trimEnd()
            .split('\n')
            .map((l) => `    ${l}`),
          `  ed25519_public: ${input.hostKey.publicKey}`,
          '',
        ].join('\n')
      : undefined;
    const rec = cloud.createDroplet({
      name: input.name,
      region: input.region,
      size: 's-1vcpu-1gb',
      image: 'debian-12-x64',
      userData,
      volumes: input.volumeIds,
    });
    rec.sshPublicKeys = [...input.authorizedKeys];
    const shell = userShells.create(rec.id, mounts);
    const deadline = Date.now() + (input.timeoutMs ?? 30_000);
    for (;;) {
      const info = ssh.info(rec.id);
      if (state.droplet(rec.id)?.status === 'active' && info) return { droplet: dropletInfo(rec), ssh: info, shell };
      if (Date.now() > deadline) throw new Error(`user droplet ${input.name} did not become active`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Every snapshot ever made, deleted ones included, with its creation time to the millisecond (the API's created_at
   * has seconds only): for tests that place a snapshot inside a freeze window.
   */
  snapshotRecords(): { id: string; name: string; volumeId: string; createdAt: number; deletedAt?: number }[] {
    return [...this.parts.state.snapshots.values()].map((s) => ({
      id: s.id,
      name: s.name,
      volumeId: s.volumeId,
      createdAt: s.createdAt,
      ...(s.deletedAt !== undefined ? { deletedAt: s.deletedAt } : {}),
    }));
  }

  /** The recorded shell of a user droplet (createUserDroplet). */
  userDroplet(dropletId: number): UserDropletShell | undefined {
    return this.parts.userShells.get(dropletId);
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

  /**
   * Resource usage so far, deleted resources included; with `include`, only the resources it accepts (e.g. one run's,
   * by name, leaving out the source volumes a test made).
   */
  resourceSeconds(now = Date.now(), include: (r: { name: string }) => boolean = () => true): ResourceSeconds {
    const { state } = this.parts;
    const life = (r: { createdAt: number; deletedAt: number | undefined }): number =>
      ((r.deletedAt ?? now) - r.createdAt) / 1000;
    let dropletSeconds = 0;
    let dropletBilledSeconds = 0;
    for (const d of state.droplets.values()) {
      if (!include(d)) continue;
      dropletSeconds += life(d);
      dropletBilledSeconds += Math.max(60, life(d));
    }
    let volumeGibSeconds = 0;
    for (const v of state.volumes.values()) if (include(v)) volumeGibSeconds += v.sizeGigabytes * life(v);
    let snapshotGibSeconds = 0;
    for (const s of state.snapshots.values()) if (include(s)) snapshotGibSeconds += s.sizeGigabytes * life(s);
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

  /**
   * Requests and 429s per client, told apart by User-Agent (the first word, e.g. "dosvob" or "axios"):
   * whose requests the rate limit turned away.
   */
  callsByClient(): Record<string, { requests: number; rateLimited: number }> {
    const out: Record<string, { requests: number; rateLimited: number }> = {};
    for (const e of this.log) {
      const client = (e.userAgent ?? 'unknown').split(/[\s/]/)[0] || 'unknown';
      const row = (out[client] ??= { requests: 0, rateLimited: 0 });
      row.requests++;
      if (e.status === 429) row.rateLimited++;
    }
    return out;
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
    this.parts.userShells.close();
    if (this.parts.ownsDataDir) await fs.rm(this.parts.dataDir, { recursive: true, force: true });
  }
}

function timingSampler(options: SimulatorOptions, seed: number): TimingSampler | undefined {
  if (options.profile === undefined) return undefined;
  const profile = typeof options.profile === 'string' ? PROFILES[options.profile] : options.profile;
  // Its own stream of the seed: the profile's draws do not shift the ids and fault decisions.
  return new TimingSampler(profile, options.timeScale ?? 1, seed ^ 0x5eed);
}

/**
 * Each answer takes its step's time (a snapshot, a volume from a snapshot, a delete, or a plain request). What a
 * request makes exists from its arrival and what it deletes lasts until its answer: the simulator's resource-seconds
 * are then the least a client bracketing its calls can count.
 */
function withLatency(routes: Route[], sampler: TimingSampler): Route[] {
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  return routes.map((route) => ({
    ...route,
    handler: async (req) => {
      const ms = sampler.sample(stepOfRequest(route.method, route.template, req.body));
      if (route.method === 'DELETE') {
        await pause(ms);
        return route.handler(req);
      }
      const result = await route.handler(req);
      await pause(ms);
      return result;
    },
  }));
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
  const userShells = new UserDropletShells(path.join(dataDir, 'user-droplets'));
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
    stallInputAfterBytes: () => faults.get().sshStallInputAfterBytes,
    onInputStall: () => faults.sshInputStalled(),
    wrapExec: (dropletId, command, base) => userShells.spawn(dropletId, command, base),
  });
  const cloud = new Cloud(state, disk, faults, ssh, runtime, rng);
  const sampler = timingSampler(options, resolved.seed);
  cloud.timing = sampler;
  if (options.diskBytesPerGib !== undefined) cloud.bytesPerGib = options.diskBytesPerGib;
  const http = new ApiHttpServer({
    routes: sampler ? withLatency(buildRoutes(cloud), sampler) : buildRoutes(cloud),
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
    userShells,
  });
  simRef.current = sim;
  return sim;
}
