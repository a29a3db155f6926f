// `dosvob restore VOLUME [--at TIME | --version ID] --to-volume NAME [--region R] [--attach-to DROPLET] [--detach]`:
// a restore run (workflows/restore.ts) writes the version onto a new DigitalOcean volume, verifies it and leaves it
// detached or attached to DROPLET. It runs under the installation's run workflow id, so it waits for no backup and
// no backup runs beside it: a run in progress is a clear refusal, not a queue.
import {
  CancelledFailure,
  TerminatedFailure,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowIdConflictPolicy,
} from '@temporalio/client';
import { hostname } from 'node:os';
import type { Config } from '../../common/config';
import type { RestoreFailureDetails, RestoreInput, RestoreResult } from '../../workflows/restore';
import { formatBytes } from '../../workflows/util';
import { workflowUiLink } from '../connect';
import { ExitCode, UserError, rootApplicationFailure } from '../errors';
import { followRun } from '../follow';
import { RESTORE_WORKFLOW_TYPE } from '../ids';
import type { Output } from '../output';
import { directDigitalOcean, explainDigitalOceanFailure } from '../preflight';
import type { Session } from '../session';
import { parseAt } from './restore';

export interface RestoreVolumeOptions {
  volume: string;
  at?: string;
  version?: string;
  toVolume: string;
  region?: string;
  attachTo?: string;
  keepPartial?: boolean;
  detach?: boolean;
}

export interface RestoreVolumeOutcome {
  workflowId: string;
  runId: string;
  result: RestoreResult | undefined;
}

export function describeRestoreResult(r: RestoreResult): string[] {
  return [
    `  ${r.message}`,
    `  ${r.target.sizeGigabytes} GiB volume ${r.target.volumeId}; ${formatBytes(r.bytesWritten)} written ` +
      `(${formatBytes(r.bytesOnWire)} on the wire), ${r.verifiedBlocks} blocks read back and checked, digest ${r.digest}`,
    `  ${(r.durationMs / 1000).toFixed(1)} s; estimated cost $${r.estimatedCostUsd.toFixed(4)}`,
  ];
}

export async function restoreToVolume(
  session: Session,
  config: Config,
  out: Output,
  options: RestoreVolumeOptions,
): Promise<RestoreVolumeOutcome> {
  if (options.at !== undefined && options.version !== undefined) {
    throw new UserError('give --at TIME or --version ID, not both', ExitCode.badInput);
  }
  const at = options.at === undefined ? undefined : parseAt(options.at);
  // A wrong token is one line and exit code 2 now, not a failed run.
  try {
    await directDigitalOcean(config).checkAccess();
  } catch (err) {
    throw explainDigitalOceanFailure(err, 'checking the DigitalOcean token', config.apiUrl);
  }
  const { client, ids } = session;
  const input: RestoreInput = {
    volume: options.volume,
    versionId: options.version,
    at,
    toVolume: options.toVolume,
    region: options.region,
    attachTo: options.attachTo,
    keepPartial: options.keepPartial === true,
    ...(session.input.timings ? { timings: session.input.timings } : {}),
  };
  const which = options.version ? ` --version ${options.version}` : at ? ` --at ${at}` : '';
  let handle;
  try {
    handle = await client.workflow.start(RESTORE_WORKFLOW_TYPE, {
      taskQueue: ids.taskQueue,
      workflowId: ids.workflowId,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      args: [input],
      staticSummary: `dosvob restore ${options.volume}${which} --to-volume ${options.toVolume}`,
      staticDetails: `started by \`dosvob restore\` on ${hostname()}`,
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const running = await client.workflow.getHandle(ids.workflowId).describe();
    throw new UserError(
      `a ${running.type === RESTORE_WORKFLOW_TYPE ? 'restore' : running.type === 'cleanupWorkflow' ? 'cleanup' : 'backup'} ` +
        `run is in progress (${running.runId}): restores and backups run one at a time; wait for it, or \`dosvob cancel\` it`,
      1,
    );
  }
  const runId = handle.firstExecutionRunId;
  const link = workflowUiLink(session.uiUrl, session.namespace, handle.workflowId, runId);
  out.line(`started restore run ${runId}`);
  if (link) out.line(`watch it at ${link}`);
  const outcome: RestoreVolumeOutcome = { workflowId: handle.workflowId, runId, result: undefined };
  if (options.detach) {
    if (session.embedded) {
      out.note(
        'dosvob: the local Temporal server and worker stop with this command; the run goes on at the next start',
      );
    }
    out.json(outcome);
    return outcome;
  }
  try {
    outcome.result = await followRun<RestoreResult>(session, client.workflow.getHandle(handle.workflowId, runId), out);
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    out.json(outcome);
    if (err.cause instanceof CancelledFailure) {
      throw new UserError(
        `restore run ${runId} was cancelled: what it created was deleted` +
          (options.keepPartial
            ? ', except the unfinished target volume (--keep-partial)'
            : ', the unfinished target volume too'),
        1,
      );
    }
    if (err.cause instanceof TerminatedFailure) {
      throw new UserError(
        `restore run ${runId} was terminated: its droplet and key are removed by the next run or \`dosvob cleanup\`; ` +
          `the target volume ${options.toVolume}, if it was created, is not verified: delete it`,
        1,
      );
    }
    const failure = rootApplicationFailure(err);
    const details = failure?.details?.[0] as RestoreFailureDetails | undefined;
    const message = failure?.message ?? err.message;
    const badInput = new Set([
      'StoreRequestInvalid',
      'VolumeNameInUse',
      'BadVolumeName',
      'DropletNotFound',
      'ConfigurationError',
      'DigitalOceanAuthError',
    ]);
    if (details?.keptPartial)
      out.note(
        `dosvob: kept the unfinished volume ${details.keptPartial.name} (${details.keptPartial.region}) for inspection: it is not a verified restore`,
      );
    throw new UserError(
      message + (link ? ` (run details: ${link})` : ''),
      badInput.has(failure?.type ?? '') ? ExitCode.badInput : 1,
    );
  }
  for (const line of describeRestoreResult(outcome.result)) out.line(line);
  out.json(outcome);
  return outcome;
}
