// `npm run bench:concurrency`: wall time of one run over N volumes at several `concurrency`
// settings, against the simulator (droplet actions take `--action-ms`, as DigitalOcean's do).
// On this machine the droplet, the agent and the store share 2 cores, so the figures show the
// orchestration's overlap (snapshots, copies and attach/detach waits), not DigitalOcean's disks.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startDevServer } from '../../client/temporal-server';
import { randomData } from '../support/bytes';
import type { BackupResult } from '../../workflows/types';

const MiB = 1 << 20;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      volumes: { type: 'string', default: '4' },
      'data-mib': { type: 'string', default: '64' },
      'action-ms': { type: 'string', default: '2000' },
      levels: { type: 'string', default: '1,2,4' },
    },
  });
  const server = await startDevServer();
  const work = mkdtempSync(path.join(tmpdir(), 'dosvob-conc-'));
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows') });
  writeFileSync(path.join(work, 'bundle.js'), bundle.code);
  process.env.TEMPORAL_ADDRESS = server.address;
  process.env.DOSVOB_TEST_WORKFLOW_BUNDLE = path.join(work, 'bundle.js');
  const { startHarness } = await import('../support/harness');
  const rows: string[] = [];
  try {
    for (const level of String(values.levels).split(',').map(Number)) {
      const actionMs = Number(values['action-ms']);
      const h = await startHarness({
        sim: { actionDelayMs: actionMs, dropletActiveDelayMs: actionMs * 2 },
        config: { concurrency: level },
      });
      try {
        for (let i = 0; i < Number(values.volumes); i++) {
          const v = await h.sim.createVolume({ name: `vol-${i}`, region: 'nyc3', sizeGigabytes: 1 });
          await h.sim.writeVolume(v.id, 0, randomData(Number(values['data-mib']) * MiB));
        }
        const started = Date.now();
        const result: BackupResult = await h.run({ timings: { pollIntervalMs: 200 } });
        const wall = (Date.now() - started) / 1000;
        rows.push(
          `| ${level} | ${values.volumes} | ${wall.toFixed(1)} | ${result.volumes.every((v) => v.ok) ? 'ok' : 'FAILED'} | $${result.estimatedCostUsd.toFixed(5)} |`,
        );
        console.log(rows[rows.length - 1]);
      } finally {
        await h.close();
      }
    }
  } finally {
    await server.stop();
  }
  console.log(
    ['| concurrency | volumes | wall s | outcome | est. cost |', '|---|---|---|---|---|', ...rows].join('\n'),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
