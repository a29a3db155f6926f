// dosvob's workers. One process can poll both queues (the embedded default), or only one:
// the main queue (the workflow and DigitalOcean activities, on any machine) or the store queue
// (the transfer, only on the machine that holds the backups directory).
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  type LogLevel,
  type WorkerOptions,
} from '@temporalio/worker';
import type { Config } from '../common/config';
import { dataDir } from '../common/paths';
import { MAIN_TASK_QUEUE } from '../common/task-queues';
import { createDoApi } from '../activities/digitalocean/api';
import { createDigitalOceanActivities } from '../activities/digitalocean/activities';
import { createRestoreTargetActivities } from '../activities/digitalocean/restore-target';
import { loadOrCreateKeySecret } from '../activities/run-keys';
import { installationId } from '../common/installation';
import { createSettingsActivities } from '../activities/settings';
import { createHookActivities } from '../activities/hooks/activities';
import { createHealthcheckActivities } from '../activities/healthchecks';
import { createStoreActivities } from '../activities/store/activities';
import { createRetentionActivities } from '../activities/retention/activities';
import { createStoreOpsActivities } from '../activities/store-ops/activities';
import { createVerifyActivities } from '../activities/verify/activities';
import { createTransferActivities, type TransferActivityDeps } from '../activities/transfer/activity';
import { createRestoreTransferActivities } from '../activities/restore/activity';

/** How long one DigitalOcean request of an activity may take (conf.json `api_timeout_ms`); the CLI's checks keep 15 s. */
export const WORKER_API_TIMEOUT_MS = 60_000;

export type WorkerRole = 'all' | 'main' | 'store';

export interface WorkerSetup {
  connection: NativeConnection;
  namespace: string;
  config: Config;
  role?: WorkerRole;
  /** The main queue (workflow + DigitalOcean activities); tests isolate themselves with their own. */
  taskQueue?: string;
  /** A prebuilt workflow bundle (tests build it once); otherwise workflows/ is bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Extra worker options (tests shorten shutdown grace, etc.). */
  options?: Partial<WorkerOptions>;
  /** Extra transfer options (tests fix the number of stripes, etc.). */
  transferOptions?: TransferActivityDeps['coreOptions'];
}

let loggerInstalled = false;

/** Keep the SDK's logs to warnings unless asked: a CLI user wants progress, not internals. */
export function installLogger(level = process.env.DOSVOB_LOG_LEVEL ?? 'WARN'): void {
  if (loggerInstalled) return;
  loggerInstalled = true;
  const levels: readonly LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];
  const threshold: LogLevel = levels.includes(level as LogLevel) ? (level as LogLevel) : 'WARN';
  // The store worker hosts activities only, by design: the SDK's warning about it is noise.
  const expected = /^No workflows registered/;
  const sink = new DefaultLogger(threshold);
  Runtime.install({
    logger: new DefaultLogger(threshold, (entry) => {
      if (!expected.test(entry.message)) sink.log(entry.level, entry.message, entry.meta);
    }),
  });
}

export async function createWorkers(setup: WorkerSetup): Promise<Worker[]> {
  const { config, connection, namespace } = setup;
  const role = setup.role ?? 'all';
  const keySecret = loadOrCreateKeySecret(config.keySecret, dataDir());
  const installation = {
    installationId: installationId(config.installationId, {
      keySecret,
      namespace,
      taskQueue: setup.taskQueue ?? MAIN_TASK_QUEUE,
    }),
  };
  const workers: Worker[] = [];
  // Heartbeats carry the transfer's progress and deliver cancellation: send them within 2 s, not
  // the SDK's default of 0.8 x the heartbeat timeout.
  const shared: Partial<WorkerOptions> = {
    shutdownGraceTime: '10s',
    maxHeartbeatThrottleInterval: '2s',
    ...setup.options,
  };

  if (role === 'all' || role === 'main') {
    // A snapshot's POST can take most of a minute to answer on a busy account; a request cut off at 15 s is retried
    // (safely: the create looks its name up first) but costs the timeout and a backoff each time.
    const api = createDoApi({
      token: config.doToken,
      apiUrl: config.apiUrl,
      requestTimeoutMs: config.apiTimeoutMs ?? WORKER_API_TIMEOUT_MS,
    });
    workers.push(
      await Worker.create({
        connection,
        namespace,
        taskQueue: setup.taskQueue ?? MAIN_TASK_QUEUE,
        ...(setup.workflowBundle
          ? { workflowBundle: setup.workflowBundle }
          : { workflowsPath: require.resolve('../workflows') }),
        activities: {
          ...createSettingsActivities(config, installation),
          ...createHealthcheckActivities(config),
          ...createDigitalOceanActivities({ api, keySecret, sshPort: config.sshPort, ...installation }),
          ...createHookActivities({ hooks: config.hooks ?? [], api, doToken: config.doToken }),
          ...createRestoreTargetActivities({ api }),
        },
        ...shared,
      }),
    );
  }
  if (role === 'all' || role === 'store') {
    workers.push(
      await Worker.create({
        connection,
        namespace,
        taskQueue: config.storeTaskQueue,
        // One transfer per volume at a time is enforced by the store's lock; this bounds disk load.
        maxConcurrentActivityTaskExecutions: Math.max(1, config.concurrency),
        activities: {
          ...createTransferActivities({
            backupsDir: config.backupsDir,
            keySecret,
            coreOptions: setup.transferOptions,
          }),
          ...createRestoreTransferActivities({ backupsDir: config.backupsDir, keySecret }),
          ...createStoreActivities({ backupsDir: config.backupsDir }),
          ...createRetentionActivities({ backupsDir: config.backupsDir, policy: config.retention }),
          ...createStoreOpsActivities({ backupsDir: config.backupsDir }),
          ...createVerifyActivities({ backupsDir: config.backupsDir }),
        },
        ...shared,
      }),
    );
  }
  return workers;
}

/** Run workers until `signal` aborts (or one fails). */
export async function runWorkers(workers: Worker[], signal?: AbortSignal): Promise<void> {
  if (signal) {
    const stop = () => workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
    if (signal.aborted) stop();
    signal.addEventListener('abort', stop, { once: true });
  }
  await Promise.all(workers.map((w) => w.run()));
}
