// The SSH connection to the droplet dropped mid-transfer. A drop is resumed in the same attempt from
// the block where it stopped; a link that keeps dropping fails the attempt, and the next attempt
// resumes from what arrived. Either way the image is identical, and what travels twice is at most
// what was in flight when the connection broke.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import type { TransferVolumeResult } from '../../activities/transfer/activity';
import { DEFAULT_STRIPES } from '../../activities/transfer/core';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { activityAttempts, activityResults, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;
const BLOCK = MiB; // the default block size
/** What a dropped connection may lose in flight: the SSH channel window (2 MiB) and the block being sent. */
const IN_FLIGHT = 2 * MiB + BLOCK;
/** Framing, hashes and the SSH handshake on top of the data, as the fault-free test allows. */
const overhead = (dataBytes: number) => dataBytes * 0.01 + 256 * 1024;

/** A run of the one volume: it succeeds, the image is identical, nothing is left, no secret in the history. */
async function backUpAndCheck(
  h: Harness,
  volumeId: string,
): Promise<{ handle: WorkflowHandle; transfers: TransferVolumeResult[] }> {
  const handle = await h.start();
  const result = (await handle.result()) as BackupResult;
  assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
  assert.ok(await sameSparseBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(volumeId)), 'identical');
  assertNothingLeft(h.sim, ['app-data']);
  await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
  const transfers = activityResults<TransferVolumeResult>(await handle.fetchHistory(), 'transferVolume');
  assert.equal(transfers.length, 1);
  return { handle, transfers };
}

/** The attempt that finished the transfer. */
async function transferAttempt(handle: WorkflowHandle): Promise<number> {
  const attempts = activityAttempts(await handle.fetchHistory()).filter((a) => a.type === 'transferVolume');
  return attempts[0]?.attempt ?? 0;
}

