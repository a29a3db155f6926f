import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, DEFAULT_API_URL, loadConfig } from '../../common/config';

const BIN = path.resolve(__dirname, '../../bin/dosvob.js');

function confFile(content: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dosvob-conf-'));
  const file = path.join(dir, 'conf.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

describe('conf.json', () => {
  it("keeps the original dosvob's keys working", () => {
    const file = confFile({ do_token: 'tok', region: 'nyc3', healthchecks: 'https://hc-ping.com/abc' });
    const c = loadConfig({ path: file, env: {} });
    assert.equal(c.doToken, 'tok');
    assert.deepEqual(c.regions, ['nyc3']);
    assert.equal(c.healthchecks, 'https://hc-ping.com/abc');
    assert.equal(c.apiUrl, DEFAULT_API_URL);
    assert.equal(c.backupsDir, path.join(path.dirname(file), 'backups'));
  });

  it('takes the token and API URL from the environment (doctl names too)', () => {
    const file = confFile({ region: 'fra1' });
    assert.equal(loadConfig({ path: file, env: { DIGITALOCEAN_ACCESS_TOKEN: 'a' } }).doToken, 'a');
    const c = loadConfig({
      path: file,
      env: { DIGITALOCEAN_TOKEN: 'b', DIGITALOCEAN_API_URL: 'http://127.0.0.1:9/v2/' },
    });
    assert.equal(c.doToken, 'b');
    assert.equal(c.apiUrl, 'http://127.0.0.1:9');
  });

  it('names every bad field in one message', () => {
    const file = confFile({ do_token: 5, region: 'NYC', concurrency: 'x', healthchecks: 'nope', extra: true });
    assert.throws(
      () => loadConfig({ path: file, env: {} }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        for (const field of ['do_token', 'region', 'concurrency', 'healthchecks', 'extra']) {
          assert.match(err.message, new RegExp(field), `message names ${field}`);
        }
        return true;
      },
    );
  });

  it('rejects region and regions together, and neither', () => {
    assert.throws(
      () => loadConfig({ path: confFile({ do_token: 't', region: 'nyc3', regions: ['fra1'] }), env: {} }),
      /not both/,
    );
    assert.throws(() => loadConfig({ path: confFile({ do_token: 't' }), env: {} }), /region: missing/);
  });

  it('says where to get a token when there is none', () => {
    assert.throws(
      () => loadConfig({ path: confFile({ region: 'nyc3' }), env: {} }),
      /cloud\.digitalocean\.com\/account\/api\/tokens/,
    );
  });
});

describe('dosvob CLI on bad input', () => {
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const out = spawnSync(process.execPath, [BIN, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    });
    return { code: out.status, stderr: out.stderr, stdout: out.stdout };
  };

  it('exits 2 with one clear line on a malformed conf.json, without a stack trace', () => {
    const r = run(['--config', confFile('{"region": '), 'sync']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is not valid JSON/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  it('exits 2 without a token, saying where to get one', () => {
    const r = run(['--config', confFile({ region: 'nyc3' }), 'sync']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no DigitalOcean token.*api\/tokens/);
  });

  it('exits 2 on an unknown command', () => {
    assert.equal(run(['frobnicate']).code, 2);
  });
});
