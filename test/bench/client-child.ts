// Bench helper: one dosvob transfer in its own process; prints the result (and send-rate figures) as JSON.
import { syncVolume, type SyncVolumeOptions } from '../../activities/transfer/core.js';

async function main(): Promise<void> {
  const opts = JSON.parse(process.argv[2] ?? '{}') as SyncVolumeOptions;
  // Rate while sending: from the first progress report with data to the end of the transfer phase.
  let t0 = 0;
  let b0 = 0;
  let t1 = 0;
  let b1 = 0;
  const result = await syncVolume({
    ...opts,
    onProgress: (p) => {
      if (p.phase === 'transferring' && !t0 && p.bytesReceived > 1 << 20) {
        t0 = performance.now();
        b0 = p.bytesReceived;
      }
      if (p.phase === 'transferring') {
        t1 = performance.now();
        b1 = p.bytesReceived;
      }
    },
  });
  const sendRate = t1 > t0 ? ((b1 - b0) / (t1 - t0)) * 1000 : 0;
  process.stdout.write(
    `${JSON.stringify({ ...result, sendRateBytesPerSec: sendRate, rssPeakKiB: process.resourceUsage().maxRSS })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
