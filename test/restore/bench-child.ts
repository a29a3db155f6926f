// Bench helper (test/bench/transfer-bench.ts, restore scenario): one restore onto a device in its own process; prints
// the result and the send rate while data was being written, as JSON.
import { restoreVersionToDevice, type RestoreToDeviceOptions } from '../../activities/restore/core.js';

async function main(): Promise<void> {
  const opts = JSON.parse(process.argv[2] ?? '{}') as RestoreToDeviceOptions;
  // From the first progress report past 1 MiB sent to the last one of the writing phase.
  let t0 = 0;
  let b0 = 0;
  let t1 = 0;
  let b1 = 0;
  const result = await restoreVersionToDevice({
    ...opts,
    onProgress: (p) => {
      if (p.phase !== 'writing') return;
      if (!t0 && p.bytesSent > 1 << 20) {
        t0 = performance.now();
        b0 = p.bytesSent;
      }
      t1 = performance.now();
      b1 = p.bytesSent;
    },
  });
  const sendRate = t1 > t0 ? ((b1 - b0) / (t1 - t0)) * 1000 : 0;
  process.stdout.write(`${JSON.stringify({ ...result, sendRateBytesPerSec: sendRate })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
