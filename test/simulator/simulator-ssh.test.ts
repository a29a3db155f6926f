// Droplets over real SSH: host key from user_data, account keys only, attached volumes at their device
// paths (only while attached), sessions closed on delete, dropped connections as a fault.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { after, before, test } from 'node:test';
import { Client, utils } from 'ssh2';
import { generateEd25519 } from '../support/exec-ssh-server';
import { devicePath, startSimulator, type Simulator } from './index';
import {
  CONTENT_DIGEST_PY,
  NO_RATE_LIMIT,
  api,
  contentDigest,
  get,
  num,
  sshExec,
  str,
  waitAction,
  waitActive,
  waitFor,
} from './test-helpers';

let sim: Simulator;
const user = generateEd25519();
const stranger = generateEd25519();
const host = generateEd25519();
let fingerprint = '';

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function cloudConfig(key: { privateKey: string; publicKey: string }): string {
  const indented = key.privateKey
    .trim()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
  return `#cloud-config\nssh_keys:\n  ed25519_private: |\n${indented}\n  ed25519_public: ${key.publicKey}\n`;
}

function blobOf(publicKey: string): Buffer {
  const parsed = utils.parseKey(publicKey);
  if (parsed instanceof Error) throw parsed;
  const k = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!k) throw new Error('no key');
  return k.getPublicSSH();
}

async function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  const h = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    await h.read(buf, 0, length, offset);
    return buf;
  } finally {
    await h.close();
  }
}

async function newDroplet(name: string, extra: Record<string, unknown>): Promise<number> {
  const r = await api(sim, 'POST', '/v2/droplets', {
    name,
    region: 'ams3',
    size: 's-1vcpu-512mb-10gb',
    image: 'ubuntu-24-04-x64',
    ssh_keys: [fingerprint],
    ...extra,
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const id = num(r.body, 'droplet', 'id');
  await waitActive(sim, id);
  return id;
}

function target(id: number): { ip: string; port: number } {
  const info = sim.dropletSsh(id);
  assert.ok(info, 'droplet SSH is up');
  return info;
}

before(async () => {
  // sshPort: the default (22), each droplet on its own 127.A.B.C
  sim = await startSimulator({
    ...NO_RATE_LIMIT,
    actionDelayMs: 30,
    dropletActiveDelayMs: 30,
    snapshotIntervalMs: 0,
    seed: 11,
  });
  const k = await api(sim, 'POST', '/v2/account/keys', { name: 'user', public_key: user.publicKey });
  fingerprint = str(k.body, 'ssh_key', 'fingerprint');
  await api(sim, 'POST', '/v2/account/keys', { name: 'stranger', public_key: stranger.publicKey });
});

after(async () => {
  await sim.close();
});

void test('restore path: host key from user_data, account keys named at create, device bytes = snapshot bytes', async () => {
  const src = await sim.createVolume({ name: 'src', region: 'ams3', sizeGigabytes: 1 });
  const head = Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 7) & 0xff));
  await sim.writeVolume(src.id, 0, head);
  await sim.writeVolume(src.id, 700 * 1024 * 1024 + 3, Buffer.from('deep inside'));
  const snap = await api(sim, 'POST', `/v2/volumes/${src.id}/snapshots`, { name: 'run-1' });
  const snapId = str(snap.body, 'snapshot', 'id');
  await sim.writeVolume(src.id, 0, Buffer.from('after the snapshot'));
  const vol = await api(sim, 'POST', '/v2/volumes', { name: 'restore-1', region: 'ams3', snapshot_id: snapId });
  const volId = str(vol.body, 'volume', 'id');

  const id = await newDroplet('reader-1', { user_data: cloudConfig(host), volumes: [volId] });
  const info = sim.dropletSsh(id);
  assert.ok(info);
  assert.equal(info.port, 22);
  assert.equal(info.hostKeySource, 'user_data');
  const droplet = await api(sim, 'GET', `/v2/droplets/${id}`);
  const pub = (get(droplet.body, 'droplet', 'networks', 'v4') as unknown[]).find((n) => get(n, 'type') === 'public');
  assert.equal(get(pub, 'ip_address'), info.ip);

  const dev = devicePath('restore-1');
  const hello = await sshExec(info.ip, info.port, user.privateKey, 'echo hello');
  assert.equal(hello.stdout.toString(), 'hello\n');
  assert.deepEqual(hello.hostKey, blobOf(host.publicKey), 'presents exactly the user_data host key');
  await assert.rejects(sshExec(info.ip, info.port, stranger.privateKey, 'true'), 'an account key not named at create');

  const digest = await sshExec(
    info.ip,
    info.port,
    user.privateKey,
    `python3 -c ${shellQuote(CONTENT_DIGEST_PY)} ${dev}`,
  );
  assert.equal(digest.code, 0, digest.stderr);
  assert.equal(digest.stdout.toString().trim(), await contentDigest(sim.snapshotFile(snapId)));
  const size = await sshExec(
    info.ip,
    info.port,
    user.privateKey,
    `python3 -c "import os;print(os.stat('${dev}').st_size)"`,
  );
  assert.equal(size.stdout.toString().trim(), String(1024 ** 3));
  const cat = await sshExec(info.ip, info.port, user.privateKey, `head -c ${2 * 1024 * 1024} ${dev}`);
  assert.deepEqual(cat.stdout, await readAt(sim.snapshotFile(snapId), 0, 2 * 1024 * 1024));
  assert.deepEqual(cat.stdout, head);
  const deep = await sshExec(
    info.ip,
    info.port,
    user.privateKey,
    `dd if=${dev} bs=1 skip=${700 * 1024 * 1024 + 3} count=11 2>/dev/null`,
  );
  assert.equal(deep.stdout.toString(), 'deep inside');

  // the device shares the snapshot's file: read-only, so the snapshot cannot change
  const write = await sshExec(info.ip, info.port, user.privateKey, `printf x | dd of=${dev} conv=notrunc 2>&1`);
  assert.notEqual(write.code, 0);
  assert.deepEqual(await readAt(sim.snapshotFile(snapId), 0, 4), head.subarray(0, 4));
  // the host's /dev/disk/by-id never sees the mounts
  assert.deepEqual(await fs.readdir('/dev/disk/by-id'), []);
});

