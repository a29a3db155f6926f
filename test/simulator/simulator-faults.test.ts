// Rate limits, injected faults (reproducible from a seed) and the inspection helpers.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { startSimulator, type Simulator } from './index';
import { api, num, str, waitActive, waitFor } from './test-helpers';

const sims: Simulator[] = [];
let keptDir: string | undefined;
async function sim(options: Parameters<typeof startSimulator>[0] = {}): Promise<Simulator> {
  const s = await startSimulator({
    sshPort: 0,
    snapshotIntervalMs: 0,
    actionDelayMs: 20,
    dropletActiveDelayMs: 20,
    ...options,
  });
  sims.push(s);
  return s;
}

after(async () => {
  await Promise.all(sims.map((s) => s.close()));
  if (keptDir) await rm(keptDir, { recursive: true, force: true });
});

void test('per-minute limit: headers count down, then 429 with retry-after; tokens are separate', async () => {
  const s = await sim({ rateLimitPerMinute: 5, tokens: ['token-a', 'token-b'] });
  // The window opened between these two instants: the bounds below come from them, not from a fixed allowance.
  const firstSent = Date.now();
  const remaining: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await api(s, 'GET', '/v2/account');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('ratelimit-limit'), '5000');
    remaining.push(r.headers.get('ratelimit-remaining') ?? '');
  }
  assert.deepEqual(remaining, ['4', '3', '2', '1', '0']);
  const limited = await api(s, 'GET', '/v2/account');
  assert.equal(limited.status, 429);
  assert.equal(str(limited.body, 'id'), 'too_many_requests');
  const limitedAt = Date.now();
  // retry-after: when the first request leaves the minute, seen from the 429; ratelimit-reset: when it leaves the hour.
  const retry = Number(limited.headers.get('retry-after'));
  const elapsed = limitedAt - firstSent;
  assert.ok(retry <= 60 && retry >= Math.floor((60_000 - elapsed) / 1000), `retry-after ${retry}, ${elapsed} ms in`);
  const reset = Number(limited.headers.get('ratelimit-reset'));
  assert.ok(
    reset >= Math.floor((firstSent + 3_600_000) / 1000) && reset <= Math.ceil((limitedAt + 3_600_000) / 1000),
    `reset ${reset}`,
  );
  assert.equal((await api(s, 'GET', '/v2/account', undefined, 'token-b')).status, 200);
});

void test('per-hour limit: 429 once the hour is used up', async () => {
  const s = await sim({ rateLimitPerHour: 3 });
  for (let i = 0; i < 3; i++) assert.equal((await api(s, 'GET', '/v2/regions')).status, 200);
  const r = await api(s, 'GET', '/v2/regions');
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('ratelimit-remaining'), '0');
});

void test('serverErrorRate is reproducible from the seed', async () => {
  const run = async (): Promise<number[]> => {
    const s = await sim({ seed: 42, faults: { serverErrorRate: 0.3 } });
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await api(s, 'GET', '/v2/account')).status);
    return statuses;
  };
  const a = await run();
  const b = await run();
  assert.deepEqual(a, b);
  assert.ok(a.includes(500) && a.includes(200), a.join());
  // reseeding through setFaults replays the same sequence
  const s = await sim({ seed: 1 });
  const replay = async (): Promise<number[]> => {
    s.setFaults({ seed: 99, serverErrorRate: 0.5 });
    const out: number[] = [];
    for (let i = 0; i < 20; i++) out.push((await api(s, 'GET', '/v2/sizes')).status);
    return out;
  };
  assert.deepEqual(await replay(), await replay());
});

void test('a lost answer: the create happened although the client saw a 5xx', async () => {
  const s = await sim({ faults: { lostResponseRate: 1, only: ['POST /v2/volumes'] } });
  const r = await api(s, 'POST', '/v2/volumes', { name: 'lost', region: 'nyc1', size_gigabytes: 1 });
  assert.equal(r.status, 500);
  assert.equal(str(r.body, 'id'), 'server_error');
  assert.equal((await api(s, 'GET', '/v2/volumes?name=lost')).status, 200, 'other endpoints are unaffected');
  assert.equal(num((await api(s, 'GET', '/v2/volumes?name=lost')).body, 'meta', 'total'), 1);
  assert.equal(s.creationCounts().volumes, 1);
  const retry = await api(s, 'POST', '/v2/volumes', { name: 'lost', region: 'nyc1', size_gigabytes: 1 });
  assert.equal(retry.status, 409, 'a blind retry meets its own first attempt');
  assert.equal(s.callLog.filter((e) => e.fault === 'lost_response').length, 1); // errors are answered as they are
});

void test('failNextRequests and serverErrorRate answer 5xx without doing anything', async () => {
  const s = await sim({ faults: { failNextRequests: 1, serverErrorStatus: 502 } });
  const r = await api(s, 'POST', '/v2/volumes', { name: 'never', region: 'nyc1', size_gigabytes: 1 });
  assert.equal(r.status, 502);
  assert.equal(s.liveResources().volumes.length, 0);
  assert.equal((await api(s, 'POST', '/v2/volumes', { name: 'never', region: 'nyc1', size_gigabytes: 1 })).status, 201);
});

