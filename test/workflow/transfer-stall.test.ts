// A droplet whose stream goes silent mid-transfer (the agent's output stops; the SSH connection stays up and answers
// keepalives): the attempt fails after the run's stall limit, Temporal retries it, and the retry resumes from what
// arrived. The transfer is scheduled with a schedule-to-close bound derived from the volume's size.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pythonAgent } from '../../activities/transfer/agent';
import type { TransferVolumeResult } from '../../activities/transfer/activity';
import { transferBudgetMs } from '../../workflows/transfer-budget';
import { DEFAULT_TIMINGS, type BackupResult, type Timings } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { activityAttempts, activityResults, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;
const STALL = path.join(__dirname, '..', 'transfer', 'fixtures', 'stall.py');

describe('a stalled transfer', () => {
  let h: Harness;
  let volumeId: string;
  const scratch = mkdtempSync(path.join(tmpdir(), 'dosvob-stall-'));
  const marker = path.join(scratch, 'stalled');

  before(async () => {
    const agent = pythonAgent();
    // One-shot (the marker): the first agent's output stops after 8 MiB; later agents pass theirs through.
    const command = `${agent.command} | python3 ${STALL} --after ${8 * MiB} --marker ${marker}`;
    h = await startHarness({ transferOptions: { stripes: 1, checkpointBytes: MiB, agent: { ...agent, command } } });
    volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
    for (let i = 0; i < 4; i++) await h.sim.writeVolume(volumeId, i * 100 * MiB, randomData(6 * MiB));
  });
  after(async () => {
    await h?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('fails the attempt after the stall limit; the retry resumes; the whole transfer has a size-derived bound', async () => {
    // The limit only has to exceed an honest pause of a local agent: the stall itself is permanent.
    const timings: Partial<Timings> = {
      transferStallTimeoutMs: 5_000,
      transferAttemptFloorMs: 60_000,
      transferSlowBytesPerSecond: 64 * MiB,
    };
    const handle = await h.start({ timings });
    const result = (await handle.result()) as BackupResult;
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    assert.equal(statSync(marker).isFile(), true, 'the stall fired');
    assert.ok(await sameSparseBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(volumeId)), 'identical');
    assertNothingLeft(h.sim, ['app-data']);

    const history = await handle.fetchHistory();
    const attempts = activityAttempts(history).filter((a) => a.type === 'transferVolume');
    assert.equal(attempts[0]?.attempt, 2, 'the stalled attempt failed, the second finished');
    assert.match(attempts[0]?.lastFailure ?? '', /no data from the droplet for 5 s/);
    const r = activityResults<TransferVolumeResult>(history, 'transferVolume')[0]!;
    assert.equal(r.resumed, true);
    assert.ok(r.resumedBlocks >= 4, `resumed ${r.resumedBlocks} blocks`);

    const scheduled = history.events?.find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'transferVolume',
    )?.activityTaskScheduledEventAttributes;
    const bound = scheduled?.scheduleToCloseTimeout;
    const boundMs = Number(bound?.seconds ?? 0) * 1000 + Math.round((bound?.nanos ?? 0) / 1e6);
    const t: Timings = { ...DEFAULT_TIMINGS, ...FAST_TIMINGS, ...timings };
    assert.equal(boundMs, transferBudgetMs(t, 2 ** 30));
  });
});
