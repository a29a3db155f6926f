// Freeze hooks without a server: conf.json's `hooks` (validation named per field, pins parsed), the redaction of
// command output, and the droplet-side scripts run by a local sh (every retry and race they must survive).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../common/config';
import { pinnedFingerprint } from '../../common/hooks-config';
import { outputForError } from '../../activities/hooks/redact';
import { createHookActivities, hookId } from '../../activities/hooks/activities';
import type { DoApi } from '../../activities/digitalocean/api';
import type { HookConfig } from '../../common/hooks-config';
import {
  freezeCommand,
  parseFreezeOutput,
  parseThawOutput,
  thawCommand,
  type FreezeOutcome,
  type ThawOutcome,
} from '../../activities/hooks/scripts';
import { ExecSshServer, generateEd25519 } from '../support/exec-ssh-server';
import { runOnDroplet, type HookSshTarget } from '../../activities/hooks/ssh';

const host = generateEd25519();
const fingerprint = pinnedFingerprint(host.publicKey)!;

function confFile(content: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dosvob-conf-'));
  const file = path.join(dir, 'conf.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

const base = { do_token: 'tok', region: 'nyc3' };
const goodHook = {
  volumes: 'db-*',
  droplet: 'db-1',
  ssh: { private_key_file: 'keys/hook', host_key: `db-1,203.0.113.7 ${host.publicKey}` },
  freeze: 'fsfreeze -f /mnt/db',
  thaw: 'fsfreeze -u /mnt/db',
};

function configError(content: unknown): string {
  try {
    loadConfig({ path: confFile(content), env: {} });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('the configuration was accepted');
}

describe('conf.json hooks', () => {
  it('takes defaults, resolves the key file next to conf.json and pins the host key by fingerprint', () => {
    const file = confFile({
      ...base,
      hooks: [goodHook, { ...goodHook, droplet: 1234, ssh: { private_key_env: 'K', host_key: fingerprint } }],
    });
    const [a, b] = loadConfig({ path: file, env: {} }).hooks ?? [];
    assert.deepEqual(a, {
      volumes: 'db-*',
      droplet: 'db-1',
      ssh: {
        user: 'root',
        port: 22,
        privateKeyFile: path.join(path.dirname(file), 'keys/hook'),
        hostKeyFingerprint: fingerprint,
        hostKeyType: 'ssh-ed25519',
      },
      freeze: 'fsfreeze -f /mnt/db',
      thaw: 'fsfreeze -u /mnt/db',
      maxFreezeSeconds: 30,
      hooksRequired: true,
    });
    assert.equal(b?.droplet, '1234');
    assert.deepEqual(b?.ssh, { user: 'root', port: 22, privateKeyEnv: 'K', hostKeyFingerprint: fingerprint });
  });

  it('names every bad field', () => {
    const message = configError({
      ...base,
      hooks: [
        { ...goodHook, ssh: { private_key_file: 'k' }, max_freeze_seconds: 0 },
        { ...goodHook, ssh: { host_key: 'not a key' }, freeze: '' },
        { ...goodHook, ssh: { ...goodHook.ssh, private_key_env: 'X' }, extra: 1 },
      ],
    });
    assert.match(message, /hooks\.0\.ssh\.host_key: is required/);
    assert.match(message, /hooks\.0\.max_freeze_seconds:/);
    assert.match(message, /hooks\.1\.ssh\.host_key: must be a known_hosts line/);
    assert.match(message, /hooks\.1\.ssh\.private_key_file: set one of private_key_file and private_key_env/);
    assert.match(message, /hooks\.1\.freeze: must be a command/);
    assert.match(message, /hooks\.2\.ssh\.private_key_file: set one of .*, not both/);
    assert.match(message, /unknown key\(s\): extra/);
  });

  it('reads a pin from a fingerprint, a public key line or a known_hosts line, never from a marked line', () => {
    assert.equal(pinnedFingerprint(fingerprint), fingerprint);
    assert.equal(pinnedFingerprint(host.publicKey), fingerprint);
    assert.equal(pinnedFingerprint(`|1|abc=|def= ${host.publicKey}`), fingerprint);
    assert.equal(pinnedFingerprint(`@revoked db-1 ${host.publicKey}`), undefined);
    assert.equal(pinnedFingerprint('SHA256:short'), undefined);
  });
});

describe('the hook activities refuse before connecting', () => {
  const hook: HookConfig = {
    volumes: 'db-*',
    droplet: 'db-1',
    ssh: { user: 'root', port: 22, privateKeyEnv: 'HOOK_KEY', hostKeyFingerprint: fingerprint },
    freeze: 'fsfreeze -f /mnt/db',
    thaw: 'fsfreeze -u /mnt/db',
    maxFreezeSeconds: 30,
    hooksRequired: true,
  };
  // No API at all: a refusal must come before the droplet is even looked up.
  const noApi = {} as DoApi;
  const input = { volumeName: 'db-main', hookId: hookId(hook), runId: 'run-1' };

  it('a private_key_env that is not set, or holds no private key', async () => {
    const unset = createHookActivities({ hooks: [hook], api: noApi, doToken: 'tok', env: {} });
    await assert.rejects(unset.freezeVolume(input), /environment variable HOOK_KEY .* is not set on this worker/);
    const wrong = createHookActivities({
      hooks: [hook],
      api: noApi,
      doToken: 'tok',
      env: { HOOK_KEY: host.publicKey },
    });
    await assert.rejects(wrong.freezeVolume(input), /cannot be used as an SSH private key/);
  });

  it('a hook this worker does not have (conf.json differs between workers)', async () => {
    const other = createHookActivities({ hooks: [{ ...hook, freeze: 'sync' }], api: noApi, doToken: 'tok', env: {} });
    await assert.rejects(other.thawVolume(input), /not in this worker's conf.json/);
  });

  it('finds the first hook whose glob matches, and tells nothing of commands or keys', async () => {
    const acts = createHookActivities({ hooks: [hook, { ...hook, volumes: '*' }], api: noApi, doToken: 'tok' });
    const summary = await acts.resolveVolumeHook({ volumeName: 'db-main' });
    assert.equal(summary?.hookId, hookId(hook));
    assert.ok(!JSON.stringify(summary).includes('fsfreeze'), 'no command in the summary');
    assert.equal((await acts.resolveVolumeHook({ volumeName: 'web' }))?.volumes, '*');
    const none = createHookActivities({ hooks: [hook], api: noApi, doToken: 'tok' });
    assert.equal(await none.resolveVolumeHook({ volumeName: 'web' }), null);
  });
});

describe('the hook SSH connection', () => {
  const login = generateEd25519();
  const server = new ExecSshServer({ hostKey: host.privateKey, authorizedKeys: () => [login.publicKey] });
  let port = 0;
  const target = (changes: Partial<HookSshTarget>): HookSshTarget => ({
    what: 'droplet db-1 (127.0.0.1)',
    host: '127.0.0.1',
    port,
    username: 'root',
    privateKey: login.privateKey,
    hostKeyFingerprint: fingerprint,
    secrets: [],
    ...changes,
  });
  before(async () => ({ port } = await server.listen()));
  after(async () => server.close());

  it('runs a command on the pinned host, asking for the pinned key type', async () => {
    const r = await runOnDroplet(target({ hostKeyType: 'ssh-ed25519' }), 'echo hi; echo there >&2; exit 3', {
      timeoutMs: 30_000,
    });
    assert.deepEqual(r, { exitCode: 3, stdout: 'hi\n', stderr: 'there\n' });
  });

  it('refuses another host key, naming both fingerprints, before any command', async () => {
    const other = pinnedFingerprint(generateEd25519().publicKey)!;
    await assert.rejects(
      runOnDroplet(target({ hostKeyFingerprint: other }), 'echo ran', { timeoutMs: 30_000 }),
      (err: Error) =>
        err.message.includes(`presented host key ${fingerprint}`) && err.message.includes(`pins ${other}`),
    );
  });

  it('refuses a droplet without a host key of the pinned type', async () => {
    await assert.rejects(
      runOnDroplet(target({ hostKeyType: 'ssh-rsa' }), 'echo ran', { timeoutMs: 30_000 }),
      /offers no ssh-rsa host key/,
    );
  });

  it('refuses a key the droplet does not accept', async () => {
    await assert.rejects(
      runOnDroplet(target({ privateKey: generateEd25519().privateKey }), 'echo ran', { timeoutMs: 30_000 }),
      /refused the hook's SSH key for user root/,
    );
  });
});

describe('hook output in errors', () => {
  it('cuts out the token and every line of the key, and keeps the tail', () => {
    const key = generateEd25519().privateKey;
    const out = outputForError(`token tok_0123456789abcdef\n${key}\nlast words`, ['tok_0123456789abcdef', key]);
    assert.ok(!out.includes('tok_0123456789abcdef'));
    for (const line of key.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'))) {
      assert.ok(!out.includes(line));
    }
    assert.match(out, /last words$/);
    assert.ok(outputForError('x'.repeat(10_000), []).length <= 2001);
  });
});

/** A timer's command line names its directory: once killed it is gone from ps (a bound for failing only). */
async function noTimerLeft(dir: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(dir)) {
    assert.ok(Date.now() < deadline, "the timer's sleep was ended");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the droplet-side scripts', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'dosvob-freeze-scripts-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;

  /** A fresh droplet: its TMPDIR, and a "filesystem" whose freeze is a file, failing as fsfreeze does. */
  function droplet() {
    const dir = path.join(root, String(n++));
    const tmp = path.join(dir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const state = path.join(dir, 'frozen');
    const log = path.join(dir, 'log');
    writeFileSync(log, '');
    const sh = (command: string): string =>
      execFileSync('sh', ['-c', command], { env: { ...process.env, TMPDIR: tmp }, encoding: 'utf8' });
    const freeze = `[ ! -e ${state} ] && : > ${state} && echo freeze >> ${log}`;
    const thaw = `[ -e ${state} ] && rm ${state} && echo thaw >> ${log}`;
    return {
      tmp,
      freeze,
      thaw,
      frozen: () => existsSync(state),
      log: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
      runFreeze: (id: string, seconds: number, freezeCmd = freeze, thawCmd = thaw): FreezeOutcome =>
        parseFreezeOutput(sh(freezeCommand(id, seconds, freezeCmd, thawCmd))),
      runThaw: (id: string): ThawOutcome => parseThawOutput(sh(thawCommand(id))),
    };
  }

  it('freezes once, thaws once: a repeated freeze finds its freeze, a repeated thaw finds nothing to do', async () => {
    const d = droplet();
    const first = d.runFreeze('a', 60);
    assert.equal(first.kind, 'frozen');
    assert.deepEqual(d.runFreeze('a', 60), { ...first, again: true });
    assert.ok(d.frozen());
    assert.deepEqual(d.runThaw('a'), { kind: 'thawed', by: 'dosvob' });
    assert.deepEqual(d.runThaw('a'), { kind: 'thawed', by: 'none' });
    assert.equal(d.frozen(), false);
    assert.deepEqual(d.log(), ['freeze', 'thaw']);
    assert.deepEqual(readdirSync(d.tmp), [], 'the thaw removed the token directory');
    await noTimerLeft(d.tmp);
  });

  it('undoes a failed freeze at once', async () => {
    const d = droplet();
    const failing = `${d.freeze}; echo half-done; exit 5`;
    assert.deepEqual(d.runFreeze('b', 60, failing), { kind: 'failed', exitCode: 5 });
    assert.equal(d.frozen(), false);
    assert.deepEqual(d.runThaw('b'), { kind: 'thawed', by: 'none' });
    assert.deepEqual(d.log(), ['freeze', 'thaw']);
    await noTimerLeft(d.tmp);
  });

  it('thaws by its timer when nobody comes back, and the late thaw says so', async () => {
    const d = droplet();
    assert.equal(d.runFreeze('c', 1).kind, 'frozen');
    const deadline = Date.now() + 60_000; // a bound for failing only
    while (d.frozen()) {
      assert.ok(Date.now() < deadline, 'the timer thawed it');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(d.runThaw('c'), { kind: 'thawed', by: 'timer' });
    assert.deepEqual(d.log(), ['freeze', 'thaw'], 'thawed exactly once');
  });

  it('thaws a freeze an interrupted attempt left behind before freezing again', async () => {
    const d = droplet();
    assert.equal(d.runFreeze('d', 60).kind, 'frozen');
    // The attempt's answer was lost after the freeze, before it marked itself frozen.
    const dir = path.join(d.tmp, 'dosvob-freeze-d');
    const gen = readFileSync(path.join(dir, 'current'), 'utf8').trim();
    rmSync(path.join(dir, gen, 'frozen'));
    assert.equal(d.runFreeze('d', 60).kind, 'frozen');
    assert.deepEqual(d.runThaw('d'), { kind: 'thawed', by: 'dosvob' });
    assert.deepEqual(d.log(), ['freeze', 'thaw', 'freeze', 'thaw']);
    assert.equal(d.frozen(), false);
    await noTimerLeft(d.tmp);
  });

  it('keeps the token when the thaw command fails, so a retry (or the timer) can still thaw', async () => {
    const d = droplet();
    const flaky = path.join(root, 'flaky');
    writeFileSync(flaky, '');
    const thaw = `if [ -e ${flaky} ]; then rm ${flaky}; echo busy; exit 3; fi; ${d.thaw}`;
    assert.equal(d.runFreeze('e', 60, d.freeze, thaw).kind, 'frozen');
    assert.deepEqual(d.runThaw('e'), { kind: 'failed', exitCode: 3 });
    assert.ok(d.frozen());
    assert.deepEqual(d.runThaw('e'), { kind: 'thawed', by: 'dosvob' });
    assert.equal(d.frozen(), false);
    await noTimerLeft(d.tmp);
  });
});
