// A region's droplets (workflows/droplet-pool.ts): a volume takes the least busy droplet that is up, never waits for
// a slow one while another is up, and passes over one that never comes up.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DropletPool } from '../../workflows/droplet-pool';
import type { ReadyDroplet } from '../../workflows/ephemeral';

function droplet(id: string): ReadyDroplet {
  return { dropletId: id, ready: { ip: '127.0.0.1', port: 22, hostPublicKey: 'ssh-ed25519 AAAA' } };
}

/** A droplet that comes up (or fails) when the test says. */
function later(): { promise: Promise<ReadyDroplet>; up(id: string): void; fail(err: Error): void } {
  let up!: (d: ReadyDroplet) => void;
  let fail!: (err: Error) => void;
  const promise = new Promise<ReadyDroplet>((resolve, reject) => ((up = resolve), (fail = reject)));
  promise.catch(() => undefined);
  return { promise, up: (id) => up(droplet(id)), fail };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('droplet pool', () => {
  it('gives the ready droplet with the fewest volumes on it, and counts them back at give()', async () => {
    const pool = new DropletPool([Promise.resolve(droplet('a')), Promise.resolve(droplet('b'))]);
    await tick();
    const taken = [await pool.take(), await pool.take(), await pool.take()].map((d) => d.dropletId);
    assert.deepEqual(taken, ['a', 'b', 'a']);
    pool.give('a');
    pool.give('a');
    assert.equal((await pool.take()).dropletId, 'a', 'a has none left, b has one');
  });

  it('does not wait for a droplet still booting while another is up', async () => {
    const slow = later();
    const pool = new DropletPool([slow.promise, Promise.resolve(droplet('fast'))]);
    assert.equal((await pool.take()).dropletId, 'fast');
    assert.equal((await pool.take()).dropletId, 'fast');
    slow.up('slow');
    await tick();
    assert.equal((await pool.take()).dropletId, 'slow', 'once up, the idle one is taken');
  });

  it('waits for the first droplet up when none is', async () => {
    const a = later();
    const b = later();
    const pool = new DropletPool([a.promise, b.promise]);
    const taking = pool.take();
    b.up('b');
    assert.equal((await taking).dropletId, 'b');
  });

  it("passes over a droplet that never comes up, and fails only when all have, with the first one's error", async () => {
    const a = later();
    const b = later();
    const pool = new DropletPool([a.promise, b.promise]);
    const taking = pool.take();
    a.fail(new Error('a: no capacity in nyc3'));
    await tick();
    b.up('b');
    assert.equal((await taking).dropletId, 'b');

    const c = later();
    const d = later();
    const dead = new DropletPool([c.promise, d.promise]);
    const failing = dead.take();
    d.fail(new Error('d failed'));
    c.fail(new Error('c failed'));
    await assert.rejects(failing, /c failed/);
  });
});