void test('a volume is at its device path only while attached', async () => {
  const id = await newDroplet('reader-2', {});
  const { ip, port } = target(id);
  const v = await sim.createVolume({ name: 'scratch', region: 'ams3', sizeGigabytes: 1 });
  const dev = devicePath('scratch');
  const exists = async (): Promise<boolean> => (await sshExec(ip, port, user.privateKey, `test -e ${dev}`)).code === 0;
  assert.equal(await exists(), false);
  // Held, the attach stays in progress however long the SSH round trip takes.
  const release = sim.holdTransitions();
  let a: Awaited<ReturnType<typeof api>>;
  try {
    a = await api(sim, 'POST', `/v2/volumes/${v.id}/actions`, { type: 'attach', droplet_id: id });
    assert.equal(await exists(), false, 'not while the attach is in progress');
  } finally {
    release();
  }
  assert.equal(await waitAction(sim, num(a.body, 'action', 'id')), 'completed');
  assert.equal(await exists(), true);
  const ls = await sshExec(ip, port, user.privateKey, 'ls /dev/disk/by-id');
  assert.equal(ls.stdout.toString(), 'scsi-0DO_Volume_scratch\n');
  // a volume of its own (not shared with a snapshot) is writable, like a real disk
  const w = await sshExec(
    ip,
    port,
    user.privateKey,
    `printf written | dd of=${dev} bs=1 seek=4096 conv=notrunc 2>/dev/null`,
  );
  assert.equal(w.code, 0, w.stderr);
  assert.deepEqual(await sim.readVolume(v.id, 4096, 7), Buffer.from('written'));

  const d = await api(sim, 'POST', `/v2/volumes/${v.id}/actions`, { type: 'detach', droplet_id: id });
  assert.equal(await waitAction(sim, num(d.body, 'action', 'id')), 'completed');
  assert.equal(await exists(), false, 'gone after detach');
});

