// The live view of a run: per volume its step, bytes done of its size, rate and ETA. Bars (cli-progress) on a
// terminal; on anything else (a log file, CI, `| tee`) plain lines, one when a volume changes step or transfer phase
// and at most one every `plainEveryMs` while a transfer moves, so logs stay readable.
import { MultiBar, type SingleBar } from 'cli-progress';
import type { Writable } from 'node:stream';
import { formatBytes } from '../workflows/util';
import type { VolumeStep } from '../workflows/types';
import { formatDuration } from './output';
import type { RunState, TransferState } from './run-state';

export interface VolumeView {
  name: string;
  region: string;
  step: VolumeStep;
  sizeBytes: number;
  /** Bytes of the device compared so far (transfer only); the whole size once the transfer is behind it. */
  bytesDone: number | undefined;
  /** Bytes that crossed the network in this transfer attempt. */
  bytesReceived: number | undefined;
  transferPhase: TransferState['phase'] | undefined;
  bytesPerSecond: number | undefined;
  etaSeconds: number | undefined;
}

export interface RunView {
  phase: string;
  volumes: VolumeView[];
  done: number;
  failed: number;
}

const AFTER_TRANSFER: ReadonlySet<VolumeStep> = new Set(['detach', 'delete copy', 'delete snapshot', 'fsck', 'done']);

/**
 * Rates from the heartbeats' own timestamps, not from when we polled: a heartbeat can be seconds old, and two polls
 * that see the same heartbeat must not look like a stall.
 */
export class RateMeter {
  private readonly samples = new Map<string, { t: number; bytes: number }[]>();

  constructor(private readonly windowMs = 30_000) {}

  /** Record `bytes` done at time `t` for `key`; returns bytes per second over the window, once there are two points. */
  record(key: string, t: number, bytes: number): number | undefined {
    const list = this.samples.get(key) ?? [];
    const last = list[list.length - 1];
    if (last && bytes < last.bytes) list.length = 0; // a retried attempt starts over: so does its rate
    if (!last || t > last.t) list.push({ t, bytes });
    while (list.length > 2 && (list[0]?.t ?? 0) < t - this.windowMs) list.shift();
    this.samples.set(key, list);
    const first = list[0];
    const latest = list[list.length - 1];
    if (!first || !latest || latest.t <= first.t) return undefined;
    return ((latest.bytes - first.bytes) * 1000) / (latest.t - first.t);
  }
}

export function viewOf(state: RunState, meter: RateMeter, now = Date.now()): RunView | undefined {
  const progress = state.progress;
  if (!progress) return undefined;
  const volumes = progress.volumes.map((v): VolumeView => {
    const transfer = v.step === 'transfer' ? state.transfers.get(v.name) : undefined;
    let bytesDone: number | undefined;
    let rate: number | undefined;
    let eta: number | undefined;
    if (transfer && transfer.blockCount > 0) {
      bytesDone = Math.min(v.sizeBytes, Math.round((v.sizeBytes * transfer.blocksDone) / transfer.blockCount));
      rate = meter.record(v.name, transfer.at?.getTime() ?? now, bytesDone);
      if (rate !== undefined && rate > 0) eta = (v.sizeBytes - bytesDone) / rate;
    } else if (AFTER_TRANSFER.has(v.step)) {
      bytesDone = v.sizeBytes;
    }
    return {
      name: v.name,
      region: v.region,
      step: v.step,
      sizeBytes: v.sizeBytes,
      bytesDone,
      bytesReceived: transfer?.bytesReceived,
      transferPhase: transfer?.phase,
      bytesPerSecond: rate,
      etaSeconds: eta,
    };
  });
  return {
    phase: progress.phase,
    volumes,
    done: volumes.filter((v) => v.step === 'done').length,
    failed: volumes.filter((v) => v.step === 'failed').length,
  };
}

export function formatRate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? '-' : `${formatBytes(Math.max(0, bytesPerSecond))}/s`;
}

function stepText(v: VolumeView): string {
  if (v.step !== 'transfer') return v.step;
  return v.transferPhase && v.transferPhase !== 'transferring' ? `transfer (${v.transferPhase})` : 'transfer';
}

