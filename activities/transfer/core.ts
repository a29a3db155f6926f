// The transfer itself, usable without Temporal: bring backups/<volume>.img up to date with a device on a droplet.
//
// One pass, no per-block round trips: each stripe (an exec channel running the python agent) gets the block hashes
// of the local image for its ranges; the agent reads the device once, in order, and answers per block "unchanged",
// "zeros" or the block's bytes. Every received block is checked against its SHA-256 and appended to the stripe's
// staging log; at the end of each stripe both sides compare a digest over the block hashes. Only then is the update
// committed and applied (see activities/store/store.ts).
import { createHash } from 'node:crypto';
import { open, mkdir, type FileHandle } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { isErrno, rethrowDiskFull } from '../store/errors.js';
import { writeSparse } from '../store/fsutil.js';
import { STORE_FORMAT_VERSION } from '../store/layout.js';
import { HASH_LEN, blockCountFor, blockLength, digestOf, hashAt, zeroHash, type Manifest } from '../store/manifest.js';
import {
  StripeLogWriter,
  countBlocks,
  firstBlock,
  newStagingId,
  planStripes,
  readJsonVersioned,
  remainingRanges,
  scanStripeLog,
  writePlan,
  type BlockRange,
  type LogRecord,
  type StagingPlan,
} from '../store/staging.js';
import { VolumeStore, type RecoveryOutcome, type StoreHooks } from '../store/store.js';
import { claimStoreKey } from '../store/identity.js';
import { exists } from '../store/fsutil.js';
import {
  ConnectionLostError,
  DiskFullError,
  IntegrityError,
  ProtocolMismatchError,
  RemoteAgentError,
  StoreFormatError,
  TransferCancelledError,
  TransferError,
  TransferStalledError,
  VolumeBusyError,
} from './errors.js';
import { pythonAgent, type RemoteAgent } from './agent.js';
import { AgentGoneError, AgentSession, type AgentHello } from './session.js';
import { LinkManager, defaultCompression, isLan, type SshConnection, type SshTarget } from './ssh.js';

/** Measured on the 2-core bench (see test/bench/RESULTS.md): 1 MiB balances per-block overhead and delta size. */
export const DEFAULT_BLOCK_SIZE = 1 << 20;
/**
 * Stripes on a link with a measurable round trip. ssh2 gives a channel a 2 MiB window and tops it up at half, so one
 * carries ~1.5 MiB per round trip (measured: 32 MB/s through the bench's 1 Gbit/30 ms link; 4 stripes: 78 MB/s).
 * 8 stripes were no faster there on 2 cores and made an incremental 50% slower (more agents to start).
 */
export const DEFAULT_STRIPES = 4;
export const DEFAULT_SEGMENT_BYTES = 64 << 20;
/** Long enough for a droplet's slowest honest pause (a lazily loaded volume's first reads), short next to the run. */
export const DEFAULT_STALL_TIMEOUT_MS = 3 * 60_000;

export type Compression = 'auto' | 'never' | 'always';

export interface ResumePoint {
  stagingId: string;
  snapshotId: string;
  /** Per stripe: every block of the stripe before this index is durably staged. */
  stripes: number[];
}

export interface TransferProgress {
  phase: 'connecting' | 'transferring' | 'committing' | 'applying' | 'done';
  snapshotId: string;
  blockCount: number;
  blocksDone: number;
  /** Bytes received from the network so far (this attempt). */
  bytesReceived: number;
  blocksChanged: number;
  resume: ResumePoint | undefined;
}

