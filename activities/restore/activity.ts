// The reverse transfer as Temporal activities, on the store worker: check a version before anything is created, then
// write it onto the new volume's device on the restore droplet. Heartbeats carry progress and the resume point (a
// retried attempt continues there) and deliver cancellation.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ManifestDamagedError, StoreFormatError, VersionDamagedError, VersionNotFoundError } from '../store/errors.js';
import { toFailure } from '../transfer/activity.js';
import type { Compression } from '../transfer/core.js';
import { TransferCancelledError } from '../transfer/errors.js';
import { runSshTarget, type SshTarget } from '../transfer/ssh.js';
import { checkVersionForRestore, type VersionCheckResult } from './check.js';
import {
  restoreVersionToDevice,
  type RestoreProgress,
  type RestoreResumePoint,
  type RestoreToDeviceOptions,
  type RestoreToDeviceResult,
} from './core.js';

export type { RestoreToDeviceResult } from './core.js';

/** What checkVersionForRestore found: the version's geometry, its data, the saved blocks it read and checked. */
export type RestoreVersionCheck = VersionCheckResult;

/** Plain serializable input: no secrets and no key (both SSH keys are derived on the store worker, as for a backup). */
export interface RestoreToDeviceInput {
  /** '<name>' or '<name>@<region>', as the store names it. */
  storeKey: string;
  versionId: string;
  host: string;
  port: number;
  username: string;
  /** The run id the SSH keys are derived from (as TransferVolumeInput.keyRef). */
  keyRef: string;
  /** The run's client key as registered (public): a worker with another key_secret fails at once (KeySecretMismatch). */
  clientKeyFingerprint?: string;
  /** e.g. /dev/disk/by-id/scsi-0DO_Volume_<target-name>; a new volume (it must read as zeros: zero blocks are not written). */
  devicePath: string;
  /** Give up the attempt (retryably) after this long without the droplet taking or sending a byte. Default 3 min. */
  stallTimeoutMs?: number;
  /** Parallel SSH exec channels. Default: 1 on a LAN (round trip under 8 ms), else 4. */
  stripes?: number;
  /** Default: never on a LAN, else auto (blocks whose sample compresses travel zlib-compressed). */
  compression?: Compression;
}

/**
 * Heartbeat details: the same field names as TransferHeartbeat where they mean the same. blockCount and blocksDone
 * count data blocks (the only ones that travel): written so far while writing, read back while verifying.
 * bytesReceived is the bytes sent on the wire (this attempt). resume.nextBlock: every data block below it (in block
 * order) is durable on the device.
 */
export interface RestoreHeartbeat {
  phase: 'writing' | 'verifying';
  blockCount: number;
  blocksDone: number;
  bytesReceived: number;
  resume?: RestoreResumePoint;
}

export interface RestoreTransferActivities {
  /**
   * Before anything is created: every saved chunk the version needs is read and checked (the image's blocks are
   * checked while streaming). Non-retryable ApplicationFailure type 'VersionDamaged' naming the block index(es) and
   * chunk(s); 'VersionNotFound' for a version the store does not have.
   */
  checkVersionForRestore(input: { storeKey: string; versionId: string }): Promise<RestoreVersionCheck>;
  /**
   * Writes the version onto the device, fsynced and read back. Retries resume from the heartbeat's resume point. A
   * device smaller than the version: non-retryable 'DeviceTooSmall'. A block that fails its hash on the store side:
   * non-retryable 'VersionDamaged' naming it. A block the device does not give back as written, twice: non-retryable
   * 'RestoreVerifyFailed' naming it. Cancelled: CancelledFailure.
   */
  restoreToDevice(input: RestoreToDeviceInput): Promise<RestoreToDeviceResult>;
}

export interface RestoreTransferDeps {
  backupsDir: string;
  /** The installation's key_secret: the run's SSH keys are derived from it (see activities/run-keys.ts). */
  keySecret: string;
  /** Heartbeat at most this often (default: a third of the heartbeat timeout, at most 1 s). */
  heartbeatIntervalMs?: number;
  /** Extra core options (tests, bench). */
  coreOptions?: Partial<RestoreToDeviceOptions>;
}

