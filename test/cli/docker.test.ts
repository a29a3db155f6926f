// The Docker stack, as far as this machine can check it without a Docker engine: the compose file's structure and
// the official images' settings, the Dockerfile's contents, and `docker compose config` when a client is installed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { buildProgram } from '../../client/main';
import { REPO } from './support';

const exec = promisify(execFile);
const COMPOSE = path.join(REPO, 'docker-compose.temporal.yml');

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  command?: string[];
  entrypoint?: string[];
  restart?: string;
  ports?: string[];
}

const compose = parse(readFileSync(COMPOSE, 'utf8')) as { services: Record<string, Service> };
const service = (name: string): Service => {
  const s = compose.services[name];
  assert.ok(s, `service ${name}`);
  return s;
};

/** The `dosvob …` command lines a service runs, as words. */
function dosvobCommands(s: Service): string[][] {
  const line = [...(s.entrypoint ?? []), ...(s.command ?? [])].join(' ');
  return line
    .split('&&')
    .map((part) => part.trim().split(/\s+/))
    .filter((words) => words.includes('dosvob') || s.entrypoint === undefined)
    .map((words) => words.slice(words.indexOf('dosvob') + 1));
}

describe('the Docker stack', () => {
  it('Temporal on PostgreSQL with the auto-setup image settings', () => {
    const pg = service('postgresql');
    assert.match(pg.image ?? '', /^postgres:\d+/);
    const temporal = service('temporal');
    assert.match(temporal.image ?? '', /^temporalio\/auto-setup:\d+\.\d+\.\d+$/);
    const env = temporal.environment ?? {};
    assert.equal(env.DB, 'postgres12');
    assert.equal(env.DB_PORT, '5432');
    assert.equal(env.POSTGRES_SEEDS, 'postgresql', 'the seed is the database service');
    assert.equal(env.POSTGRES_USER, pg.environment?.POSTGRES_USER);
    assert.equal(env.POSTGRES_PWD, pg.environment?.POSTGRES_PASSWORD);
    assert.deepEqual(temporal.depends_on, { postgresql: { condition: 'service_healthy' } });
    assert.ok(temporal.ports?.some((p) => p.endsWith(':7233')));
  });

  it('the web UI points at the server', () => {
    const ui = service('temporal-ui');
    assert.match(ui.image ?? '', /^temporalio\/ui:\d+\.\d+\.\d+$/);
    assert.equal(ui.environment?.TEMPORAL_ADDRESS, 'temporal:7233');
    assert.ok(ui.environment?.TEMPORAL_CORS_ORIGINS);
    assert.ok(ui.ports?.some((p) => p.endsWith(':8080')));
  });

  it("dosvob's worker and one-shot setup: built here, conf.json and backups mounted, real commands", () => {
    const program = buildProgram({}, () => undefined);
    const known = (words: string[]) => {
      let command = program;
      for (const word of words.filter((w) => !w.startsWith('-') && !/^\d+$/.test(w))) {
        const next = command.commands.find((c) => c.name() === word);
        if (!next) return false;
        command = next;
      }
      return command !== program;
    };
    const worker = service('dosvob-worker');
    const setup = service('dosvob-setup');
    for (const s of [worker, setup]) {
      assert.equal(s.build, '.');
      assert.equal(s.environment?.TEMPORAL_ADDRESS, 'temporal:7233');
      assert.equal(s.environment?.DOSVOB_CONFIG, '/dosvob/conf.json');
      assert.ok(s.volumes?.includes('${DOSVOB_HOME:-.}:/dosvob'), 'conf.json and backups/ mounted at /dosvob');
    }
    assert.ok(worker.volumes?.includes('dosvob-data:/data'), 'the key secret survives restarts');
    assert.deepEqual(worker.command, ['worker']);
    assert.deepEqual(worker.depends_on, { 'dosvob-setup': { condition: 'service_completed_successfully' } });
    const steps = dosvobCommands(setup);
    assert.deepEqual(
      steps.map((w) => w.filter((x) => !x.startsWith('-') && !/^\d+$/.test(x)).join(' ')),
      ['setup', 'schedule create'],
    );
    for (const words of steps) assert.ok(known(words), `dosvob ${words.join(' ')} exists`);
    assert.equal(setup.restart, 'no');
  });

  it('the Dockerfile copies every runtime directory and nothing secret', () => {
    const dockerfile = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
    for (const dir of ['bin', 'client', 'common', 'worker', 'workflows', 'activities']) {
      assert.match(dockerfile, new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'), `COPY ${dir}`);
    }
    assert.match(dockerfile, /npm ci --omit=dev/);
    assert.match(dockerfile, /ENTRYPOINT \["dosvob"\]/);
    const ignored = readFileSync(path.join(REPO, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['conf.json', 'backups', 'node_modules', '.dosvob']) assert.ok(ignored.includes(entry), entry);
  });

  it('docker compose config accepts the file', async (t) => {
    const clients: [string, string[]][] = [
      ['docker', ['compose']],
      ['docker-compose', []],
    ];
    for (const [bin, pre] of clients) {
      const found = await exec(bin, [...pre, 'version']).then(
        () => true,
        () => false,
      );
      if (!found) continue;
      const { stdout } = await exec(bin, [...pre, '-f', COMPOSE, 'config'], {
        env: { ...process.env, DIGITALOCEAN_TOKEN: 'dop_v1_example' },
      });
      assert.match(stdout, /temporalio\/auto-setup/);
      return;
    }
    t.skip('no Docker Compose client here (neither `docker compose` nor `docker-compose`)');
  });
});
