// Shared fixtures of the restore tests: versions made by real syncs through the transfer's SSH droplet, a blank
// "new volume" (a sparse file of zeros) to restore onto, and agents with faults for the droplet side.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { agentCode, agentCommandFor, type RemoteAgent } from '../../activities/transfer/agent.js';
import type { SshTarget } from '../../activities/transfer/ssh.js';
import type { Droplet } from '../transfer/helpers.js';

export const FILTER = join(__dirname, '..', 'transfer', 'fixtures', 'filter.py');
export const SWALLOW = `${join(__dirname, '..', 'transfer', 'fixtures', 'stall.py')} --swallow`;

/** A new volume's device: `sizeBytes` of zeros (a hole). */
export async function blankDevice(path: string, sizeBytes: number): Promise<string> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
  return path;
}

export function sshOf(d: Droplet): SshTarget {
  return { host: d.host, port: d.port, username: 'root', hostPublicKey: d.hostPublicKey, privateKey: d.clientKey };
}

/**
 * The real agent behind a device that loses writes: the write of block `block` (at `blockSize`) is acknowledged but
 * never reaches the file, the first `times` times it is written (counted across agents in `counter`, a file; -1:
 * always). What a disk with a bad sector or a lying cache does, and what the read-back is there to catch.
 */
export function lossyAgent(block: number, blockSize: number, counter: string, times: number): RemoteAgent {
  const hook = Buffer.from(
    [
      'import os as _os',
      '_real_pwrite = _os.pwrite',
      'def _lossy_pwrite(fd, data, off):',
      `    if off == ${block * blockSize}:`,
      `        p = ${JSON.stringify(counter)}`,
      '        n = int(open(p).read() or 0) if _os.path.exists(p) else 0',
      `        if ${times} < 0 or n < ${times}:`,
      '            open(p, "w").write(str(n + 1))',
      '            return len(data)',
      '    return _real_pwrite(fd, data, off)',
      '_os.pwrite = _lossy_pwrite',
      '',
    ].join('\n'),
  );
  const code = Buffer.concat([hook, agentCode()]);
  return { command: agentCommandFor(code), code };
}

/** Wrap the droplet's command so its stdin (what the client sends) passes through `filter` first. */
export function inputThrough(d: Droplet, filter: string): void {
  d.faults.wrap = (command) => ({ file: 'sh', args: ['-c', `${filter} | ${command}`] });
}
