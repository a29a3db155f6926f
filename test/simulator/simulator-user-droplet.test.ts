// User droplets (the ones a freeze hook reaches): the given host key and login key, the attached source volume at its
// device path, and the recorded shell: each exec with its start and end, `fsfreeze` answered and its frozen interval
// recorded, and a detached background command that outlives its session and still records.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { utils } from 'ssh2';
import { generateEd25519 } from '../support/exec-ssh-server';
import { startSimulator, type Simulator } from './index';
import { namespacesAvailable } from './droplet-ssh';
import { NO_RATE_LIMIT, sshExec, waitFor } from './test-helpers';

let sim: Simulator;
const login = generateEd25519();
const host = generateEd25519();

before(async () => {
  sim = await startSimulator({ sshPort: 0, dropletActiveDelayMs: 20, ...NO_RATE_LIMIT });
});
after(async () => sim?.close());

function blobOf(publicKey: string): Buffer {
  const parsed = utils.parseKey(publicKey);
  const k = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!k || k instanceof Error) throw new Error('no key');
  return k.getPublicSSH();
}

test('a user droplet answers with its host key, records every exec and every freeze', async () => {
  const v = await sim.createVolume({ name: 'db-data', region: 'nyc3', sizeGigabytes: 1 });
  await sim.writeVolume(v.id, 0, Buffer.from('hello from db-data'));
  const { droplet, ssh, shell } = await sim.createUserDroplet({
    name: 'db-1',
    region: 'nyc3',
    hostKey: host,
    authorizedKeys: [login.publicKey],
    volumeIds: [v.id],
  });
  assert.equal(droplet.status, 'active');
  assert.deepEqual(droplet.volumeIds, [v.id]);
  assert.equal(droplet.tags.length, 0, "not dosvob's: untagged");
  assert.equal(ssh.hostKeySource, 'user_data');
  assert.ok(droplet.ip);

  const t0 = Date.now();
  const r = await sshExec(droplet.ip, ssh.port, login.privateKey, 'fsfreeze -f /mnt/db && echo frozen');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString().trim(), 'frozen');
  assert.ok(r.hostKey.equals(blobOf(host.publicKey)), 'presents the host key it was given');
  assert.ok(shell.isFrozen('/mnt/db'));

  // Freezing twice fails, as the real fsfreeze does (EBUSY); so does thawing a thawed filesystem (EINVAL).
  const again = await sshExec(droplet.ip, ssh.port, login.privateKey, 'fsfreeze -f /mnt/db');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /Device or resource busy/);

  // A detached background thaw outlives the session that started it, and is recorded when it happens.
  const bg = 'setsid sh -c "sleep 1; fsfreeze -u /mnt/db" </dev/null >/dev/null 2>&1 & echo started';
  assert.equal((await sshExec(droplet.ip, ssh.port, login.privateKey, bg)).code, 0);
  await waitFor('the background thaw', () => (shell.isFrozen('/mnt/db') ? undefined : true));
  const thawAgain = await sshExec(droplet.ip, ssh.port, login.privateKey, 'fsfreeze -u /mnt/db');
  assert.match(thawAgain.stderr, /Invalid argument/);

  const [window, ...more] = shell.frozenIntervals();
  assert.equal(more.length, 0);
  assert.ok(window && window.to !== undefined && t0 <= window.from && window.from <= window.to);
  const commands = shell.commands();
  assert.equal(commands.length, 4);
  assert.deepEqual(
    commands.map((c) => c.exitCode),
    [0, 1, 0, 1],
  );
  for (const c of commands) assert.ok(c.endedAt !== undefined && c.startedAt <= c.endedAt + 1);
  assert.ok(window.from <= (commands[0]?.endedAt ?? -1), 'the freeze command ended once the freeze was in effect');

  if (namespacesAvailable()) {
    const dev = await sshExec(
      droplet.ip,
      ssh.port,
      login.privateKey,
      'head -c 18 /dev/disk/by-id/scsi-0DO_Volume_db-data',
    );
    assert.equal(dev.stdout.toString(), 'hello from db-data', 'the attached source volume is at its device path');
  }

  // Only the given key logs in.
  await assert.rejects(sshExec(droplet.ip, ssh.port, generateEd25519().privateKey, 'true'));
});
