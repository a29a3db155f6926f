// `dosvob sync`: start a backup run (or attach to the one in progress) and follow it to the end.
import { WorkflowIdConflictPolicy, type WorkflowHandle } from '@temporalio/client';
import type { Config } from '../common/config';
import { BACKUP_WORKFLOW_ID, MAIN_TASK_QUEUE } from '../common/task-queues';
import { createDoApi } from '../activities/digitalocean/api';
import { toFailure } from '../activities/digitalocean/errors';
import { createWorkers, installLogger, runWorkers } from '../worker/worker';
import type { backupWorkflow } from '../workflows';
import type { BackupResult, RunProgress } from '../workflows/types';
import { connectTemporal, workflowUiLink } from './connect';
import { UserError } from './errors';
import { formatBytes } from '../workflows/util';

export interface SyncOptions {
  detach?: boolean;
  log?: (line: string) => void;
}

/** Fail fast, before any workflow starts, on a token DigitalOcean rejects. */
async function preflight(config: Config): Promise<void> {
  try {
    await createDoApi({ token: config.doToken, apiUrl: config.apiUrl }).account.getAccount();
  } catch (err) {
    const failure = toFailure(err, 'checking the DigitalOcean token');
    if (failure.message.includes('rejected the token')) throw new UserError(failure.message);
    throw new UserError(`cannot reach the DigitalOcean API at ${config.apiUrl}: ${failure.message}`, 1);
  }
}

function progressLine(p: RunProgress): string {
  const done = p.volumes.filter((v) => v.step === 'done').length;
  const active = p.volumes
    .filter((v) => !['waiting', 'done', 'failed'].includes(v.step))
    .map((v) => `${v.name}: ${v.step}`);
  return `[${p.phase}] ${done}/${p.volumes.length} volumes done${active.length ? ` — ${active.join(', ')}` : ''}`;
}

async function follow(handle: WorkflowHandle<typeof backupWorkflow>, log: (line: string) => void): Promise<BackupResult> {
  let last = '';
  let finished = false;
  const result = handle.result().finally(() => {
    finished = true;
  });
  result.catch(() => undefined);
  while (!finished) {
    try {
      const line = progressLine(await handle.query<RunProgress>('progress'));
      if (line !== last) log(line);
      last = line;
    } catch {
      // The run may be between workflow tasks or just finished; the next poll will tell.
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
  }
  return result;
}

export function formatResult(result: BackupResult): string[] {
  const lines = result.volumes.map(
    (v) =>
      `  ${v.ok ? 'ok    ' : 'FAILED'} ${v.region}/${v.name}: ${v.ok ? `${formatBytes(v.bytesTransferred)} transferred, ${v.blocksChanged} blocks changed, ${(v.durationMs / 1000).toFixed(1)} s` : v.error}`,
  );
  lines.push(
    `  ${result.message}; ${(result.durationMs / 1000).toFixed(1)} s; estimated cost $${result.estimatedCostUsd.toFixed(4)}`,
  );
  return lines;
}

export async function sync(config: Config, options: SyncOptions = {}): Promise<BackupResult | undefined> {
  const log = options.log ?? ((line: string) => console.log(line));
  await preflight(config);
  installLogger();
  const temporal = await connectTemporal({ log });
  const abort = new AbortController();
  let workers: Promise<void> | undefined;
  try {
    if (!process.env.TEMPORAL_ADDRESS) {
      const w = await createWorkers({
        connection: await temporal.nativeConnection(),
        namespace: temporal.namespace,
        config,
      });
      workers = runWorkers(w, abort.signal);
    }
    const running = await temporal.client.workflow
      .getHandle(BACKUP_WORKFLOW_ID)
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch(() => false);
    const handle = await temporal.client.workflow.start('backupWorkflow', {
      taskQueue: MAIN_TASK_QUEUE,
      workflowId: BACKUP_WORKFLOW_ID,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      args: [{}],
      staticSummary: `dosvob backup of ${config.regions.join(', ')}`,
    });
    const description = await handle.describe();
    const link = workflowUiLink(temporal.uiUrl, temporal.namespace, handle.workflowId, description.runId);
    log(running ? `a backup run is already in progress; following it` : `started backup run ${description.runId}`);
    if (link) log(`watch it at ${link}`);
    if (options.detach) return undefined;
    const result = await follow(handle as WorkflowHandle<typeof backupWorkflow>, log);
    for (const line of formatResult(result)) log(line);
    if (link) log(`run details: ${link}`);
    return result;
  } finally {
    abort.abort();
    await workers?.catch(() => undefined);
    await temporal.close();
  }
}
