// The simulated cloud: operations, rules and state machines, independent of HTTP.
import { createHash } from 'node:crypto';
import { utils } from 'ssh2';
import { findImage, findRegion, findSize, sizeAvailableIn } from './catalog';
import type { DiskStore } from './disk';
import type { DropletSshManager } from './droplet-ssh';
import { conflict, notFound, unprocessable } from './errors';
import type { FaultInjector } from './faults';
import type { TimingSampler } from './profiles';
import type { Rng } from './rng';
import type { ActionRec, DropletRec, SnapshotRec, SshKeyRec, State, VolumeRec } from './state';
import type { CreationCounts, RuntimeOptions } from './types';

const GIB = 1024 ** 3;
export const MAX_VOLUME_GIB = 16 * 1024;
export const MAX_USER_DATA_BYTES = 64 * 1024;
const VOLUME_NAME = /^[a-z][a-z0-9-]{0,63}$/;
const DROPLET_NAME = /^[a-zA-Z0-9]?[a-z0-9A-Z.-]*[a-z0-9A-Z]$/;
const TAG_NAME = /^[a-zA-Z0-9_\-:]{1,255}$/;

export interface CreateVolumeInput {
  name: unknown;
  region: unknown;
  sizeGigabytes?: unknown;
  snapshotId?: unknown;
  description?: unknown;
  tags?: unknown;
  filesystemType?: unknown;
  filesystemLabel?: unknown;
}

export interface CreateDropletInput {
  name: unknown;
  region: unknown;
  size: unknown;
  image: unknown;
  sshKeys?: unknown;
  userData?: unknown;
  tags?: unknown;
  volumes?: unknown;
}

function stringList(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((t) => typeof t === 'string')) {
    throw unprocessable(`${what} must be an array of strings`);
  }
  return value as string[];
}

function tagList(value: unknown): string[] {
  const tags = stringList(value, 'tags');
  const bad = tags.find((t) => !TAG_NAME.test(t));
  if (bad !== undefined) throw unprocessable(`tag name "${bad}" is invalid`);
  return tags;
}

/** DigitalOcean's SSH key fingerprint: MD5 of the key blob, colon-separated hex. */
export function fingerprintOf(blob: Buffer): string {
  return createHash('md5').update(blob).digest('hex').match(/../g)?.join(':') ?? '';
}

export function parsePublicKey(line: string): Buffer | undefined {
  const parsed = utils.parseKey(line);
  if (parsed instanceof Error) return undefined;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key.isPrivateKey()) return undefined;
  return key.getPublicSSH();
}

export class Cloud {
  private readonly timers = new Set<NodeJS.Timeout>();
  readonly created: CreationCounts = { droplets: 0, volumes: 0, snapshots: 0, sshKeys: 0, actions: 0 };
  private closed = false;
  /** A timing profile's sampler, which then sets the action and activation delays (simulator.ts). */
  timing: Pick<TimingSampler, 'sample'> | undefined;
  /** Bytes of disk file per GiB of volume size: a benchmark's 500 GiB volume need not be 500 GiB on disk. */
  bytesPerGib = GIB;

