// `dosvob sync`: start a backup run, or attach to the one already running, and follow it with a live display.
import {
  CancelledFailure,
  TerminatedFailure,
  WorkflowFailedError,
  WorkflowIdConflictPolicy,
  type WorkflowHandle,
} from '@temporalio/client';
import { hostname } from 'node:os';
import type { SourceVolume } from '../../activities/digitalocean/activities';
import type { Config } from '../../common/config';
import type { BackupResult } from '../../workflows/types';
import { formatBytes } from '../../workflows/util';
import { workflowUiLink } from '../connect';
import { ExitCode } from '../errors';
import { CLEANUP_WORKFLOW_TYPE, RESTORE_WORKFLOW_TYPE, WORKFLOW_TYPE, baseInput } from '../ids';
import type { Output } from '../output';
import { preflight, runDetails, runSummary } from '../preflight';
import { followRun } from '../follow';
import { resultOfFailure } from '../runs';
import { runningRunId } from '../run-state';
import type { Session } from '../session';

export interface SyncOptions {
  /** Start (or find) the run and return at once. */
  detach?: boolean;
  /** The volumes `preflight` found, when the caller checked already (before starting any Temporal server). */
  volumes?: SourceVolume[];
}

export interface SyncOutcome {
  exitCode: number;
  workflowId: string;
  runId: string;
  attached: boolean;
  result: BackupResult | undefined;
}

export function formatResult(result: BackupResult): string[] {
  const lines = result.volumes.map(
    (v) =>
      `  ${v.ok ? 'ok    ' : 'FAILED'} ${v.region}/${v.name}: ${v.ok ? `${formatBytes(v.bytesTransferred)} transferred, ${v.blocksChanged} blocks changed, ${(v.durationMs / 1000).toFixed(1)} s${v.version ? `, version ${v.version}` : ''}` : v.error}`,
  );
  lines.push(
    `  ${result.message}; ${(result.durationMs / 1000).toFixed(1)} s; estimated cost $${result.estimatedCostUsd.toFixed(4)}`,
  );
  return lines;
}

export async function sync(
  session: Session,
  config: Config,
  out: Output,
  options: SyncOptions = {},
): Promise<SyncOutcome> {
  const volumes = options.volumes ?? (await preflight(config));
  const { client, ids } = session;
  let before: string | undefined;
  let handle: WorkflowHandle;
  let description: Awaited<ReturnType<WorkflowHandle['describe']>>;
  for (;;) {
    before = await runningRunId(client, ids.workflowId);
    handle = await client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: ids.taskQueue,
      workflowId: ids.workflowId,
      // Attach to the run in progress (whoever started it) instead of failing: one run at a time.
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      args: [{ ...baseInput(ids), ...session.input }],
      staticSummary: runSummary(volumes, config.regions),
      staticDetails: `${runDetails(volumes)}\n\nstarted by \`dosvob sync\` on ${hostname()}`,
    });
    description = await handle.describe();
    if (description.type !== CLEANUP_WORKFLOW_TYPE && description.type !== RESTORE_WORKFLOW_TYPE) break;
    // `dosvob cleanup` or a restore holds the workflow id: a backup starts once it is done.
    const kind = description.type === RESTORE_WORKFLOW_TYPE ? 'restore' : 'cleanup';
    out.line(`a ${kind} run is in progress (${description.runId}); waiting for it to end`);
    await client.workflow
      .getHandle(ids.workflowId, description.runId)
      .result()
      .catch(() => undefined);
  }
  const runId = description.runId;
  // Ours only if it was not running before and no schedule's launcher started it in between.
  const attached = before === runId || description.parentExecution !== undefined;
  const link = workflowUiLink(session.uiUrl, session.namespace, handle.workflowId, runId);
  out.line(attached ? `a backup run is already in progress (${runId}); following it` : `started backup run ${runId}`);
  if (link) out.line(`watch it at ${link}`);
  const outcome: SyncOutcome = {
    exitCode: ExitCode.ok,
    workflowId: handle.workflowId,
    runId,
    attached,
    result: undefined,
  };
  if (options.detach) {
    if (session.embedded) {
      out.note(
        'dosvob: the local Temporal server and worker stop with this command; the run goes on at the next `dosvob sync`',
      );
    }
    out.json(outcome);
    return outcome;
  }
  const run = client.workflow.getHandle(handle.workflowId, runId);
  try {
    outcome.result = await followRun<BackupResult>(session, run, out);
    for (const line of formatResult(outcome.result)) out.line(line);
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    outcome.exitCode = ExitCode.volumeFailed;
    outcome.result = resultOfFailure(err);
    if (outcome.result) {
      for (const line of formatResult(outcome.result)) out.line(line);
    } else if (err.cause instanceof CancelledFailure) {
      out.line('the run was cancelled (its cleanup ran: `dosvob runs` lists it)');
    } else if (err.cause instanceof TerminatedFailure) {
      out.line('the run was terminated: its leftovers are removed by the next run, or by `dosvob cleanup`');
    } else {
      throw err;
    }
  }
  if (link) out.line(`run details: ${link}`);
  out.json(outcome);
  return outcome;
}
