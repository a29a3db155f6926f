// `dosvob images`: the local backups, one line per volume, checked by the worker that holds them. Also finishes an
// update a crash interrupted while it was being written into an image; with --verify, reads every image in full and
// checks each block against the hashes recorded when it was received.
import { randomUUID } from 'node:crypto';
import type { ImageReport } from '../../activities/store/inspect';
import type { imagesWorkflow } from '../../workflows/images';
import { formatBytes } from '../../workflows/util';
import { formatTime, table, type Output } from '../output';
import type { Session } from '../session';

export interface ImagesOutcome {
  images: ImageReport[];
  /** 0: every image is ok; 1: one is not (corrupt, busy, missing, foreign format, changed outside dosvob). */
  exitCode: number;
}

function stateText(r: ImageReport): string {
  const notes = [
    r.finishedInterruptedUpdate ? 'finished an interrupted update' : '',
    r.stagedTransfer ? 'interrupted transfer staged (the next sync resumes it)' : '',
    r.verify && r.state === 'ok' ? `verified ${r.verify.blocksChecked} blocks` : '',
    r.detail ?? '',
  ].filter(Boolean);
  return notes.length > 0 ? `${r.state}: ${notes.join('; ')}` : r.state;
}

export function imagesTable(images: readonly ImageReport[]): string[] {
  return table(
    ['VOLUME', 'SIZE', 'DATA', 'LAST SYNC', 'SNAPSHOT', 'STATE'],
    images.map((r) => [
      r.volumeName,
      r.sizeBytes === undefined ? '-' : formatBytes(r.sizeBytes),
      r.allocatedBytes === undefined ? '-' : formatBytes(r.allocatedBytes),
      r.lastSyncAt ? formatTime(new Date(r.lastSyncAt)) : '-',
      r.snapshotCreatedAt ? formatTime(new Date(r.snapshotCreatedAt)) : (r.snapshotId ?? '-'),
      stateText(r),
    ]),
  );
}

export async function images(session: Session, out: Output, options: { verify: boolean }): Promise<ImagesOutcome> {
  if (options.verify) out.note('verifying: reading every image in full...');
  const reports = await session.client.workflow.execute<typeof imagesWorkflow>('imagesWorkflow', {
    taskQueue: session.ids.taskQueue,
    workflowId: `${session.ids.workflowId}-images-${randomUUID().slice(0, 8)}`,
    args: [{ verify: options.verify }],
    staticSummary: options.verify
      ? 'dosvob images --verify: every local image read in full against its block hashes'
      : 'dosvob images: the local backups and their state',
  });
  const outcome: ImagesOutcome = { images: reports, exitCode: reports.every((r) => r.state === 'ok') ? 0 : 1 };
  out.json(outcome);
  if (outcome.images.length === 0) out.line('no images in the backups directory yet');
  else for (const line of imagesTable(outcome.images)) out.line(line);
  return outcome;
}
