// What every command that talks to Temporal needs: a client, the installation's ids, and — in the embedded mode, where
// no other process may be running dosvob's workers — workers in this very process, so a run it starts, follows or
// cancels can make progress.
import type { Client, Connection } from '@temporalio/client';
import type { WorkerOptions } from '@temporalio/worker';
import type { Config } from '../common/config';
import type { BackupInput } from '../workflows/types';
import { connectTemporal, usesExternalCluster } from './connect';
import { runIdsFromEnv, type RunIds } from './ids';

/**
 * Heartbeats are throttled to 0.8 x the heartbeat timeout (48 s for the transfer's 60 s): progress shown by
 * `dosvob sync` would lag that much, and a cancellation reaches a running activity only with a heartbeat's answer.
 */
export const CLI_WORKER_OPTIONS: Partial<WorkerOptions> = { maxHeartbeatThrottleInterval: '2s' };

export interface Session {
  client: Client;
  /** For the operator service (search attributes). */
  connection: Connection;
  namespace: string;
  ids: RunIds;
  /** Base of the web UI, when known. */
  uiUrl: string | undefined;
  /** True when Temporal is the local dev server (no TEMPORAL_ADDRESS): nothing runs when no dosvob process does. */
  embedded: boolean;
  /** Merged into the input of every workflow this process starts (tests shorten the run's waits with it). */
  input: BackupInput;
  /** How often a followed run is polled. */
  refreshMs: number;
  /** Without a terminal, how often a moving transfer prints a progress line. */
  plainEveryMs: number;
}

export interface OpenSession extends Session {
  close(): Promise<void>;
}

export interface OpenSessionOptions {
  /** Run dosvob's workers here when Temporal is the embedded dev server: the config they need. */
  workersFor?: Config;
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** How long to keep trying to reach Temporal (the SDK's connection retry); default 10 s. */
  connectTimeoutMs?: number;
}

export async function openSession(options: OpenSessionOptions = {}): Promise<OpenSession> {
  const ids = runIdsFromEnv(options.env);
  const temporal = await connectTemporal({
    log: options.log,
    env: options.env,
    connectTimeoutMs: options.connectTimeoutMs,
  });
  const abort = new AbortController();
  let workers: Promise<void> | undefined;
  try {
    if (options.workersFor && !usesExternalCluster(options.env)) {
      // Loaded only when workers run here (the embedded mode): against a cluster, `dosvob status` never loads the
      // worker, its activities, ssh2 or the DigitalOcean client (see lazy.ts for why require()).
      const { createWorkers, installLogger, runWorkers } =
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        require('../worker/worker') as typeof import('../worker/worker');
      installLogger();
      const created = await createWorkers({
        connection: await temporal.nativeConnection(),
        namespace: temporal.namespace,
        config: options.workersFor,
        taskQueue: ids.taskQueue,
        options: CLI_WORKER_OPTIONS,
      });
      workers = runWorkers(created, abort.signal);
      // A worker that dies is reported when the session closes; until then the command's own wait shows it.
      workers.catch(() => undefined);
    }
  } catch (err) {
    await temporal.close();
    throw err;
  }
  return {
    client: temporal.client,
    connection: temporal.connection,
    namespace: temporal.namespace,
    ids,
    uiUrl: temporal.uiUrl,
    embedded: !usesExternalCluster(options.env),
    input: {},
    refreshMs: 1000,
    plainEveryMs: 10_000,
    async close() {
      abort.abort();
      await workers?.catch(() => undefined);
      await temporal.close();
    },
  };
}