  constructor(
    readonly state: State,
    readonly disk: DiskStore,
    private readonly faults: FaultInjector,
    private readonly ssh: DropletSshManager,
    readonly options: RuntimeOptions,
    private readonly rng: Rng,
    private readonly now: () => number = Date.now,
  ) {}

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.closed) return;
      if (this.held) this.held.push(fn);
      else fn();
    }, ms);
    this.timers.add(t);
  }

  /** Transitions (actions ending, droplets becoming active) that came due while held, in order. */
  private held: (() => void)[] | undefined;

  /**
   * Hold every state transition until the returned release is called, so a test sees the in-between states
   * (an action in progress, a droplet still new) however slow the machine, instead of racing a delay.
   */
  holdTransitions(): () => void {
    const held = (this.held ??= []);
    return () => {
      if (this.held !== held) return;
      this.held = undefined;
      for (const fn of held) if (!this.closed) fn();
    };
  }

  // ---- volumes ----

  volumeByNameRegion(name: string, region: string): VolumeRec | undefined {
    return this.state.liveVolumes().find((v) => v.name === name && v.region === region);
  }

  async createVolume(input: CreateVolumeInput, viaApi: boolean): Promise<VolumeRec> {
    const { name, region } = input;
    if (typeof name !== 'string' || !VOLUME_NAME.test(name)) {
      throw unprocessable('name must be 1-64 characters of lowercase letters, digits and "-", starting with a letter');
    }
    if (typeof region !== 'string' || !findRegion(region)) throw unprocessable('region is not a valid region slug');
    let sizeGigabytes: number;
    let snapshot: SnapshotRec | undefined;
    if (input.snapshotId !== undefined && input.snapshotId !== null) {
      if (typeof input.snapshotId !== 'string') throw unprocessable('snapshot_id must be a string');
      snapshot = this.state.snapshot(input.snapshotId);
      if (!snapshot) throw notFound('snapshot not found');
      if (snapshot.region !== region) throw unprocessable('the volume must be in the same region as the snapshot');
      sizeGigabytes = snapshot.minDiskSize; // size_gigabytes is ignored
    } else {
      const size = input.sizeGigabytes;
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > MAX_VOLUME_GIB) {
        throw unprocessable(`size_gigabytes must be an integer from 1 to ${MAX_VOLUME_GIB}`);
      }
      sizeGigabytes = size;
    }
    if (this.volumeByNameRegion(name, region)) {
      throw conflict(`a volume named ${name} already exists in ${region}`);
    }
    const description = input.description ?? '';
    if (typeof description !== 'string') throw unprocessable('description must be a string');
    const rec: VolumeRec = {
      id: this.rng.uuid(),
      name,
      region,
      sizeGigabytes,
      description,
      tags: tagList(input.tags),
      filesystemType: typeof input.filesystemType === 'string' ? input.filesystemType : '',
      filesystemLabel: typeof input.filesystemLabel === 'string' ? input.filesystemLabel : '',
      dropletIds: [],
      snapshotId: snapshot?.id,
      createdAt: this.now(),
      deletedAt: undefined,
      lastSnapshotAt: undefined,
    };
    this.state.volumes.set(rec.id, rec); // reserve the name before the disk work
    try {
      if (snapshot) await this.disk.createFromSnapshot(rec.id, snapshot.id);
      else await this.disk.createEmpty(rec.id, sizeGigabytes * this.bytesPerGib);
    } catch (err) {
      this.state.volumes.delete(rec.id);
      throw err;
    }
    if (viaApi) this.created.volumes++;
    return rec;
  }

  private hasPendingAction(volume: VolumeRec): boolean {
    return this.state.pendingActions().some((a) => a.volumeId === volume.id);
  }

  async deleteVolume(volume: VolumeRec): Promise<void> {
    if (volume.dropletIds.length > 0 || this.hasPendingAction(volume)) {
      throw conflict('the volume is attached to a droplet: detach it first');
    }
    volume.deletedAt = this.now();
    await this.disk.deleteVolume(volume.id);
  }

  /** A test's "someone deleted the volume": no checks, detached from everything, file gone. */
  async deleteVolumeBehindTheScenes(volume: VolumeRec): Promise<void> {
    volume.deletedAt = this.now();
    for (const d of this.state.droplets.values()) d.volumeIds = d.volumeIds.filter((id) => id !== volume.id);
    volume.dropletIds = [];
    await this.disk.deleteVolume(volume.id);
  }

  // ---- snapshots ----

  async createSnapshot(volume: VolumeRec, name: unknown, tags: unknown): Promise<SnapshotRec> {
    if (typeof name !== 'string' || name.length === 0 || name.length > 255) {
      throw unprocessable('name is required (1-255 characters)');
    }
    const tagNames = tagList(tags);
    const mine = this.state.liveSnapshots().filter((s) => s.volumeId === volume.id);
    if (mine.some((s) => s.name === name)) throw conflict(`a snapshot named ${name} already exists for this volume`);
    if (mine.length >= this.options.maxSnapshotsPerVolume) {
      throw unprocessable(`a volume can have at most ${this.options.maxSnapshotsPerVolume} snapshots`);
    }
    const now = this.now();
    if (volume.lastSnapshotAt !== undefined && now - volume.lastSnapshotAt < this.options.snapshotIntervalMs) {
      const minutes = Math.round(this.options.snapshotIntervalMs / 60_000);
      throw unprocessable(`only one snapshot of a volume can be taken every ${minutes} minutes`);
    }
    const rec: SnapshotRec = {
      id: this.rng.uuid(),
      name,
      volumeId: volume.id,
      region: volume.region,
      minDiskSize: volume.sizeGigabytes,
      sizeGigabytes: 0,
      tags: tagNames,
      createdAt: now,
      deletedAt: undefined,
    };
    volume.lastSnapshotAt = now;
    this.state.snapshots.set(rec.id, rec);
    try {
      await this.disk.snapshotVolume(volume.id, rec.id);
      if (this.faults.snapshotShouldTear()) await this.disk.tearExt4Snapshot(rec.id);
    } catch (err) {
      this.state.snapshots.delete(rec.id);
      throw err;
    }
    const bytes = await this.disk.allocatedBytes(this.disk.snapshotPath(rec.id));
    rec.sizeGigabytes = Math.ceil((bytes / this.bytesPerGib) * 100) / 100;
    this.created.snapshots++;
    return rec;
  }

  async deleteSnapshot(snapshot: SnapshotRec): Promise<void> {
    snapshot.deletedAt = this.now();
    await this.disk.deleteSnapshot(snapshot.id);
  }

  // ---- actions ----

  private newAction(fields: Omit<ActionRec, 'id' | 'status' | 'startedAt' | 'completedAt'>): ActionRec {
    const a: ActionRec = {
      ...fields,
      id: this.state.actionId(),
      status: 'in-progress',
      startedAt: this.now(),
      completedAt: undefined,
    };
    this.state.actions.set(a.id, a);
    this.created.actions++;
    return a;
  }

  private finish(action: ActionRec, status: 'completed' | 'errored'): void {
    if (action.status !== 'in-progress') return;
    action.status = status;
    action.completedAt = this.now();
  }

  private dropletHasPendingEvent(droplet: DropletRec): boolean {
    return this.state.pendingActions().some((a) => a.dropletId === droplet.id);
  }

  volumeAction(volume: VolumeRec, type: unknown, dropletId: unknown, region: unknown): ActionRec {
    if (type !== 'attach' && type !== 'detach') {
      throw unprocessable(
        type === 'resize' ? 'resize is not supported by the simulator' : 'type must be attach or detach',
      );
    }
    if (typeof dropletId !== 'number' || !Number.isInteger(dropletId)) {
      throw unprocessable('droplet_id must be an integer');
    }
    if (region !== undefined && region !== volume.region) throw unprocessable('region does not match the volume');
    const droplet = this.state.droplet(dropletId);
    if (!droplet) throw notFound('droplet not found');
    if (droplet.region !== volume.region) {
      throw unprocessable('the volume and the droplet must be in the same region');
    }
    if (this.dropletHasPendingEvent(droplet)) throw unprocessable('Droplet already has a pending event');
    if (type === 'attach') {
      if (volume.dropletIds.includes(droplet.id)) throw unprocessable('the volume is already attached to this droplet');
      if (volume.dropletIds.length > 0 || this.hasPendingAction(volume)) {
        throw unprocessable('the volume is already attached to another droplet');
      }
      if (droplet.volumeIds.length >= this.options.maxVolumesPerDroplet) {
        throw unprocessable(`a droplet can have at most ${this.options.maxVolumesPerDroplet} volumes attached`);
      }
    } else if (!volume.dropletIds.includes(droplet.id)) {
      throw unprocessable('the volume is not attached to this droplet');
    }
    const action = this.newAction({
      type: type === 'attach' ? 'attach_volume' : 'detach_volume',
      resourceId: null, // like the real API: never the volume id
      resourceType: 'volume',
      region: volume.region,
      dropletId: droplet.id,
      volumeId: volume.id,
    });
    const errored = this.faults.actionShouldError();
    this.later(this.timing?.sample(type) ?? this.options.actionDelayMs, () => {
      if (action.status !== 'in-progress') return;
      const v = this.state.volume(volume.id);
      const d = this.state.droplet(droplet.id);
      if (errored || !v || !d) return this.finish(action, 'errored');
      if (type === 'attach') {
        v.dropletIds = [d.id];
        if (!d.volumeIds.includes(v.id)) d.volumeIds.push(v.id);
      } else {
        v.dropletIds = v.dropletIds.filter((id) => id !== d.id);
        d.volumeIds = d.volumeIds.filter((id) => id !== v.id);
      }
      this.finish(action, 'completed');
    });
    return action;
  }

  // ---- droplets ----

  createDroplet(input: CreateDropletInput): DropletRec {
    const { name } = input;
    if (typeof name !== 'string' || name.length > 255 || !DROPLET_NAME.test(name)) {
      throw unprocessable('name is invalid: letters, digits, "." and "-" (at most 255)');
    }
    const regionSlug = input.region ?? 'nyc3';
    const region = findRegion(regionSlug);
    if (!region) throw unprocessable('You specified an invalid region for Droplet creation.');
    const size = findSize(input.size);
    if (!size) throw unprocessable('You specified an invalid size for Droplet creation.');
    if (!sizeAvailableIn(size, region.slug))
      throw unprocessable(`Size ${size.slug} is not available in ${region.slug}.`);
    const image = findImage(input.image);
    if (!image) throw unprocessable('You specified an invalid image for Droplet creation.');
    const userData = input.userData;
    if (userData !== undefined && userData !== null && typeof userData !== 'string') {
      throw unprocessable('user_data must be a string');
    }
    if (typeof userData === 'string' && Buffer.byteLength(userData) > MAX_USER_DATA_BYTES) {
      throw unprocessable('user_data must be 64 KiB or smaller');
    }
    const tags = tagList(input.tags);
    const keyRefs = input.sshKeys ?? [];
    if (!Array.isArray(keyRefs)) throw unprocessable('ssh_keys must be an array');
    const keys = keyRefs.map((ref: unknown) => {
      const key = typeof ref === 'number' || typeof ref === 'string' ? this.findKey(String(ref)) : undefined;
      if (!key) throw unprocessable(`ssh_keys: ${JSON.stringify(ref)} is not a key of this account`);
      return key;
    });
    const volumeIds = stringList(input.volumes, 'volumes');
    if (volumeIds.length > this.options.maxVolumesPerDroplet) {
      throw unprocessable(`a droplet can have at most ${this.options.maxVolumesPerDroplet} volumes attached`);
    }
    const volumes = volumeIds.map((id) => {
      const v = this.state.volume(id);
      if (!v) throw unprocessable(`volume ${id} not found`);
      if (v.region !== region.slug) throw unprocessable(`volume ${id} is not in ${region.slug}`);
      if (v.dropletIds.length > 0 || this.hasPendingAction(v)) {
        throw unprocessable(`volume ${id} is already attached to a droplet`);
      }
      return v;
    });
    if (this.state.liveDroplets().length >= this.options.dropletLimit) {
      throw unprocessable('creating this/these droplet(s) will exceed your droplet limit');
    }
    const id = this.state.dropletId();
    const createAction = this.newAction({
      type: 'create',
      resourceId: id,
      resourceType: 'droplet',
      region: region.slug,
      dropletId: id,
      volumeId: undefined,
    });
    const rec: DropletRec = {
      id,
      name,
      region: region.slug,
      size: size.slug,
      image,
      tags,
      userData: userData ?? undefined,
      sshPublicKeys: keys.map((k) => k.publicKey),
      volumeIds: volumes.map((v) => v.id),
      status: 'new',
      ip: undefined,
      privateIp: undefined,
      createdAt: this.now(),
      deletedAt: undefined,
      createActionId: createAction.id,
    };
    for (const v of volumes) v.dropletIds = [id];
    this.state.droplets.set(id, rec);
    this.created.droplets++;
    const stuck = this.faults.dropletShouldStick();
    const activeAfter = this.timing?.sample('dropletReady') ?? this.options.dropletActiveDelayMs;
    if (!stuck) this.later(activeAfter, () => void this.activate(rec, createAction));
    return rec;
  }

  private async activate(droplet: DropletRec, createAction: ActionRec): Promise<void> {
    if (droplet.deletedAt !== undefined) return;
    try {
      const info = await this.ssh.start(droplet.id, droplet.userData);
      if (droplet.deletedAt !== undefined || this.closed) {
        await this.ssh.stop(droplet.id);
        return;
      }
      droplet.ip = info.ip;
      droplet.privateIp = info.ip.replace(/^127\./, '10.');
      droplet.status = 'active';
      this.finish(createAction, 'completed');
    } catch (err) {
      process.emitWarning(`simulator: droplet ${droplet.id} did not start: ${String(err)}`);
      this.finish(createAction, 'errored');
    }
  }

  async deleteDroplet(droplet: DropletRec): Promise<void> {
    droplet.deletedAt = this.now();
    for (const v of this.state.liveVolumes()) v.dropletIds = v.dropletIds.filter((id) => id !== droplet.id);
    droplet.volumeIds = [];
    for (const a of this.state.pendingActions()) if (a.dropletId === droplet.id) this.finish(a, 'errored');
    await this.ssh.stop(droplet.id);
  }

  // ---- SSH keys ----

  findKey(idOrFingerprint: string): SshKeyRec | undefined {
    if (/^\d+$/.test(idOrFingerprint)) return this.state.sshKeys.get(Number(idOrFingerprint));
    return [...this.state.sshKeys.values()].find((k) => k.fingerprint === idOrFingerprint);
  }

  addKey(name: unknown, publicKey: unknown, viaApi: boolean): SshKeyRec {
    if (typeof name !== 'string' || name.trim() === '') throw unprocessable('name is required');
    if (typeof publicKey !== 'string') throw unprocessable('public_key is required');
    const blob = parsePublicKey(publicKey.trim());
    if (!blob) throw unprocessable('Key invalid, type not supported or malformed');
    if ([...this.state.sshKeys.values()].some((k) => k.blob.equals(blob))) {
      throw unprocessable('SSH Key is already in use on your account');
    }
    const rec: SshKeyRec = {
      id: this.state.keyId(),
      name,
      publicKey: publicKey.trim(),
      fingerprint: fingerprintOf(blob),
      blob,
    };
    this.state.sshKeys.set(rec.id, rec);
    if (viaApi) this.created.sshKeys++;
    return rec;
  }

  renameKey(key: SshKeyRec, name: unknown): void {
    if (name === undefined) return;
    if (typeof name !== 'string' || name.trim() === '') throw unprocessable('name must be a non-empty string');
    key.name = name;
  }

  deleteKey(key: SshKeyRec): void {
    this.state.sshKeys.delete(key.id);
  }
}
