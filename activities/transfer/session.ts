// One agent session: an exec channel running the python agent, its hello, its job, its record stream (a read job), or
// the blocks it writes and the syncs it acknowledges (a write job: a restore).
import type { ClientChannel } from 'ssh2';
import { PROTOCOL_VERSION, type RemoteAgent } from './agent.js';
import { BlockRefusedError, ProtocolMismatchError, RemoteAgentError, TransferStalledError } from './errors.js';
import { StreamReader } from './reader.js';
import { execChannel, type SshConnection } from './ssh.js';
import type { BlockRange } from '../store/staging.js';

export interface AgentHello {
  protocol: number;
  size: number;
  python: string;
  cpus: number;
  /** The device is open read-write (the hello asked for a write job). */
  write?: boolean;
}

export interface AgentJob {
  blockSize: number;
  ranges: BlockRange[];
  hashes: boolean;
  threads: number;
  compress: 'auto' | 'never' | 'always';
  runCap: number;
  /** Write back and drop the device's page cache before reading: a read-back must come from the device. */
  dropCache?: boolean;
  /** Blocks end here rather than at the device's end (a version on a larger device: its last block may be partial). */
  sizeBytes?: number;
}

export interface AgentWriteJob {
  blockSize: number;
  /** The version's size (at most the device's): the last block ends there. */
  sizeBytes: number;
  threads: number;
}

export interface AgentStats {
  bytesRead: number;
  dataBlocks: number;
  zeroBlocks: number;
  unchangedBlocks: number;
  payloadBytes: number;
  compressedBlocks: number;
  cpuUserS?: number;
  cpuSysS?: number;
  maxRssKiB?: number;
}

export type AgentRecord =
  | { type: 'U' | 'Z'; count: number }
  | { type: 'D'; enc: number; hash: Buffer; payload: Buffer }
  | { type: 'E'; digest: Buffer; stats: AgentStats };

export class AgentSession {
  private stderr = '';
  private exit: { code: number | null; signal?: string } | undefined;
  /** The channel closed: by then its exit status and stderr have arrived. */
  private readonly closed: Promise<void>;
  private isClosed = false;
  readonly reader: StreamReader;

