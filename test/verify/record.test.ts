// versions/<id>.checks.json (activities/verify/record.ts): appended atomically, capped, and never left behind by a
// version that was removed while it was being checked.
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { storePaths, versionPath } from '../../activities/store';
import { recordVersionCheck } from '../../activities/verify/record';
import { tempDir } from '../transfer/helpers';

describe('recorded checks', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  const id = '20261202T120000Z-abcdef';

  before(async () => {
    work = await tempDir('dosvob-checks-');
  });
  after(async () => {
    await work?.cleanup();
  });

  async function store(name: string): Promise<string> {
    const backups = join(work.dir, name);
    await mkdir(storePaths(backups, 'vol1').versions, { recursive: true });
    // Only the file's presence matters here: the manifest a check is recorded next to.
    await writeFile(versionPath(backups, 'vol1', id), 'manifest');
    return backups;
  }

  it('keeps the latest 20, oldest first, with a long detail cut', async () => {
    const backups = await store('cap');
    for (let i = 0; i < 25; i++) {
      const at = `2026-12-02T12:00:${String(i).padStart(2, '0')}.000Z`;
      await recordVersionCheck(backups, 'vol1', id, { kind: 'fsck', at, ok: i % 2 === 0, detail: 'x'.repeat(10_000) });
    }
    const checks = JSON.parse(await readFile(`${versionPath(backups, 'vol1', id)}.checks.json`, 'utf8')) as {
      at: string;
      detail: string;
    }[];
    assert.equal(checks.length, 20);
    assert.equal(checks[0]!.at, '2026-12-02T12:00:05.000Z');
    assert.equal(checks[19]!.at, '2026-12-02T12:00:24.000Z');
    assert.ok(checks[0]!.detail.length < 5000, 'detail cut');
    assert.deepEqual(
      (await readdir(storePaths(backups, 'vol1').versions)).sort(),
      [id, `${id}.checks.json`],
      'no temporary file left',
    );
  });

  it('keeps every verdict of checks that end at the same time', async () => {
    const backups = await store('race');
    const ats = Array.from({ length: 12 }, (_, i) => `2026-12-02T12:01:${String(i).padStart(2, '0')}.000Z`);
    await Promise.all(ats.map((at) => recordVersionCheck(backups, 'vol1', id, { kind: 'fsck', at, ok: true })));
    const checks = JSON.parse(await readFile(`${versionPath(backups, 'vol1', id)}.checks.json`, 'utf8')) as {
      at: string;
    }[];
    assert.deepEqual(checks.map((c) => c.at).sort(), ats, 'none lost to a concurrent read-modify-write');
  });

  it('leaves nothing behind for a version removed meanwhile', async () => {
    const backups = await store('gone');
    await unlink(versionPath(backups, 'vol1', id));
    await recordVersionCheck(backups, 'vol1', id, { kind: 'fsck', at: '2026-12-02T12:00:00.000Z', ok: false });
    assert.deepEqual(await readdir(storePaths(backups, 'vol1').versions), []);
  });
});
