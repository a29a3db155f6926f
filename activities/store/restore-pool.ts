// The threads a restore to a file runs its blocks on (restore-worker.ts). They outlive a restore for a while, so that
// the next one does not pay a thread's start (tens of milliseconds here, a tenth of a restore of a small volume), and
// never keep the process alive while idle.
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WorkerReply, WorkerRequest } from './restore-worker.js';

/** An idle thread is stopped after this long. */
const IDLE_MS = 30_000;

export class RestoreThread {
  private readonly worker: Worker;
  private listener: ((reply: WorkerReply) => void) | undefined;
  private failure: ((err: Error) => void) | undefined;
  /** The thread died (an uncaught error or an exit): it is never reused. */
  dead = false;
  idleTimer: NodeJS.Timeout | undefined;

  constructor() {
    this.worker = spawnWorker();
    this.worker.on('message', (reply: WorkerReply) => this.listener?.(reply));
    const die = (err: Error) => {
      this.dead = true;
      this.failure?.(err);
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`a restore thread exited (code ${code})`)));
  }

  /** Where this thread's replies and its death go, for the restore that holds it. */
  attach(onReply: (reply: WorkerReply) => void, onFailure: (err: Error) => void): void {
    this.listener = onReply;
    this.failure = onFailure;
  }

  detach(): void {
    this.listener = undefined;
    this.failure = undefined;
  }

  post(req: WorkerRequest): void {
    this.worker.postMessage(req);
  }

  ref(): void {
    this.worker.ref();
  }

  unref(): void {
    this.worker.unref();
  }

  async stop(): Promise<void> {
    this.dead = true;
    this.detach();
    await this.worker.terminate();
  }
}

function spawnWorker(): Worker {
  const file = join(__dirname, `restore-worker${extname(__filename)}`);
  // execArgv [] keeps the parent's loader flags (`--import tsx`, which takes ~100 ms to start) out of the thread; run
  // from source, the thread loads tsx's CommonJS hook alone instead.
  if (file.endsWith('.ts')) {
    const code = `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(file)});`;
    return new Worker(code, { eval: true, execArgv: [] });
  }
  return new Worker(file, { execArgv: [] });
}

const idle: RestoreThread[] = [];

/** How many threads a restore uses: one per core (their work is CPU), at most 4. */
export function restoreThreadCount(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** `count` threads for one restore: idle ones first, new ones for the rest. Give them back with releaseThreads. */
export function acquireThreads(count: number): RestoreThread[] {
  const out: RestoreThread[] = [];
  while (out.length < count) {
    const t = idle.pop();
    if (t === undefined) out.push(new RestoreThread());
    else if (!t.dead) {
      clearTimeout(t.idleTimer);
      out.push(t);
    }
  }
  for (const t of out) t.ref();
  return out;
}

/** Threads whose restore is over (every reply received, the job's files closed): kept idle for a while. */
export function releaseThreads(threads: RestoreThread[]): void {
  for (const t of threads) {
    t.detach();
    if (t.dead) continue;
    t.unref();
    t.idleTimer = setTimeout(() => {
      const i = idle.indexOf(t);
      if (i >= 0) idle.splice(i, 1);
      void t.stop();
    }, IDLE_MS);
    t.idleTimer.unref();
    idle.push(t);
  }
}
