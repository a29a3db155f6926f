// The transfer as a Temporal activity: heartbeats carry progress and the resume point, a retried attempt continues
// the staged transfer, cancellation stops it with the previous image intact.
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { DiskFullError, StoreFormatError, VolumeBusyError } from '../store/errors.js';
import { TransferCancelledError, TransferError } from './errors.js';
import { runSshTarget, type SshTarget } from './ssh.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/fsutil.js';
import { claimStoreKey } from '../store/identity.js';
import { storePaths } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { markVersionFrozen } from '../store/versions.js';
import {
  syncVolume,
  type Compression,
  type ResumePoint,
  type SyncVolumeOptions,
  type SyncVolumeResult,
  type TransferProgress,
} from './core.js';

/**
 * Plain serializable input: no secrets, and no key the store worker would have to trust. Both SSH keys are derived on
 * the store worker from its key_secret and the run id (`keyRef`): the client key it logs in with and the host key the
 * droplet must present. So whoever can start workflows cannot point the store at a host of their own and overwrite an
 * image. (Inputs of runs started before this carry a `hostPublicKey`: it is ignored.)
 */
export interface TransferVolumeInput {
  volumeName: string;
  volumeId: string;
  /**
   * The volume's region: names are unique per region only, so a second region's same-named volume gets its own store
   * (`<name>@<region>`). Absent in inputs of older runs: the store named after the volume.
   */
  region?: string;
  sizeBytes: number;
  snapshotId: string;
  snapshotCreatedAt: string;
  host: string;
  port: number;
  username: string;
  /** The run id the SSH keys are derived from. */
  keyRef: string;
  /**
   * The run's client key as registered on the account (MD5 colon-hex, as DigitalOcean reports it; public). A store
   * worker whose key_secret derives another key fails at once, non-retryably, instead of with an SSH error. Absent in
   * inputs of older runs: then only the host key check applies.
   */
  clientKeyFingerprint?: string;
  /** Give up the attempt (retryably) after this long without a byte from the droplet. Default 3 minutes. */
  stallTimeoutMs?: number;
  /** e.g. /dev/disk/by-id/scsi-0DO_Volume_<name> */
  devicePath: string;
  /** Block size for a new backup (an existing one keeps its own). Default 1 MiB. */
  blockSize?: number;
  /** Parallel SSH exec channels. Default: 1 on a LAN (round trip under 8 ms), else 4. */
  stripes?: number;
  /** Default: never on a LAN, else auto (blocks whose sample compresses travel zlib-compressed). */
  compression?: Compression;
  /** Consent to convert a backup directory written by another store format version. */
  allowFormatUpgrade?: boolean;
  /** Its snapshot was taken with the filesystem frozen by a hook (workflows/freeze.ts): the version records it. */
  frozen?: boolean;
}

export interface TransferVolumeResult {
  volumeName: string;
  /** The store (`<name>` or `<name>@<region>`) and the version made; absent in results of older runs. */
  storeKey?: string;
  versionId?: string;
  imagePath: string;
  manifestPath: string;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  /** SHA-256 over all block hashes, as recorded in the manifest. */
  digest: string;
  /** Bytes the droplet read from the device in this attempt. */
  bytesRead: number;
  /** TCP bytes both ways in this attempt. */
  bytesOnWire: number;
  blocksChanged: number;
  /** Blocks that became all-zero (holes punched). */
  blocksZeroed: number;
  /** All-zero blocks in the new image. */
  zeroBlocks: number;
  blocksUnchanged: number;
  changedBytes: number;
  firstSync: boolean;
  resumed: boolean;
  resumedBlocks: number;
  adopted: boolean;
  reconnects: number;
  refetchedBlocks: number;
  durationMs: number;
}

/** What every heartbeat carries; a retried attempt reads it back from `info.heartbeatDetails`. */
export interface TransferHeartbeat {
  phase: TransferProgress['phase'];
  snapshotId: string;
  blockCount: number;
  blocksDone: number;
  bytesReceived: number;
  blocksChanged: number;
  resume: ResumePoint | undefined;
}

export interface TransferActivityDeps {
  backupsDir: string;
  /** The installation's key_secret: the run's SSH keys are derived from it (see activities/run-keys.ts). */
  keySecret: string;
  /** Heartbeat at most this often (default: a third of the heartbeat timeout, at most 1 s). */
  heartbeatIntervalMs?: number;
  /** Extra core options (tests, bench). */
  coreOptions?: Partial<SyncVolumeOptions>;
}

export interface TransferActivities {
  transferVolume(input: TransferVolumeInput): Promise<TransferVolumeResult>;
}

