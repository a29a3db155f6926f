// Pull-style reader over a stream: `await read(n)` returns exactly n bytes. Pauses the stream above a high-water mark
// so a slow disk pushes back on the SSH channel (and through its window, on the remote). A read that waits longer than
// the stall limit for the next byte fails: a hung remote must not hold the run (and its droplet) for days.
import type { Readable } from 'node:stream';
import { TransferStalledError } from './errors.js';

export interface StreamReaderOptions {
  /** Pause the stream when more than this is buffered and unread. */
  highWater?: number;
  /**
   * Fail a read that has waited this long without a single byte arriving. Only time spent waiting on the stream counts:
   * while the consumer is busy (a slow local disk), nothing is measured.
   */
  stallTimeoutMs?: number;
}

export class StreamEndedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StreamEndedError';
  }
}

export class StreamReader {
  private chunks: Buffer[] = [];
  private head = 0; // offset into chunks[0]
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private paused = false;
  /** Bytes the pending read needs (0: none pending). */
  private wanted = 0;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly highWater: number;
  private readonly stallTimeoutMs: number | undefined;

  constructor(
    private readonly stream: Readable,
    options: StreamReaderOptions = {},
  ) {
    this.highWater = options.highWater ?? 8 << 20;
    this.stallTimeoutMs = options.stallTimeoutMs;
    stream.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered > Math.max(this.highWater, this.wanted) && !this.paused) {
        this.paused = true;
        stream.pause();
      }
      if (this.stallTimer) this.armStallTimer();
      this.notify();
    });
    stream.on('end', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('close', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('error', (err: Error) => {
      this.failure = err;
      this.notify();
    });
  }

  /** Stop waiting: pending and future reads fail with `err`. */
  fail(err: Error): void {
    this.failure ??= err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private armStallTimer(): void {
    const ms = this.stallTimeoutMs;
    if (ms === undefined) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.fail(new TransferStalledError(ms)), ms);
  }

  async read(n: number): Promise<Buffer> {
    if (this.buffered < n) {
      this.wanted = n;
      try {
        while (this.buffered < n) {
          if (this.failure) throw this.failure;
          if (this.ended) throw new StreamEndedError(`stream ended (${this.buffered} of ${n} bytes available)`);
          // Waiting for more than is buffered: the high-water pause must not hold back what this read needs.
          if (this.paused) {
            this.paused = false;
            this.stream.resume();
          }
          if (!this.stallTimer) this.armStallTimer();
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
      } finally {
        this.wanted = 0;
        clearTimeout(this.stallTimer);
        this.stallTimer = undefined;
      }
    }
    if (this.failure) throw this.failure;
    const out = this.take(n);
    if (this.paused && this.buffered < this.highWater / 2) {
      this.paused = false;
      this.stream.resume();
    }
    return out;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.head += n;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length - this.head, n - off);
      c.copy(out, off, this.head, this.head + take);
      off += take;
      this.head += take;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.buffered -= n;
    return out;
  }
}