export interface SyncVolumeOptions {
  backupsDir: string;
  volumeName: string;
  /** The store to sync into (activities/store/identity.ts: `<name>` or `<name>@<region>`). Default: volumeName. */
  storeKey?: string;
  /** The volume's region and the run, recorded in the version this sync makes. */
  region?: string;
  runId?: string;
  /** Keep older versions (default true; see OpenStoreOptions.keepVersions). */
  keepVersions?: boolean;
  volumeId: string;
  /** Expected size; the device's own size wins (a resized volume is handled). */
  sizeBytes?: number;
  snapshotId: string;
  snapshotCreatedAt?: string | null;
  ssh: SshTarget;
  devicePath: string;
  /** Block size of a new store (an existing store keeps its own). */
  blockSize?: number;
  /**
   * Parallel exec channels (each has its own SSH window: needed on long fat links). Default: 1 when the round trip (TCP handshake or SSH
   * channel open, whichever is larger) is under 8 ms (one 2 MiB window then carries >= 250 MB/s, a droplet's 2 Gbit/s; more agents would only cost
   * CPU), DEFAULT_STRIPES otherwise.
   */
  stripes?: number;
  /** Stripes interleave in segments of this many bytes. */
  segmentBytes?: number;
  remoteThreads?: number;
  /**
   * 'auto' compresses a block when a 16 KiB sample of it does (zlib level 1); 'never', 'always'. Default: 'never' on a
   * LAN (round trip under 8 ms, as for stripes), where compressing costs more time than it saves (bench: 1.35x slower
   * on loopback for 5:1 text), else 'auto' (bench: 3.6x faster on 100 Mbit/s for the same text).
   */
  compression?: Compression;
  allowFormatUpgrade?: boolean;
  /** Fresh SSH connections allowed after a drop, per call. */
  maxReconnects?: number;
  /** Times one block may fail verification and be fetched again. */
  maxBlockRefetch?: number;
  checkpointIntervalMs?: number;
  checkpointBytes?: number;
  /** What the caller believes the resume point is (e.g. Temporal heartbeat details). The staging log is authoritative. */
  resumeHint?: ResumePoint;
  signal?: AbortSignal;
  onProgress?: (p: TransferProgress) => void;
  log?: (msg: string) => void;
  hooks?: StoreHooks;
  /** What runs on the droplet; default the python agent (agent.py). */
  agent?: RemoteAgent;
  /**
   * Give up the attempt (retryable TransferStalledError) when a stripe has waited this long for a single byte from the
   * droplet. Default DEFAULT_STALL_TIMEOUT_MS. SSH keepalives do not count: a hung agent behind a live connection stalls.
   */
  stallTimeoutMs?: number;
}

export interface SyncVolumeResult {
  volumeName: string;
  /** The store synced into, and the version this sync made (activities/store/versions.ts). */
  storeKey: string;
  versionId: string | undefined;
  imagePath: string;
  manifestPath: string;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  digest: string;
  snapshotId: string;
  firstSync: boolean;
  /** The previous image was found without a manifest, or changed outside dosvob, and was re-hashed locally. */
  adopted: boolean;
  /** A committed transfer from an earlier run was finished at start. */
  recovered: RecoveryOutcome;
  /** Continued a staged transfer of an earlier attempt; resumedBlocks were not fetched again. */
  resumed: boolean;
  resumedBlocks: number;
  /** Bytes the remote read from the device (this attempt). */
  bytesReadRemote: number;
  /** TCP bytes both ways (this attempt), and each way. */
  bytesOnWire: number;
  wireBytesReceived: number;
  wireBytesSent: number;
  blocksChanged: number;
  blocksZeroed: number;
  blocksUnchanged: number;
  /** All-zero blocks in the new image. */
  zeroBlocks: number;
  changedBytes: number;
  reconnects: number;
  refetchedBlocks: number;
  remoteCpuSeconds: number;
  durationMs: number;
  /** Where the time went, ms: connect + agent hello, local preparation, the stream, verify + commit + apply. */
  phasesMs: { connect: number; prepare: number; stream: number; commit: number };
}

const NOHASH = Buffer.alloc(HASH_LEN);

