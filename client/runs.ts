// Recent backup runs, from Temporal's visibility store and each closed run's own result: start, outcome, duration,
// bytes transferred, cost. A schedule's launcher workflow is listed only when it skipped (another run was in progress);
// otherwise the run it launched, which has the installation's workflow id, stands for it.
import { WorkflowFailedError, type Client, type WorkflowExecutionInfo } from '@temporalio/client';
import { DOSVOB_OUTCOME } from '../common/search-attributes';
import type { BackupResult, VolumeCheckOutcome } from '../workflows/types';
import type { CleanupResult } from '../workflows/cleanup';
import type { RestoreResult } from '../workflows/restore';
import { describeError, rootApplicationFailure } from './errors';
import {
  CLEANUP_WORKFLOW_TYPE,
  RESTORE_WORKFLOW_TYPE,
  WORKFLOW_TYPE,
  quoteQuery,
  runKind,
  type RunIds,
  type RunKind,
} from './ids';

export type RunOutcome = 'running' | 'ok' | 'failed' | 'cancelled' | 'skipped' | 'terminated' | 'timed out';

export interface RunSummary {
  /** A backup run, `dosvob cleanup`'s run, or a restore to a new volume. */
  kind: RunKind;
  workflowId: string;
  runId: string;
  /** The schedule launcher that started the run, if any. */
  launchedBy: string | undefined;
  start: string;
  end: string | undefined;
  outcome: RunOutcome;
  durationMs: number | undefined;
  volumes: number | undefined;
  volumesFailed: number | undefined;
  bytesTransferred: number | undefined;
  estimatedCostUsd: number | undefined;
  message: string | undefined;
  /** The version each backed-up volume got (`dosvob versions`, `dosvob restore --version`). */
  versions?: { volume: string; region: string; storeKey?: string; version: string; check?: VolumeCheckOutcome }[];
  /** What pruning removed after the run (absent when it did not prune). */
  pruning?: { versionsRemoved: number; bytesFreed: number; error?: string };
}

/** The result a failed run carries in its failure (BackupFailed), if any. */
export function resultOfFailure(err: unknown): BackupResult | undefined {
  const details = rootApplicationFailure(err)?.details?.[0] as BackupResult | undefined;
  return details && Array.isArray(details.volumes) ? details : undefined;
}

function outcomeOfStatus(status: WorkflowExecutionInfo['status']['name']): RunOutcome {
  switch (status) {
    case 'RUNNING':
      return 'running';
    case 'COMPLETED':
      return 'ok';
    case 'CANCELLED':
      return 'cancelled';
    case 'TERMINATED':
      return 'terminated';
    case 'TIMED_OUT':
      return 'timed out';
    default:
      return 'failed';
  }
}

/** The visibility query for this installation's workflows. */
export function runsQuery(ids: RunIds): string {
  const types = [WORKFLOW_TYPE, CLEANUP_WORKFLOW_TYPE, RESTORE_WORKFLOW_TYPE]
    .map((t) => `WorkflowType = ${quoteQuery(t)}`)
    .join(' OR ');
  return `(${types}) AND TaskQueue = ${quoteQuery(ids.taskQueue)}`;
}

async function summarize(client: Client, info: WorkflowExecutionInfo): Promise<RunSummary> {
  const summary: RunSummary = {
    kind: runKind(info.type),
    workflowId: info.workflowId,
    runId: info.runId,
    launchedBy: info.parentExecution?.workflowId ?? undefined,
    start: info.startTime.toISOString(),
    end: info.closeTime?.toISOString(),
    outcome: outcomeOfStatus(info.status.name),
    durationMs: info.closeTime ? info.closeTime.getTime() - info.startTime.getTime() : undefined,
    volumes: undefined,
    volumesFailed: undefined,
    bytesTransferred: undefined,
    estimatedCostUsd: undefined,
    message: undefined,
  };
  if (info.status.name === 'RUNNING') return summary;
  if (summary.kind === 'cleanup') return summarizeCleanup(client, info, summary);
  if (summary.kind === 'restore') return summarizeRestore(client, info, summary);
  let result: BackupResult | undefined;
  try {
    result = (await client.workflow.getHandle(info.workflowId, info.runId).result()) as BackupResult;
  } catch (err) {
    result = resultOfFailure(err);
    summary.message = err instanceof WorkflowFailedError ? describeError(err) : undefined;
  }
  if (result) {
    if (result.skipped) summary.outcome = 'skipped';
    summary.volumes = result.volumes.length;
    summary.volumesFailed = result.volumes.filter((v) => !v.ok).length;
    summary.bytesTransferred = result.volumes.reduce((sum, v) => sum + v.bytesTransferred, 0);
    summary.estimatedCostUsd = result.estimatedCostUsd;
    summary.message = result.message;
    summary.versions = result.volumes.flatMap((v) =>
      v.version
        ? [
            {
              volume: v.name,
              region: v.region,
              storeKey: v.storeKey,
              version: v.version,
              ...(v.check ? { check: v.check } : {}),
            },
          ]
        : [],
    );
    if (result.pruning) {
      const { versionsRemoved, bytesFreed, error } = result.pruning;
      summary.pruning = { versionsRemoved, bytesFreed, ...(error ? { error } : {}) };
    }
  }
  return summary;
}

async function summarizeCleanup(client: Client, info: WorkflowExecutionInfo, summary: RunSummary): Promise<RunSummary> {
  try {
    summary.message = (
      (await client.workflow.getHandle(info.workflowId, info.runId).result()) as CleanupResult
    ).message;
  } catch (err) {
    summary.message = describeError(err);
  }
  return summary;
}

async function summarizeRestore(client: Client, info: WorkflowExecutionInfo, summary: RunSummary): Promise<RunSummary> {
  try {
    const result = (await client.workflow.getHandle(info.workflowId, info.runId).result()) as RestoreResult;
    summary.message = result.message;
    summary.volumes = 1;
    summary.volumesFailed = 0;
    summary.bytesTransferred = result.bytesOnWire;
    summary.estimatedCostUsd = result.estimatedCostUsd;
    summary.versions = [
      {
        volume: result.target.name,
        region: result.target.region,
        storeKey: result.storeKey,
        version: result.versionId,
      },
    ];
  } catch (err) {
    summary.message = describeError(err);
  }
  return summary;
}

/** The `limit` most recent runs, newest first. */
export async function listRuns(client: Client, ids: RunIds, limit: number): Promise<RunSummary[]> {
  const infos: WorkflowExecutionInfo[] = [];
  for await (const info of client.workflow.list({ query: runsQuery(ids), pageSize: Math.max(10, limit * 2) })) {
    const isRun = info.workflowId === ids.workflowId;
    const skipped = info.typedSearchAttributes.get(DOSVOB_OUTCOME) === 'skipped';
    if (isRun || skipped) infos.push(info);
    if (infos.length >= limit) break;
  }
  infos.sort((a, b) => b.startTime.getTime() - a.startTime.getTime());
  return Promise.all(infos.map((info) => summarize(client, info)));
}