void test('slow answers outlast a client timeout; the operation still happens', async () => {
  const s = await sim({ faults: { slowRate: 1, slowMs: 1000, only: ['POST /v2/account/keys'] } });
  const { generateEd25519 } = await import('../support/exec-ssh-server');
  const key = generateEd25519();
  // The client gives up once the key exists and before any answer: a client timeout, at a point that does not depend
  // on how fast the machine is.
  const gaveUp = new AbortController();
  let keysWhenDone = -1;
  s.onHandled = () => {
    keysWhenDone = s.liveResources().sshKeys.length;
    gaveUp.abort();
  };
  await assert.rejects(
    fetch(`${s.apiUrl}/v2/account/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'slow', public_key: key.publicKey }),
      signal: gaveUp.signal,
    }),
  );
  s.onHandled = undefined;
  assert.equal(keysWhenDone, 1, 'done before the answer');
  const slow = await waitFor('the slow answer', () => s.callLog.find((e) => e.path === '/v2/account/keys'));
  assert.equal(slow.fault, 'slow');
  assert.ok(slow.durationMs >= 1000, `answered after ${slow.durationMs} ms`);
  assert.equal(s.liveResources().sshKeys.length, 1);
  assert.equal((await api(s, 'GET', '/v2/account')).status, 200);
  assert.equal(s.callLog.at(-1)?.fault, undefined, 'unmatched endpoints are not slowed');
});

void test('429 bursts: every N requests, M answers of 429', async () => {
  const s = await sim({ faults: { rateLimitBurst: { every: 3, length: 2, retryAfterSeconds: 2 } } });
  const statuses: number[] = [];
  let retryAfter: string | null = null;
  for (let i = 0; i < 10; i++) {
    const r = await api(s, 'GET', '/v2/regions');
    statuses.push(r.status);
    if (r.status === 429) retryAfter = r.headers.get('retry-after');
  }
  assert.deepEqual(statuses, [200, 200, 200, 429, 429, 200, 200, 200, 429, 429]);
  assert.equal(retryAfter, '2');
});

void test('inspection: call log, counts per template, creations, live resources, resource-seconds', async () => {
  const s = await sim();
  const beforeCreate = Date.now();
  const d = await api(s, 'POST', '/v2/droplets', {
    name: 'dosvob-run-7',
    region: 'nyc1',
    size: 's-1vcpu-1gb',
    image: 'ubuntu-24-04-x64',
    tags: ['dosvob:run-7'],
  });
  const dropletId = num(d.body, 'droplet', 'id');
  await api(s, 'POST', '/v2/volumes', {
    name: 'dosvob-run-7-vol',
    region: 'nyc1',
    size_gigabytes: 10,
    tags: ['dosvob:run-7'],
  });
  await api(s, 'GET', '/v2/droplets/999');
  await waitActive(s, dropletId);
  const entry = s.callLog[0];
  assert.ok(entry);
  assert.equal(entry.method, 'POST');
  assert.equal(entry.path, '/v2/droplets');
  assert.equal(entry.template, '/v2/droplets');
  assert.equal(entry.status, 202);
  assert.equal(typeof entry.time, 'number');
  assert.deepEqual((entry.requestBody as { tags: string[] }).tags, ['dosvob:run-7']);
  const counts = s.callCounts();
  assert.equal(counts['POST /v2/droplets'], 1);
  assert.ok((counts['GET /v2/droplets/{droplet_id}'] ?? 0) >= 2);
  assert.deepEqual(s.creationCounts(), { droplets: 1, volumes: 1, snapshots: 0, sshKeys: 0, actions: 1 });
  assert.equal(s.resourcesByPrefix('dosvob-run-7').droplets.length, 1);
  assert.equal(s.resourcesByPrefix('dosvob-run-7').volumes.length, 1);
  assert.equal(s.resourcesByTag('dosvob:run-7').volumes.length, 1);
  assert.equal(s.resourcesByTag('other').droplets.length, 0);
  const live = s.liveResources();
  assert.equal(live.droplets[0]?.status, 'active');
  assert.equal(live.pendingActions.length, 0);
  // Let the droplet live at least 200 ms, so its usage has a known lower bound.
  await new Promise((r) => setTimeout(r, 200));
  await api(s, 'DELETE', `/v2/droplets/${dropletId}`);
  const lived = (Date.now() - beforeCreate) / 1000;
  const usage = s.resourceSeconds();
  assert.ok(usage.dropletSeconds >= 0.2 && usage.dropletSeconds <= lived, `${usage.dropletSeconds} of ${lived} s`);
  assert.ok(usage.dropletBilledSeconds >= 60);
  assert.ok(usage.volumeGibSeconds >= 10 * 0.2, String(usage.volumeGibSeconds));
  const frozen = s.resourceSeconds().dropletSeconds;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(s.resourceSeconds().dropletSeconds, frozen, 'a deleted droplet stops counting');
  assert.equal(s.liveResources().droplets.length, 0);
});

void test('standalone data dir is kept; state starts empty', async () => {
  keptDir = await mkdtemp(path.join(os.tmpdir(), 'dosvob-sim-kept-'));
  const s = await sim({ dataDir: keptDir });
  const v = await s.createVolume({ name: 'kept', region: 'nyc1', sizeGigabytes: 1 });
  const file = s.volumeFile(v.id);
  await s.close();
  assert.equal((await stat(file)).size, 1024 ** 3);
  const again = await sim({ dataDir: keptDir });
  assert.equal(again.liveResources().volumes.length, 0);
  await assert.rejects(stat(file), 'files of the earlier run are cleared');
});