export function createRestoreTransferActivities(deps: RestoreTransferDeps): RestoreTransferActivities {
  return {
    async checkVersionForRestore(input) {
      const ctx = Context.current();
      let details: { phase: 'checking'; chunksDone: number; chunkCount: number } | undefined;
      const stop = heartbeatTimer(ctx, deps.heartbeatIntervalMs, () => details);
      try {
        return await checkVersionForRestore(deps.backupsDir, input.storeKey, input.versionId, {
          signal: ctx.cancellationSignal,
          onProgress: (p) => (details = { phase: 'checking', ...p }),
        });
      } catch (err) {
        throw restoreFailure(err, ctx.cancellationSignal);
      } finally {
        stop();
      }
    },

    async restoreToDevice(input) {
      let ssh: SshTarget;
      try {
        ssh = runSshTarget(deps.keySecret, input);
      } catch (err) {
        throw restoreFailure(err);
      }
      const ctx = Context.current();
      const previous = asHeartbeat(ctx.info.heartbeatDetails);
      let latest: RestoreHeartbeat | undefined = previous?.resume?.versionId === input.versionId ? previous : undefined;
      const beat = heartbeatTimer(ctx, deps.heartbeatIntervalMs, () => latest);
      try {
        const result = await restoreVersionToDevice({
          ...deps.coreOptions,
          backupsDir: deps.backupsDir,
          storeKey: input.storeKey,
          versionId: input.versionId,
          ssh,
          devicePath: input.devicePath,
          stripes: input.stripes ?? deps.coreOptions?.stripes,
          compression: input.compression ?? deps.coreOptions?.compression,
          stallTimeoutMs: input.stallTimeoutMs ?? deps.coreOptions?.stallTimeoutMs,
          resumeHint: latest?.resume,
          signal: ctx.cancellationSignal,
          log: (msg) => ctx.log.info(msg, { store: input.storeKey, version: input.versionId }),
          onProgress: (p) => {
            latest = toHeartbeat(p);
            beat.maybe();
          },
        });
        beat.now();
        return result;
      } catch (err) {
        // The timer's last beat can be up to an interval old: the newest resume point, so a retry resends less.
        beat.now();
        throw restoreFailure(err, ctx.cancellationSignal);
      } finally {
        beat();
      }
    },
  };
}

function toHeartbeat(p: RestoreProgress): RestoreHeartbeat {
  return {
    phase: p.phase === 'verifying' || p.phase === 'done' ? 'verifying' : 'writing',
    blockCount: p.blockCount,
    blocksDone: p.blocksDone,
    bytesReceived: p.bytesSent,
    resume: p.resume,
  };
}

function asHeartbeat(details: unknown): RestoreHeartbeat | undefined {
  if (!details || typeof details !== 'object') return undefined;
  const d = details as Partial<RestoreHeartbeat>;
  const r = d.resume;
  const resumeOk =
    r === undefined ||
    (typeof r === 'object' &&
      typeof r.versionId === 'string' &&
      typeof r.digest === 'string' &&
      Number.isInteger(r.nextBlock));
  return typeof d.blocksDone === 'number' && resumeOk ? (d as RestoreHeartbeat) : undefined;
}

/**
 * Beats on a timer, not only on progress: heartbeats are what deliver a cancellation, and a silent droplet is bounded
 * by the core's stall limit instead. Call the returned function to stop; `.now()` beats at once, `.maybe()` if due.
 */
function heartbeatTimer(
  ctx: Context,
  intervalMs: number | undefined,
  details: () => unknown,
): (() => void) & { now(): void; maybe(): void } {
  const timeoutMs = ctx.info.heartbeatTimeoutMs;
  const interval = intervalMs ?? Math.min(1000, timeoutMs ? Math.max(100, timeoutMs / 3) : 1000);
  let last = 0;
  const now = () => {
    last = Date.now();
    ctx.heartbeat(details());
  };
  const maybe = () => {
    if (Date.now() - last >= interval) now();
  };
  const ticker = setInterval(maybe, Math.max(50, Math.floor(interval / 2)));
  now();
  return Object.assign(() => clearInterval(ticker), { now, maybe });
}

/** The failure types the restore workflow matches on; the transfer's mapping for the rest. */
function restoreFailure(err: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted && !(err instanceof ApplicationFailure) && !(err instanceof VersionDamagedError)) {
    return toFailure(new TransferCancelledError(signal.reason));
  }
  // No retry reads a version that is damaged, gone or of another format any better.
  if (
    err instanceof VersionDamagedError ||
    err instanceof VersionNotFoundError ||
    err instanceof ManifestDamagedError ||
    err instanceof StoreFormatError
  ) {
    return ApplicationFailure.create({ message: err.message, type: err.code, nonRetryable: true, cause: err });
  }
  return toFailure(err);
}
