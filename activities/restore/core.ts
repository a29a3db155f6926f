// The reverse transfer, usable without Temporal: write one kept version onto a raw device on a droplet, then read it
// back from the device and agree on a digest.
//
// Only blocks that hold data travel: the target is a new volume, which reads as zeros, so zero blocks are neither
// written nor read back. Each stripe (an exec channel running the python agent in write mode) streams its share of the
// data blocks, read from the store as they are (the saved chunks were checked before the restore began, see check.ts;
// hashing every block here as well was a quarter of this side's CPU, 0.95 s against 0.7 s for 205 MiB on loopback, and
// this side's main thread bounds the stream there). The agent checks every block against the version's hash before it
// pwrites it at its offset; a block it refuses is read again, checked, from the store: damaged there, it fails the
// restore naming it (VersionDamagedError), else (the image changed under a running sync, say) the stripe starts over
// from its last sync with every block checked here. The agent acknowledges a periodic sync only once the blocks before
// it are fsynced, so the resume point (the heartbeat's) only ever names blocks that are on the device; it then reads
// those blocks back from the device (their cached pages dropped) while later ones arrive, and reports the read-back's
// digest and the blocks that differ. Blocks not read back as written in this attempt (a bad one, an earlier attempt's,
// a broken session's) then go through a read job (the backup's own, with the version's hashes, after dropping the
// device's page cache) that must answer "unchanged" for every one; a block that does not is written once more and read
// back again, and then fails the restore for good.
import { createHash } from 'node:crypto';
import { lockChunkStoreShared, type ChunkStoreLock } from '../store/chunks.js';
import { HASH_LEN, blockLength, hashAt } from '../store/manifest.js';
import { openVersionReader, type VersionReader } from '../store/restore.js';
import { remainingRanges, type BlockRange } from '../store/staging.js';
import { pythonAgent, type RemoteAgent } from '../transfer/agent.js';
import {
  DEFAULT_SEGMENT_BYTES,
  DEFAULT_STALL_TIMEOUT_MS,
  DEFAULT_STRIPES,
  type Compression,
} from '../transfer/core.js';
import {
  BlockRefusedError,
  ConnectionLostError,
  IntegrityError,
  ProtocolMismatchError,
  RemoteAgentError,
  TransferCancelledError,
  TransferStalledError,
} from '../transfer/errors.js';
import { AgentGoneError, AgentSession, type AgentStats } from '../transfer/session.js';
import { LinkManager, defaultCompression, isLan, type SshConnection, type SshTarget } from '../transfer/ssh.js';
import { encodeBlock } from './compress.js';
import { DeviceTooSmallError, DeviceVerifyError } from './errors.js';

/** Where a later attempt can pick up: every data block of the version below `nextBlock` is durable on the device. */
export interface RestoreResumePoint {
  versionId: string;
  /** The version's digest: a point made for other content is not used. */
  digest: string;
  nextBlock: number;
}

export interface RestoreProgress {
  phase: 'connecting' | 'writing' | 'verifying' | 'done';
  /** Data blocks of the version (the only ones that travel), and those written (writing) or read back (verifying). */
  blockCount: number;
  blocksDone: number;
  /** Bytes sent to the droplet so far (this attempt). */
  bytesSent: number;
  resume: RestoreResumePoint;
}

export interface RestoreToDeviceOptions {
  backupsDir: string;
  /** The store (`<name>` or `<name>@<region>`) and the version in it. */
  storeKey: string;
  versionId: string;
  ssh: SshTarget;
  devicePath: string;
  /** Parallel exec channels. Default: 1 on a LAN (round trip under 8 ms), else DEFAULT_STRIPES. */
  stripes?: number;
  /** Data blocks are dealt to stripes in segments of this many bytes of data. */
  segmentBytes?: number;
  /** Default: never on a LAN, else auto (a block travels zlib-compressed when a 16 KiB sample of it compresses). */
  compression?: Compression;
  remoteThreads?: number;
  /** A stripe asks the agent for an fsync (its resume point) this often, or after this many bytes, whichever first. */
  syncIntervalMs?: number;
  syncBytes?: number;
  /** Fresh SSH connections allowed after a drop, per call. */
  maxReconnects?: number;
  /** No byte from the droplet (reads) or none taken by it (writes) for this long fails the attempt, retryably. */
  stallTimeoutMs?: number;
  /** Where an earlier attempt stopped (Temporal heartbeat details). */
  resumeHint?: RestoreResumePoint;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
  log?: (msg: string) => void;
  /** What runs on the droplet; default the python agent (agent.py). */
  agent?: RemoteAgent;
}

