// Timing profiles: the sampler's distributions and seed, and the simulator's use of them; the call log's
// per-client accounting. Durations are checked as lower bounds only (a timer never fires early; a busy
// machine may fire it late).
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { REALISTIC, TimingSampler, lognormalMs, stepOfRequest, type Profile, type TimedStep } from './profiles';
import { startSimulator, type Simulator } from './index';
import { NO_RATE_LIMIT, api, num, str, waitAction, waitActive } from './test-helpers';

const STEPS = Object.keys(REALISTIC) as TimedStep[];

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

void test('each step draws around its median and p90, reproducibly from the seed, scaled by the time scale', () => {
  for (const step of STEPS) {
    const sampler = new TimingSampler(REALISTIC, 1, 42);
    const draws = Array.from({ length: 4000 }, () => sampler.sample(step)).sort((a, b) => a - b);
    const { medianMs, p90Ms } = REALISTIC[step];
    assert.ok(Math.abs(quantile(draws, 0.5) / medianMs - 1) < 0.1, `${step} median ${quantile(draws, 0.5)}`);
    assert.ok(Math.abs(quantile(draws, 0.9) / p90Ms - 1) < 0.1, `${step} p90 ${quantile(draws, 0.9)}`);
  }
  const a = new TimingSampler(REALISTIC, 1, 7);
  const b = new TimingSampler(REALISTIC, 1, 7);
  const tenth = new TimingSampler(REALISTIC, 0.1, 7);
  for (let i = 0; i < 50; i++) {
    const full = a.sample('attach');
    assert.equal(b.sample('attach'), full);
    assert.ok(Math.abs(tenth.sample('attach') - full / 10) <= 1);
  }
  assert.equal(lognormalMs({ medianMs: 100, p90Ms: 200, source: '' }, 1.2815515655446004), 200);
  assert.throws(() => new TimingSampler(REALISTIC, 0, 1), /time scale/);
  for (const spread of Object.values(REALISTIC)) assert.ok(spread.source.length > 20, 'every figure says its source');
});

void test('requests map to their steps', () => {
  assert.equal(stepOfRequest('POST', '/v2/volumes/{volume_id}/snapshots', {}), 'snapshotCreate');
  assert.equal(stepOfRequest('POST', '/v2/volumes', { snapshot_id: 'x' }), 'volumeFromSnapshot');
  assert.equal(stepOfRequest('POST', '/v2/volumes', { size_gigabytes: 1 }), 'request');
  assert.equal(stepOfRequest('DELETE', '/v2/droplets/{droplet_id}', undefined), 'delete');
  assert.equal(stepOfRequest('GET', '/v2/volumes', undefined), 'request');
});

/** Every step a fixed time (median = p90: no spread), so the lower bounds below are exact. */
const FIXED_MS: Record<TimedStep, number> = {
  dropletReady: 400,
  snapshotCreate: 300,
  volumeFromSnapshot: 250,
  attach: 350,
  detach: 200,
  delete: 150,
  request: 20,
};
const FIXED: Profile = Object.fromEntries(
  STEPS.map((s) => [s, { medianMs: FIXED_MS[s], p90Ms: FIXED_MS[s], source: 'test' }]),
) as Profile;

let sim: Simulator;

before(async () => {
  // actionDelayMs and dropletActiveDelayMs would be near-instant: the profile's figures must win.
  sim = await startSimulator({
    ...NO_RATE_LIMIT,
    actionDelayMs: 1,
    dropletActiveDelayMs: 1,
    snapshotIntervalMs: 0,
    sshPort: 0,
    seed: 3,
    profile: FIXED,
  });
});

after(async () => {
  await sim.close();
});