/** Base hash per block of the new geometry: what the local image holds there, NOHASH if unknown. */
function baseHashes(manifest: Manifest | undefined, newSize: number, blockSize: number): Buffer | undefined {
  if (!manifest) return undefined;
  const n = blockCountFor(newSize, blockSize);
  const oldSize = manifest.header.sizeBytes;
  const oldCount = manifest.header.blockCount;
  const out = Buffer.alloc(n * HASH_LEN);
  for (let i = 0; i < n; i++) {
    const len = blockLength(i, newSize, blockSize);
    if (i < oldCount) {
      if (blockLength(i, oldSize, blockSize) === len) hashAt(manifest.hashes, i).copy(out, i * HASH_LEN);
      // else: a partial last block that changed length: unknown, the remote sends it
    } else zeroHash(len).copy(out, i * HASH_LEN); // grown: the image is extended with zeros (a hole)
  }
  return out;
}

interface StripeState {
  index: number;
  ranges: BlockRange[];
  next: number;
  durableNext: number;
  log: StripeLogWriter;
  refetch: Map<number, number>;
  sinceCheckpointBytes: number;
  lastCheckpoint: number;
  done: boolean;
}

class BlockMismatch extends Error {
  constructor(readonly block: number) {
    super(`block ${block} failed verification`);
  }
}

