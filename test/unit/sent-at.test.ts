// A create's billing starts when its request leaves the worker: after its wait for the pacer, not when the activity
// began. The paced client stamps each request as it leaves, and the answer carries the stamp back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDoApi, sentAtMs } from '../../activities/digitalocean/api';
import { startSimulator, type Simulator } from '../simulator';

describe('the time a request left', () => {
  let sim: Simulator;
  before(async () => {
    sim = await startSimulator({ rateLimitPerMinute: 1_000_000, rateLimitPerHour: 1_000_000 });
  });
  after(() => sim?.close());

  it("is on every answer, between the call and the simulator's arrival of the request", async () => {
    const api = createDoApi({ token: sim.token, apiUrl: sim.apiUrl });
    const before = Date.now();
    const answer = await api.volume.createVolume({ name: 'stamped', region: 'nyc3', size_gigabytes: 1 });
    const sent = sentAtMs(answer);
    assert.equal(typeof sent, 'number', 'the answer carries the time its request left');
    const arrived = sim.callLog.find((e) => e.method === 'POST' && e.path === '/v2/volumes')?.time;
    assert.ok(arrived !== undefined);
    assert.ok(before <= (sent ?? 0) && (sent ?? 0) <= arrived, `${before} <= ${sent} <= ${arrived}`);
    assert.equal(sentAtMs({ data: {} }), undefined, 'an answer from elsewhere has none');
  });
});
