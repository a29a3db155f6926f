// Public types of the DigitalOcean API simulator.
import type { Profile, ProfileName } from './profiles';

export interface SimulatorOptions {
  /** HTTP host to bind; default 127.0.0.1. */
  host?: string;
  /** HTTP port; default 0 (a free port). */
  port?: number;
  /** Where volume and snapshot files live. Default: a fresh temp dir, removed by close(). A given dir is kept. */
  dataDir?: string;
  /** Accepted bearer tokens; default one random token. `sim.token` is the first. */
  tokens?: string[];
  /** How long an attach/detach action stays `in-progress`; default 200 ms. */
  actionDelayMs?: number;
  /** How long a new droplet stays `new`; default 500 ms. */
  dropletActiveDelayMs?: number;
  /** Minimum time between two snapshots of one volume; default 10 minutes (the real limit). */
  snapshotIntervalMs?: number;
  /** Snapshots one volume may have; default 25. */
  maxSnapshotsPerVolume?: number;
  /** Volumes one droplet may have attached; default 7. */
  maxVolumesPerDroplet?: number;
  /** The account's droplet limit; default 25. */
  dropletLimit?: number;
  /** Per-token request limits; defaults 250 a minute, 5,000 an hour. */
  rateLimitPerMinute?: number;
  rateLimitPerHour?: number;
  /** GET /v2/account/keys requests a minute; default 10. */
  sshKeyListPerMinute?: number;
  /** Port every droplet's SSH server listens on (at its own 127.A.B.C address); default 22; 0 = a free port each. */
  sshPort?: number;
  /** Seed of the random choices (fault rates, address prefix, ids); default random. */
  seed?: number;
  /** Initial faults (see `sim.setFaults`). */
  faults?: Faults;
  /**
   * A timing profile (profiles.ts): each step's duration drawn from DigitalOcean-like distributions instead of
   * `actionDelayMs` / `dropletActiveDelayMs`, and every answer delayed by its step's latency. Seeded by `seed`.
   */
  profile?: ProfileName | Profile;
  /** Multiplies every profile duration: 0.1 plays it ten times faster. Default 1. */
  timeScale?: number;
  /**
   * Bytes of disk file per GiB of `size_gigabytes` (default 2^30). A benchmark keeps DigitalOcean's sizes (and so
   * its costs) while its files stay small; a snapshot's stored `size_gigabytes` is scaled back the same way.
   */
  diskBytesPerGib?: number;
}

export interface ResolvedOptions {
  host: string;
  port: number;
  dataDir: string | undefined;
  tokens: string[];
  actionDelayMs: number;
  dropletActiveDelayMs: number;
  snapshotIntervalMs: number;
  maxSnapshotsPerVolume: number;
  maxVolumesPerDroplet: number;
  dropletLimit: number;
  rateLimitPerMinute: number;
  rateLimitPerHour: number;
  sshKeyListPerMinute: number;
  sshPort: number;
  seed: number;
}

/** Options that may change while the simulator runs (`sim.configure`). */
export type RuntimeOptions = Pick<
  ResolvedOptions,
  | 'actionDelayMs'
  | 'dropletActiveDelayMs'
  | 'snapshotIntervalMs'
  | 'maxSnapshotsPerVolume'
  | 'maxVolumesPerDroplet'
  | 'dropletLimit'
  | 'rateLimitPerMinute'
  | 'rateLimitPerHour'
  | 'sshKeyListPerMinute'
>;

/**
 * Fault injection. `sim.setFaults(f)` REPLACES the whole set (`setFaults({})` clears it). Rates are
 * probabilities in [0, 1] drawn from the seeded generator, so a run with the same seed and the same
 * request sequence gets the same faults.
 */
