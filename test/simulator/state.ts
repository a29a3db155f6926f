// The simulator's records. Deleted records stay (with deletedAt) for resource-seconds accounting.
import type { ImageDef } from './catalog';

export interface VolumeRec {
  id: string;
  name: string;
  region: string;
  sizeGigabytes: number;
  description: string;
  tags: string[];
  filesystemType: string;
  filesystemLabel: string;
  /** Droplets it is attached to (at most one). */
  dropletIds: number[];
  snapshotId: string | undefined;
  createdAt: number;
  deletedAt: number | undefined;
  lastSnapshotAt: number | undefined;
}

export interface SnapshotRec {
  id: string;
  name: string;
  volumeId: string;
  region: string;
  minDiskSize: number;
  /** Stored data in GiB (allocated blocks), 2 decimals, like DigitalOcean's `size_gigabytes`. */
  sizeGigabytes: number;
  tags: string[];
  createdAt: number;
  deletedAt: number | undefined;
}

export interface DropletRec {
  id: number;
  name: string;
  region: string;
  size: string;
  image: ImageDef;
  tags: string[];
  userData: string | undefined;
  /** Public key lines of the account keys named at create. */
  sshPublicKeys: string[];
  volumeIds: string[];
  status: 'new' | 'active';
  ip: string | undefined;
  privateIp: string | undefined;
  createdAt: number;
  deletedAt: number | undefined;
  createActionId: number;
}

export type ActionStatus = 'in-progress' | 'completed' | 'errored';

export interface ActionRec {
  id: number;
  type: 'attach_volume' | 'detach_volume' | 'create';
  status: ActionStatus;
  startedAt: number;
  completedAt: number | undefined;
  resourceId: number | null;
  resourceType: 'volume' | 'droplet';
  region: string;
  dropletId: number | undefined;
  volumeId: string | undefined;
}

export interface SshKeyRec {
  id: number;
  name: string;
  publicKey: string;
  fingerprint: string;
  blob: Buffer;
}

export class State {
  readonly volumes = new Map<string, VolumeRec>();
  readonly snapshots = new Map<string, SnapshotRec>();
  readonly droplets = new Map<number, DropletRec>();
  readonly actions = new Map<number, ActionRec>();
  readonly sshKeys = new Map<number, SshKeyRec>();
  private nextDropletId: number;
  private nextActionId: number;
  private nextKeyId: number;

  constructor(idBase: number) {
    this.nextDropletId = 400_000_000 + idBase;
    this.nextActionId = 2_000_000_000 + idBase * 10;
    this.nextKeyId = 40_000_000 + idBase;
  }

  dropletId(): number {
    return this.nextDropletId++;
  }

  actionId(): number {
    return this.nextActionId++;
  }

  keyId(): number {
    return this.nextKeyId++;
  }

  liveVolumes(): VolumeRec[] {
    return [...this.volumes.values()].filter((v) => v.deletedAt === undefined);
  }

  liveSnapshots(): SnapshotRec[] {
    return [...this.snapshots.values()].filter((s) => s.deletedAt === undefined);
  }

  liveDroplets(): DropletRec[] {
    return [...this.droplets.values()].filter((d) => d.deletedAt === undefined);
  }

  volume(id: string): VolumeRec | undefined {
    const v = this.volumes.get(id);
    return v && v.deletedAt === undefined ? v : undefined;
  }

  snapshot(id: string): SnapshotRec | undefined {
    const s = this.snapshots.get(id);
    return s && s.deletedAt === undefined ? s : undefined;
  }

  droplet(id: number): DropletRec | undefined {
    const d = this.droplets.get(id);
    return d && d.deletedAt === undefined ? d : undefined;
  }

  pendingActions(): ActionRec[] {
    return [...this.actions.values()].filter((a) => a.status === 'in-progress');
  }
}