/** Bring the local image of one volume up to date. */
export async function syncVolume(opts: SyncVolumeOptions): Promise<SyncVolumeResult> {
  const started = Date.now();
  const log = opts.log ?? (() => undefined);
  const controller = new AbortController();
  const onAbort = () => controller.abort(opts.signal?.reason);
  if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const signal = controller.signal;
  const checkCancel = () => {
    if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
  };

  await mkdir(opts.backupsDir, { recursive: true });
  const store = await VolumeStore.open({
    backupsDir: opts.backupsDir,
    volumeName: opts.storeKey ?? (await claimStoreKey(opts.backupsDir, opts.volumeName, opts.region)),
    keepVersions: opts.keepVersions,
    allowFormatUpgrade: opts.allowFormatUpgrade,
    hooks: opts.hooks,
  });
  const link = new LinkManager(opts.ssh, opts.maxReconnects ?? 3, signal);
  const agent = opts.agent ?? pythonAgent();
  const stallTimeoutMs = opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  const startAgent = async (conn: SshConnection) =>
    AgentSession.start(conn, opts.devicePath, agent, { stallTimeoutMs });
  let incoming: FileHandle | undefined;
  const stripes: StripeState[] = [];
  try {
    let progressPhase: TransferProgress['phase'] = 'connecting';
    // --- connect, learn the device's size
    const firstConn = await link.get();
    const first = await startAgent(firstConn);
    const connectedAt = Date.now();
    const hello: AgentHello = first.hello;
    // A round trip this short means a LAN: one SSH window suffices and the link is faster than compression.
    const onLan = await isLan(() => first.session.ping());
    const compression = defaultCompression(onLan, opts.compression);
    const sizeBytes = hello.size;
    if (opts.sizeBytes !== undefined && opts.sizeBytes !== sizeBytes) {
      log(
        `device ${opts.devicePath} has ${sizeBytes} bytes, the volume was expected to have ${opts.sizeBytes}; using the device's size`,
      );
    }

    // --- the base the transfer is relative to
    let adopted = false;
    if (store.manifest && (store.imageChanged || !(await exists(store.paths.image)))) {
      if (await exists(store.paths.image)) {
        log(`${store.paths.image} changed outside dosvob since its last sync: re-hashing it`);
        await store.adoptImage(store.manifest.header.blockSize, opts);
        adopted = true;
      } else {
        log(`${store.paths.image} is missing: doing a full sync`);
        store.manifest = undefined;
      }
    } else if (!store.manifest && (await exists(store.paths.image))) {
      log(`${store.paths.image} has no manifest: hashing it once to adopt it`);
      await store.adoptImage(opts.blockSize ?? DEFAULT_BLOCK_SIZE, opts);
      adopted = true;
    }
    const manifest = store.manifest;
    const blockSize = manifest?.header.blockSize ?? opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (opts.blockSize !== undefined && opts.blockSize !== blockSize) {
      log(`keeping the store's block size ${blockSize} (asked for ${opts.blockSize})`);
    }
    if (!Number.isInteger(blockSize) || blockSize < 4096 || blockSize > 64 << 20 || blockSize % 4096 !== 0) {
      throw new TransferError(
        `invalid block size ${blockSize}: a multiple of 4096 between 4 KiB and 64 MiB`,
        'BadInput',
        false,
      );
    }
    const blockCount = blockCountFor(sizeBytes, blockSize);
    const base = baseHashes(manifest, sizeBytes, blockSize);
    const baseDigest = manifest?.header.digest ?? null;

    // --- the staging area: resume a matching one, else start a new one
    const newHashes = base ? Buffer.from(base) : Buffer.alloc(blockCount * HASH_LEN);
    const counters = { changed: 0, zeroed: 0, unchanged: 0, changedBytes: 0, bytesRead: 0, refetched: 0, remoteCpu: 0 };
    let plan: StagingPlan | undefined;
    let resumedBlocks = 0;
    if (await exists(store.paths.plan)) {
      try {
        const old = await readJsonVersioned<StagingPlan>(store.paths.plan, 'staging plan');
        if (
          old.snapshotId === opts.snapshotId &&
          old.volumeId === opts.volumeId &&
          old.baseDigest === baseDigest &&
          old.sizeBytes === sizeBytes &&
          old.blockSize === blockSize &&
          !(await exists(store.paths.commit))
        ) {
          plan = old;
        } else
          log(`discarding staged transfer ${old.stagingId} (snapshot ${old.snapshotId}): it does not match this one`);
      } catch (err) {
        if (err instanceof StoreFormatError) throw err;
        log(`discarding unreadable staging plan: ${String(err)}`);
      }
    }
    if (plan) {
      const p = plan;
      for (let k = 0; k < p.stripes.length; k++) {
        const ranges = p.stripes[k]!.ranges;
        let pending: LogRecord[] = [];
        const commitRecords = (recs: LogRecord[]) => {
          for (const r of recs) applyRecordToState(r, { newHashes, base, sizeBytes, blockSize, counters });
        };
        let scan: { validLength: number; next: number | undefined };
        try {
          scan = await scanStripeLog(
            store.paths.stripeLog(k),
            { stagingId: p.stagingId, stripe: k, mode: p.mode },
            (rec) => {
              if (rec.type === 'C') {
                commitRecords(pending);
                pending = [];
              } else pending.push(rec);
            },
          );
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err;
          scan = { validLength: -1, next: undefined };
        }
        const log0 =
          scan.validLength < 0
            ? await StripeLogWriter.create(store.paths.stripeLog(k), p.stagingId, k, p.mode)
            : await StripeLogWriter.resume(store.paths.stripeLog(k), scan.validLength, p.mode);
        const next = scan.next ?? firstBlock(ranges);
        resumedBlocks += countBlocks(ranges) - countBlocks(remainingRanges(ranges, next));
        stripes.push(newStripe(k, ranges, next, log0));
      }
      if (p.mode === 'direct') incoming = await open(store.paths.incoming, 'r+');
      if (opts.resumeHint && opts.resumeHint.stagingId !== p.stagingId) {
        log(`resume hint names staging ${opts.resumeHint.stagingId}, found ${p.stagingId}: using what is on disk`);
      }
      log(`resuming staged transfer ${p.stagingId}: ${resumedBlocks} of ${blockCount} blocks already staged`);
    } else {
      if (opts.resumeHint)
        log(`resume hint ${opts.resumeHint.stagingId} has no matching staging on disk: starting over`);
      await store.discardStaging();
      await mkdir(store.paths.staging, { recursive: true });
      const nStripes = Math.max(1, Math.min(opts.stripes ?? (onLan ? 1 : DEFAULT_STRIPES), 64));
      const segmentBlocks = Math.max(1, Math.floor((opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES) / blockSize));
      plan = {
        formatVersion: STORE_FORMAT_VERSION,
        stagingId: newStagingId(),
        volumeId: opts.volumeId,
        volumeName: opts.volumeName,
        snapshotId: opts.snapshotId,
        snapshotCreatedAt: opts.snapshotCreatedAt ?? null,
        sizeBytes,
        blockSize,
        blockCount,
        baseDigest,
        mode: manifest ? 'inline' : 'direct',
        stripes: planStripes(blockCount, nStripes, segmentBlocks),
        createdAt: new Date().toISOString(),
      };
      try {
        if (plan.mode === 'direct') {
          incoming = await open(store.paths.incoming, 'w+');
          await incoming.truncate(sizeBytes);
        }
        for (let k = 0; k < plan.stripes.length; k++) {
          const ranges = plan.stripes[k]!.ranges;
          const w = await StripeLogWriter.create(store.paths.stripeLog(k), plan.stagingId, k, plan.mode);
          stripes.push(newStripe(k, ranges, firstBlock(ranges), w));
        }
        await writePlan(store.paths.plan, plan);
      } catch (err) {
        rethrowDiskFull(err, 'the staging area');
      }
    }
    const thePlan = plan;

    // --- progress
    let lastProgress = 0;
    const resumePoint = (): ResumePoint => ({
      stagingId: thePlan.stagingId,
      snapshotId: thePlan.snapshotId,
      stripes: stripes.map((s) => s.durableNext),
    });
    const blocksDone = () =>
      stripes.reduce((n, s) => n + countBlocks(s.ranges) - countBlocks(remainingRanges(s.ranges, s.next)), 0);
    const report = (force = false) => {
      if (!opts.onProgress) return;
      const now = Date.now();
      if (!force && now - lastProgress < 100) return;
      lastProgress = now;
      opts.onProgress({
        phase: progressPhase,
        snapshotId: opts.snapshotId,
        blockCount,
        blocksDone: blocksDone(),
        bytesReceived: link.wire().read,
        blocksChanged: counters.changed,
        resume: resumePoint(),
      });
    };
    progressPhase = 'transferring';
    report(true);
    const streamStartedAt = Date.now();

    const checkpointMs = opts.checkpointIntervalMs ?? 2000;
    const checkpointBytes = opts.checkpointBytes ?? 256 << 20;
    const checkpoint = async (s: StripeState) => {
      if (incoming) await incoming.sync();
      await s.log.checkpoint(s.next);
      s.durableNext = s.next;
      s.sinceCheckpointBytes = 0;
      s.lastCheckpoint = Date.now();
      report(true);
    };

    // --- run the stripes
    const maxRefetch = opts.maxBlockRefetch ?? 3;
    let firstSession: AgentSession | undefined = first.session;
    const runStripe = async (s: StripeState): Promise<void> => {
      let channelFailures = 0;
      while (!s.done) {
        checkCancel();
        const rem = remainingRanges(s.ranges, s.next);
        if (rem.length === 0) {
          await checkpoint(s);
          s.done = true;
          return;
        }
        const conn = await link.get();
        let session: AgentSession | undefined;
        try {
          if (firstSession && s.index === 0) {
            session = firstSession;
            firstSession = undefined;
          } else {
            // Inside the try: the connection may drop while this stripe's agent starts (e.g. another stripe's
            // channel broke it), which is a reason to reconnect like any other drop, not to fail the attempt.
            const started = await startAgent(conn);
            session = started.session;
            if (started.hello.size !== sizeBytes) {
              throw new TransferError(
                `device size changed during the transfer (${sizeBytes} -> ${started.hello.size})`,
                'DeviceChanged',
                true,
              );
            }
          }
          await runSession(s, session, rem);
          channelFailures = 0;
        } catch (err) {
          session?.close();
          if (err instanceof BlockMismatch) {
            const n = (s.refetch.get(err.block) ?? 0) + 1;
            s.refetch.set(err.block, n);
            counters.refetched++;
            log(`block ${err.block} failed verification (try ${n}); fetching it again`);
            if (n > maxRefetch) throw new IntegrityError(`block ${err.block} failed verification ${n} times`);
            continue;
          }
          if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
          if (err instanceof AgentGoneError || err instanceof ConnectionLostError) {
            if (!link.isAlive(conn)) {
              log(
                `SSH connection lost (${err.message}); reconnecting and resuming stripe ${s.index} at block ${s.next}`,
              );
              link.drop(conn);
            } else if (++channelFailures > 3) throw new RemoteAgentError(err.message, true);
            continue;
          }
          throw err;
        }
      }
    };

    const runSession = async (s: StripeState, session: AgentSession, rem: BlockRange[]) => {
      const hashChunks = function* (): Generator<Buffer> {
        if (!base) return;
        for (const [a, b] of rem) {
          for (let i = a; i < b; i += 32768) yield base.subarray(i * HASH_LEN, Math.min(b, i + 32768) * HASH_LEN);
        }
      };
      const sending = session.sendJob(
        {
          blockSize,
          ranges: rem,
          hashes: base !== undefined,
          threads: opts.remoteThreads ?? Math.max(2, Math.min(4, hello.cpus)),
          compress: compression,
          runCap: Math.max(1, Math.floor((256 << 20) / blockSize)),
        },
        hashChunks(),
      );
      let sendError: unknown;
      sending.catch((err: unknown) => (sendError = err));
      // Cursor over rem.
      let ri = 0;
      let pos = rem[0]![0];
      const advance = () => {
        pos++;
        if (pos >= rem[ri]![1]) {
          ri++;
          pos = ri < rem.length ? rem[ri]![0] : rem[rem.length - 1]![1];
        }
        s.next = pos;
      };
      const sessionDigest = createHash('sha256');
      for (;;) {
        const rec = await session.next();
        if (rec.type === 'E') {
          if (ri < rem.length) throw new ProtocolMismatchError(`remote agent ended its stream early at block ${pos}`);
          const mine = sessionDigest.digest();
          if (!mine.equals(rec.digest)) {
            throw new IntegrityError(
              `stripe ${s.index}: digest over block hashes disagrees with the remote's (${mine.toString('hex')} vs ${rec.digest.toString('hex')})`,
            );
          }
          counters.remoteCpu += (rec.stats.cpuUserS ?? 0) + (rec.stats.cpuSysS ?? 0);
          await checkpoint(s);
          s.done = true;
          await sending.catch(() => undefined);
          session.close();
          return;
        }
        if (ri >= rem.length) throw new ProtocolMismatchError('remote agent sent more blocks than asked for');
        if (rec.type === 'U' || rec.type === 'Z') {
          let left = rec.count;
          while (left > 0) {
            if (ri >= rem.length) throw new ProtocolMismatchError('remote agent sent more blocks than asked for');
            const take = Math.min(left, rem[ri]![1] - pos);
            const startAt = pos;
            const r: LogRecord = { type: rec.type, first: startAt, count: take };
            try {
              await s.log.run(rec.type, startAt, take);
            } catch (err) {
              rethrowDiskFull(err, 'the staging log');
            }
            applyRecordToState(r, { newHashes, base, sizeBytes, blockSize, counters });
            if (rec.type === 'Z') store.willOverwrite(startAt, take); // keep what it held for older versions, now
            for (let i = 0; i < take; i++) {
              sessionDigest.update(hashAt(newHashes, startAt + i));
              counters.bytesRead += blockLength(startAt + i, sizeBytes, blockSize);
              advance();
            }
            left -= take;
          }
        } else if (rec.type === 'D') {
          const index = pos;
          const len = blockLength(index, sizeBytes, blockSize);
          let raw: Buffer;
          try {
            raw = rec.enc === 1 ? inflateSync(rec.payload) : rec.enc === 0 ? rec.payload : Buffer.alloc(0);
          } catch {
            throw new BlockMismatch(index);
          }
          if (raw.length !== len || !createHash('sha256').update(raw).digest().equals(rec.hash))
            throw new BlockMismatch(index);
          try {
            if (incoming) await writeSparse(incoming, raw, index * blockSize);
            await s.log.data(index, rec.hash, raw);
          } catch (err) {
            rethrowDiskFull(err, 'the staging area');
          }
          applyRecordToState(
            { type: 'D', index, length: len, hash: rec.hash, dataOffset: 0 },
            { newHashes, base, sizeBytes, blockSize, counters },
          );
          store.willOverwrite(index); // keep what it held for older versions, while the stream goes on
          sessionDigest.update(rec.hash);
          counters.bytesRead += len;
          s.sinceCheckpointBytes += len;
          advance();
        }
        if (sendError)
          throw sendError instanceof Error
            ? new AgentGoneError(sendError.message)
            : new AgentGoneError(String(sendError));
        if (s.sinceCheckpointBytes >= checkpointBytes || Date.now() - s.lastCheckpoint >= checkpointMs)
          await checkpoint(s);
        report();
        if (signal.aborted) throw new TransferCancelledError(opts.signal?.reason);
      }
    };

    const abortAll = () => link.close();
    signal.addEventListener('abort', abortAll, { once: true });
    const results = await Promise.allSettled(
      stripes.map((s) =>
        runStripe(s).catch((err: unknown) => {
          // One stripe failing for good stops the others.
          abortAll();
          throw err;
        }),
      ),
    );
    signal.removeEventListener('abort', abortAll);
    firstSession?.close();
    const failures = results
      .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      .map((r) => r.reason as unknown);
    if (failures.length > 0) {
      checkCancel();
      // Prefer the most specific error (the first one is often just the others' connection being cut).
      const primary =
        failures.find((e) => !(e instanceof ConnectionLostError) && !(e instanceof AgentGoneError)) ?? failures[0];
      if (
        primary instanceof ConnectionLostError ||
        primary instanceof AgentGoneError ||
        primary instanceof TransferStalledError
      ) {
        // Only the link failed (or went silent): every record before each stripe's `next` is fully written, so make
        // them durable and let the next attempt resume exactly here instead of at the last timed checkpoint.
        for (const s of stripes) if (!s.done) await checkpoint(s).catch(() => undefined);
      }
      if (primary instanceof AgentGoneError) throw new ConnectionLostError(primary.message);
      throw primary;
    }
    checkCancel();
    const wire = link.wire();
    link.close();

    // --- every block accounted for?
    for (let i = 0; i < blockCount; i++) {
      if (hashAt(newHashes, i).equals(NOHASH)) throw new IntegrityError(`block ${i} was never received`);
    }
    const digest = digestOf(newHashes);
    let zeroBlocks = 0;
    for (let i = 0; i < blockCount; i++)
      if (hashAt(newHashes, i).equals(zeroHash(blockLength(i, sizeBytes, blockSize)))) zeroBlocks++;
    const next: Manifest = {
      header: {
        formatVersion: STORE_FORMAT_VERSION,
        hashAlgorithm: 'sha256',
        volumeId: opts.volumeId,
        volumeName: opts.volumeName,
        sizeBytes,
        blockSize,
        blockCount,
        snapshotId: opts.snapshotId,
        snapshotCreatedAt: opts.snapshotCreatedAt ?? null,
        committedAt: new Date().toISOString(),
        digest,
        zeroBlocks,
        origin: 'sync',
        region: opts.region ?? null,
        runId: opts.runId ?? null,
      },
      hashes: newHashes,
    };

    // --- commit and apply. From here on cancellation is not honoured: the update is local and idempotent.
    progressPhase = 'committing';
    report(true);
    const commitStartedAt = Date.now();
    const firstSync = thePlan.mode === 'direct';
    await store.commit(
      thePlan,
      next,
      async () => {
        for (const s of stripes) await s.log.sync();
        for (const s of stripes) await s.log.close();
        stripes.length = 0;
        if (incoming) {
          await incoming.sync();
          await incoming.close();
          incoming = undefined;
        }
      },
      counters.changedBytes,
      counters.changed + counters.zeroed > 0,
    );
    progressPhase = 'done';
    report(true);
    return {
      volumeName: opts.volumeName,
      storeKey: store.paths.volumeName,
      versionId: store.manifest?.header.versionId,
      imagePath: store.paths.image,
      manifestPath: store.paths.manifest,
      sizeBytes,
      blockSize,
      blockCount,
      digest,
      snapshotId: opts.snapshotId,
      firstSync,
      adopted,
      recovered: store.recovery,
      resumed: resumedBlocks > 0,
      resumedBlocks,
      bytesReadRemote: counters.bytesRead,
      bytesOnWire: wire.read + wire.written,
      wireBytesReceived: wire.read,
      wireBytesSent: wire.written,
      blocksChanged: counters.changed,
      blocksZeroed: counters.zeroed,
      blocksUnchanged: counters.unchanged,
      zeroBlocks,
      changedBytes: counters.changedBytes,
      reconnects: link.reconnects,
      refetchedBlocks: counters.refetched,
      remoteCpuSeconds: counters.remoteCpu,
      durationMs: Date.now() - started,
      phasesMs: {
        connect: connectedAt - started,
        prepare: streamStartedAt - connectedAt,
        stream: commitStartedAt - streamStartedAt,
        commit: Date.now() - commitStartedAt,
      },
    };
  } catch (err) {
    if (err instanceof DiskFullError) {
      // Free what the failed transfer took; the previous image and manifest are untouched.
      await closeQuietly(stripes, incoming);
      incoming = undefined;
      if (!(await exists(store.paths.commit))) await store.discardStaging().catch(() => undefined);
    }
    if (isErrno(err, 'ENOSPC')) rethrowDiskFull(err, 'the backup');
    if (opts.signal?.aborted && !(err instanceof TransferCancelledError) && !(err instanceof VolumeBusyError)) {
      throw new TransferCancelledError(opts.signal.reason);
    }
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    link.close();
    await closeQuietly(stripes, incoming);
    await store.release();
  }
}