void test('deleting a droplet closes its sessions and its address', async () => {
  const id = await newDroplet('doomed', {});
  const { ip, port } = target(id);
  let connected: () => void = () => undefined;
  const isConnected = new Promise<void>((resolve) => (connected = resolve));
  // Without the close, this would print "late" (and the test would wait the whole sleep to see it).
  const long = sshExec(ip, port, user.privateKey, 'sleep 30; echo late', () => connected()).then(
    (r) => r.stdout.toString(),
    () => 'closed',
  );
  await isConnected;
  assert.equal((await api(sim, 'DELETE', `/v2/droplets/${id}`)).status, 204);
  const out = await long;
  assert.notEqual(out, 'late\n');
  assert.equal(sim.dropletSsh(id), undefined);
  await assert.rejects(sshExec(ip, port, user.privateKey, 'true'));
});

void test('a droplet without a host key in user_data presents a random one', async () => {
  const a = await newDroplet('random-a', { user_data: '#!/bin/sh\necho not cloud-config\n' });
  const b = await newDroplet('random-b', {});
  const ka = (await sshExec(target(a).ip, target(a).port, user.privateKey, 'true')).hostKey;
  const kb = (await sshExec(target(b).ip, target(b).port, user.privateKey, 'true')).hostKey;
  assert.equal(sim.dropletSsh(a)?.hostKeySource, 'random');
  assert.notDeepEqual(ka, kb);
  assert.notDeepEqual(ka, blobOf(host.publicKey));
  assert.deepEqual(ka, blobOf(sim.dropletSsh(a)?.hostPublicKey ?? ''));
});

void test('sshDropAfterBytes drops one connection, once', async () => {
  const id = await newDroplet('flaky', {});
  const { ip, port } = target(id);
  sim.setFaults({ sshDropAfterBytes: 100_000 });
  const first = await sshExec(ip, port, user.privateKey, 'head -c 1000000 /dev/zero').then(
    (r) => r.stdout.length,
    () => -1,
  );
  assert.ok(first < 1_000_000, `first transfer was cut (${first})`);
  const second = await sshExec(ip, port, user.privateKey, 'head -c 1000000 /dev/zero');
  assert.equal(second.stdout.length, 1_000_000);
  assert.equal(sim.faults.sshDropAfterBytes, undefined);
});

void test('sshStallAfterBytes stalls one exec after that many bytes, with the connection up; once', async () => {
  const id = await newDroplet('stalling', {});
  const { ip, port } = target(id);
  sim.setFaults({ sshStallAfterBytes: 100_000 });
  let received = 0;
  let exited = false;
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client
      .on('ready', () => {
        client.exec('head -c 1000000 /dev/zero', (err, stream) => {
          if (err) return reject(err);
          stream.on('data', (d: Buffer) => (received += d.length));
          stream.on('exit', () => (exited = true));
          resolve();
        });
      })
      .on('error', reject)
      .connect({ host: ip, port, username: 'root', privateKey: user.privateKey, hostVerifier: () => true });
  });
  try {
    await waitFor('the first 100 000 bytes', () => received >= 100_000 || undefined);
    assert.equal(sim.faults.sshStallAfterBytes, undefined, 'one-shot');
    // The rest never comes while the channel is open (the process is blocked, not finished); a look, not a wait.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(received, 100_000);
    assert.equal(exited, false);
  } finally {
    client.end();
  }
  const next = await sshExec(ip, port, user.privateKey, 'head -c 1000000 /dev/zero');
  assert.equal(next.stdout.length, 1_000_000, 'the next exec goes through');
});

void test('sshDropTimes: the drop fires that many times, one connection after another', async () => {
  const id = await newDroplet('flaky-thrice', {});
  const { ip, port } = target(id);
  sim.setFaults({ sshDropAfterBytes: 100_000, sshDropTimes: 3 });
  const lengths: number[] = [];
  for (let i = 0; i < 4; i++) {
    lengths.push(
      await sshExec(ip, port, user.privateKey, 'head -c 1000000 /dev/zero').then(
        (r) => r.stdout.length,
        () => -1,
      ),
    );
  }
  assert.ok(
    lengths.slice(0, 3).every((n) => n < 1_000_000),
    lengths.join(),
  );
  assert.equal(lengths[3], 1_000_000);
  assert.equal(sim.faults.sshDropAfterBytes, undefined);
});
