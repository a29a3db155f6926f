// The README's worked retention example is what `dosvob prune --dry-run` prints for that timeline (less the ids).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { VersionRecord } from '../../activities/store/index.js';
import { decide } from '../../activities/retention/prune';
import { pruneLines } from '../../client/commands/prune';
import { DEFAULT_RETENTION_POLICY, describePolicy } from '../../common/retention';

function record(time: string, i: number, newest: boolean): VersionRecord {
  const id = `${time.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${String(i).padStart(6, '0')}`;
  return {
    key: 'db-data',
    versionId: id,
    time,
    newest,
    snapshotId: null,
    snapshotCreatedAt: null,
    runId: null,
    volumeId: 'vol-1',
    volumeName: 'db-data',
    region: 'nyc3',
    origin: 'sync',
    blocksChanged: null,
    sizeBytes: 0,
    blockSize: 0,
    blockCount: 0,
    digest: '',
    protected: false,
    checks: [],
    suspect: false,
    manifestPath: '',
  };
}

void test("README's retention example is the dry run's output for its timeline", () => {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('**Example.** A volume backed up every day'));
  const block = /```\n([\s\S]*?)\n```/.exec(section)![1]!;
  const times = Array.from({ length: 21 }, (_, i) => `2026-11-${String(10 + i).padStart(2, '0')}T04:00:00Z`);
  times.push('2026-11-25T16:30:00Z');
  times.sort();
  const versions = times.map((t, i) => record(t, i, i === times.length - 1));
  const verdicts = decide(versions, DEFAULT_RETENTION_POLICY, '2026-12-01T00:00:00Z');
  const lines = pruneLines({
    dryRun: true,
    policy: describePolicy(DEFAULT_RETENTION_POLICY),
    stores: [{ key: 'db-data', versions: verdicts, kept: 10, removed: [] }],
    versionsRemoved: 12,
  });
  const printed = lines
    .filter((l) => /^ {2}\d{8}T/.test(l))
    .map((l) => l.replace(/^ {2}\S+ {2}/, ''))
    .join('\n');
  assert.equal(printed, block);
  assert.equal(verdicts.filter((v) => v.keep).length, 10);
});
