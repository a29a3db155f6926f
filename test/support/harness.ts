// An end-to-end harness: the suite's Temporal dev server, a DigitalOcean simulator, dosvob's real
// workers (in this process) on task queues of the test's own, and a temporary backups directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Client, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { Config } from '../../common/config';
import { DEFAULT_PRICES } from '../../common/pricing';
import { DEFAULT_RETENTION_POLICY } from '../../common/retention';
import { createWorkers, installLogger, runWorkers, type WorkerSetup } from '../../worker/worker';
import type { BackupInput, BackupResult, Timings } from '../../workflows/types';
import { startSimulator, type Simulator } from '../simulator';
import type { SimulatorOptions } from '../simulator/types';
import { connect, temporalAddress, uniqueId, workflowBundle } from './temporal';

/** Waits short enough for tests to run in seconds, long enough for a 2-core machine. */
export const FAST_TIMINGS: Partial<Timings> = {
  pollIntervalMs: 50,
  apiStepTimeoutMs: 30_000,
  dropletReadyTimeoutMs: 30_000,
  transferHeartbeatTimeoutMs: 5_000,
  transferTimeoutMs: 120_000,
  retryInitialIntervalMs: 100,
  retryMaximumIntervalMs: 1_000,
};

export interface Harness {
  sim: Simulator;
  /** The Temporal server's address (host:port). */
  address: string;
  client: Client;
  native: NativeConnection;
  config: Config;
  taskQueue: string;
  backupsDir: string;
  /** Start dosvob's workers in a separate process (which a test may SIGKILL); resolves once it polls. */
  spawnWorker(): Promise<ChildProcess>;
  /** Start dosvob's workers (again, after a `stopWorkers`). */
  startWorkers(): Promise<void>;
  stopWorkers(): Promise<void>;
  start(input?: BackupInput, workflowId?: string): Promise<WorkflowHandleWithFirstExecutionRunId>;
  run(input?: BackupInput): Promise<BackupResult>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  sim?: SimulatorOptions;
  config?: Partial<Config>;
  regions?: string[];
  inProcessWorkers?: boolean;
  /** A Temporal server of the test's own (host:port); default the suite's (TEMPORAL_ADDRESS). */
  address?: string;
  /** Transfer options for the store worker (e.g. a fixed number of stripes). */
  transferOptions?: WorkerSetup['transferOptions'];
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  installLogger(process.env.DOSVOB_LOG_LEVEL ?? 'WARN');
  const sim = await startSimulator({
    actionDelayMs: 30,
    dropletActiveDelayMs: 100,
    snapshotIntervalMs: 0,
    // A test making many runs on one simulator would spend DigitalOcean's 250 a minute sooner the faster the
    // machine: no budget unless the test is about it (faults.test sets a real limit on a simulator of its own).
    rateLimitPerMinute: 1_000_000_000,
    rateLimitPerHour: 1_000_000_000,
    ...options.sim,
  });
  const address = options.address ?? temporalAddress();
  const { client, connection, native } = await connect(address);
  const backupsDir = mkdtempSync(path.join(tmpdir(), 'dosvob-backups-'));
  const taskQueue = uniqueId('dosvob-test');
  const config: Config = {
    doToken: sim.token,
    apiUrl: sim.apiUrl,
    regions: options.regions ?? ['nyc3'],
    healthchecks: undefined,
    backupsDir,
    include: ['*'],
    exclude: [],
    dropletSize: 's-1vcpu-1gb',
    dropletImage: 'debian-12-x64',
    concurrency: 2,
    blockSize: undefined,
    keySecret: randomBytes(32).toString('hex'),
    storeTaskQueue: `${taskQueue}-store`,
    sshPort: sim.options.sshPort,
    schedule: '4h',
    prices: DEFAULT_PRICES,
    retention: DEFAULT_RETENTION_POLICY,
    sourcePath: undefined,
    ...options.config,
  };
  let workers: Worker[] = [];
  let running: Promise<void> | undefined;
  const children = new Set<ChildProcess>();
  const inFlight = new Set<string>();

  const harness: Harness = {
    sim,
    address,
    client,
    native,
    config,
    taskQueue,
    backupsDir,
    async spawnWorker() {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'worker-process.ts')], {
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: address,
          DOSVOB_TEST_WORKER: JSON.stringify({ config, taskQueue, transferOptions: options.transferOptions }),
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.add(child);
      child.on('exit', () => children.delete(child));
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        child.once('exit', (code) => reject(new Error(`worker process exited with ${code}`)));
      });
      return child;
    },
    async startWorkers() {
      workers = await createWorkers({
        connection: native,
        namespace: 'default',
        config,
        taskQueue,
        workflowBundle: workflowBundle(),
        options: {
          shutdownGraceTime: '1s',
          // Which activities are in flight, for a worker that will not stop.
          interceptors: {
            activity: [
              (ctx) => ({
                inbound: {
                  async execute(input, next) {
                    const key = `${ctx.info.activityType}#${ctx.info.activityId}@${ctx.info.workflowExecution?.workflowId}`;
                    inFlight.add(key);
                    try {
                      return await next(input);
                    } finally {
                      inFlight.delete(key);
                    }
                  },
                },
              }),
            ],
          },
        },
        transferOptions: options.transferOptions,
      });
      running = runWorkers(workers);
    },
    async stopWorkers() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      const stuck = setTimeout(() => {
        for (const w of workers) {
          console.error(`# worker ${w.options.taskQueue} still stopping:`, JSON.stringify(w.getStatus()), [
            ...inFlight,
          ]);
        }
      }, 15_000);
      await running;
      clearTimeout(stuck);
      workers = [];
    },
    async start(input: BackupInput = {}, workflowId = uniqueId('backup')) {
      return client.workflow.start('backupWorkflow', {
        taskQueue,
        workflowId,
        args: [{ singletonId: workflowId, ...input, timings: { ...FAST_TIMINGS, ...input.timings } }],
      });
    },
    async run(input: BackupInput = {}) {
      const handle = await harness.start(input);
      return (await handle.result()) as BackupResult;
    },
    async close() {
      for (const child of children) child.kill('SIGKILL');
      await harness.stopWorkers();
      await connection.close();
      await native.close();
      await sim.close();
      rmSync(backupsDir, { recursive: true, force: true });
    },
  };
  if (options.inProcessWorkers !== false) await harness.startWorkers();
  return harness;
}
