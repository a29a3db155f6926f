// Shared by the restore tests: an ext4 source volume the simulator holds, a sparse copy of its bytes at a moment (the
// expected content of the version a backup then takes), and the restore run started as the CLI starts it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { RestoreInput } from '../../workflows/restore';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, type Harness } from '../support/harness';
import { uniqueId } from '../support/temporal';

const run = promisify(execFile);
const MiB = 1 << 20;

/** A 1 GiB source volume holding an ext4 with a few files of random data. */
export async function ext4Volume(h: Harness, name: string): Promise<string> {
  const { id } = await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 });
  await run('mkfs.ext4', ['-F', '-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0', h.sim.volumeFile(id)]);
  for (let i = 0; i < 3; i++) await addFile(h, id, `file-${i}`, 3 * MiB);
  return id;
}

/** Write a file of random data into the volume's ext4 (debugfs: no mount needed). */
export async function addFile(h: Harness, volumeId: string, name: string, bytes: number): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'dosvob-file-'));
  const local = path.join(dir, name);
  writeFileSync(local, randomData(bytes));
  await run('debugfs', ['-w', '-R', `write ${local} ${name}`, h.sim.volumeFile(volumeId)]);
}

/** A sparse copy of a volume's bytes now: what the next backup's version must restore to. */
export async function copyOfVolume(h: Harness, volumeId: string): Promise<string> {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'dosvob-expected-')), 'volume.img');
  await run('cp', ['--sparse=always', h.sim.volumeFile(volumeId), file]);
  return file;
}

/** `e2fsck -fn` (read-only) passes on the file. */
export async function assertCleanExt4(file: string): Promise<void> {
  try {
    await run('e2fsck', ['-fn', file]);
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    assert.fail(`e2fsck -fn ${file} exited ${e.code}: ${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

export async function startRestore(
  h: Harness,
  input: RestoreInput,
  options: { workflowId?: string; workflowTaskTimeout?: string } = {},
): Promise<WorkflowHandleWithFirstExecutionRunId> {
  return h.client.workflow.start('restoreWorkflow', {
    taskQueue: h.taskQueue,
    workflowId: options.workflowId ?? uniqueId('restore'),
    ...(options.workflowTaskTimeout ? { workflowTaskTimeout: options.workflowTaskTimeout } : {}),
    args: [{ ...input, timings: { ...FAST_TIMINGS, ...input.timings } }],
  });
}

/** The live volumes' names, sorted. */
export function volumeNames(h: Harness): string[] {
  return h.sim
    .liveResources()
    .volumes.map((v) => v.name)
    .sort();
}
