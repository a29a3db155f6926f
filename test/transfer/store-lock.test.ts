// The store lock is an OS lock (flock): held exactly as long as its process lives, whatever the lock file says.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { VolumeBusyError } from '../../activities/store/errors.js';
import { inspectImages } from '../../activities/store/inspect.js';
import { storePaths } from '../../activities/store/layout.js';
import { VolumeStore } from '../../activities/store/store.js';
import { tempDir } from './helpers.js';

const CHILD = join(__dirname, 'fixtures', 'lock-holder-child.ts');

let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;
const children: ChildProcess[] = [];

before(async () => {
  tmp = await tempDir('dosvob-store-lock-');
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await tmp.cleanup();
});

async function backups(): Promise<string> {
  const dir = join(tmp.dir, `t${++n}`, 'backups');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'vol1.img'), Buffer.alloc(8192, 1));
  return dir;
}

/** A child process that holds vol1's lock; resolves once it says it has it. */
async function holder(backupsDir: string): Promise<{ child: ChildProcess; pid: number; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, backupsDir, 'vol1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const exited = new Promise((resolve) => child.on('close', (_code, sig) => resolve(sig)));
  let out = '';
  const pid = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^locked (\d+)$/m.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    void exited.then(() => reject(new Error(`lock holder exited: ${out}`)));
  });
  return { child, pid, exited };
}

async function openable(backupsDir: string): Promise<boolean> {
  try {
    const store = await VolumeStore.open({ backupsDir, volumeName: 'vol1' });
    await store.release();
    return true;
  } catch (err) {
    if (err instanceof VolumeBusyError) return false;
    throw err;
  }
}

void describe('store lock', { concurrency: false }, () => {
  void test('a lock held by a live process makes the volume busy; once that process is killed it is free', async () => {
    const dir = await backups();
    const h = await holder(dir);
    await assert.rejects(VolumeStore.open({ backupsDir: dir, volumeName: 'vol1' }), (err) => {
      assert.ok(err instanceof VolumeBusyError, String(err));
      assert.match(err.message, new RegExp(`\\b${h.pid}\\b`));
      return true;
    });
    assert.equal((await inspectImages(dir))[0]?.state, 'busy');

    h.child.kill('SIGKILL');
    assert.equal(await h.exited, 'SIGKILL');
    // The lock file is still there and still names the dead process: it does not matter.
    assert.equal((await readFile(storePaths(dir, 'vol1').lock, 'utf8')).trim(), String(h.pid));
    assert.equal(await openable(dir), true, 'a dead holder holds nothing');
    assert.notEqual((await inspectImages(dir))[0]?.state, 'busy');
  });

  void test('a lock file naming a live but unrelated process (a pid reused after a reboot) does not make it busy', async () => {
    const dir = await backups();
    await mkdir(storePaths(dir, 'vol1').dataDir, { recursive: true });
    await writeFile(storePaths(dir, 'vol1').lock, '1\n'); // init: always alive
    assert.equal(await openable(dir), true);
    await writeFile(storePaths(dir, 'vol1').lock, `${process.pid}\n`); // this very process, not holding it
    assert.equal(await openable(dir), true);
  });

  void test('a second open in the same process is busy until the first is released', async () => {
    const dir = await backups();
    const first = await VolumeStore.open({ backupsDir: dir, volumeName: 'vol1' });
    await assert.rejects(VolumeStore.open({ backupsDir: dir, volumeName: 'vol1' }), VolumeBusyError);
    await first.release();
    assert.equal(await openable(dir), true);
  });
});
