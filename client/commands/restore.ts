// `dosvob restore VOLUME [--at TIME | --version ID] --to FILE`: a kept version written as a sparse raw image by the
// store worker (FILE is a path on its machine), every block checked against the version's hash. Progress is the
// restore activity's heartbeats, read back with describe() as `dosvob sync` reads the transfer's.
// (`--to-volume NAME`, a new DigitalOcean volume, is issue 11's: `--to` stays the file.)
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { RestoreFileResult, RestoreProgress } from '../../activities/store-ops/restore-file';
import type { restoreFileWorkflow } from '../../workflows/versions';
import { formatBytes } from '../../workflows/util';
import { ExitCode, UserError } from '../errors';
import type { Output } from '../output';
import type { Session } from '../session';
import { asUserError } from './store-request';

export interface RestoreOptions {
  volume: string;
  at?: string;
  version?: string;
  to: string;
  force?: boolean;
}

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * `--at`: an ISO time (without a zone: local time) or a date, which means the end of that day in local time (the
 * newest version of that day, or the last one before it).
 */
export function parseAt(text: string): string {
  const t = text.trim();
  let ms: number;
  if (DATE_ONLY.test(t)) {
    const [y, m, d] = t.split('-').map(Number) as [number, number, number];
    ms = new Date(y, m - 1, d, 23, 59, 59, 999).getTime();
  } else if (ISO_TIME.test(t)) {
    ms = Date.parse(t.replace(' ', 'T'));
  } else ms = Number.NaN;
  if (Number.isNaN(ms)) {
    throw new UserError(
      `--at ${JSON.stringify(text)}: give an ISO time (2026-12-02T14:30, 2026-12-02T14:30:00Z) or a date (2026-12-02)`,
    );
  }
  return new Date(ms).toISOString();
}

async function readProgress(client: Client, handle: WorkflowHandle): Promise<RestoreProgress | undefined> {
  const description = await handle.describe();
  const pending = (description.raw.pendingActivities ?? []).find(
    (a) => a.activityType?.name === 'restoreVersionToFile',
  );
  const payloads = pending?.heartbeatDetails?.payloads;
  if (!payloads?.length) return undefined;
  return decodeFromPayloadsAtIndex<RestoreProgress>(client.options.loadedDataConverter, 0, payloads);
}

export function describeRestore(r: RestoreFileResult): string {
  return (
    `restored ${r.key} version ${r.versionId} (${r.time}${r.snapshotId ? `, ${r.snapshotId}` : ''}) to ${r.toFile}: ` +
    `${formatBytes(r.sizeBytes)}, ${r.blocksFromImage} blocks from the image, ${r.blocksFromChunks} from saved ` +
    `blocks, ${r.zeroBlocks} zero; every block checked` +
    (r.reflinked ? '; the image was reflinked and only the differing blocks written' : '')
  );
}

export async function restore(session: Session, out: Output, options: RestoreOptions): Promise<RestoreFileResult> {
  if (options.at !== undefined && options.version !== undefined) {
    throw new UserError('give --at TIME or --version ID, not both', ExitCode.badInput);
  }
  const at = options.at === undefined ? undefined : parseAt(options.at);
  const toFile = path.resolve(options.to);
  const handle = await session.client.workflow.start<typeof restoreFileWorkflow>('restoreFileWorkflow', {
    taskQueue: session.ids.taskQueue,
    workflowId: `${session.ids.workflowId}-restore-${randomUUID().slice(0, 8)}`,
    args: [{ volume: options.volume, versionId: options.version, at, toFile, force: options.force === true }],
    staticSummary:
      `dosvob restore ${options.volume}` +
      (options.version ? ` --version ${options.version}` : at ? ` --at ${at}` : '') +
      ` --to ${toFile} (a file on the store's machine)`,
  });
  let finished = false;
  const result = handle.result().finally(() => {
    finished = true;
  });
  result.catch(() => undefined);
  let lastShown = 0;
  let lastBytes = -1;
  while (!finished) {
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, session.refreshMs))]);
    if (finished) break;
    const p = await readProgress(session.client, handle).catch(() => undefined);
    if (p && p.bytesDone !== lastBytes && Date.now() - lastShown >= session.plainEveryMs) {
      lastShown = Date.now();
      lastBytes = p.bytesDone;
      const pct = p.sizeBytes > 0 ? Math.floor((p.bytesDone / p.sizeBytes) * 100) : 100;
      out.note(
        `restoring ${p.key} ${p.versionId}: ${formatBytes(p.bytesDone)} of ${formatBytes(p.sizeBytes)} (${pct} %)`,
      );
    }
  }
  const restored = await result.catch(asUserError);
  out.json(restored);
  out.line(describeRestore(restored));
  return restored;
}
