// What a backup run is doing right now, read from Temporal alone: the workflow's `progress` query (phase and step per
// volume) plus the pending transfer activities' heartbeat details (blocks done), which only `describe()` exposes.
import {
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import type { LoadedDataConverter } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { temporal } from '@temporalio/proto';
import type { TransferHeartbeat, TransferVolumeInput } from '../activities/transfer/activity';
import type { RunProgress } from '../workflows/types';

export const TRANSFER_ACTIVITY = 'transferVolume';
/** A large run's volume, backed up in a child workflow (its step and transfer are read from the child). */
export const VOLUME_CHILD_TYPE = 'backupVolumeWorkflow';
/** A restore's writing onto its target volume: shown like a transfer, for the run's one volume. */
export const RESTORE_ACTIVITY = 'restoreToDevice';

export interface TransferState {
  phase: TransferHeartbeat['phase'] | 'writing' | 'verifying';
  blockCount: number;
  blocksDone: number;
  bytesReceived: number;
  blocksChanged: number;
  attempt: number;
  /** When the worker recorded these details (heartbeats are throttled, so they can be seconds old). */
  at: Date | undefined;
}

export interface RunState {
  workflowId: string;
  runId: string;
  /** The workflow type: a backup run, or a cleanup run (`dosvob cleanup`) under the same workflow id. */
  type: string;
  status: WorkflowExecutionDescription['status']['name'];
  startTime: Date;
  closeTime: Date | undefined;
  /** Undefined until the workflow has registered its query handler (its first task), or when no worker answers. */
  progress: RunProgress | undefined;
  /** Live transfers, by volume name. */
  transfers: Map<string, TransferState>;
  /** Set when a schedule's launcher workflow started this run. */
  parent: { workflowId: string; runId: string } | undefined;
}

type PendingActivity = temporal.api.workflow.v1.IPendingActivityInfo;

function tsToDate(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): Date | undefined {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  return new Date(Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
}

function isHeartbeat(value: unknown): value is TransferHeartbeat {
  if (!value || typeof value !== 'object') return false;
  const v = value as Partial<Pick<TransferHeartbeat, 'blocksDone' | 'blockCount'>> & { phase?: unknown };
  return typeof v.blocksDone === 'number' && typeof v.blockCount === 'number' && typeof v.phase === 'string';
}

/**
 * Reads one run again and again (for a live display) and remembers which activity transfers which volume: a pending
 * activity does not carry its input, so that mapping comes from the history, fetched only when a new transfer appears.
 */
export class RunReader {
  private readonly volumeByActivity = new Map<string, string>();
  private readonly children = new Map<string, RunReader>();
  private readonly converter: LoadedDataConverter;

  constructor(
    private readonly client: Client,
    readonly handle: WorkflowHandle,
  ) {
    this.converter = client.options.loadedDataConverter;
  }

  async read(): Promise<RunState> {
    const description = await this.handle.describe();
    const progress = await this.handle.query<RunProgress>('progress').catch(() => undefined);
    const transfers = new Map<string, TransferState>();
    const all = description.raw.pendingActivities ?? [];
    const pending = all.filter((a) => a.activityType?.name === TRANSFER_ACTIVITY && a.activityId);
    if (pending.some((a) => !this.volumeByActivity.has(a.activityId ?? ''))) await this.learnVolumes();
    const restoring = progress?.volumes.length === 1 ? progress.volumes[0]?.name : undefined;
    for (const a of all) if (a.activityType?.name === RESTORE_ACTIVITY && restoring) pending.push(a);
    for (const activity of pending) {
      const volume =
        activity.activityType?.name === RESTORE_ACTIVITY
          ? restoring
          : this.volumeByActivity.get(activity.activityId ?? '');
      const state = volume ? await this.transferState(activity) : undefined;
      if (volume && state) transfers.set(volume, state);
    }
    await this.readChildren(description.raw.pendingChildren ?? [], progress, transfers);
    const parent = description.parentExecution;
    return {
      workflowId: description.workflowId,
      runId: description.runId,
      type: description.type,
      status: description.status.name,
      startTime: description.startTime,
      closeTime: description.closeTime,
      progress,
      transfers,
      parent: parent?.workflowId ? { workflowId: parent.workflowId, runId: parent.runId ?? '' } : undefined,
    };
  }

  /** The running children's volumes: their step and transfer replace the run's placeholder for them. */
  private async readChildren(
    pending: readonly temporal.api.workflow.v1.IPendingChildExecutionInfo[],
    progress: RunProgress | undefined,
    transfers: Map<string, TransferState>,
  ): Promise<void> {
    for (const c of pending) {
      if (c.workflowTypeName !== VOLUME_CHILD_TYPE || !c.workflowId || !progress) continue;
      let reader = this.children.get(c.workflowId);
      if (!reader) {
        reader = new RunReader(this.client, this.client.workflow.getHandle(c.workflowId, c.runId ?? undefined));
        this.children.set(c.workflowId, reader);
      }
      const state = await reader.read().catch(() => undefined);
      const v = state?.progress?.volumes[0];
      if (!state || !v) continue;
      const i = progress.volumes.findIndex((x) => x.name === v.name && x.region === v.region);
      if (i >= 0) progress.volumes[i] = v;
      const transfer = state.transfers.get(v.name);
      if (transfer) transfers.set(v.name, transfer);
    }
  }

  private async transferState(activity: PendingActivity): Promise<TransferState | undefined> {
    const payloads = activity.heartbeatDetails?.payloads;
    if (!payloads?.length) return undefined;
    const details = await decodeFromPayloadsAtIndex<unknown>(this.converter, 0, payloads).catch(() => undefined);
    if (!isHeartbeat(details)) return undefined;
    return {
      phase: details.phase,
      blockCount: details.blockCount,
      blocksDone: details.blocksDone,
      bytesReceived: details.bytesReceived,
      // A restore's heartbeats have no blocksChanged.
      blocksChanged: details.blocksChanged ?? 0,
      attempt: activity.attempt ?? 1,
      at: tsToDate(activity.lastHeartbeatTime),
    };
  }

  private async learnVolumes(): Promise<void> {
    const history = await this.handle.fetchHistory();
    for (const event of history.events ?? []) {
      const scheduled = event.activityTaskScheduledEventAttributes;
      if (scheduled?.activityType?.name !== TRANSFER_ACTIVITY || !scheduled.activityId) continue;
      if (this.volumeByActivity.has(scheduled.activityId)) continue;
      const input = await decodeFromPayloadsAtIndex<Partial<TransferVolumeInput>>(
        this.converter,
        0,
        scheduled.input?.payloads,
      ).catch(() => undefined);
      if (input?.volumeName) this.volumeByActivity.set(scheduled.activityId, input.volumeName);
    }
  }
}

/** The run id of the run with the installation's workflow id, if one is running now. */
export async function runningRunId(client: Client, workflowId: string): Promise<string | undefined> {
  try {
    const description = await client.workflow.getHandle(workflowId).describe();
    return description.status.name === 'RUNNING' ? description.runId : undefined;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}