export function createTransferActivities(deps: TransferActivityDeps): TransferActivities {
  return {
    async transferVolume(input: TransferVolumeInput): Promise<TransferVolumeResult> {
      let ssh: SshTarget;
      try {
        ssh = runSshTarget(deps.keySecret, input);
      } catch (err) {
        throw toFailure(err);
      }
      const storeKey = await claimStoreKey(deps.backupsDir, input.volumeName, input.region);
      const keyed = { ...input, volumeName: storeKey };
      // An attempt whose completion was lost (worker died, server restarted) already committed this
      // snapshot: report what it did instead of reading the whole device again.
      const done = await committedResult(deps.backupsDir, keyed);
      if (done) return done;
      const ctx = Context.current();
      const previous = asHeartbeat(ctx.info.heartbeatDetails);
      const timeoutMs = ctx.info.heartbeatTimeoutMs;
      const interval = deps.heartbeatIntervalMs ?? Math.min(1000, timeoutMs ? Math.max(100, timeoutMs / 3) : 1000);
      let latest: TransferHeartbeat | undefined =
        previous && previous.snapshotId === input.snapshotId ? previous : undefined;
      let lastBeat = 0;
      // The timer keeps beating while no byte moves (local phases: recovery, adoption, apply; and a stall), because
      // heartbeats are what deliver a cancellation. A silent droplet is bounded by the core's stall limit instead,
      // which fails the attempt; the details only advance with progress.
      const beat = () => {
        lastBeat = Date.now();
        ctx.heartbeat(latest);
      };
      const ticker = setInterval(
        () => {
          if (Date.now() - lastBeat >= interval) beat();
        },
        Math.max(50, Math.floor(interval / 2)),
      );
      beat();
      try {
        const result = await syncVolume({
          ...deps.coreOptions,
          backupsDir: deps.backupsDir,
          volumeName: input.volumeName,
          storeKey,
          region: input.region,
          runId: input.keyRef,
          volumeId: input.volumeId,
          sizeBytes: input.sizeBytes,
          snapshotId: input.snapshotId,
          snapshotCreatedAt: input.snapshotCreatedAt,
          devicePath: input.devicePath,
          blockSize: input.blockSize,
          stripes: input.stripes ?? deps.coreOptions?.stripes,
          compression: input.compression ?? deps.coreOptions?.compression,
          allowFormatUpgrade: input.allowFormatUpgrade,
          ssh,
          stallTimeoutMs: input.stallTimeoutMs ?? deps.coreOptions?.stallTimeoutMs,
          resumeHint: latest?.resume,
          signal: ctx.cancellationSignal,
          log: (msg) => ctx.log.info(msg, { volume: input.volumeName }),
          onProgress: (p) => {
            latest = { ...p };
            if (Date.now() - lastBeat >= interval) beat();
          },
        });
        beat();
        const outcome = toResult(result);
        if (input.frozen && outcome.versionId) await markVersionFrozen(deps.backupsDir, storeKey, outcome.versionId);
        await recordResult(deps.backupsDir, keyed, outcome);
        return outcome;
      } catch (err) {
        // The timer's last beat can be up to an interval old: send the newest resume point, so the retry need not
        // fetch again what this attempt already made durable.
        beat();
        throw toFailure(err);
      } finally {
        clearInterval(ticker);
      }
    },
  };
}

/** The last committed sync's result, next to the manifest (dosvob's data, not the user's image). */
function resultPath(backupsDir: string, volumeName: string): string {
  return join(storePaths(backupsDir, volumeName).dataDir, 'last-sync.json');
}

async function recordResult(backupsDir: string, input: TransferVolumeInput, result: TransferVolumeResult) {
  const record = { snapshotId: input.snapshotId, result };
  await writeFileAtomic(resultPath(backupsDir, input.volumeName), `${JSON.stringify(record)}\n`);
}

async function committedResult(
  backupsDir: string,
  input: TransferVolumeInput,
): Promise<TransferVolumeResult | undefined> {
  try {
    const record = JSON.parse(await readFile(resultPath(backupsDir, input.volumeName), 'utf8')) as {
      snapshotId?: string;
      result?: TransferVolumeResult;
    };
    if (record.snapshotId !== input.snapshotId || !record.result) return undefined;
    const manifest = await readManifest(storePaths(backupsDir, input.volumeName).manifest);
    const same = manifest.header.snapshotId === input.snapshotId && manifest.header.digest === record.result.digest;
    return same ? record.result : undefined;
  } catch {
    return undefined;
  }
}

function asHeartbeat(details: unknown): TransferHeartbeat | undefined {
  if (!details || typeof details !== 'object') return undefined;
  const d = details as Partial<TransferHeartbeat>;
  return typeof d.snapshotId === 'string' && typeof d.blocksDone === 'number' ? (d as TransferHeartbeat) : undefined;
}

function toResult(r: SyncVolumeResult): TransferVolumeResult {
  return {
    volumeName: r.volumeName,
    storeKey: r.storeKey,
    ...(r.versionId !== undefined ? { versionId: r.versionId } : {}),
    imagePath: r.imagePath,
    manifestPath: r.manifestPath,
    sizeBytes: r.sizeBytes,
    blockSize: r.blockSize,
    blockCount: r.blockCount,
    digest: r.digest,
    bytesRead: r.bytesReadRemote,
    bytesOnWire: r.bytesOnWire,
    blocksChanged: r.blocksChanged,
    blocksZeroed: r.blocksZeroed,
    zeroBlocks: r.zeroBlocks,
    blocksUnchanged: r.blocksUnchanged,
    changedBytes: r.changedBytes,
    firstSync: r.firstSync,
    resumed: r.resumed,
    resumedBlocks: r.resumedBlocks,
    adopted: r.adopted,
    reconnects: r.reconnects,
    refetchedBlocks: r.refetchedBlocks,
    durationMs: r.durationMs,
  };
}

/** Map errors to ApplicationFailures whose type the workflow can match on. */
export function toFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof TransferCancelledError) {
    // Temporal reports a CancelledFailure thrown from a cancelled activity as a cancellation.
    return new CancelledFailure(err.message);
  }
  if (err instanceof TransferError) {
    return ApplicationFailure.create({
      message: err.message,
      type: err.code,
      nonRetryable: !err.retryable,
      cause: err,
    });
  }
  if (err instanceof DiskFullError || err instanceof StoreFormatError) {
    return ApplicationFailure.create({ message: err.message, type: err.code, nonRetryable: true, cause: err });
  }
  if (err instanceof VolumeBusyError) {
    return ApplicationFailure.create({ message: err.message, type: err.code, nonRetryable: false, cause: err });
  }
  return err;
}
