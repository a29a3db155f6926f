// The lock of one volume's store: an flock(2) on backups/.dosvob/<volume>/lock, held for as long as the store is open.
//
// The kernel drops an flock when the last descriptor of its open file goes away, which includes the death of the
// process for any reason, so a lock can never outlive its holder, whatever a reboot does to pid numbers. The pid
// written into the file only tells a person (and the busy error) who holds it; nothing trusts it.
//
// The file itself is never removed: unlinking a lock file while another process has it open lets two processes each
// lock a different inode under the same name.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { flock } from 'fs-ext';
import { VolumeBusyError, isErrno } from './errors.js';

/** Locks this process holds, by path: flock would refuse a second one too, this just names the cause better. */
const held = new Set<string>();

function tryFlock(fd: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    flock(fd, 'exnb', (err) => {
      if (!err) resolve(true);
      else if (isErrno(err, 'EAGAIN') || isErrno(err, 'EWOULDBLOCK')) resolve(false);
      else reject(err);
    });
  });
}

export class StoreLock {
  private constructor(
    readonly path: string,
    private fh: FileHandle | undefined,
  ) {}

  /** Take the lock without waiting; a VolumeBusyError names the holder's pid if another process has it. */
  static async acquire(path: string, volumeName: string): Promise<StoreLock> {
    if (held.has(path)) throw new VolumeBusyError(`another transfer of ${volumeName} is running in this process`);
    held.add(path);
    let fh: FileHandle | undefined;
    try {
      // Neither truncating nor appending: the holder's pid stays readable for the error below.
      fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
      if (!(await tryFlock(fh.fd))) {
        const holder = (await fh.readFile('utf8')).trim();
        throw new VolumeBusyError(
          `${volumeName} is locked by another running process${/^\d+$/.test(holder) ? ` (pid ${holder})` : ''} (${path})`,
        );
      }
      await fh.truncate(0);
      await fh.write(`${process.pid}\n`, 0, 'utf8');
      return new StoreLock(path, fh);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      held.delete(path);
      throw err;
    }
  }

  async release(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    this.fh = undefined;
    try {
      // Not needed for correctness (closing drops the lock); keeps a stale pid from misleading a reader.
      await fh.truncate(0).catch(() => undefined);
    } finally {
      await fh.close();
      held.delete(this.path);
    }
  }
}