/** Milliseconds `fn` took, for a lower bound. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const value = await fn();
  return [value, Date.now() - t0];
}

void test('a profiled simulator takes each step its time: droplet, snapshot, volume from snapshot, attach, delete', async () => {
  // Timers may round a millisecond down: allow for it in the lower bounds.
  const atLeast = (ms: number, step: TimedStep, what: string): void =>
    assert.ok(ms >= FIXED_MS[step] - 2, `${what} took ${ms} ms, under ${FIXED_MS[step]}`);
  const created = await api(sim, 'POST', '/v2/droplets', {
    name: 'profiled',
    region: 'nyc1',
    size: 's-1vcpu-1gb',
    image: 'debian-12-x64',
  });
  assert.equal(created.status, 202);
  const dropletId = num(created.body, 'droplet', 'id');
  const droplet = sim.liveResources().droplets.find((d) => d.id === dropletId);
  await waitActive(sim, dropletId);
  atLeast(Date.now() - (droplet?.createdAt ?? Date.now()), 'dropletReady', 'droplet create → active');

  const source = await sim.createVolume({ name: 'profiled-src', region: 'nyc1', sizeGigabytes: 1 });
  const [snap, snapMs] = await timed(() => api(sim, 'POST', `/v2/volumes/${source.id}/snapshots`, { name: 's1' }));
  assert.equal(snap.status, 201);
  atLeast(snapMs, 'snapshotCreate', 'snapshot');
  const [copy, copyMs] = await timed(() =>
    api(sim, 'POST', '/v2/volumes', {
      name: 'profiled-copy',
      region: 'nyc1',
      snapshot_id: str(snap.body, 'snapshot', 'id'),
    }),
  );
  assert.equal(copy.status, 201);
  atLeast(copyMs, 'volumeFromSnapshot', 'volume from snapshot');

  const copyId = str(copy.body, 'volume', 'id');
  const attach = await api(sim, 'POST', `/v2/volumes/${copyId}/actions`, { type: 'attach', droplet_id: dropletId });
  assert.equal(attach.status, 202);
  const actionId = num(attach.body, 'action', 'id');
  await waitAction(sim, actionId);
  const done = sim.action(actionId);
  assert.equal(done?.status, 'completed');
  atLeast((done?.completedAt ?? 0) - (done?.startedAt ?? 0), 'attach', 'attach');
  const [, getMs] = await timed(() => api(sim, 'GET', `/v2/volumes/${copyId}`));
  atLeast(getMs, 'request', 'a GET');
  const [del, delMs] = await timed(() => api(sim, 'DELETE', `/v2/droplets/${dropletId}`));
  assert.equal(del.status, 204);
  atLeast(delMs, 'delete', 'a delete');
});

void test('the call log tells clients apart by User-Agent, and whose request got the 429', async () => {
  const limited = await startSimulator({ rateLimitPerMinute: 2, sshPort: 0 });
  try {
    const get = (ua: string, token = limited.token): Promise<Response> =>
      fetch(`${limited.apiUrl}/v2/account`, { headers: { authorization: `Bearer ${token}`, 'user-agent': ua } });
    assert.equal((await get('dosvob')).status, 200);
    assert.equal((await get('other/2 (linux)')).status, 200);
    assert.equal((await get('other/2 (linux)')).status, 429);
    assert.equal((await get('other/2', 'not-a-token')).status, 401);
    assert.deepEqual(limited.callsByClient(), {
      dosvob: { requests: 1, rateLimited: 0 },
      other: { requests: 3, rateLimited: 1 },
    });
  } finally {
    await limited.close();
  }
});

void test('diskBytesPerGib: the sizes stay DigitalOcean’s, the files are scaled, snapshot sizes scaled back', async () => {
  const MiB = 1 << 20;
  const scaled = await startSimulator({ ...NO_RATE_LIMIT, snapshotIntervalMs: 0, sshPort: 0, diskBytesPerGib: MiB });
  try {
    const v = await scaled.createVolume({ name: 'scaled', region: 'nyc1', sizeGigabytes: 500 });
    assert.equal((await stat(scaled.volumeFile(v.id))).size, 500 * MiB);
    await scaled.writeVolume(v.id, 10 * MiB, Buffer.alloc(2 * MiB, 7));
    const snap = await api(scaled, 'POST', `/v2/volumes/${v.id}/snapshots`, { name: 's' });
    assert.equal(snap.status, 201);
    // 2 MiB of data at 1 MiB per GiB: 2 GiB stored; the snapshot still makes 500 GiB volumes.
    assert.equal(num(snap.body, 'snapshot', 'size_gigabytes'), 2);
    assert.equal(num(snap.body, 'snapshot', 'min_disk_size'), 500);
    const listed = await api(scaled, 'GET', `/v2/volumes/${v.id}`);
    assert.equal(num(listed.body, 'volume', 'size_gigabytes'), 500);
  } finally {
    await scaled.close();
  }
});
