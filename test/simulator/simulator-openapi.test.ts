// Fidelity: a broad scenario over every endpoint and every error kind; each answer is checked against
// the OpenAPI spec's schemas and its examples' key sets, each request we sent against the request schemas.
// The spec is ../shared/ material: without it (a user's clone) the checks are skipped, in CI they fail.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateEd25519 } from '../support/exec-ssh-server';
import { skipUnlessPresent } from '../support/shared-material';
import { exampleKeyDiff, openapiSpecMissing, specOperations, validateRequest, validateResponse } from './openapi-check';
import { startSimulator, type Simulator } from './index';
import { NO_RATE_LIMIT, api, get, num, str, waitAction, waitActive } from './test-helpers';

let sim: Simulator;
const noSpec = skipUnlessPresent(openapiSpecMissing());

before(async () => {
  sim = await startSimulator({
    ...NO_RATE_LIMIT,
    actionDelayMs: 20,
    dropletActiveDelayMs: 30,
    snapshotIntervalMs: 0,
    sshPort: 0,
    seed: 1,
  });
});

after(async () => {
  await sim.close();
});

void test('every endpoint answers in the spec’s shapes', { skip: noSpec }, async () => {
  const key = generateEd25519();
  const host = generateEd25519();

  // account and catalog
  assert.equal((await api(sim, 'GET', '/v2/account')).status, 200);
  const regions = await api(sim, 'GET', '/v2/regions');
  assert.ok((get(regions.body, 'regions') as unknown[]).some((r) => get(r, 'slug') === 'atl1'));
  const sizes = await api(sim, 'GET', '/v2/sizes?per_page=2');
  assert.equal(num(sizes.body, 'meta', 'total') > 2, true);
  assert.match(str(sizes.body, 'links', 'pages', 'next'), /^https:\/\/api\.digitalocean\.com\/v2\/sizes\?page=2/);
  await api(sim, 'GET', '/v2/sizes?per_page=2&page=2');

  // SSH keys
  const created = await api(sim, 'POST', '/v2/account/keys', { name: 'dosvob-run-1', public_key: key.publicKey });
  assert.equal(created.status, 201);
  const keyId = num(created.body, 'ssh_key', 'id');
  const fp = str(created.body, 'ssh_key', 'fingerprint');
  assert.match(fp, /^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
  assert.equal((await api(sim, 'GET', '/v2/account/keys')).status, 200);
  assert.equal(num((await api(sim, 'GET', `/v2/account/keys/${fp}`)).body, 'ssh_key', 'id'), keyId);
  assert.equal(
    str((await api(sim, 'PUT', `/v2/account/keys/${keyId}`, { name: 'renamed' })).body, 'ssh_key', 'name'),
    'renamed',
  );
  await api(sim, 'GET', `/v2/account/keys/${keyId}`);

  // volumes
  const v1 = await api(sim, 'POST', '/v2/volumes', {
    name: 'data-one',
    region: 'nyc1',
    size_gigabytes: 1,
    description: 'one',
    tags: ['dosvob'],
  });
  assert.equal(v1.status, 201);
  const v1id = str(v1.body, 'volume', 'id');
  const v2 = await api(sim, 'POST', '/v2/volumes', { name: 'data-two', region: 'nyc1', size_gigabytes: 2 });
  const v2id = str(v2.body, 'volume', 'id');
  await api(sim, 'POST', '/v2/volumes', { name: 'elsewhere', region: 'atl1', size_gigabytes: 1 });
  assert.equal(num((await api(sim, 'GET', '/v2/volumes?region=nyc1')).body, 'meta', 'total'), 2);
  assert.equal(num((await api(sim, 'GET', '/v2/volumes?name=data-two')).body, 'meta', 'total'), 1);
  const page2 = await api(sim, 'GET', '/v2/volumes?per_page=1&page=2');
  assert.deepEqual(Object.keys(get(page2.body, 'links', 'pages') as object).sort(), ['first', 'last', 'next', 'prev']);
  assert.equal(str(page2.body, 'links', 'pages', 'next'), 'https://api.digitalocean.com/v2/volumes?page=3&per_page=1');
  await api(sim, 'GET', `/v2/volumes/${v1id}`);

  // snapshots
  await sim.writeVolume(v1id, 4096, Buffer.from('hello'));
  const snap = await api(sim, 'POST', `/v2/volumes/${v1id}/snapshots`, { name: 'snap-1', tags: ['dosvob'] });
  assert.equal(snap.status, 201);
  const snapId = str(snap.body, 'snapshot', 'id');
  await api(sim, 'GET', `/v2/volumes/${v1id}/snapshots`);
  await api(sim, 'GET', '/v2/snapshots?resource_type=volume');
  await api(sim, 'GET', '/v2/snapshots');
  await api(sim, 'GET', `/v2/snapshots/${snapId}`);
  await api(sim, 'GET', `/v2/volumes/snapshots/${snapId}`);
  const fromSnap = await api(sim, 'POST', '/v2/volumes', {
    name: 'restored',
    region: 'nyc1',
    size_gigabytes: 1,
    snapshot_id: snapId,
  });
  assert.equal(fromSnap.status, 201);
  const restoredId = str(fromSnap.body, 'volume', 'id');

  // droplets
  const userData = `#cloud-config\nssh_keys:\n  ed25519_private: |\n${host.privateKey
    .trim()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')}\n  ed25519_public: ${host.publicKey}\n`;
  const d = await api(sim, 'POST', '/v2/droplets', {
    name: 'dosvob-worker-1',
    region: 'nyc1',
    size: 's-1vcpu-512mb-10gb',
    image: 'ubuntu-24-04-x64',
    ssh_keys: [keyId],
    user_data: userData,
    tags: ['dosvob', 'dosvob:run-1'],
    volumes: [restoredId],
  });
  assert.equal(d.status, 202);
  assert.equal(str(d.body, 'droplet', 'status'), 'new');
  assert.deepEqual(get(d.body, 'droplet', 'networks', 'v4'), []);
  const dropletId = num(d.body, 'droplet', 'id');
  const createActionId = num(d.body, 'links', 'actions', 0, 'id');
  assert.equal(str(d.body, 'links', 'actions', 0, 'rel'), 'create');
  await api(sim, 'GET', `/v2/droplets/${dropletId}`);
  await api(sim, 'GET', `/v2/droplets/${dropletId}/actions/${createActionId}`);
  const active = await waitActive(sim, dropletId);
  const v4 = get(active, 'droplet', 'networks', 'v4') as unknown[];
  const pub = v4.find((n) => get(n, 'type') === 'public');
  assert.equal(get(pub, 'ip_address'), sim.dropletSsh(dropletId)?.ip);
  await api(sim, 'GET', '/v2/droplets?tag_name=dosvob:run-1');
  await api(sim, 'GET', '/v2/droplets');
  await api(sim, 'GET', `/v2/droplets/${dropletId}/actions`);
  await api(sim, 'GET', `/v2/droplets/${dropletId}/actions/${createActionId}`);

  // volume actions
  const attach = await api(sim, 'POST', `/v2/volumes/${v2id}/actions`, {
    type: 'attach',
    droplet_id: dropletId,
    region: 'nyc1',
  });
  assert.equal(attach.status, 202);
  const attachId = num(attach.body, 'action', 'id');
  assert.equal(str(attach.body, 'action', 'status'), 'in-progress');
  assert.notEqual(get(attach.body, 'action', 'resource_id'), v2id);
  await api(sim, 'GET', `/v2/volumes/${v2id}/actions/${attachId}`);
  assert.equal(await waitAction(sim, attachId), 'completed');
  await api(sim, 'GET', '/v2/actions');
  await api(sim, 'GET', `/v2/volumes/${v2id}/actions`);
  const detach = await api(sim, 'POST', '/v2/volumes/actions', {
    type: 'detach',
    volume_name: 'data-two',
    region: 'nyc1',
    droplet_id: dropletId,
  });
  assert.equal(detach.status, 202);
  assert.equal(await waitAction(sim, num(detach.body, 'action', 'id')), 'completed');

  // errors
  assert.equal((await api(sim, 'GET', '/v2/account', undefined, 'wrong')).status, 401);
  assert.equal((await api(sim, 'GET', '/v2/volumes/00000000-0000-4000-8000-000000000000')).status, 404);
  assert.equal((await api(sim, 'GET', '/v2/droplets/1')).status, 404);
  assert.equal((await api(sim, 'GET', '/v2/snapshots/nope')).status, 404);
  assert.equal((await api(sim, 'GET', '/v2/actions/1')).status, 404);
  assert.equal((await api(sim, 'GET', '/v2/account/keys/1')).status, 404);
  assert.equal(
    (await api(sim, 'POST', '/v2/volumes', { name: 'data-one', region: 'nyc1', size_gigabytes: 1 })).status,
    409,
  );
  assert.equal((await api(sim, 'DELETE', `/v2/volumes/${restoredId}`)).status, 409);
  assert.equal((await api(sim, 'POST', `/v2/volumes/${v1id}/snapshots`, { name: 'snap-1' })).status, 409);
  assert.equal(
    (await api(sim, 'POST', '/v2/volumes', { name: 'Bad_Name', region: 'nyc1', size_gigabytes: 1 })).status,
    422,
  );
  assert.equal((await api(sim, 'POST', '/v2/account/keys', { name: 'again', public_key: key.publicKey })).status, 422);
  assert.equal(
    (await api(sim, 'POST', `/v2/volumes/${restoredId}/actions`, { type: 'attach', droplet_id: dropletId })).status,
    422,
  );
  sim.setFaults({ failNextRequests: 1, serverErrorStatus: 503 });
  assert.equal((await api(sim, 'GET', '/v2/volumes')).status, 503);
  sim.setFaults({ rateLimitBurst: { every: 0, length: 1 } });
  const burst = await api(sim, 'GET', '/v2/account');
  assert.equal(burst.status, 429);
  assert.equal(burst.headers.get('retry-after'), '1');
  sim.setFaults({});

  // deletes
  assert.equal((await api(sim, 'DELETE', `/v2/droplets/${dropletId}`)).status, 204);
  const d2 = await api(sim, 'POST', '/v2/droplets', {
    name: 'tagged',
    region: 'nyc1',
    size: 's-1vcpu-1gb',
    image: 'ubuntu-24-04-x64',
    tags: ['sweep'],
  });
  assert.equal(d2.status, 202);
  assert.equal((await api(sim, 'DELETE', '/v2/droplets?tag_name=sweep')).status, 204);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes?name=data-two&region=nyc1`)).status, 204);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes/${restoredId}`)).status, 204);
  const snap2 = await api(sim, 'POST', `/v2/volumes/${v1id}/snapshots`, { name: 'snap-2' });
  assert.equal((await api(sim, 'DELETE', `/v2/snapshots/${snapId}`)).status, 204);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes/snapshots/${str(snap2.body, 'snapshot', 'id')}`)).status, 204);
  assert.equal((await api(sim, 'DELETE', `/v2/account/keys/${keyId}`)).status, 204);

  // 10 key listings a minute
  let keyListStatus = 0;
  for (let i = 0; i < 11; i++) keyListStatus = (await api(sim, 'GET', '/v2/account/keys')).status;
  assert.equal(keyListStatus, 429);

  // ---- every answer against the spec ----
  const problems: string[] = [];
  for (const e of sim.callLog) {
    if (!e.template) {
      problems.push(`${e.method} ${e.path}: no route`);
      continue;
    }
    const where = `#${e.seq} ${e.method} ${e.template} ${e.status}`;
    const res = validateResponse(e.method, e.template, e.status, e.responseBody);
    if (!res.ok) problems.push(`${where}: ${res.errors.join('; ')}`);
    const diff = exampleKeyDiff(e.method, e.template, e.status, e.responseBody);
    for (const m of diff.missing) problems.push(`${where}: lacks example key ${m}`);
    for (const x of diff.extra) problems.push(`${where}: key ${x} is not in the spec`);
    if (e.status < 300 && e.requestBody !== undefined) {
      const req = validateRequest(e.method, e.template, e.requestBody);
      if (!req.ok) problems.push(`${where} request: ${req.errors.join('; ')}`);
    }
    if (e.status >= 400) {
      const b = e.responseBody;
      if (
        typeof get(b, 'id') !== 'string' ||
        typeof get(b, 'message') !== 'string' ||
        typeof get(b, 'request_id') !== 'string'
      ) {
        problems.push(`${where}: error body is not {id, message, request_id}`);
      }
    }
  }
  assert.deepEqual(problems, []);

  // every operation of the spec was exercised, and every error status
  const counts = sim.callCounts();
  const missingOps = specOperations().filter((op) => !(op in counts));
  assert.deepEqual(missingOps, []);
  const statuses = new Set(sim.callLog.map((e) => e.status));
  for (const s of [200, 201, 202, 204, 401, 404, 409, 422, 429, 503]) assert.ok(statuses.has(s), `status ${s} seen`);
});

