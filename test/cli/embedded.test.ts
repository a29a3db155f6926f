// The README's first command, `npm start` = `dosvob sync` with no TEMPORAL_ADDRESS: dosvob starts a local Temporal
// dev server itself, runs its workers in the same process, backs up for real (simulator droplets, real SSH, real
// transfer), and stops the server again. Everything else in the suite uses the suite's own server.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EMBEDDED_ADDRESS } from '../../client/connect';
import { isListening } from '../../client/temporal-server';
import { startHarness, type Harness } from '../support/harness';
import { randomData } from '../support/bytes';
import { assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';
import { cli, cliEnv } from './support';

const MiB = 1 << 20;

describe('the embedded default', () => {
  let h: Harness;
  let dataDir: string;

  before(async () => {
    h = await startHarness();
    dataDir = mkdtempSync(path.join(tmpdir(), 'dosvob-embedded-'));
  });
  after(async () => {
    await h?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('dosvob sync without TEMPORAL_ADDRESS starts a local Temporal, backs up, and stops it', async (t) => {
    const { ip, port } = EMBEDDED_ADDRESS;
    const serverBefore = await isListening(ip, port);
    if (serverBefore) t.diagnostic(`${ip}:${port} is already in use: dosvob uses that server, as it would for a user`);
    const volume = await h.sim.createVolume({ name: 'home-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(volume.id, 300 * MiB, randomData(3 * MiB));

    const env = cliEnv(h, { TEMPORAL_ADDRESS: '', DOSVOB_DATA_DIR: dataDir });
    const r = await cli(['sync'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    if (!serverBefore) {
      assert.match(r.stderr, /starting the local Temporal server \(data in .*dosvob-embedded-/);
      assert.equal(await isListening(ip, port), false, 'the server dosvob started is stopped when it exits');
    }
    assert.match(r.stdout, /1 of 1 volumes backed up/);
    assert.match(r.stdout, new RegExp(`http://${ip.replace(/\./g, '\\.')}:\\d+/namespaces/default/workflows/`));
    const image = path.join(h.backupsDir, 'home-data.img');
    assert.ok(await sameSparseBytes(image, h.sim.volumeFile(volume.id)), 'home-data.img equals the volume');
    assertNothingLeft(h.sim, ['home-data']);
  });
});