export interface RestoreToDeviceResult {
  storeKey: string;
  versionId: string;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  /** Data blocks of the version, and their bytes. */
  dataBlocks: number;
  dataBytes: number;
  /** Blocks (and their raw bytes) written in this attempt, rewrites included. */
  blocksWritten: number;
  bytesWritten: number;
  /** TCP bytes both ways (this attempt), and the payload of the blocks sent (after compression). */
  bytesOnWire: number;
  payloadBytes: number;
  compressedBlocks: number;
  /** Data blocks read back from the device and found as written (all of them, when this returns). */
  verifiedBlocks: number;
  /** Blocks that did not read back as written the first time and were written again. */
  rewrittenBlocks: number;
  /** The version's digest, which the read-back agreed with (hex). */
  digest: string;
  /** Continued from a resume point: resumedBlocks data blocks were not sent again. */
  resumed: boolean;
  resumedBlocks: number;
  deviceBytes: number;
  reconnects: number;
  stripes: number;
  compression: Compression;
  durationMs: number;
  /** Where the time went, ms: connect + hello, writing, read-back (rewrites included). */
  phasesMs: { connect: number; write: number; verify: number };
  /** CPU seconds the agents reported (user + system, sessions that finished), the droplet's share of the work. */
  remoteCpuSeconds: number;
}

interface Stripe {
  index: number;
  /** The stripe's data blocks, in order. */
  blocks: number[];
  /** Blocks sent (in this stripe's order), and those the agent has acknowledged as durable. */
  sent: number;
  durable: number;
}

interface Prepared {
  index: number;
  enc: 0 | 1;
  hash: Buffer;
  payload: Buffer;
  rawLength: number;
}

/** Blocks a stripe reads (and compresses) ahead of the one it sends. */
const READ_AHEAD = 4;
/** Sync requests a stripe may have outstanding before it waits for the oldest ack. */
const MAX_UNACKED_SYNCS = 2;

