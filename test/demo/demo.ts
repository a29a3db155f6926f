// `npm run demo`: dosvob's main job end to end on this machine, with no DigitalOcean account.
// The DigitalOcean simulator stands in for the API (droplets answer real SSH on loopback); the
// embedded Temporal dev server runs the workflow. Two syncs: a full one, then after some files
// changed, an incremental one; then the ext4 image is checked with e2fsck and read with debugfs.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { EMBEDDED_ADDRESS } from '../../client/connect';
import { isListening, startDevServer } from '../../client/temporal-server';
import { startSimulator, type Simulator } from '../simulator';

const MiB = 1 << 20;
const GiB = 1 << 30;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Copy a local disk image into a simulated volume, skipping all-zero chunks (the volume is sparse). */
async function uploadImage(sim: Simulator, volumeId: string, file: string, onlyChangedFrom?: string): Promise<number> {
  const chunk = 4 * MiB;
  const a = Buffer.alloc(chunk);
  const b = Buffer.alloc(chunk);
  const fd = openSync(file, 'r');
  const old = onlyChangedFrom ? openSync(onlyChangedFrom, 'r') : undefined;
  let written = 0;
  try {
    for (let pos = 0; pos < statSync(file).size; pos += chunk) {
      const n = readSync(fd, a, 0, chunk, pos);
      const data = a.subarray(0, n);
      if (old !== undefined) {
        const m = readSync(old, b, 0, chunk, pos);
        if (m === n && b.subarray(0, m).equals(data)) continue;
      } else if (data.every((x) => x === 0)) continue;
      await sim.writeVolume(volumeId, pos, Buffer.from(data));
      written += n;
    }
  } finally {
    closeSync(fd);
    if (old !== undefined) closeSync(old);
  }
  return written;
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'dosvob-demo-'));
  process.env.DOSVOB_DATA_DIR = path.join(work, 'data');
  const log = (line: string) => console.log(line);

  const sim = await startSimulator({ actionDelayMs: 300, dropletActiveDelayMs: 1500, snapshotIntervalMs: 0 });
  log(`DigitalOcean simulator at ${sim.apiUrl}`);

  // A mostly empty volume, an ext4 filesystem with files, and a volume in a second region.
  const scratch = await sim.createVolume({ name: 'scratch', region: 'nyc3', sizeGigabytes: 2 });
  await sim.writeVolume(scratch.id, 0, randomBytes(MiB));
  const files = path.join(work, 'files');
  mkdirSync(path.join(files, 'site'), { recursive: true });
  writeFileSync(path.join(files, 'site', 'index.html'), '<h1>hello from dosvob</h1>\n');
  writeFileSync(path.join(files, 'notes.txt'), 'version 1\n');
  writeFileSync(path.join(files, 'blob.bin'), randomBytes(24 * MiB));
  const fsImage = path.join(work, 'app-files.ext4');
  sh('truncate', ['-s', String(GiB), fsImage]);
  sh('mkfs.ext4', ['-q', '-F', '-L', 'app-files', '-d', files, fsImage]);
  const app = await sim.createVolume({ name: 'app-files', region: 'nyc3', sizeGigabytes: 1 });
  await uploadImage(sim, app.id, fsImage);
  const logs = await sim.createVolume({ name: 'logs', region: 'fra1', sizeGigabytes: 1 });
  await sim.writeVolume(logs.id, 100 * MiB, randomBytes(8 * MiB));

  // The user's view: a conf.json, and the dosvob command.
  const backupsDir = path.join(work, 'backups');
  const conf = path.join(work, 'conf.json');
  writeFileSync(
    conf,
    JSON.stringify(
      {
        do_token: sim.token,
        api_url: sim.apiUrl,
        regions: ['nyc3', 'fra1'],
        backups_dir: backupsDir,
        ssh_port: sim.options.sshPort,
      },
      null,
      2,
    ),
  );
  const dosvob = (args: string[]) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [path.resolve(__dirname, '../../bin/dosvob.js'), '--config', conf, ...args],
        {
          stdio: 'inherit',
        },
      );
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`dosvob ${args.join(' ')} exited ${code}`)),
      );
    });

  // The embedded default starts (and stops) its own server; the demo keeps one up across both
  // syncs so the UI link still works at the end.
  const { ip, port, uiPort } = EMBEDDED_ADDRESS;
  const server = (await isListening(ip, port))
    ? undefined
    : await startDevServer({ ip, port, uiPort, dbFile: path.join(work, 'data', 'temporal.sqlite') });

  try {
    log('\n== first sync: every volume, in full');
    await dosvob(['sync']);

    log('\n== changing files on app-files (a new file, an edited one, a deleted one)');
    const before = path.join(work, 'app-files.before');
    sh('cp', ['--sparse=always', fsImage, before]);
    writeFileSync(path.join(work, 'new.txt'), 'written after the first backup\n');
    sh('debugfs', ['-w', '-R', `write ${path.join(work, 'new.txt')} new.txt`, fsImage]);
    writeFileSync(path.join(work, 'notes.txt'), 'version 2\n');
    sh('debugfs', ['-w', '-R', 'rm notes.txt', fsImage]);
    sh('debugfs', ['-w', '-R', `write ${path.join(work, 'notes.txt')} notes.txt`, fsImage]);
    sh('debugfs', ['-w', '-R', 'rm blob.bin', fsImage]);
    const changed = await uploadImage(sim, app.id, fsImage, before);
    log(`   ${changed / MiB} MiB of the volume changed`);

    log('\n== second sync: only changed blocks travel');
    await dosvob(['sync']);

    const image = path.join(backupsDir, 'app-files.img');
    log(`\n== checking ${image}`);
    log(sh('e2fsck', ['-n', '-f', image]).trim());
    log(sh('debugfs', ['-R', 'ls -l /', image]).trim());
    log(`new.txt: ${sh('debugfs', ['-R', 'cat new.txt', image]).trim()}`);
    log(`notes.txt: ${sh('debugfs', ['-R', 'cat notes.txt', image]).trim()}`);
    log(`\nimages in ${backupsDir}: ${sh('ls', ['-ls', backupsDir]).trim()}`);

    log('\n== dosvob images --verify: every image read in full against its block hashes');
    await dosvob(['images', '--verify']);
    if (server && process.stdout.isTTY) {
      log(`\nThe Temporal UI is at http://${ip}:${uiPort} — press Ctrl-C to stop.`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
  } finally {
    await server?.stop();
    await sim.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
