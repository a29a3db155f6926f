// State machines (actions, droplet status, attach/detach), the API's rules and limits, pagination.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateEd25519 } from '../support/exec-ssh-server';
import { startSimulator, type Simulator } from './index';
import { NO_RATE_LIMIT, api, get, num, str, waitAction, waitActive } from './test-helpers';

let sim: Simulator;

before(async () => {
  sim = await startSimulator({
    // These tests are not about the rate limit (simulator-faults tests it on simulators of its own).
    ...NO_RATE_LIMIT,
    actionDelayMs: 40,
    dropletActiveDelayMs: 40,
    snapshotIntervalMs: 0,
    sshPort: 0,
    seed: 7,
  });
});

after(async () => {
  await sim.close();
});

async function droplet(name: string, region = 'nyc1', extra: Record<string, unknown> = {}): Promise<number> {
  const r = await api(sim, 'POST', '/v2/droplets', {
    name,
    region,
    size: 's-1vcpu-1gb',
    image: 'debian-12-x64',
    ...extra,
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return num(r.body, 'droplet', 'id');
}

async function volume(name: string, region = 'nyc1', size = 1): Promise<string> {
  return (await sim.createVolume({ name, region, sizeGigabytes: size })).id;
}

const attach = (volumeId: string, dropletId: number) =>
  api(sim, 'POST', `/v2/volumes/${volumeId}/actions`, { type: 'attach', droplet_id: dropletId });
const detach = (volumeId: string, dropletId: number) =>
  api(sim, 'POST', `/v2/volumes/${volumeId}/actions`, { type: 'detach', droplet_id: dropletId });

/** Run `fn` with the simulator's transitions held: what it sees in between cannot have moved on. */
async function held<T>(fn: () => Promise<T>): Promise<T> {
  const release = sim.holdTransitions();
  try {
    return await fn();
  } finally {
    release();
  }
}

void test('droplet: new without IPv4, then active with it; its create action completes', async () => {
  const id = await held(async () => {
    const created = await droplet('status-1');
    assert.equal(typeof created, 'number');
    const now = await api(sim, 'GET', `/v2/droplets/${created}`);
    assert.equal(str(now.body, 'droplet', 'status'), 'new');
    assert.deepEqual(get(now.body, 'droplet', 'networks', 'v4'), []);
    return created;
  });
  const active = await waitActive(sim, id);
  const ips = (get(active, 'droplet', 'networks', 'v4') as unknown[]).map(
    (n) => `${str(n, 'type')}:${str(n, 'ip_address')}`,
  );
  assert.ok(
    ips.some((ip) => /^public:127\.\d+\.\d+\.\d+$/.test(ip)),
    ips.join(),
  );
  const actions = await api(sim, 'GET', `/v2/droplets/${id}/actions`);
  assert.equal(str(actions.body, 'actions', 0, 'type'), 'create');
  assert.equal(str(actions.body, 'actions', 0, 'status'), 'completed');
});

void test('attach/detach: in-progress then completed; state changes only on completion', async () => {
  const v = await volume('attach-vol-1');
  const v2 = await volume('attach-vol-2');
  const d = await held(async () => {
    const created = await droplet('attach-1');
    // a droplet still being created has a pending event
    const early = await attach(v, created);
    assert.equal(early.status, 422);
    assert.equal(str(early.body, 'message'), 'Droplet already has a pending event');
    return created;
  });
  await waitActive(sim, d);

  const a = await held(async () => {
    const started = await attach(v, d);
    assert.equal(started.status, 202);
    assert.equal(str(started.body, 'action', 'type'), 'attach_volume');
    assert.equal(str(started.body, 'action', 'resource_type'), 'volume');
    assert.equal(get(started.body, 'action', 'resource_id'), null);
    assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), []);
    // one pending action per droplet
    const busy = await attach(v2, d);
    assert.equal(busy.status, 422);
    assert.equal(str(busy.body, 'message'), 'Droplet already has a pending event');
    return started;
  });
  assert.equal(await waitAction(sim, num(a.body, 'action', 'id')), 'completed');
  assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), [d]);
  assert.deepEqual(get((await api(sim, 'GET', `/v2/droplets/${d}`)).body, 'droplet', 'volume_ids'), [v]);

  // attached elsewhere, already attached, wrong region, deleting an attached volume
  const other = await droplet('attach-2');
  await waitActive(sim, other);
  assert.equal((await attach(v, other)).status, 422);
  assert.equal((await attach(v, d)).status, 422);
  const far = await volume('attach-far', 'sfo3');
  assert.equal((await attach(far, d)).status, 422);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes/${v}`)).status, 409);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes?name=attach-vol-1&region=nyc1`)).status, 409);

  // detach: the volume stays attached until the action completes
  assert.equal((await detach(v2, d)).status, 422); // not attached
  const det = await held(async () => {
    const started = await detach(v, d);
    assert.equal(started.status, 202);
    assert.equal(str(started.body, 'action', 'type'), 'detach_volume');
    assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), [d]);
    return started;
  });
  assert.equal(await waitAction(sim, num(det.body, 'action', 'id')), 'completed');
  assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), []);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes/${v}`)).status, 204);
});

void test('an errored action changes nothing; a droplet can be stuck in new', async () => {
  const d = await droplet('fault-1');
  await waitActive(sim, d);
  const v = await volume('fault-vol');
  sim.setFaults({ failNextActions: 1 });
  const a = await attach(v, d);
  assert.equal(await waitAction(sim, num(a.body, 'action', 'id')), 'errored');
  assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), []);
  const again = await attach(v, d);
  assert.equal(await waitAction(sim, num(again.body, 'action', 'id')), 'completed');

  sim.setFaults({ stuckDroplets: 1 });
  const stuck = await droplet('stuck-1');
  const fine = await droplet('fine-1');
  await waitActive(sim, fine);
  // Not a synchronisation: a stuck droplet schedules no activation at all; this only leaves room to see one.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(str((await api(sim, 'GET', `/v2/droplets/${stuck}`)).body, 'droplet', 'status'), 'new');
  assert.equal(sim.dropletSsh(stuck), undefined);
  sim.setFaults({});
});

void test('deleting a droplet detaches its volumes; DELETE by tag', async () => {
  const v = await volume('del-vol');
  const d = await droplet('del-1', 'nyc1', { volumes: [v], tags: ['gone'] });
  assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), [d]);
  assert.equal((await api(sim, 'DELETE', `/v2/droplets/${d}`)).status, 204);
  assert.equal((await api(sim, 'GET', `/v2/droplets/${d}`)).status, 404);
  assert.deepEqual(get((await api(sim, 'GET', `/v2/volumes/${v}`)).body, 'volume', 'droplet_ids'), []);
  await droplet('tag-1', 'nyc1', { tags: ['sweep-me'] });
  await droplet('tag-2', 'nyc1', { tags: ['sweep-me'] });
  assert.equal(num((await api(sim, 'GET', '/v2/droplets?tag_name=sweep-me')).body, 'meta', 'total'), 2);
  assert.equal((await api(sim, 'DELETE', '/v2/droplets?tag_name=sweep-me')).status, 204);
  assert.equal(num((await api(sim, 'GET', '/v2/droplets?tag_name=sweep-me')).body, 'meta', 'total'), 0);
  assert.equal(sim.resourcesByTag('sweep-me').droplets.length, 0);
});

void test('at most 7 volumes per droplet', async () => {
  const vols: string[] = [];
  for (let i = 0; i < 8; i++) vols.push(await volume(`seven-${i}`));
  const tooMany = await api(sim, 'POST', '/v2/droplets', {
    name: 'seven-x',
    region: 'nyc1',
    size: 's-1vcpu-1gb',
    image: 'debian-12-x64',
    volumes: vols,
  });
  assert.equal(tooMany.status, 422);
  const d = await droplet('seven', 'nyc1', { volumes: vols.slice(0, 7) });
  await waitActive(sim, d);
  const eighth = await attach(vols[7] ?? '', d);
  assert.equal(eighth.status, 422);
  assert.match(str(eighth.body, 'message'), /at most 7/);
  await api(sim, 'DELETE', `/v2/droplets/${d}`);
});

void test('volume rules: names, sizes, uniqueness per region, from a snapshot', async () => {
  const create = (body: Record<string, unknown>) => api(sim, 'POST', '/v2/volumes', body);
  for (const name of ['Upper', '1starts-with-digit', 'under_score', 'a'.repeat(65), '']) {
    assert.equal((await create({ name, region: 'nyc3', size_gigabytes: 1 })).status, 422, name);
  }
  assert.equal((await create({ name: `a${'-'.repeat(63)}`, region: 'nyc3', size_gigabytes: 1 })).status, 201);
  for (const size of [0, 16385, 1.5, '1']) {
    assert.equal((await create({ name: 'sizes', region: 'nyc3', size_gigabytes: size })).status, 422, String(size));
  }
  assert.equal((await create({ name: 'huge', region: 'nyc3', size_gigabytes: 16384 })).status, 201);
  assert.equal((await create({ name: 'region', region: 'mars1', size_gigabytes: 1 })).status, 422);
  assert.equal((await create({ name: 'twin', region: 'nyc3', size_gigabytes: 1 })).status, 201);
  assert.equal((await create({ name: 'twin', region: 'nyc3', size_gigabytes: 1 })).status, 409);
  assert.equal((await create({ name: 'twin', region: 'fra1', size_gigabytes: 1 })).status, 201);

  const src = await volume('snap-src', 'nyc3', 3);
  const snap = await api(sim, 'POST', `/v2/volumes/${src}/snapshots`, { name: 's' });
  const snapId = str(snap.body, 'snapshot', 'id');
  assert.equal(num(snap.body, 'snapshot', 'min_disk_size'), 3);
  const from = await create({ name: 'from-snap', region: 'nyc3', size_gigabytes: 100, snapshot_id: snapId });
  assert.equal(from.status, 201);
  assert.equal(num(from.body, 'volume', 'size_gigabytes'), 3);
  assert.equal((await create({ name: 'from-snap-2', region: 'sfo3', snapshot_id: snapId })).status, 422);
  assert.equal((await create({ name: 'from-snap-3', region: 'nyc3', snapshot_id: 'missing' })).status, 404);
});

void test('snapshot rules: duplicate name 409, 25 per volume, one per interval', async () => {
  const v = await volume('snaps');
  const snap = (name: string) => api(sim, 'POST', `/v2/volumes/${v}/snapshots`, { name });
  assert.equal((await snap('dup')).status, 201);
  assert.equal((await snap('dup')).status, 409);
  assert.equal((await api(sim, 'POST', `/v2/volumes/${v}/snapshots`, {})).status, 422);
  for (let i = 1; i < 25; i++) assert.equal((await snap(`n-${i}`)).status, 201);
  const full = await snap('n-25');
  assert.equal(full.status, 422);
  assert.match(str(full.body, 'message'), /at most 25/);
  assert.equal(num((await api(sim, 'GET', `/v2/volumes/${v}/snapshots?per_page=200`)).body, 'meta', 'total'), 25);

  const w = await volume('snaps-interval');
  sim.configure({ snapshotIntervalMs: 60_000 });
  try {
    assert.equal((await api(sim, 'POST', `/v2/volumes/${w}/snapshots`, { name: 'first' })).status, 201);
    const second = await api(sim, 'POST', `/v2/volumes/${w}/snapshots`, { name: 'second' });
    assert.equal(second.status, 422);
    assert.match(str(second.body, 'message'), /every 1 minutes/);
  } finally {
    sim.configure({ snapshotIntervalMs: 0 });
  }
});

void test('droplet rules: user_data size, keys, regions and sizes, droplet limit', async () => {
  const base = { name: 'rules', region: 'nyc1', size: 's-1vcpu-1gb', image: 'ubuntu-24-04-x64' };
  const create = (extra: Record<string, unknown>) => api(sim, 'POST', '/v2/droplets', { ...base, ...extra });
  assert.equal((await create({ user_data: 'x'.repeat(64 * 1024 + 1) })).status, 422);
  assert.equal((await create({ ssh_keys: [12345] })).status, 422);
  assert.equal((await create({ ssh_keys: ['00:11:22'] })).status, 422);
  assert.equal((await create({ region: 'tor1', size: 's-1vcpu-512mb-10gb' })).status, 422);
  assert.equal((await create({ region: 'mars1' })).status, 422);
  assert.equal((await create({ size: 'huge' })).status, 422);
  assert.equal((await create({ image: 'windows' })).status, 422);
  assert.equal((await create({ name: 'bad name!' })).status, 422);
  const key = generateEd25519();
  const k = await api(sim, 'POST', '/v2/account/keys', { name: 'k', public_key: key.publicKey });
  const byFingerprint = await create({
    name: 'ok-1',
    region: 'fra1',
    size: 's-1vcpu-512mb-10gb',
    ssh_keys: [str(k.body, 'ssh_key', 'fingerprint')],
    user_data: 'x'.repeat(64 * 1024),
  });
  assert.equal(byFingerprint.status, 202);
  assert.equal(
    (await api(sim, 'POST', '/v2/account/keys', { name: 'bad', public_key: 'ssh-ed25519 nope' })).status,
    422,
  );

  sim.configure({ dropletLimit: sim.liveResources().droplets.length });
  try {
    const over = await create({ name: 'over' });
    assert.equal(over.status, 422);
    assert.match(str(over.body, 'message'), /droplet limit/);
  } finally {
    sim.configure({ dropletLimit: 25 });
  }
});

void test('pagination: per_page capped at 200, absolute production links carrying the filters', async () => {
  for (let i = 0; i < 205; i++) await sim.createVolume({ name: `page-${i}`, region: 'lon1', sizeGigabytes: 1 });
  const first = await api(sim, 'GET', '/v2/volumes?region=lon1&per_page=500');
  assert.equal((get(first.body, 'volumes') as unknown[]).length, 200);
  assert.equal(num(first.body, 'meta', 'total'), 205);
  assert.equal(
    str(first.body, 'links', 'pages', 'next'),
    'https://api.digitalocean.com/v2/volumes?page=2&region=lon1&per_page=500',
  );
  const dflt = await api(sim, 'GET', '/v2/volumes?region=lon1');
  assert.equal((get(dflt.body, 'volumes') as unknown[]).length, 20);
  assert.equal(str(dflt.body, 'links', 'pages', 'last'), 'https://api.digitalocean.com/v2/volumes?page=11&region=lon1');
  const last = await api(sim, 'GET', '/v2/volumes?region=lon1&page=11');
  assert.equal((get(last.body, 'volumes') as unknown[]).length, 5);
  assert.equal(get(last.body, 'links', 'pages', 'next'), undefined);
  const beyond = await api(sim, 'GET', '/v2/volumes?region=lon1&page=99');
  assert.deepEqual(get(beyond.body, 'volumes'), []);
  // all pages together hold every volume once
  const names = new Set<string>();
  for (let p = 1; p <= 3; p++) {
    const r = await api(sim, 'GET', `/v2/volumes?region=lon1&per_page=100&page=${p}`);
    for (const v of get(r.body, 'volumes') as unknown[]) names.add(str(v, 'name'));
  }
  assert.equal(names.size, 205);
});
