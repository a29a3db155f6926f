import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, DEFAULT_API_URL, isPlaceholderToken, loadConfig } from '../../common/config';

const BIN = path.resolve(__dirname, '../../bin/dosvob.js');

/** The real binary, asynchronously (a server in this process must keep answering meanwhile). */
function runAsync(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } },
      (error, _stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stderr }),
    );
  });
}

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

describe("conf.json.example's placeholder token", () => {
  const example = JSON.parse(readFileSync(path.resolve(__dirname, '../../conf.json.example'), 'utf8')) as {
    do_token: string;
  };

  it('is named in one line, not sent to DigitalOcean', () => {
    assert.throws(
      () => loadConfig({ path: confFile(example), env: {} }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /^do_token in \S*conf\.json is still the example's placeholder/);
        assert.equal(err.message.split('\n').length, 1);
        return true;
      },
    );
  });

  it('counts as left out when DIGITALOCEAN_TOKEN is set, as the example says', () => {
    assert.equal(
      loadConfig({ path: confFile(example), env: { DIGITALOCEAN_TOKEN: 'dop_v1_real' } }).doToken,
      'dop_v1_real',
    );
    assert.equal(isPlaceholderToken(example.do_token), true);
    assert.equal(isPlaceholderToken(`dop_v1_${'0'.repeat(64)}`), false);
  });

  it('stops `dosvob sync` with exit code 2 before any network call', async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const r = await runAsync(['--config', confFile(example), 'sync'], {
        DIGITALOCEAN_API_URL: `http://127.0.0.1:${port}`,
        TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^dosvob: do_token in \S*conf\.json is still the example's placeholder/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.equal(requests, 0, 'nothing reached the API (or Temporal)');
    } finally {
      server.close();
    }
  });
});

describe('installation_id', () => {
  it('is taken from conf.json or DOSVOB_INSTALLATION_ID, and checked', () => {
    assert.equal(
      loadConfig({ path: confFile({ do_token: 't', region: 'nyc3', installation_id: 'prod' }), env: {} })
        .installationId,
      'prod',
    );
    assert.equal(
      loadConfig({ path: confFile({ do_token: 't', region: 'nyc3' }), env: { DOSVOB_INSTALLATION_ID: 'b2' } })
        .installationId,
      'b2',
    );
    assert.equal(loadConfig({ path: confFile({ do_token: 't', region: 'nyc3' }), env: {} }).installationId, undefined);
    assert.throws(
      () => loadConfig({ path: confFile({ do_token: 't', region: 'nyc3', installation_id: 'Prod!' }), env: {} }),
      /installation_id/,
    );
    assert.throws(
      () =>
        loadConfig({
          path: confFile({ do_token: 't', region: 'nyc3' }),
          env: { DOSVOB_INSTALLATION_ID: '0123456789' },
        }),
      /DOSVOB_INSTALLATION_ID/,
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
