// Bad input ends with a clear message, and loses nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { rootApplicationFailure } from '../../client/errors';
import { startHarness, type Harness } from '../support/harness';
import { startPingServer, type PingServer } from '../support/ping-server';

describe('bad input', () => {
  let h: Harness;
  let pings: PingServer;

  before(async () => {
    pings = await startPingServer(500); // a failing healthchecks endpoint must not fail anything
    h = await startHarness({ config: { healthchecks: pings.url } });
  });
  after(async () => {
    await h?.close();
    await pings?.close();
  });

  it('a wrong token fails the run at once, non-retryable, without the token in the message', async () => {
    const wrong = 'dop_v1_' + 'f'.repeat(64);
    await h.stopWorkers();
    const original = h.config.doToken;
    Object.assign(h.config, { doToken: wrong });
    await h.startWorkers();
    try {
      const handle = await h.start();
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        const app = rootApplicationFailure(err);
        assert.equal(app?.type, 'DigitalOceanAuthError');
        assert.equal(app?.nonRetryable, true);
        assert.match(app?.message ?? '', /rejected the token \(401\)/);
        assert.ok(!app?.message.includes(wrong));
        return true;
      });
      const history = JSON.stringify(await handle.fetchHistory());
      assert.ok(!history.includes(wrong), 'the wrong token is not in the history');
      // One attempt only: non-retryable.
      const calls = h.sim.callLog.filter((c) => c.template === '/v2/account' && c.status === 401).length;
      assert.equal(calls, 1);
      assert.ok(pings.pings.includes('/ping/abc-123/fail'), 'healthchecks got /fail');
    } finally {
      await h.stopWorkers();
      Object.assign(h.config, { doToken: original });
      await h.startWorkers();
    }
  });

  // Asynchronous: the simulator answers from this very process.
  it('dosvob sync exits 2 with one line on a wrong token, before starting anything', async () => {
    const conf = path.join(h.backupsDir, 'conf.json');
    writeFileSync(conf, JSON.stringify({ region: 'nyc3' }));
    const out = await promisify(execFile)(process.execPath, [path.resolve(__dirname, '../../bin/dosvob.js'), 'sync'], {
      cwd: h.backupsDir,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DIGITALOCEAN_TOKEN: 'dop_v1_wrong',
        DIGITALOCEAN_API_URL: h.sim.apiUrl,
        DOSVOB_CONFIG: conf,
        DOSVOB_DATA_DIR: path.join(h.backupsDir, 'data'),
      },
    }).then(
      () => ({ status: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ status: err.code, stderr: err.stderr }),
    );
    assert.equal(out.status, 2, out.stderr);
    assert.match(out.stderr, /^dosvob: .*rejected the token \(401\)/);
    assert.equal(out.stderr.trim().split('\n').length, 1);
    assert.ok(!out.stderr.includes('dop_v1_wrong'));
  });

  it('an unknown region is named, with the list of real ones', async () => {
    const handle = await h.start({ regions: ['xyz9'] });
    await assert.rejects(handle.result(), (err: unknown) => {
      const app = rootApplicationFailure(err);
      assert.equal(app?.type, 'ConfigurationError');
      assert.match(app?.message ?? '', /unknown region "xyz9".*nyc3/);
      return true;
    });
  });

  it('a region with no volumes ends ok with a clear message and creates nothing', async () => {
    const result = await h.run({ regions: ['sgp1'] });
    assert.match(result.message, /no volumes to back up in sgp1/);
    assert.equal(h.sim.creationCounts().droplets, 0);
    assert.equal(h.sim.creationCounts().sshKeys, 0);
  });
});
