// Installation identity: run keys from the run id's random bits, names that carry the installation, and which
// ephemeral resources a sweep may take.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  FOREIGN_LEFTOVER_AGE_MS,
  isLeftover,
  keyRegisteredAtMs,
  withRegisteredComment,
} from '../../activities/digitalocean/leftovers';
import { installationId } from '../../common/installation';
import {
  EPHEMERAL_TAG,
  MAX_VOLUME_NAME,
  installationTag,
  isValidInstallationId,
  legacyRunKey,
  names,
  ownerOfName,
  runKey,
  runTag,
} from '../../common/names';

/** A UUIDv7 as Temporal makes run ids: 48 bits of milliseconds, version 7, 74 random bits. */
function uuidv7(ms: number): string {
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b[6] = 0x70 | ((b[6] ?? 0) & 0x0f);
  b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const HOUR = 3600_000;
const NOW = Date.UTC(2026, 11, 2, 12);

describe('run key', () => {
  it('differs for two runs started in the same millisecond (the time digits alone did not)', () => {
    const a = uuidv7(NOW);
    const b = uuidv7(NOW);
    assert.equal(legacyRunKey(a), legacyRunKey(b), 'the old key is the start time only');
    assert.notEqual(runKey(a), runKey(b));
    assert.match(runKey(a), /^[0-9a-f]{10}$/);
    // The random bits only: the same run id gives the same key (workers agree, replays agree).
    assert.equal(runKey(a), runKey(a.toUpperCase()));
  });

  it('never repeats over many runs of one millisecond', () => {
    const keys = new Set(Array.from({ length: 2000 }, () => runKey(uuidv7(NOW))));
    assert.equal(keys.size, 2000);
  });
});

describe('names', () => {
  it('carry the installation and the run, within 64 characters, and say whose they are', () => {
    const run = runTag('abcdefghijkl', runKey(uuidv7(NOW)));
    for (const name of [
      names.droplet(run, 'nyc3'),
      names.sshKey(run),
      names.snapshot(run, 'x'.repeat(64)),
      names.copyVolume(run, 'db-data'),
    ]) {
      assert.ok(name.length <= MAX_VOLUME_NAME, name);
      assert.ok(name.startsWith(`dosvob-ephemeral-abcdefghijkl-`), name);
      assert.deepEqual(ownerOfName(name), {
        kind: 'installation',
        installationId: 'abcdefghijkl',
        runKey: run.split('-')[1],
      });
    }
  });

  it('tell names from before installation ids apart, even when a volume name looks like a run key', () => {
    assert.deepEqual(ownerOfName('dosvob-ephemeral-0193a1b2c3-db-data'), { kind: 'legacy', runKey: '0193a1b2c3' });
    assert.deepEqual(ownerOfName('dosvob-ephemeral-0193a1b2c3-0123456789'), { kind: 'legacy', runKey: '0193a1b2c3' });
    assert.equal(ownerOfName('dosvob-ephemeral-data'), undefined);
    assert.equal(ownerOfName('web-1'), undefined);
    assert.equal(isValidInstallationId('0193a1b2c3'), false, 'an id that reads as a legacy run key is refused');
    assert.equal(isValidInstallationId('Prod'), false);
    assert.equal(isValidInstallationId('prod2'), true);
  });
});

describe('installation id', () => {
  const scope = { keySecret: 'k'.repeat(32), namespace: 'default', taskQueue: 'dosvob' };
  it('is derived from what its workers share, and differs between installations', () => {
    const id = installationId(undefined, scope);
    assert.match(id, /^[0-9a-f]{8}$/);
    assert.ok(isValidInstallationId(id));
    assert.equal(installationId(undefined, { ...scope }), id, 'every worker derives the same');
    assert.notEqual(installationId(undefined, { ...scope, keySecret: 'j'.repeat(32) }), id);
    assert.notEqual(installationId(undefined, { ...scope, taskQueue: 'dosvob-2' }), id);
    assert.notEqual(installationId(undefined, { ...scope, namespace: 'other' }), id);
    assert.equal(installationId('prod', scope), 'prod', 'a configured id wins');
  });
});

describe('which leftovers a sweep takes', () => {
  const mine = 'aaaa1111';
  const theirs = 'bbbb2222';
  const scope = {
    installationId: mine,
    exceptRun: runTag(mine, '1111111111'),
    foreignAfterMs: FOREIGN_LEFTOVER_AGE_MS,
    nowMs: NOW,
  };
  const tagged = (id: string) => [EPHEMERAL_TAG, installationTag(id)];
  const old = NOW - FOREIGN_LEFTOVER_AGE_MS - HOUR;
  const take = (name: string, tags: string[] | undefined, createdAtMs: number | undefined) =>
    isLeftover({ name, tags, createdAtMs }, scope);

  it("takes its own installation's, whatever their age, but not the sweeping run's", () => {
    assert.equal(take(`dosvob-ephemeral-${mine}-2222222222-nyc3`, tagged(mine), NOW - 1000), true);
    assert.equal(take(`dosvob-ephemeral-${mine}-1111111111-nyc3`, tagged(mine), old), false);
    assert.equal(take(`dosvob-ephemeral-${mine}-2222222222-key`, undefined, undefined), true, 'an SSH key');
  });

  it("takes another installation's (and legacy ones) only when far older than any run", () => {
    assert.equal(take(`dosvob-ephemeral-${theirs}-2222222222-nyc3`, tagged(theirs), NOW - HOUR), false);
    assert.equal(take(`dosvob-ephemeral-${theirs}-2222222222-nyc3`, tagged(theirs), old), true);
    // Named like ours but without our tag: not provably ours.
    assert.equal(take(`dosvob-ephemeral-${mine}-2222222222-nyc3`, [EPHEMERAL_TAG], NOW - HOUR), false);
    assert.equal(take('dosvob-ephemeral-0193a1b2c3-db-data', [EPHEMERAL_TAG], NOW - HOUR), false);
    assert.equal(take('dosvob-ephemeral-0193a1b2c3-db-data', [EPHEMERAL_TAG], old), true);
    assert.equal(take('dosvob-ephemeral-data', [EPHEMERAL_TAG], NOW - HOUR), false);
  });

  it("judges SSH keys, which have no created_at, by dosvob's comment or a legacy key's time digits", () => {
    const pub = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJgL6Ea5FE6qZfbgEqBvJmNq1ZcYFU4PrvHmZTHn0Fy0 dosvob-client-x';
    const fresh = withRegisteredComment(pub, theirs, NOW - HOUR);
    assert.equal(keyRegisteredAtMs(fresh), Math.floor((NOW - HOUR) / 1000) * 1000);
    assert.equal(take(`dosvob-ephemeral-${theirs}-2222222222-key`, undefined, keyRegisteredAtMs(fresh)), false);
    assert.equal(
      take(
        `dosvob-ephemeral-${theirs}-2222222222-key`,
        undefined,
        keyRegisteredAtMs(withRegisteredComment(pub, theirs, old)),
      ),
      true,
    );
    assert.equal(
      take(`dosvob-ephemeral-${theirs}-2222222222-key`, undefined, keyRegisteredAtMs(pub)),
      false,
      'unknown age',
    );
    const legacy = (ms: number) => `dosvob-ephemeral-${legacyRunKey(uuidv7(ms))}-key`;
    assert.equal(take(legacy(NOW - HOUR), undefined, undefined), false);
    assert.equal(take(legacy(old), undefined, undefined), true);
  });
});