describe('SSH dropped mid-transfer (one stripe)', () => {
  let h: Harness;
  let volumeId: string;
  /** Where each run writes: [offset, length] in bytes, all 1 MiB-aligned. */
  let written: [number, number][] = [];

  before(async () => {
    // One SSH channel, so blocks arrive in order and what was in flight is one channel's worth. (Left to
    // itself the transfer picks one stripe or four from the round trip it measures, which a busy machine skews.)
    h = await startHarness({ transferOptions: { stripes: 1 } });
    volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
  });
  after(async () => h?.close());

  async function write(regions: [number, number][]): Promise<number> {
    written = regions;
    for (const [offset, length] of regions) await h.sim.writeVolume(volumeId, offset, randomData(length));
    return regions.reduce((n, [, length]) => n + length, 0);
  }

  /** Changed bytes in blocks at or after `block` (one stripe: blocks go in order). */
  function writtenFrom(block: number): number {
    return written.reduce((n, [offset, length]) => {
      const from = Math.max(offset, block * BLOCK);
      return n + Math.max(0, offset + length - from);
    }, 0);
  }

  const runAndCheck = () => backUpAndCheck(h, volumeId);

  /** Back up; the connection was dropped once and the transfer resumed on a new one, re-sending only what was in flight. */
  async function resumedInTheSameAttempt(t: TestContext, data: number) {
    const { handle, transfers } = await runAndCheck();
    const r = transfers[0]!;
    t.diagnostic(`${r.bytesOnWire} bytes on the wire for ${r.changedBytes} changed, ${r.reconnects} reconnect(s)`);
    assert.equal(h.sim.faults.sshDropAfterBytes, undefined, 'the connection was dropped');
    assert.equal(await transferAttempt(handle), 1, 'no retry of the activity was needed');
    assert.equal(r.reconnects, 1);
    assert.ok(r.bytesOnWire <= data + overhead(data) + IN_FLIGHT, `${r.bytesOnWire} bytes for ${data}`);
    return r;
  }

  it('first sync: a drop is resumed in the same attempt, re-sending only what was in flight', async (t) => {
    const data = await write([0, 1, 2, 3].map((i) => [i * 200 * MiB, 6 * MiB]));
    h.sim.setFaults({ sshDropAfterBytes: 10 * MiB });
    const r = await resumedInTheSameAttempt(t, data);
    assert.equal(r.firstSync, true);
    assert.equal(r.refetchedBlocks, 0);
    assert.equal(r.changedBytes, data);
  });

  it('incremental: a drop is resumed in the same attempt, re-sending only what was in flight', async (t) => {
    const data = await write([0, 1, 2, 3].map((i) => [i * 200 * MiB + 50 * MiB, 6 * MiB]));
    h.sim.setFaults({ sshDropAfterBytes: 10 * MiB });
    const r = await resumedInTheSameAttempt(t, data);
    assert.equal(r.firstSync, false);
    assert.equal(r.blocksChanged, data / BLOCK);
  });

  it('a link that keeps dropping: the next attempt resumes from what arrived', async (t) => {
    const data = await write([0, 1, 2, 3].map((i) => [i * 200 * MiB + 20 * MiB, 6 * MiB]));
    // Every connection drops after 3 MiB, six times in all: more than one attempt's reconnects. (The simulator
    // counts the drops: a test re-arming the fault on a timer would race the reconnect.)
    h.sim.setFaults({ sshDropAfterBytes: 3 * MiB, sshDropTimes: 6 });
    const { handle, transfers } = await runAndCheck();
    const r = transfers[0]!;
    const sentAgain = r.bytesOnWire - writtenFrom(r.resumedBlocks);
    t.diagnostic(
      `attempt ${await transferAttempt(handle)} resumed ${r.resumedBlocks} blocks, moved ${r.bytesOnWire} bytes ` +
        `for ${writtenFrom(r.resumedBlocks)} changed after them (${data} in all), ${r.reconnects} reconnect(s)`,
    );
    const attempts = activityAttempts(await handle.fetchHistory()).filter((a) => a.type === 'transferVolume');
    assert.equal(attempts[0]?.attempt, 2, 'the first attempt gave up, the second finished');
    assert.match(attempts[0]?.lastFailure ?? '', /connection lost/i, 'the first attempt failed on the link');
    assert.equal(r.resumed, true);
    // The first attempt's four connections brought at least one full block each.
    assert.ok(writtenFrom(0) - writtenFrom(r.resumedBlocks) >= 4 * BLOCK, 'what arrived was kept');
    // Nothing that arrived in the first attempt travelled again, beyond what each drop had in flight.
    assert.ok(
      sentAgain <= overhead(data) + (r.reconnects + 1) * IN_FLIGHT,
      `${r.bytesOnWire} bytes moved for ${writtenFrom(r.resumedBlocks)} changed after the resume point`,
    );
  });
});

describe('SSH dropped mid-transfer (four stripes)', () => {
  let h: Harness;
  let volumeId: string;

  before(async () => {
    h = await startHarness({ transferOptions: { stripes: DEFAULT_STRIPES } });
    volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
  });
  after(async () => h?.close());

  it('a drop cuts every channel; each resumes where it stopped, in the same attempt', async (t) => {
    // 64 MiB segments are dealt to the stripes in turn: data in each of the first four segments.
    const regions = [0, 1, 2, 3].map((i) => [i * 64 * MiB + 8 * MiB, 6 * MiB] as const);
    for (const [offset, length] of regions) await h.sim.writeVolume(volumeId, offset, randomData(length));
    const data = 24 * MiB;
    h.sim.setFaults({ sshDropAfterBytes: 3 * MiB });
    const { handle, transfers } = await backUpAndCheck(h, volumeId);
    const r = transfers[0]!;
    t.diagnostic(`${r.bytesOnWire} bytes on the wire for ${r.changedBytes} changed, ${r.reconnects} reconnect(s)`);
    assert.equal(h.sim.faults.sshDropAfterBytes, undefined, 'the connection was dropped');
    assert.equal(await transferAttempt(handle), 1, 'no retry of the activity was needed');
    assert.equal(r.reconnects, 1);
    assert.equal(r.changedBytes, data);
    assert.ok(
      r.bytesOnWire <= data + overhead(data) + DEFAULT_STRIPES * IN_FLIGHT,
      `${r.bytesOnWire} bytes for ${data}`,
    );
  });
});
