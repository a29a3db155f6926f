// The backup workflow's input, progress and result: plain data, no secrets.
import type { ResourceSeconds } from '../common/pricing';
import type { PruneOutcome } from '../activities/retention/types';
import type { CheckResult } from '../activities/verify/checkers';

/** Every wait the workflow makes, so tests can run in seconds. Production defaults in DEFAULT_TIMINGS. */
export interface Timings {
  /** Between polls of droplet status, actions and SSH readiness. */
  pollIntervalMs: number;
  /** A single DigitalOcean API step (including its own polling). */
  apiStepTimeoutMs: number;
  /** A polling DigitalOcean step whose worker stops heartbeating this long is retried elsewhere. */
  apiHeartbeatTimeoutMs: number;
  /** Droplet creation to SSH answering with the pinned key. */
  dropletReadyTimeoutMs: number;
  /** A transfer that stops heartbeating this long is retried (from its last heartbeat). */
  transferHeartbeatTimeoutMs: number;
  transferTimeoutMs: number;
  /** An attempt whose droplet sends nothing this long fails (retryably, resuming): see TransferVolumeInput. */
  transferStallTimeoutMs: number;
  /**
   * The whole transfer of a volume, retries included, is bounded by attempts x this + size / transferSlowBytesPerSecond
   * (see transfer-budget.ts).
   */
  transferAttemptFloorMs: number;
  transferSlowBytesPerSecond: number;
  /** Retry backoff of DigitalOcean calls. */
  retryInitialIntervalMs: number;
  retryMaximumIntervalMs: number;
  /** Attempts of one API step (5xx, timeouts, errored actions) before the volume is reported failed. */
  apiMaximumAttempts: number;
  /** Attempts of one cleanup step: leftovers cost money, so these persist longer. */
  cleanupMaximumAttempts: number;
  transferMaximumAttempts: number;
}

export const DEFAULT_TIMINGS: Timings = {
  pollIntervalMs: 5_000,
  apiStepTimeoutMs: 10 * 60_000,
  apiHeartbeatTimeoutMs: 60_000,
  dropletReadyTimeoutMs: 10 * 60_000,
  transferHeartbeatTimeoutMs: 60_000,
  transferTimeoutMs: 24 * 3600_000,
  transferStallTimeoutMs: 3 * 60_000,
  transferAttemptFloorMs: 10 * 60_000,
  // 32 Mbit/s: a 100 GiB first sync may take 7 h, a 1 TiB one 3 days.
  transferSlowBytesPerSecond: 4 * 2 ** 20,
  retryInitialIntervalMs: 1_000,
  retryMaximumIntervalMs: 60_000,
  apiMaximumAttempts: 8,
  cleanupMaximumAttempts: 30,
  transferMaximumAttempts: 10,
};

/** What may be overridden per run; the rest comes from the worker's conf.json. */
export interface BackupInput {
  regions?: string[];
  include?: string[];
  exclude?: string[];
  timings?: Partial<Timings>;
  /** The workflow id that makes runs exclusive; default "dosvob-backup" (tests use their own). */
  singletonId?: string;
  /**
   * A run of more volumes than this backs each one up in a child workflow, so that no history grows past Temporal's
   * limits (default 40; tests lower it).
   */
  volumesPerHistory?: number;
}

export type VolumeStep =
  | 'waiting'
  // Around the snapshot of a volume with a hook (workflows/freeze.ts).
  | 'freeze'
  | 'thaw'
  | 'snapshot'
  | 'copy'
  // Snapshotted and copied ahead (backup.ts, PIPELINED_VOLUMES): waiting for a volume being transferred to detach.
  | 'waiting to attach'
  | 'attach'
  | 'transfer'
  | 'detach'
  | 'delete copy'
  | 'delete snapshot'
  // With conf.json verify: fsck, the new version's filesystem is checked (workflows/fsck-step.ts).
  | 'fsck'
  // A restore's steps (its writing is 'transfer', so progress views show it alike).
  | 'check version'
  | 'create volume'
  | 'attach to droplet'
  // A large run's volume, backed up in a child workflow of its own (its steps are the child's).
  | 'in child workflow'
  | 'done'
  | 'failed';

export interface VolumeProgress {
  name: string;
  region: string;
  step: VolumeStep;
  sizeBytes: number;
  /** The version its transfer made, once it has. */
  version?: string;
  /** With `verify: fsck`: the check's verdict in a few words (workflows/fsck-step.ts). */
  check?: string;
  /** Its snapshot was taken frozen by a hook (workflows/freeze.ts); absent: no hook. */
  frozen?: boolean;
}

/** The check of the version a run made (`verify: fsck`); `error`: the check itself could not run. */
export interface VolumeCheckOutcome {
  kind: 'fsck';
  result: CheckResult | 'error';
  /** The checker's verdict in one line (its exit code in words, or why it was unchecked). */
  summary: string;
}

export interface RunProgress {
  phase: 'planning' | 'sweeping' | 'preparing' | 'backing up' | 'restoring' | 'cleaning up' | 'finished';
  volumes: VolumeProgress[];
  /** Leftovers of earlier runs this run removed. */
  swept: string[];
  /** Resources of this run deleted so far (during the run and by its cleanup). */
  deleted: string[];
}

export interface VolumeOutcome {
  name: string;
  region: string;
  ok: boolean;
  error?: string;
  bytesRead: number;
  bytesTransferred: number;
  blocksChanged: number;
  durationMs: number;
  image?: string;
  /** The store the volume went to (`name`, or `name@region` for a second region's same-named volume). */
  storeKey?: string;
  /** The version this run made of it (`dosvob versions`, `dosvob restore --version`). */
  version?: string;
  /** With `verify: fsck`, the check of that version (workflows/fsck-step.ts). */
  check?: VolumeCheckOutcome;
  /** Its check failed: the version is kept but suspect (retention keeps the newest passing one). */
  suspect?: boolean;
  /** With a hook (conf.json `hooks`): whether its snapshot was taken frozen, and how consistent it is, in words. */
  frozen?: boolean;
  consistency?: string;
}

export interface BackupResult {
  run: string;
  /** True when another run was in progress and this start did nothing. */
  skipped?: boolean;
  volumes: VolumeOutcome[];
  swept: string[];
  deleted: string[];
  durationMs: number;
  resourceSeconds: ResourceSeconds;
  estimatedCostUsd: number;
  message: string;
  /** What pruning by the retention policy removed after the run (absent: not run, e.g. a volume failed). */
  pruning?: PruneOutcome;
}