export interface Faults {
  /** Reseed the fault generator when these faults are set. */
  seed?: number;
  /** Restrict the HTTP faults below to these "METHOD /v2/template" keys (e.g. "POST /v2/volumes"). */
  only?: string[];
  /** Answer 5xx WITHOUT doing anything, with this probability. */
  serverErrorRate?: number;
  /** Do the operation, then answer 5xx anyway (a lost answer), with this probability. */
  lostResponseRate?: number;
  /** The 5xx status used; default 500. */
  serverErrorStatus?: 500 | 502 | 503 | 504;
  /** The next N matching requests answer 5xx without doing anything. */
  failNextRequests?: number;
  /** After every `every` requests, the next `length` get a 429 (with `retry-after: retryAfterSeconds`, default 1). */
  rateLimitBurst?: { every: number; length: number; retryAfterSeconds?: number };
  /** Delay the answer (after doing the operation) by `slowMs` with this probability. */
  slowRate?: number;
  slowMs?: number;
  /** Attach/detach actions end `errored` (and change nothing) with this probability. */
  actionErrorRate?: number;
  /** The next N attach/detach actions end `errored`. */
  failNextActions?: number;
  /** The next N droplets created never become active. */
  stuckDroplets?: number;
  /** New droplets never become active with this probability. */
  dropletStuckRate?: number;
  /** The next SSH exec that sends more than this many stdout bytes loses its connection (once). */
  sshDropAfterBytes?: number;
  /** How many connections `sshDropAfterBytes` drops, one after another (default 1). */
  sshDropTimes?: number;
  /**
   * The next SSH exec that sends more than this many stdout bytes stops sending (once): its process and connection
   * stay up, silent, until the channel closes. A transfer caught mid-way, whatever the machine's speed.
   */
  sshStallAfterBytes?: number;
  /** The next SSH exec that is sent more than this many stdin bytes stops reading them (once): a restore mid-write. */
  sshStallInputAfterBytes?: number;
  /**
   * The next N snapshots are taken while "writes are in flight": right after each is taken, an ext4 group descriptor
   * in its file is torn (a field changed, its checksum not), so `e2fsck -fn` fails on it. A snapshot of a volume with
   * no ext2/3/4 filesystem on the whole device is left as it is.
   */
  tornSnapshots?: number;
}

export interface CallLogEntry {
  /** Sequence number, from 1. */
  seq: number;
  method: string;
  /** Path without the query string, e.g. "/v2/volumes/abc". */
  path: string;
  /** Raw query string without "?" ('' if none). */
  query: string;
  /** The OpenAPI path template, e.g. "/v2/volumes/{volume_id}"; undefined when no route matched. */
  template: string | undefined;
  status: number;
  /** Epoch milliseconds when the request arrived. */
  time: number;
  durationMs: number;
  /** Parsed JSON request body (undefined if none or not JSON). */
  requestBody: unknown;
  /** The JSON body answered (undefined for 204). */
  responseBody: unknown;
  /** Which fault, if any, shaped this answer. */
  fault?: 'server_error' | 'lost_response' | 'rate_limit_burst' | 'slow';
  /** The request's User-Agent: whose request it was (dosvob sends "dosvob"). */
  userAgent?: string;
}

export interface VolumeInfo {
  id: string;
  name: string;
  region: string;
  sizeGigabytes: number;
  dropletIds: number[];
  tags: string[];
  snapshotId: string | undefined;
  createdAt: number;
  file: string;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  region: string;
  volumeId: string;
  minDiskSize: number;
  sizeGigabytes: number;
  tags: string[];
  createdAt: number;
  file: string;
}

export interface DropletInfo {
  id: number;
  name: string;
  region: string;
  size: string;
  status: 'new' | 'active';
  tags: string[];
  volumeIds: string[];
  ip: string | undefined;
  createdAt: number;
}

export interface SshKeyInfo {
  id: number;
  name: string;
  fingerprint: string;
  publicKey: string;
}

export interface ActionInfo {
  id: number;
  type: string;
  status: 'in-progress' | 'completed' | 'errored';
  dropletId: number | undefined;
  volumeId: string | undefined;
  startedAt: number;
  completedAt: number | undefined;
}

export interface LiveResources {
  droplets: DropletInfo[];
  volumes: VolumeInfo[];
  snapshots: SnapshotInfo[];
  sshKeys: SshKeyInfo[];
  pendingActions: ActionInfo[];
}

export interface ResourceSeconds {
  /** Sum over droplets of their lifetime in seconds. */
  dropletSeconds: number;
  /** The same with DigitalOcean's 60 s minimum per droplet. */
  dropletBilledSeconds: number;
  /** Sum over volumes of size_gigabytes x lifetime seconds. */
  volumeGibSeconds: number;
  /** Sum over snapshots of their size_gigabytes (stored data) x lifetime seconds. */
  snapshotGibSeconds: number;
}

export interface CreationCounts {
  droplets: number;
  volumes: number;
  snapshots: number;
  sshKeys: number;
  actions: number;
}

export interface DropletSshInfo {
  ip: string;
  port: number;
  /** OpenSSH public key line the droplet presents. */
  hostPublicKey: string;
  hostKeySource: 'user_data' | 'random';
}