function newStripe(index: number, ranges: BlockRange[], next: number, log: StripeLogWriter): StripeState {
  return {
    index,
    ranges,
    next,
    durableNext: next,
    log,
    refetch: new Map(),
    sinceCheckpointBytes: 0,
    lastCheckpoint: Date.now(),
    done: false,
  };
}

async function closeQuietly(stripes: StripeState[], incoming: FileHandle | undefined): Promise<void> {
  for (const s of stripes) await s.log.close().catch(() => undefined);
  stripes.length = 0;
  await incoming?.close().catch(() => undefined);
}

function applyRecordToState(
  rec: LogRecord,
  st: {
    newHashes: Buffer;
    base: Buffer | undefined;
    sizeBytes: number;
    blockSize: number;
    counters: { changed: number; zeroed: number; unchanged: number; changedBytes: number };
  },
): void {
  switch (rec.type) {
    case 'D':
      rec.hash.copy(st.newHashes, rec.index * HASH_LEN);
      st.counters.changed++;
      st.counters.changedBytes += rec.length;
      return;
    case 'Z':
      for (let i = rec.first; i < rec.first + rec.count; i++) {
        zeroHash(blockLength(i, st.sizeBytes, st.blockSize)).copy(st.newHashes, i * HASH_LEN);
      }
      st.counters.zeroed += rec.count;
      return;
    case 'U':
      if (!st.base) throw new ProtocolMismatchError('remote agent reported "unchanged" on a first sync');
      for (let i = rec.first; i < rec.first + rec.count; i++) {
        const h = hashAt(st.base, i);
        if (h.equals(NOHASH))
          throw new ProtocolMismatchError(`remote agent reported block ${i} unchanged, but it had no local hash`);
        h.copy(st.newHashes, i * HASH_LEN);
      }
      st.counters.unchanged += rec.count;
      return;
    case 'C':
      return;
  }
}