/** One volume as a line of text: `db-data (nyc3): transfer 512 MiB / 1.0 GiB (50%), 85 MiB/s, ETA 6 s`. */
export function describeVolume(v: VolumeView): string {
  let text = `${v.name} (${v.region}): ${stepText(v)}`;
  if (v.step === 'transfer' && v.bytesDone !== undefined) {
    const pct = v.sizeBytes > 0 ? Math.floor((100 * v.bytesDone) / v.sizeBytes) : 100;
    text += ` ${formatBytes(v.bytesDone)} / ${formatBytes(v.sizeBytes)} (${pct}%)`;
    text += `, ${formatRate(v.bytesPerSecond)}`;
    if (v.etaSeconds !== undefined) text += `, ETA ${formatDuration(v.etaSeconds * 1000)}`;
    if (v.bytesReceived) text += `, ${formatBytes(v.bytesReceived)} received`;
  } else if (v.step === 'waiting' || v.step === 'snapshot') {
    text += ` (${formatBytes(v.sizeBytes)})`;
  }
  return text;
}

export function summaryLine(view: RunView): string {
  const failed = view.failed ? `, ${view.failed} failed` : '';
  return `[${view.phase}] ${view.done} of ${view.volumes.length} volumes backed up${failed}`;
}

export interface ProgressDisplay {
  update(view: RunView): void;
  /** Leave the last state on screen and release the terminal. */
  stop(): void;
}

/** Plain lines: for logs. */
export class PlainDisplay implements ProgressDisplay {
  private lastSummary = '';
  private readonly last = new Map<string, { key: string; at: number }>();

  constructor(
    private readonly write: (line: string) => void,
    private readonly plainEveryMs = 10_000,
  ) {}

  update(view: RunView): void {
    const summary = summaryLine(view);
    if (summary !== this.lastSummary) this.write(summary);
    this.lastSummary = summary;
    const now = Date.now();
    for (const v of view.volumes) {
      // A new line on every change of step or transfer phase; a moving transfer at most every plainEveryMs.
      const key = `${v.step}/${v.transferPhase ?? ''}/${v.bytesDone === undefined ? '' : 'bytes'}`;
      const previous = this.last.get(v.name);
      const moved = v.step === 'transfer' && previous && now - previous.at >= this.plainEveryMs;
      if (previous?.key === key && !moved) continue;
      if (!previous && v.step === 'waiting') {
        this.last.set(v.name, { key, at: now });
        continue;
      }
      this.write(`  ${describeVolume(v)}`);
      this.last.set(v.name, { key, at: now });
    }
  }

  stop(): void {}
}

/** A bar per volume, redrawn in place: for a terminal. */
export class BarDisplay implements ProgressDisplay {
  private readonly multibar: MultiBar;
  private readonly bars = new Map<string, SingleBar>();
  private header: SingleBar | undefined;

  constructor(stream: Writable) {
    this.multibar = new MultiBar({
      stream: stream as NodeJS.WritableStream,
      format: '{label} |{bar}| {detail}',
      barsize: 24,
      hideCursor: true,
      autopadding: true,
      clearOnComplete: false,
      stopOnComplete: false,
      // Redraw on our updates only: a followed run is polled every second anyway.
      fps: 5,
    });
  }

  update(view: RunView): void {
    this.header ??= this.multibar.create(Math.max(1, view.volumes.length), 0, { label: '', detail: '' });
    this.header.setTotal(Math.max(1, view.volumes.length));
    this.header.update(view.done + view.failed, {
      label: 'run'.padEnd(this.labelWidth(view)),
      detail: summaryLine(view),
    });
    for (const v of view.volumes) {
      const total = Math.max(1, v.sizeBytes);
      const bar = this.bars.get(v.name) ?? this.multibar.create(total, 0, { label: '', detail: '' });
      this.bars.set(v.name, bar);
      const done = v.step === 'done' ? total : (v.bytesDone ?? 0);
      bar.update(done, {
        label: v.name.padEnd(this.labelWidth(view)),
        detail: describeVolume(v).slice(v.name.length + 1),
      });
    }
  }

  private labelWidth(view: RunView): number {
    return Math.max(3, ...view.volumes.map((v) => v.name.length));
  }

  stop(): void {
    this.multibar.stop();
  }
}

export function createDisplay(
  stream: Writable & { isTTY?: boolean },
  write: (line: string) => void,
  plainEveryMs?: number,
): ProgressDisplay {
  return stream.isTTY ? new BarDisplay(stream) : new PlainDisplay(write, plainEveryMs);
}