  private constructor(
    readonly channel: ClientChannel,
    private readonly stallTimeoutMs: number | undefined,
  ) {
    this.reader = new StreamReader(channel, { stallTimeoutMs });
    channel.stderr.on('data', (d: Buffer) => {
      if (this.stderr.length < 65536) this.stderr += d.toString('utf8');
    });
    channel.on('exit', (code: number | null, signal?: string) => {
      this.exit = { code, signal };
    });
    channel.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      channel.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /** Start the agent and read its hello; `write` opens the device read-write, for a write job. */
  static async start(
    conn: SshConnection,
    device: string,
    agent: RemoteAgent,
    opts: { stallTimeoutMs?: number; write?: boolean } = {},
  ): Promise<{ session: AgentSession; hello: AgentHello }> {
    const channel = await execChannel(conn.client, agent.command);
    const session = new AgentSession(channel, opts.stallTimeoutMs);
    try {
      const ask = opts.write
        ? { protocol: PROTOCOL_VERSION, device, write: true }
        : { protocol: PROTOCOL_VERSION, device };
      const req = Buffer.from(JSON.stringify(ask), 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(req.length);
      await session.write(Buffer.concat([agent.code, len, req]));
      const hello = await session.readHello();
      return { session, hello };
    } catch (err) {
      session.close();
      throw err;
    }
  }

  /**
   * The next record's tag. A channel that ends instead fails as a dead agent (`during` says when); an 'X' record, the
   * agent's own error, is thrown as what it says.
   */
  private async readTag(during: string): Promise<string> {
    let tag: string;
    try {
      tag = (await this.reader.read(1)).toString('latin1');
    } catch (err) {
      if (err instanceof TransferStalledError) throw err;
      throw await this.deadAgentError(during);
    }
    if (tag === 'X') throw classifyAgentMessage(await this.readString());
    return tag;
  }

  /** The tag of a record that must be `expected` (a `what`): anything else is another protocol. */
  private async expectTag(expected: string, what: string, during: string): Promise<void> {
    const tag = await this.readTag(during);
    if (tag !== expected)
      throw new ProtocolMismatchError(`unexpected record ${JSON.stringify(tag)} instead of ${what}`);
  }

  private async readHello(): Promise<AgentHello> {
    const tag = await this.readTag('before its hello');
    if (tag !== 'H') {
      throw new ProtocolMismatchError(
        `the remote agent answered ${JSON.stringify(tag)} instead of a hello: not a dosvob agent of protocol ${PROTOCOL_VERSION}`,
      );
    }
    const hello = JSON.parse(await this.readString()) as AgentHello;
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new ProtocolMismatchError(
        `remote agent speaks protocol ${hello.protocol}, this dosvob speaks ${PROTOCOL_VERSION}`,
      );
    }
    return hello;
  }

  /** Send the job; `hashes` (if the job has them) are streamed concurrently with the caller reading records. */
  async sendJob(job: AgentJob, hashChunks: Iterable<Buffer>): Promise<void> {
    const body = Buffer.from(JSON.stringify(job), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    await this.write(Buffer.concat([len, body]));
    if (job.hashes) for (const chunk of hashChunks) await this.write(chunk);
  }

  async next(): Promise<AgentRecord> {
    let tag: string;
    try {
      tag = (await this.reader.read(1)).toString('latin1');
    } catch (err) {
      if (err instanceof TransferStalledError) throw err;
      throw await this.deadAgentError('mid-stream');
    }
    try {
      switch (tag) {
        case 'U':
        case 'Z':
          return { type: tag, count: (await this.reader.read(4)).readUInt32BE(0) };
        case 'D': {
          const head = await this.reader.read(37);
          const len = head.readUInt32BE(0);
          const enc = head[4]!;
          const hash = Buffer.from(head.subarray(5, 37));
          const payload = await this.reader.read(len);
          return { type: 'D', enc, hash, payload };
        }
        case 'E': {
          const digest = Buffer.from(await this.reader.read(32));
          const stats = JSON.parse(await this.readString()) as AgentStats;
          return { type: 'E', digest, stats };
        }
        case 'X':
          throw classifyAgentMessage(await this.readString());
        default:
          throw new ProtocolMismatchError(`unexpected record ${JSON.stringify(tag)} from the remote agent`);
      }
    } catch (err) {
      if (
        err instanceof RemoteAgentError ||
        err instanceof ProtocolMismatchError ||
        err instanceof TransferStalledError
      )
        throw err;
      throw await this.deadAgentError('mid-record');
    }
  }

  /**
   * One round trip on the started agent (a ping job it answers and then waits for the real one), ms. Unlike the TCP
   * handshake or the channel open this is measured warm, after the agent's start-up, and it crosses every middlebox
   * (the bench's link proxy completes the TCP handshake itself, at once).
   */
  async ping(): Promise<number> {
    const body = Buffer.from(JSON.stringify({ ping: true }), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const t0 = performance.now();
    await this.write(Buffer.concat([len, body]));
    await this.expectTag('P', "a ping's answer", 'answering a ping');
    return performance.now() - t0;
  }

  /**
   * The read-back of a write job, sent before its 'E': the digest over the SHA-256 of each block written as read back
   * from the device (in the order sent), how many, and those that did not read back as written.
   */
  async readReadBack(): Promise<{ digest: Buffer; count: number; bad: number[] }> {
    await this.expectTag('R', 'a read-back', 'before its read-back');
    try {
      const head = await this.reader.read(40);
      const digest = Buffer.from(head.subarray(0, 32));
      const count = head.readUInt32BE(32);
      const nBad = head.readUInt32BE(36);
      const raw = nBad > 0 ? await this.reader.read(4 * nBad) : Buffer.alloc(0);
      const bad = Array.from({ length: nBad }, (_, k) => raw.readUInt32BE(4 * k));
      return { digest, count, bad };
    } catch (err) {
      if (err instanceof TransferStalledError) throw err;
      throw await this.deadAgentError('mid-record');
    }
  }

  /** Start a write job (the session's hello asked for write). */
  async sendWriteJob(job: AgentWriteJob): Promise<void> {
    const body = Buffer.from(JSON.stringify({ write: true, ...job }), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    await this.writeOrStall(Buffer.concat([len, body]));
  }

  /** One block of a write job: `hash` is the SHA-256 of its raw bytes, `payload` raw (enc 0) or zlib (enc 1). */
  async sendBlock(index: number, enc: 0 | 1, hash: Buffer, payload: Buffer): Promise<void> {
    const head = Buffer.allocUnsafe(42);
    head.write('D', 0, 'latin1');
    head.writeUInt32BE(index, 1);
    head.writeUInt32BE(payload.length, 5);
    head[9] = enc;
    hash.copy(head, 10);
    await this.writeOrStall(head);
    await this.writeOrStall(payload);
  }

  /** Ask for an fsync of everything sent so far; readAck() returns `mark` once it is durable. */
  async sendSync(mark: number): Promise<void> {
    const rec = Buffer.allocUnsafe(5);
    rec.write('S', 0, 'latin1');
    rec.writeUInt32BE(mark, 1);
    await this.writeOrStall(rec);
  }

  /** End the write job: the agent fsyncs, drops the device's cache and answers an 'E' record (read it with next()). */
  async sendEnd(): Promise<void> {
    await this.writeOrStall(Buffer.from('E', 'latin1'));
  }

  /** The next sync acknowledgement of a write job (an 'X' from the agent throws it). */
  async readAck(): Promise<number> {
    await this.expectTag('A', 'a sync ack', 'waiting for a sync');
    try {
      return (await this.reader.read(4)).readUInt32BE(0);
    } catch (err) {
      if (err instanceof TransferStalledError) throw err;
      throw await this.deadAgentError('mid-record');
    }
  }

  /**
   * Why a write failed: the agent's own message if it sent one before it stopped (a block it refused), else what
   * became of the channel.
   */
  async writeFailure(err: unknown): Promise<Error> {
    if (err instanceof TransferStalledError) return err;
    await Promise.race([this.closed, new Promise((r) => setTimeout(r, 2000).unref())]);
    try {
      const tag = (await this.reader.read(1)).toString('latin1');
      if (tag === 'X') return classifyAgentMessage(await this.readString());
    } catch {
      // nothing readable: the channel's end explains it
    }
    return this.deadAgentError('while receiving blocks');
  }

  private async readString(): Promise<string> {
    const n = (await this.reader.read(4)).readUInt32BE(0);
    return (await this.reader.read(n)).toString('utf8');
  }

  /**
   * A write of a write job: a droplet that stops taking data for the stall limit fails it (TransferStalledError), as
   * one that stops sending does a read. (Not for a read job's hashes: the agent reads those only as fast as the client
   * takes its records, so a slow local disk would look like a stall.)
   */
  private writeOrStall(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.isClosed || this.channel.destroyed || !this.channel.writable) {
        return reject(new AgentGoneError("the agent's channel closed"));
      }
      const ok = this.channel.write(buf, (err) => (err ? reject(err) : undefined));
      if (ok) return resolve();
      const ms = this.stallTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.channel.removeListener('drain', onDrain);
        this.channel.removeListener('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(new AgentGoneError("the agent's channel closed"));
      this.channel.on('drain', onDrain);
      this.channel.on('close', onClose);
      if (ms !== undefined) timer = setTimeout(() => done(new TransferStalledError(ms)), ms);
    });
  }

  private write(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.channel.destroyed || !this.channel.writable) return reject(new Error('channel closed'));
      const ok = this.channel.write(buf, (err) => (err ? reject(err) : undefined));
      if (ok) resolve();
      else this.channel.once('drain', () => resolve());
    });
  }

  /**
   * Wait for the channel to close so the agent's stderr and exit code explain the failure: on the event, not for a
   * fixed while that a slow machine outlasts (and then reports a missing python3 as a retryable lost agent).
   */
  private async deadAgentError(when: string): Promise<Error> {
    let bound: NodeJS.Timeout | undefined;
    // A bound only for a channel that never closes (the connection hangs): the stall timeout covers that case.
    await Promise.race([this.closed, new Promise((r) => (bound = setTimeout(r, 10_000)))]);
    clearTimeout(bound);
    const stderr = this.stderr.trim();
    if (this.exit?.code === 127 || /python3?: (command )?not found|No such file or directory/i.test(stderr)) {
      return new RemoteAgentError(
        `cannot run python3 on the droplet (exit ${this.exit?.code}): ${stderr || 'no output'}`,
        false,
      );
    }
    const how = this.exit ? `exit ${this.exit.code ?? this.exit.signal}` : 'connection lost';
    return new AgentGoneError(`remote agent stopped ${when} (${how})${stderr ? `: ${stderr.slice(0, 2000)}` : ''}`);
  }

  close(): void {
    this.reader.fail(new Error('session closed'));
    this.channel.destroy();
  }
}

/** The agent's channel ended unexpectedly (typically: the connection dropped). Retryable. */
export class AgentGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentGoneError';
  }
}

function classifyAgentMessage(msg: string): Error {
  if (/protocol mismatch/i.test(msg)) return new ProtocolMismatchError(msg);
  const refused = /^block (\d+): SHA-256 mismatch/.exec(msg);
  if (refused) return new BlockRefusedError(`remote agent: ${msg}`, Number(refused[1]));
  return new RemoteAgentError(`remote agent: ${msg}`, true);
}
