// Helpers for the CLI tests: run `dosvob` in this process (fast, with the run's waits shortened) or as a real
// process (exit codes, one-line errors), against the suite's Temporal server and a harness's simulator and workers.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import type { TransferHeartbeat, TransferVolumeInput, TransferVolumeResult } from '../../activities/transfer/activity';
import { run } from '../../client/main';
import { FAST_TIMINGS, type Harness } from '../support/harness';
import { uniqueId } from '../support/temporal';

export const REPO = path.resolve(__dirname, '..', '..');
export const BIN = path.join(REPO, 'bin', 'dosvob.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment that points a dosvob CLI at a harness: its task queue, its own run id, a conf.json for its simulator. */
export function cliEnv(h: Harness, overrides: Record<string, string> = {}): Record<string, string> {
  const conf = path.join(h.backupsDir, 'conf.json');
  writeFileSync(
    conf,
    JSON.stringify({
      do_token: h.config.doToken,
      api_url: h.config.apiUrl,
      regions: h.config.regions,
      backups_dir: h.backupsDir,
      schedule: '4h',
      // For workers the CLI runs itself (the embedded mode): the simulator droplets' SSH port, and the harness's key
      // secret rather than one generated in the data directory of whoever runs the tests.
      ssh_port: h.config.sshPort,
      key_secret: h.config.keySecret,
    }),
  );
  return {
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS ?? '',
    DOSVOB_CONFIG: conf,
    DOSVOB_TASK_QUEUE: h.taskQueue,
    DOSVOB_WORKFLOW_ID: uniqueId('dosvob-backup'),
    DOSVOB_SCHEDULE_ID: uniqueId('dosvob-schedule'),
    DOSVOB_DATA_DIR: path.join(h.backupsDir, '.dosvob'),
    ...overrides,
  };
}

/** A captured stream, with what was written so far. */
function capture(): { stream: PassThrough; text(): string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

export interface InProcessRun extends Promise<CliResult> {
  /** stdout so far, while the command still runs. */
  stdoutSoFar(): string;
  /** stderr so far, while the command still runs. */
  stderrSoFar(): string;
}

/** `dosvob ARGS` in this process, with the run's waits shortened (FAST_TIMINGS) and a quick refresh. */
export function cli(args: string[], env: Record<string, string>, refreshMs = 200): InProcessRun {
  const out = capture();
  const err = capture();
  const done = run(args, {
    env: { ...process.env, ...env },
    stdout: out.stream,
    stderr: err.stream,
    input: { timings: FAST_TIMINGS },
    refreshMs,
    plainEveryMs: 500,
  }).then((code) => ({ code, stdout: out.text(), stderr: err.text() }));
  return Object.assign(done, { stdoutSoFar: () => out.text(), stderrSoFar: () => err.text() });
}

/** `dosvob ARGS` as its own process, as a user runs it. */
export async function cliProcess(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, cwd: REPO, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export function parseJson<T>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

/** Poll `fn` (100 ms between polls) until it gives a value; `timeoutMs` only bounds a failure (one loaded core). */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export type FakeMode = 'run' | 'hold' | 'fail';

/**
 * A stand-in for the store worker's transfer: it heartbeats TransferHeartbeat details like the real one, advancing
 * through the volume, and in 'hold' mode stops at a quarter until released or cancelled — a run that stays in its
 * transfer step for as long as a test needs, with live progress to show.
 */
export async function startFakeStore(h: Harness): Promise<{
  taskQueue: string;
  mode: FakeMode;
  started: number;
  release(): void;
  close(): Promise<void>;
}> {
  const taskQueue = uniqueId('dosvob-fake-store');
  const state = { mode: 'run' as FakeMode, released: false, started: 0 };
  const MiB = 1 << 20;
  const worker = await Worker.create({
    connection: h.native,
    taskQueue,
    // Every heartbeat reaches the server at once: the CLI reads them back.
    maxHeartbeatThrottleInterval: '100ms',
    shutdownGraceTime: '1s',
    activities: {
      async transferVolume(input: TransferVolumeInput): Promise<TransferVolumeResult> {
        state.started++;
        const ctx = Context.current();
        const blockCount = Math.ceil(input.sizeBytes / MiB);
        let blocksDone = 0;
        const beat = (phase: TransferHeartbeat['phase']) =>
          ctx.heartbeat({
            phase,
            snapshotId: input.snapshotId,
            blockCount,
            blocksDone,
            bytesReceived: Math.round(blocksDone * MiB * 0.1),
            blocksChanged: Math.round(blocksDone * 0.1),
            resume: undefined,
          } satisfies TransferHeartbeat);
        beat('connecting');
        if (state.mode === 'fail')
          throw ApplicationFailure.nonRetryable('the droplet closed the connection', 'TestFailure');
        for (;;) {
          const limit = state.mode === 'hold' && !state.released ? blockCount / 4 : blockCount;
          blocksDone = Math.min(limit, blocksDone + Math.ceil(blockCount / 12));
          beat('transferring');
          if (blocksDone >= blockCount) break;
          await ctx.sleep(250); // throws when the run is cancelled
        }
        return {
          volumeName: input.volumeName,
          imagePath: path.join(h.backupsDir, `${input.volumeName}.img`),
          manifestPath: path.join(h.backupsDir, `${input.volumeName}.manifest`),
          sizeBytes: input.sizeBytes,
          blockSize: MiB,
          blockCount,
          digest: '0'.repeat(64),
          bytesRead: input.sizeBytes,
          bytesOnWire: Math.round(input.sizeBytes * 0.1),
          blocksChanged: Math.round(blockCount * 0.1),
          blocksZeroed: 0,
          zeroBlocks: 0,
          blocksUnchanged: blockCount - Math.round(blockCount * 0.1),
          changedBytes: Math.round(input.sizeBytes * 0.1),
          firstSync: false,
          resumed: false,
          resumedBlocks: 0,
          adopted: false,
          reconnects: 0,
          refetchedBlocks: 0,
          durationMs: 1000,
        };
      },
    },
  });
  const running = worker.run();
  // The workflow reads the store's queue from the worker's config at each run (resolveRunSettings).
  Object.assign(h.config, { storeTaskQueue: taskQueue });
  return {
    taskQueue,
    get mode() {
      return state.mode;
    },
    set mode(m: FakeMode) {
      state.mode = m;
      state.released = false;
    },
    get started() {
      return state.started;
    },
    release() {
      state.released = true;
    },
    async close() {
      worker.shutdown();
      await running;
    },
  };
}
