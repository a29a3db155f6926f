// `dosvob cleanup`: delete what earlier runs left behind (resources that carry both dosvob's ephemeral tag and name
// prefix; SSH keys: the prefix), by a cleanup workflow that uses the backup's own activities and retry policies, so it
// shows in the web UI like any run. It runs under the installation's run workflow id, so never beside a backup run,
// whose own resources look exactly like leftovers. `--dry-run` only lists them, at once, from this process.
import {
  CancelledFailure,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowIdConflictPolicy,
  type WorkflowHandle,
} from '@temporalio/client';
import { hostname } from 'node:os';
import type { ResourceRef } from '../../activities/digitalocean/activities';
import type { Config } from '../../common/config';
import { existingKeySecret, installationId } from '../../common/installation';
import { dataDir } from '../../common/paths';
import type { CleanupEntry, CleanupInput, CleanupResult } from '../../workflows/cleanup';
import { DELETION_ORDER } from '../../workflows/deletion';
import { workflowUiLink } from '../connect';
import { UserError, rootApplicationFailure } from '../errors';
import { CLEANUP_WORKFLOW_TYPE } from '../ids';
import type { Output } from '../output';
import { directDigitalOcean, explainDigitalOceanFailure } from '../preflight';
import { runningRunId } from '../run-state';
import type { Session } from '../session';

export interface CleanupOutcome {
  dryRun: boolean;
  /** The cleanup run (not for a dry run). */
  workflowId: string | undefined;
  runId: string | undefined;
  leftovers: CleanupEntry[];
}

export function describeRef(r: ResourceRef): string {
  return `${r.kind.replace('_', ' ')} ${r.name || r.id}${r.region ? ` (${r.region})` : ''}`;
}

function inProgress(kind: 'backup' | 'cleanup', runId: string): UserError {
  return new UserError(
    kind === 'cleanup'
      ? `cleanup run ${runId} is in progress`
      : `backup run ${runId} is in progress: its own resources look like leftovers; wait for it, or \`dosvob cancel\` it (its cleanup then runs)`,
  );
}

async function dryRun(session: Session, config: Config, out: Output, env: NodeJS.ProcessEnv): Promise<CleanupOutcome> {
  const runId = await runningRunId(session.client, session.ids.workflowId);
  if (runId) throw inProgress('backup', runId);
  // The id the workers derive, without generating a key secret here (this may not be a worker's machine).
  const keySecret = existingKeySecret(config.keySecret, dataDir(env));
  if (!config.installationId && !keySecret) {
    throw new UserError(
      'cannot tell which leftovers are this installation\'s here: set "key_secret" (as on the workers) or "installation_id" in conf.json, or run `dosvob cleanup` without --dry-run',
    );
  }
  const id = installationId(config.installationId, {
    keySecret: keySecret ?? '',
    namespace: session.namespace,
    taskQueue: session.ids.taskQueue,
  });
  let found: ResourceRef[];
  try {
    found = await directDigitalOcean(config, id).findLeftovers({});
  } catch (err) {
    throw explainDigitalOceanFailure(err, 'listing leftovers', config.apiUrl);
  }
  const leftovers = [...found]
    .sort((a, b) => DELETION_ORDER.indexOf(a.kind) - DELETION_ORDER.indexOf(b.kind) || a.name.localeCompare(b.name))
    .map((r): CleanupEntry => ({ ...r, deleted: false }));
  if (leftovers.length === 0) out.line('no leftovers of earlier runs');
  else {
    out.line(`${leftovers.length} leftover(s) of earlier runs (not deleted: --dry-run):`);
    for (const r of leftovers) out.line(`  ${describeRef(r)}`);
  }
  const outcome: CleanupOutcome = { dryRun: true, workflowId: undefined, runId: undefined, leftovers };
  out.json(outcome);
  return outcome;
}

/** Start the cleanup run, or find the one in progress; refused while a backup run holds the workflow id. */
async function startCleanup(session: Session): Promise<WorkflowHandle> {
  const { client, ids } = session;
  const input: CleanupInput = { timings: session.input.timings };
  try {
    return await client.workflow.start(CLEANUP_WORKFLOW_TYPE, {
      taskQueue: ids.taskQueue,
      workflowId: ids.workflowId,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      args: [input],
      staticSummary: 'dosvob cleanup: delete the leftovers of earlier runs',
      staticDetails: `started by \`dosvob cleanup\` on ${hostname()}`,
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const running = await client.workflow.getHandle(ids.workflowId).describe();
    if (running.type !== CLEANUP_WORKFLOW_TYPE) throw inProgress('backup', running.runId);
    return client.workflow.getHandle(ids.workflowId, running.runId);
  }
}

export async function cleanup(
  session: Session,
  config: Config,
  out: Output,
  options: { dryRun?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<CleanupOutcome> {
  if (options.dryRun) return dryRun(session, config, out, options.env ?? process.env);
  const handle = await startCleanup(session);
  const runId = (await handle.describe()).runId;
  const link = workflowUiLink(session.uiUrl, session.namespace, handle.workflowId, runId);
  out.line(`cleanup run ${runId}`);
  if (link) out.line(`watch it at ${link}`);
  let result: CleanupResult | undefined;
  try {
    result = (await session.client.workflow.getHandle(handle.workflowId, runId).result()) as CleanupResult;
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    if (err.cause instanceof CancelledFailure) throw new UserError(`cleanup run ${runId} was cancelled`, 1);
    const details = rootApplicationFailure(err)?.details?.[0] as CleanupResult | undefined;
    if (!details || !Array.isArray(details.leftovers)) throw err;
    result = details;
  }
  const { leftovers } = result;
  if (leftovers.length === 0) out.line('no leftovers of earlier runs');
  for (const r of leftovers) {
    if (r.deleted) out.line(`  deleted ${describeRef(r)}`);
    else out.note(`dosvob: could not delete ${describeRef(r)}: ${r.error ?? 'unknown error'}`);
  }
  const outcome: CleanupOutcome = { dryRun: false, workflowId: handle.workflowId, runId, leftovers };
  out.json(outcome);
  const failed = leftovers.filter((r) => !r.deleted);
  if (failed.length > 0) throw new UserError(`${failed.length} leftover(s) could not be deleted (see above)`, 1);
  return outcome;
}