/** Write a version onto a device through the droplet's agent, fsynced and read back. */
export async function restoreVersionToDevice(opts: RestoreToDeviceOptions): Promise<RestoreToDeviceResult> {
  const started = Date.now();
  const log = opts.log ?? (() => undefined);
  if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
  const controller = new AbortController();
  const onAbort = () => controller.abort(opts.signal?.reason);
  // Cancelling cuts the connection: every pending read and write of every session ends at once.
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const signal = controller.signal;
  const checkCancel = () => {
    if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
  };
  const agent = opts.agent ?? pythonAgent();
  const stallTimeoutMs = opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  const link = new LinkManager(opts.ssh, opts.maxReconnects ?? 3, signal);
  signal.addEventListener('abort', () => link.close(), { once: true });
  let lock: ChunkStoreLock | undefined;
  let reader: VersionReader | undefined;
  const sessions = new Set<AgentSession>();
  try {
    // Shared with syncs (a restore never blocks one), exclusive for a GC sweep: no sweep takes a chunk mid-restore.
    lock = await lockChunkStoreShared(opts.backupsDir, signal);
    reader = await openVersionReader(opts.backupsDir, opts.storeKey, opts.versionId);
    const rd = reader;
    const version = rd.manifest;
    const { sizeBytes, blockSize, blockCount } = version.header;
    const digest = version.header.digest;
    const data: number[] = [];
    let dataBytes = 0;
    for (let i = 0; i < blockCount; i++) {
      if (rd.source(i) === 'zero') continue;
      data.push(i);
      dataBytes += blockLength(i, sizeBytes, blockSize);
    }

    // --- connect; the device must hold the version
    let phase: RestoreProgress['phase'] = 'connecting';
    const startSession = async (conn: SshConnection, write: boolean) => {
      const s = await AgentSession.start(conn, opts.devicePath, agent, { stallTimeoutMs, write });
      sessions.add(s.session);
      if (s.hello.size < sizeBytes) {
        s.session.close();
        throw new DeviceTooSmallError(opts.devicePath, s.hello.size, sizeBytes);
      }
      return s;
    };
    const firstConn = await link.get();
    const first = await startSession(firstConn, true);
    const deviceBytes = first.hello.size;
    const connectedAt = Date.now();
    const onLan = await isLan(() => first.session.ping());
    const compression = defaultCompression(onLan, opts.compression);
    const threads = opts.remoteThreads ?? Math.max(2, Math.min(4, first.hello.cpus));

    // --- where to start
    const hint = opts.resumeHint;
    let startAt = 0;
    if (hint && hint.versionId === opts.versionId && hint.digest === digest && hint.nextBlock > 0) {
      startAt = Math.min(hint.nextBlock, blockCount);
      log(`resuming the restore of ${opts.storeKey} ${opts.versionId} at block ${startAt}`);
    } else if (hint) log(`resume point for ${hint.versionId} (${hint.digest}) is not this version's: starting over`);
    const todo = data.filter((i) => i >= startAt);
    const resumedBlocks = data.length - todo.length;
    const nStripes = Math.max(1, Math.min(opts.stripes ?? (onLan ? 1 : DEFAULT_STRIPES), 64));
    const segment = Math.max(1, Math.floor((opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES) / blockSize));
    const stripes: Stripe[] = Array.from({ length: nStripes }, (_, index) => ({
      index,
      blocks: [],
      sent: 0,
      durable: 0,
    }));
    for (let k = 0; k < todo.length; k++) stripes[Math.floor(k / segment) % nStripes]!.blocks.push(todo[k]!);

    // --- progress and the resume point
    const counters = { blocksWritten: 0, bytesWritten: 0, payloadBytes: 0, compressed: 0, remoteCpuS: 0 };
    const agentCpu = (s: AgentStats) => (counters.remoteCpuS += (s.cpuUserS ?? 0) + (s.cpuSysS ?? 0));
    let verifyDone = 0;
    // Blocks a write session read back from the device as written (the agent does so per synced range while later
    // blocks arrive): the read job after the writing then only covers the others (an earlier attempt's, a broken
    // session's, one that read back wrong).
    const readBackOk = new Uint8Array(blockCount);
    const nextBlock = () => stripes.reduce((m, s) => Math.min(m, s.blocks[s.durable] ?? blockCount), blockCount);
    const resumePoint = (): RestoreResumePoint => ({ versionId: opts.versionId, digest, nextBlock: nextBlock() });
    let lastProgress = 0;
    const report = (force = false) => {
      if (!opts.onProgress) return;
      const now = Date.now();
      if (!force && now - lastProgress < 100) return;
      lastProgress = now;
      const sent = stripes.reduce((n, s) => n + s.sent, 0);
      opts.onProgress({
        phase,
        blockCount: data.length,
        blocksDone: phase === 'verifying' || phase === 'done' ? verifyDone : resumedBlocks + sent,
        bytesSent: link.wire().written,
        resume: resumePoint(),
      });
    };
    phase = 'writing';
    report(true);

    // --- one write session: send blocks[from..] of a list, syncing as it goes; returns when all are durable
    const syncMs = opts.syncIntervalMs ?? 1000;
    const syncBytes = opts.syncBytes ?? 32 << 20;
    const writeBlocks = async (session: AgentSession, st: Stripe): Promise<void> => {
      await session.sendWriteJob({ blockSize, sizeBytes, threads });
      const from = st.durable;
      st.sent = from;
      const sessionDigest = createHash('sha256');
      const ahead: Promise<Prepared>[] = [];
      let queued = from;
      const fill = () => {
        while (ahead.length < READ_AHEAD && queued < st.blocks.length) {
          const p = prepare(st.blocks[queued++]!);
          p.catch(() => undefined); // awaited in turn; until then its failure is not unhandled
          ahead.push(p);
        }
      };
      const prepare = async (index: number): Promise<Prepared> => {
        const len = blockLength(index, sizeBytes, blockSize);
        // A buffer per block: the channel may hold on to it until the window lets it go.
        const buf = Buffer.allocUnsafe(len);
        const b = checkedReads ? await rd.read(index, buf) : await rd.readUnchecked(index, buf);
        const { enc, payload } = await encodeBlock(b.data, compression);
        return { index, enc, hash: Buffer.from(hashAt(version.hashes, index)), payload, rawLength: len };
      };
      // Acks are read in order, one pending read at a time: only then does the reader's stall limit measure the
      // droplet rather than this side's pace.
      let acks: Promise<void> = Promise.resolve();
      const pendingAcks: Promise<void>[] = [];
      let ackError: unknown;
      const expectAck = (mark: number) => {
        acks = acks.then(async () => {
          if (ackError !== undefined) return;
          try {
            const got = await session.readAck();
            if (got !== mark) throw new ProtocolMismatchError(`remote agent acked sync ${got}, expected ${mark}`);
            st.durable = mark;
            report(true);
          } catch (err) {
            ackError = err;
          }
        });
        pendingAcks.push(acks);
      };
      let sinceSync = 0;
      let lastSync = Date.now();
      fill();
      try {
        while (ahead.length > 0) {
          if (signal.aborted) throw new TransferCancelledError(opts.signal?.reason);
          if (ackError !== undefined) throw ackError;
          const p = await ahead.shift()!;
          fill();
          await session.sendBlock(p.index, p.enc, p.hash, p.payload);
          sessionDigest.update(p.hash);
          st.sent++;
          counters.payloadBytes += p.payload.length;
          counters.bytesWritten += p.rawLength;
          counters.blocksWritten++;
          if (p.enc === 1) counters.compressed++;
          sinceSync += p.rawLength;
          if (sinceSync >= syncBytes || Date.now() - lastSync >= syncMs) {
            await session.sendSync(st.sent);
            expectAck(st.sent);
            sinceSync = 0;
            lastSync = Date.now();
            // Bound what an interrupted attempt has to send again.
            if (pendingAcks.length > MAX_UNACKED_SYNCS) await pendingAcks.shift();
          }
          report();
        }
      } catch (err) {
        // Let the reads ahead settle (a damaged block among them is reported by the one that needs it, if any).
        await Promise.allSettled(ahead);
        throw err;
      }
      await session.sendEnd();
      await acks;
      if (ackError !== undefined) throw ackError;
      const back = await session.readReadBack();
      const end = await session.next();
      if (end.type !== 'E') throw new ProtocolMismatchError(`remote agent answered ${end.type} to the end of a write`);
      agentCpu(end.stats);
      const mine = sessionDigest.digest();
      if (!mine.equals(end.digest)) {
        throw new IntegrityError(
          `stripe ${st.index}: the agent wrote other blocks than were sent (digest ${end.digest.toString('hex')}, sent ${mine.toString('hex')})`,
        );
      }
      st.durable = st.sent;
      // What the agent read back from the device: the digest over those blocks' hashes must be the version's, unless
      // it names the blocks that differ (they are then left to the read job and written again).
      const written = st.blocks.slice(from, st.sent);
      if (back.count !== written.length) {
        throw new ProtocolMismatchError(`remote agent read back ${back.count} blocks of the ${written.length} written`);
      }
      const expected = createHash('sha256');
      for (const i of written) expected.update(hashAt(version.hashes, i));
      if (back.bad.length === 0 && !expected.digest().equals(back.digest)) {
        throw new IntegrityError(
          `stripe ${st.index}: the device's read-back digest ${back.digest.toString('hex')} is not the version's, yet no block differed`,
        );
      }
      const badSet = new Set(back.bad);
      for (const i of written) {
        if (badSet.has(i) || readBackOk[i]) continue;
        readBackOk[i] = 1;
        verifyDone++;
      }
      report(true);
    };

    // --- a stripe: write sessions until its blocks are all durable; a dropped connection resumes at the last ack
    let firstSession: AgentSession | undefined = first.session;
    // Blocks go out unchecked (the agent checks them) until the agent refuses one whose store copy turns out sound.
    let checkedReads = false;
    let halted: unknown;
    const runWriter = async (st: Stripe): Promise<void> => {
      let channelFailures = 0;
      while (st.durable < st.blocks.length) {
        checkCancel();
        if (halted !== undefined) throw halted;
        const conn = await link.get();
        let session: AgentSession | undefined;
        try {
          if (firstSession && st.index === 0) {
            session = firstSession;
            firstSession = undefined;
          } else session = (await startSession(conn, true)).session;
          try {
            await writeBlocks(session, st);
          } catch (err) {
            // The agent may have said why before it stopped (a block it refused): that, not the broken pipe.
            if (err instanceof AgentGoneError || isChannelError(err)) throw await session.writeFailure(err);
            throw err;
          }
          channelFailures = 0;
        } catch (err) {
          if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
          if (err instanceof BlockRefusedError && !checkedReads) {
            // Read unchecked, so the store's copy may be the cause: checked, a block damaged everywhere throws
            // VersionDamagedError naming it; else (the image changed under a sync; the wire) send it again, checked.
            const i = err.block;
            if (!st.blocks.includes(i)) throw err;
            await rd.read(i, Buffer.allocUnsafe(blockLength(i, sizeBytes, blockSize)));
            log(
              `the agent refused block ${i} as read from the store; it reads correctly checked: sending again, checked`,
            );
            checkedReads = true;
            continue;
          }
          if (err instanceof AgentGoneError || err instanceof ConnectionLostError) {
            if (!link.isAlive(conn)) {
              log(`SSH connection lost (${err.message}); reconnecting, stripe ${st.index} resumes at its last sync`);
              link.drop(conn);
            } else if (++channelFailures > 3) throw new RemoteAgentError(err.message, true);
            continue;
          }
          throw err;
        } finally {
          if (session) {
            session.close();
            sessions.delete(session);
          }
        }
      }
    };

    const runAll = async (jobs: (() => Promise<void>)[]): Promise<void> => {
      const results = await Promise.allSettled(
        jobs.map((job) =>
          job().catch((err: unknown) => {
            // One failing for good stops the others (they must not reconnect and carry on).
            halted ??= err;
            link.close();
            throw err;
          }),
        ),
      );
      const failures = results
        .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
        .map((r) => r.reason as unknown);
      if (failures.length === 0) return;
      checkCancel();
      const primary =
        failures.find((e) => !(e instanceof ConnectionLostError) && !(e instanceof AgentGoneError)) ?? failures[0];
      if (primary instanceof AgentGoneError) throw new ConnectionLostError(primary.message);
      throw primary;
    };

    await runAll(stripes.map((st) => () => runWriter(st)));
    firstSession?.close();
    firstSession = undefined;
    checkCancel();
    const writtenAt = Date.now();

    // --- read back every data block from the device (its cache dropped first) against the version's hashes
    phase = 'verifying';
    report(true);
    const verify = async (blocks: number[]): Promise<number[]> => {
      const bad: number[] = [];
      let ranges = toRanges(blocks);
      let channelFailures = 0;
      while (ranges.length > 0) {
        checkCancel();
        const conn = await link.get();
        let session: AgentSession | undefined;
        const cursor: Cursor = { ranges, ri: 0, pos: ranges[0]![0] };
        try {
          session = (await startSession(conn, false)).session;
          await readBack(session, cursor, bad);
          ranges = [];
          channelFailures = 0;
        } catch (err) {
          if (opts.signal?.aborted) throw new TransferCancelledError(opts.signal.reason);
          if (err instanceof AgentGoneError || err instanceof ConnectionLostError) {
            // What was read back stands; the rest is asked for again.
            ranges =
              cursor.ri < cursor.ranges.length ? remainingRanges(cursor.ranges.slice(cursor.ri), cursor.pos) : [];
            if (!link.isAlive(conn)) link.drop(conn);
            else if (++channelFailures > 3) throw new RemoteAgentError(err.message, true);
            continue;
          }
          throw err;
        } finally {
          if (session) {
            session.close();
            sessions.delete(session);
          }
        }
      }
      return bad;
    };
    /** One read job over the cursor's ranges, with the version's hashes; blocks not found as written go to `bad`. */
    const readBack = async (session: AgentSession, cursor: Cursor, bad: number[]): Promise<void> => {
      const { ranges } = cursor;
      const hashChunks = function* (): Generator<Buffer> {
        for (const [a, b] of ranges) {
          for (let i = a; i < b; i += 32768) {
            yield version.hashes.subarray(i * HASH_LEN, Math.min(b, i + 32768) * HASH_LEN);
          }
        }
      };
      const sending = session.sendJob(
        {
          blockSize,
          ranges,
          hashes: true,
          threads,
          compress: 'never',
          runCap: Math.max(1, Math.floor((256 << 20) / blockSize)),
          dropCache: true,
          sizeBytes,
        },
        hashChunks(),
      );
      sending.catch(() => undefined);
      const expected = createHash('sha256');
      let badHere = 0;
      const step = (ok: boolean) => {
        expected.update(hashAt(version.hashes, cursor.pos));
        if (!ok) {
          bad.push(cursor.pos);
          badHere++;
        } else if (!readBackOk[cursor.pos]) {
          readBackOk[cursor.pos] = 1;
          verifyDone++;
        }
        cursor.pos++;
        if (cursor.pos >= ranges[cursor.ri]![1]) {
          cursor.ri++;
          if (cursor.ri < ranges.length) cursor.pos = ranges[cursor.ri]![0];
        }
      };
      for (;;) {
        const rec = await session.next();
        if (rec.type === 'E') {
          agentCpu(rec.stats);
          if (cursor.ri < ranges.length) {
            throw new ProtocolMismatchError(`remote agent ended its read-back early at block ${cursor.pos}`);
          }
          const mine = expected.digest();
          if (badHere === 0 && !mine.equals(rec.digest)) {
            throw new IntegrityError(
              `read-back of ${opts.devicePath}: every block matched, yet the digests disagree (${rec.digest.toString('hex')} vs ${mine.toString('hex')})`,
            );
          }
          return;
        }
        const n = rec.type === 'D' ? 1 : rec.count;
        for (let k = 0; k < n; k++) {
          if (cursor.ri >= ranges.length)
            throw new ProtocolMismatchError('remote agent read back more blocks than asked');
          step(rec.type === 'U');
        }
        report();
        if (signal.aborted) throw new TransferCancelledError(opts.signal?.reason);
      }
    };

    const unverified = (blocks: number[]) => blocks.filter((i) => !readBackOk[i]);
    let bad = await verify(unverified(data));
    let rewritten = 0;
    if (bad.length > 0) {
      log(`${bad.length} block(s) did not read back as written (first: ${bad[0]}); writing them once more`);
      rewritten = bad.length;
      phase = 'writing';
      const again: Stripe = { index: 0, blocks: bad, sent: 0, durable: 0 };
      await runAll([() => runWriter(again)]);
      phase = 'verifying';
      bad = await verify(unverified(bad));
      if (bad.length > 0) throw new DeviceVerifyError(opts.devicePath, bad);
    }
    checkCancel();
    phase = 'done';
    report(true);
    const wire = link.wire();
    return {
      storeKey: opts.storeKey,
      versionId: opts.versionId,
      sizeBytes,
      blockSize,
      blockCount,
      dataBlocks: data.length,
      dataBytes,
      blocksWritten: counters.blocksWritten,
      bytesWritten: counters.bytesWritten,
      bytesOnWire: wire.read + wire.written,
      payloadBytes: counters.payloadBytes,
      compressedBlocks: counters.compressed,
      verifiedBlocks: data.length,
      rewrittenBlocks: rewritten,
      digest,
      resumed: resumedBlocks > 0,
      resumedBlocks,
      deviceBytes,
      reconnects: link.reconnects,
      stripes: nStripes,
      compression,
      durationMs: Date.now() - started,
      phasesMs: { connect: connectedAt - started, write: writtenAt - connectedAt, verify: Date.now() - writtenAt },
      remoteCpuSeconds: counters.remoteCpuS,
    };
  } catch (err) {
    if (
      opts.signal?.aborted &&
      !(err instanceof TransferCancelledError) &&
      !(err instanceof DeviceTooSmallError) &&
      !(err instanceof TransferStalledError)
    ) {
      throw new TransferCancelledError(opts.signal.reason);
    }
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    for (const s of sessions) s.close();
    link.close();
    await reader?.close().catch(() => undefined);
    await lock?.release().catch(() => undefined);
  }
}

/** How far a read-back got through its ranges. */
interface Cursor {
  ranges: BlockRange[];
  ri: number;
  pos: number;
}

function toRanges(blocks: number[]): BlockRange[] {
  const out: BlockRange[] = [];
  for (const i of blocks) {
    const last = out[out.length - 1];
    if (last && last[1] === i) last[1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}

function isChannelError(err: unknown): boolean {
  return err instanceof Error && /channel closed|write after end|EPIPE|No response from server/i.test(err.message);
}