void test('rate-limit headers are on every answer', async () => {
  for (const token of [sim.token, 'wrong']) {
    const r = await api(sim, 'GET', '/v2/account', undefined, token);
    assert.match(r.headers.get('ratelimit-limit') ?? '', /^\d+$/);
    assert.match(r.headers.get('ratelimit-remaining') ?? '', /^\d+$/);
    assert.match(r.headers.get('ratelimit-reset') ?? '', /^\d{10}$/);
  }
  const r401 = await api(sim, 'GET', '/v2/account', undefined, 'wrong');
  assert.equal(r401.status, 401);
  assert.equal(get(r401.body, 'id'), 'unauthorized');
});

void test('the checkers catch wrong shapes (so a pass means something)', { skip: noSpec }, () => {
  const volume = {
    id: 'x',
    name: 'a',
    description: '',
    size_gigabytes: 1,
    created_at: '2020-03-02T17:00:49Z',
    droplet_ids: [],
    tags: [],
    filesystem_type: '',
    filesystem_label: '',
    region: { name: 'New York 1', slug: 'nyc1', features: [], available: true, sizes: [] },
  };
  assert.equal(validateResponse('GET', '/v2/volumes/{volume_id}', 200, { volume }).ok, true);
  assert.equal(
    validateResponse('GET', '/v2/volumes/{volume_id}', 200, { volume: { ...volume, size_gigabytes: 'big' } }).ok,
    false,
  );
  assert.equal(
    validateResponse('GET', '/v2/actions/{action_id}', 200, { action: { id: 1, resource_id: 'uuid' } }).ok,
    false,
  );
  assert.equal(validateResponse('GET', '/v2/account', 422, { id: 'x' }).ok, false); // error bodies need a message
  assert.equal(validateResponse('DELETE', '/v2/volumes/{volume_id}', 204, undefined).ok, true);
  const { filesystem_label: _dropped, ...lacking } = volume;
  assert.deepEqual(exampleKeyDiff('GET', '/v2/volumes/{volume_id}', 200, { volume: { ...lacking, surprise: 1 } }), {
    missing: ['volume.filesystem_label'],
    extra: ['volume.surprise'],
  });
  assert.equal(validateRequest('POST', '/v2/volumes', { name: 'a', region: 'atl1', size_gigabytes: 1 }).ok, true);
  assert.equal(validateRequest('POST', '/v2/volumes', { name: 'a', region: 'nyc1' }).ok, false);
  assert.equal(
    validateRequest('POST', '/v2/volumes/{volume_id}/actions', { type: 'attach', droplet_id: 'x' }).ok,
    false,
  );
  assert.equal(
    validateRequest('POST', '/v2/droplets', { name: 'a', size: 's-1vcpu-1gb', image: 'ubuntu-24-04-x64' }).ok,
    true,
  );
});
