// `npm run bench:account`: a real account's pace. 30 volumes in 2 regions, 1 GiB to 500 GiB, against
// the simulator's realistic timing profile (played `--time-scale` faster: 0.1 = 10x), with another API
// client spending part of the rate limit; a second run after 1 % of each volume changed. Prints, per
// concurrency level: wall time against the bound (droplet readiness + Σ transfers + one volume's
// setup + 10 %), API requests per volume, 429s by client, history events and bytes (and 300 volumes
// extrapolated from a small run), resource-seconds and cost against the simulator's own accounting,
// and a Gantt-style timeline of each volume's steps from the workflow history.
//
// Scaled, and why: the simulator's files hold `--disk-mib-per-gib` MiB per GiB of the volumes' sizes
// (default 4, i.e. 1/256), so a 500 GiB volume is a 2000 MiB sparse file with 20–100 MiB of data: the
// sizes (and so the costs) are DigitalOcean's, the bytes fit a 2-core machine. The rate limits are
// multiplied by 1/time-scale, like every wait, so the account's pressure stays the same.
//
// At 1x: `npm run bench:account -- --time-scale 1` (hours: see README "Scale and pace").
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { bundleWorkflowCode } from '@temporalio/worker';
import { setPacerDefaults } from '../../activities/digitalocean/pacer';
import { startDevServer } from '../../client/temporal-server';
import { DEFAULT_PRICES, estimateCostUsd, type ResourceSeconds } from '../../common/pricing';
import { DEFAULT_TIMINGS, type BackupResult, type Timings } from '../../workflows/types';
import { Rng } from '../simulator/rng';
import type { Harness } from '../support/harness';
import { randomData } from '../support/bytes';

const MiB = 1 << 20;
const REGIONS = ['nyc3', 'ams3'] as const;
const DO_PER_MINUTE = 250;
const DO_PER_HOUR = 5000;

const { values: args } = parseArgs({
  options: {
    volumes: { type: 'string', default: '30' },
    levels: { type: 'string', default: '1,2,7' },
    'time-scale': { type: 'string', default: '0.1' },
    seed: { type: 'string', default: '13' },
    'disk-mib-per-gib': { type: 'string', default: '4' },
    'background-share': { type: 'string', default: '0.4' },
    'small-run': { type: 'string', default: '3' },
    /** Only the clean run (at 1x the second one must wait out the 10-minute snapshot interval first). */
    'clean-only': { type: 'boolean', default: false },
    /** Activity attempts of a DigitalOcean step (default DEFAULT_TIMINGS'): see "pending event" in the README. */
    'api-attempts': { type: 'string' },
    out: { type: 'string' },
  },
});
const VOLUMES = Number(args.volumes);
const LEVELS = String(args.levels).split(',').map(Number);
const SCALE = Number(args['time-scale']);
const SEED = Number(args.seed);
const BYTES_PER_GIB = Number(args['disk-mib-per-gib']) * MiB;
const BACKGROUND_SHARE = Number(args['background-share']);
const SMALL = Number(args['small-run']);
const API_ATTEMPTS = args['api-attempts'] === undefined ? undefined : Number(args['api-attempts']);

interface SourceSpec {
  name: string;
  region: string;
  sizeGib: number;
  dataFraction: number;
}

/** 1 GiB to 500 GiB, log-uniform (an account has many small volumes and a few big ones), 1–5 % data. */
function sourceSpecs(count: number, seed: number): SourceSpec[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, (_, i) => {
    const sizeGib = i === 0 ? 500 : i === 1 ? 1 : Math.max(1, Math.round(Math.exp(rng.next() * Math.log(500))));
    return {
      name: `acct-${String(i).padStart(2, '0')}`,
      region: REGIONS[i % REGIONS.length] as string,
      sizeGib,
      dataFraction: 0.01 + rng.next() * 0.04,
    };
  });
}

/** Every wait of the run at the time scale; timeouts stay generous (they are bounds, not paces). */
function scaledTimings(): Partial<Timings> {
  return {
    pollIntervalMs: Math.max(50, DEFAULT_TIMINGS.pollIntervalMs * SCALE),
    retryInitialIntervalMs: Math.max(50, DEFAULT_TIMINGS.retryInitialIntervalMs * SCALE),
    retryMaximumIntervalMs: Math.max(500, DEFAULT_TIMINGS.retryMaximumIntervalMs * SCALE),
    apiStepTimeoutMs: DEFAULT_TIMINGS.apiStepTimeoutMs,
    dropletReadyTimeoutMs: DEFAULT_TIMINGS.dropletReadyTimeoutMs,
    transferHeartbeatTimeoutMs: 30_000,
    transferTimeoutMs: 3600_000,
    ...(API_ATTEMPTS === undefined ? {} : { apiMaximumAttempts: API_ATTEMPTS }),
  };
}

/** Writes `fraction` of the volume's file as random data, in 1 MiB pieces spread by the generator. */
async function writeData(h: Harness, volumeId: string, fileBytes: number, fraction: number, rng: Rng): Promise<number> {
  const pieces = Math.max(1, Math.round((fileBytes * fraction) / MiB));
  const slots = Math.floor(fileBytes / MiB);
  const chosen = new Set<number>();
  while (chosen.size < Math.min(pieces, slots)) chosen.add(rng.int(0, slots - 1));
  for (const slot of chosen) await h.sim.writeVolume(volumeId, slot * MiB, randomData(MiB));
  return chosen.size * MiB;
}

/** Another tool on the same token: GETs evenly spread at `perMinute`. */
function backgroundLoad(h: Harness, perMinute: number): () => void {
  const timer = setInterval(
    () =>
      void fetch(`${h.sim.apiUrl}/v2/account`, {
        headers: { authorization: `Bearer ${h.sim.token}`, 'user-agent': 'othertool/1.0' },
      }).catch(() => undefined),
    60_000 / perMinute,
  );
  return () => clearInterval(timer);
}

// ---- the history ----

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
const millis = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number =>
  Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

interface Span {
  summary: string;
  type: string;
  scheduled: number;
  started: number | undefined;
  closed: number | undefined;
}

function activitySpans(history: History): Span[] {
  const spans = new Map<string, Span>();
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    const at = millis(e.eventTime);
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      const payload = e.userMetadata?.summary;
      const summary = payload ? String(defaultPayloadConverter.fromPayload(payload)) : '';
      spans.set(id, {
        summary,
        type: scheduled.activityType?.name ?? '',
        scheduled: at,
        started: undefined,
        closed: undefined,
      });
      continue;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const span = spans.get(String(started.scheduledEventId));
      if (span) span.started = at;
      continue;
    }
    const close =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes ??
      e.activityTaskCanceledEventAttributes;
    if (close) {
      const span = spans.get(String(close.scheduledEventId));
      if (span) span.closed = at;
    }
  }
  return [...spans.values()];
}

const STEP_MARKS: [RegExp, string, string][] = [
  [/^snapshot /, 'S', 'snapshot'],
  [/^copy /, 'C', 'copy from snapshot'],
  [/^attach /, 'A', 'attach'],
  [/^transfer /, '#', 'transfer'],
  [/^detach /, 'D', 'detach'],
  [/^delete /, 'x', 'delete copy and snapshot'],
  [/^(create|wait for) droplet/, 'o', 'droplet create → SSH ready'],
];

function volumeOf(summary: string, names: readonly string[]): string | undefined {
  const words = summary.split(/\s+/);
  return names.find((n) => words.includes(n));
}

function gantt(spans: readonly Span[], names: readonly string[], width = 96): string {
  const t0 = Math.min(...spans.map((s) => s.scheduled));
  const t1 = Math.max(...spans.map((s) => s.closed ?? s.scheduled));
  const col = (t: number): number => Math.min(width - 1, Math.floor(((t - t0) / Math.max(1, t1 - t0)) * width));
  const rows = new Map<string, string[]>();
  const row = (key: string): string[] => {
    let r = rows.get(key);
    if (!r) rows.set(key, (r = Array.from({ length: width }, () => ' ')));
    return r;
  };
  for (const region of REGIONS) row(`droplet ${region}`);
  for (const n of names) row(n);
  for (const s of spans) {
    const mark = STEP_MARKS.find(([re]) => re.test(s.summary));
    if (!mark) continue;
    const key =
      mark[1] === 'o'
        ? `droplet ${s.summary.match(/in (\S+)/)?.[1] ?? regionOfDroplet(s.summary)}`
        : volumeOf(s.summary, names);
    if (!key || !rows.has(key)) continue;
    const r = row(key);
    for (let c = col(s.started ?? s.scheduled); c <= col(s.closed ?? t1); c++) r[c] = mark[1];
  }
  const seconds = ((t1 - t0) / 1000).toFixed(0);
  const legend = STEP_MARKS.map(([, m, what]) => `${m} ${what}`).join(', ');
  return [
    `timeline (0 … ${seconds} s, ${width} columns; ${legend})`,
    ...[...rows.entries()].map(([k, r]) => `${k.padEnd(14)}|${r.join('')}|`),
  ].join('\n');
}

/** "wait for droplet NAME": the region is in the droplet's name (…-nyc3-…); the create summary says "in REGION". */
function regionOfDroplet(summary: string): string {
  return REGIONS.find((r) => summary.includes(r)) ?? '?';
}

interface StepTimes {
  dropletReadyMs: number;
  transferSumMs: number;
  setupMedianMs: number;
}

function stepTimes(spans: readonly Span[], names: readonly string[]): StepTimes {
  const run0 = Math.min(...spans.map((s) => s.scheduled));
  const dropletEnds = spans.filter((s) => /^wait for droplet/.test(s.summary)).map((s) => s.closed ?? run0);
  const dur = (s: Span): number => (s.closed ?? s.scheduled) - (s.started ?? s.scheduled);
  const transferSumMs = spans.filter((s) => s.type === 'transferVolume').reduce((a, s) => a + dur(s), 0);
  const setups = names.map((n) =>
    spans
      .filter((s) => volumeOf(s.summary, [n]) && s.type !== 'transferVolume')
      .reduce((a, s) => a + ((s.closed ?? s.scheduled) - s.scheduled), 0),
  );
  setups.sort((a, b) => a - b);
  return {
    dropletReadyMs: Math.max(0, ...dropletEnds.map((e) => e - run0)),
    transferSumMs,
    setupMedianMs: setups[Math.floor(setups.length / 2)] ?? 0,
  };
}

// ---- one run ----

interface RunFigures {
  label: string;
  concurrency: number;
  volumes: number;
  ok: boolean;
  wallMs: number;
  bound: StepTimes & { boundMs: number };
  dosvobRequests: number;
  /** dosvob's requests per "METHOD template STATUS", most first: where the requests per volume go. */
  dosvobEndpoints: [string, number][];
  clients: Record<string, { requests: number; rateLimited: number }>;
  events: number;
  historyBytes: number;
  reported: ResourceSeconds;
  reportedCostUsd: number;
  simulated: ResourceSeconds & { dropletBilledSeconds: number };
  simulatedCostUsd: number;
  simulatedBilledCostUsd: number;
  timeline: string;
}

async function runOnce(
  h: Harness,
  label: string,
  concurrency: number,
  specs: readonly SourceSpec[],
): Promise<RunFigures> {
  const names = specs.map((s) => s.name);
  const sources = new Set(names);
  const notSource = (r: { name: string }): boolean => !sources.has(r.name);
  const before = h.sim.resourceSeconds(Date.now(), notSource);
  h.sim.clearCallLog();
  const started = Date.now();
  const handle = await h.start({ timings: scaledTimings() });
  let result: BackupResult;
  try {
    result = (await handle.result()) as BackupResult;
  } catch (err) {
    console.error(`# ${label}: the run failed: ${String(err)}`);
    const failure = err as { cause?: { details?: unknown[] } };
    result = (failure.cause?.details?.[0] as BackupResult | undefined) ?? ({} as BackupResult);
  }
  const wallMs = Date.now() - started;
  const after = h.sim.resourceSeconds(Date.now(), notSource);
  const simulated = {
    dropletSeconds: after.dropletSeconds - before.dropletSeconds,
    dropletBilledSeconds: after.dropletBilledSeconds - before.dropletBilledSeconds,
    volumeGibSeconds: after.volumeGibSeconds - before.volumeGibSeconds,
    snapshotGibSeconds: after.snapshotGibSeconds - before.snapshotGibSeconds,
  };
  const history = await handle.fetchHistory();
  const description = await handle.describe();
  const historyBytes = Number(description.raw.workflowExecutionInfo?.historySizeBytes ?? 0);
  const spans = activitySpans(history);
  const times = stepTimes(spans, names);
  const clients = h.sim.callsByClient();
  const endpoints = new Map<string, number>();
  for (const e of h.sim.callLog) {
    if (!(e.userAgent ?? '').startsWith('dosvob')) continue;
    const key = `${e.method} ${e.template ?? e.path} ${e.status}`;
    endpoints.set(key, (endpoints.get(key) ?? 0) + 1);
  }
  return {
    label,
    concurrency,
    volumes: specs.length,
    ok: (result.volumes ?? []).length === specs.length && result.volumes.every((v) => v.ok),
    wallMs,
    bound: { ...times, boundMs: (times.dropletReadyMs + times.transferSumMs + times.setupMedianMs) * 1.1 },
    dosvobRequests: clients.dosvob?.requests ?? 0,
    dosvobEndpoints: [...endpoints.entries()].sort((a, b) => b[1] - a[1]),
    clients,
    events: history.events?.length ?? 0,
    historyBytes,
    reported: result.resourceSeconds ?? { dropletSeconds: 0, volumeGibSeconds: 0, snapshotGibSeconds: 0 },
    reportedCostUsd: result.estimatedCostUsd ?? 0,
    simulated,
    simulatedCostUsd: estimateCostUsd(simulated, DEFAULT_PRICES),
    simulatedBilledCostUsd: estimateCostUsd(
      { ...simulated, dropletSeconds: simulated.dropletBilledSeconds },
      DEFAULT_PRICES,
    ),
    timeline: gantt(spans, names),
  };
}

async function prepare(
  h: Harness,
  specs: readonly SourceSpec[],
  rng: Rng,
): Promise<Map<string, { id: string; bytes: number }>> {
  const made = new Map<string, { id: string; bytes: number }>();
  for (const s of specs) {
    const v = await h.sim.createVolume({ name: s.name, region: s.region, sizeGigabytes: s.sizeGib });
    await writeData(h, v.id, s.sizeGib * BYTES_PER_GIB, s.dataFraction, rng);
    made.set(s.name, { id: v.id, bytes: s.sizeGib * BYTES_PER_GIB });
  }
  return made;
}

async function withHarness<T>(concurrency: number, fn: (h: Harness) => Promise<T>): Promise<T> {
  const { startHarness } = await import('../support/harness');
  const perMinute = DO_PER_MINUTE / SCALE;
  setPacerDefaults({ perMinute });
  const h = await startHarness({
    regions: [...REGIONS],
    config: { concurrency },
    sim: {
      profile: 'realistic',
      timeScale: SCALE,
      seed: SEED,
      diskBytesPerGib: BYTES_PER_GIB,
      rateLimitPerMinute: perMinute,
      rateLimitPerHour: DO_PER_HOUR / SCALE,
      snapshotIntervalMs: 10 * 60_000 * SCALE,
      sshKeyListPerMinute: 10 / SCALE,
    },
  });
  const stop = backgroundLoad(h, perMinute * BACKGROUND_SHARE);
  try {
    return await fn(h);
  } finally {
    stop();
    await h.close();
  }
}

// ---- report ----

const s = (ms: number): string => (ms / 1000).toFixed(1);
const pct = (a: number, b: number): string => (b === 0 ? 'n/a' : `${(((a - b) / b) * 100).toFixed(1)} %`);

function rowOf(f: RunFigures): string {
  const limited = Object.entries(f.clients)
    .map(([c, v]) => `${c} ${v.rateLimited}/${v.requests}`)
    .join(', ');
  return `| ${f.label} | ${f.concurrency} | ${f.ok ? 'ok' : 'FAILED'} | ${s(f.wallMs)} | ${s(f.bound.boundMs)} | ${(f.wallMs / f.bound.boundMs).toFixed(2)} | ${(f.dosvobRequests / f.volumes).toFixed(1)} | ${limited} | ${f.events} | ${(f.historyBytes / 1024).toFixed(0)} |`;
}

function requestLines(f: RunFigures): string[] {
  return [
    `${f.label}: dosvob's requests per volume by endpoint and status:`,
    ...f.dosvobEndpoints.map(([k, n]) => `  ${(n / f.volumes).toFixed(2).padStart(6)}  ${k} (${n})`),
  ];
}

function costLines(f: RunFigures): string[] {
  const r = f.reported;
  const m = f.simulated;
  return [
    `${f.label}: resource-seconds reported by the run vs the simulator's accounting (difference):`,
    `  droplet s      ${r.dropletSeconds.toFixed(1)} vs ${m.dropletSeconds.toFixed(1)} (${pct(r.dropletSeconds, m.dropletSeconds)}); billed with the 60 s minimum each: ${m.dropletBilledSeconds.toFixed(1)}`,
    `  volume GiB·s   ${r.volumeGibSeconds.toFixed(0)} vs ${m.volumeGibSeconds.toFixed(0)} (${pct(r.volumeGibSeconds, m.volumeGibSeconds)})`,
    `  snapshot GiB·s ${r.snapshotGibSeconds.toFixed(0)} vs ${m.snapshotGibSeconds.toFixed(0)} (${pct(r.snapshotGibSeconds, m.snapshotGibSeconds)}) (the simulator bills stored data)`,
    `  cost $         ${f.reportedCostUsd.toFixed(6)} vs ${f.simulatedCostUsd.toFixed(6)} (${pct(f.reportedCostUsd, f.simulatedCostUsd)}); per-droplet 60 s minimum: $${f.simulatedBilledCostUsd.toFixed(6)}; at 1x about ${(1 / SCALE).toFixed(0)}x these`,
  ];
}

async function main(): Promise<void> {
  const benchStarted = Date.now();
  const server = await startDevServer();
  const work = mkdtempSync(path.join(tmpdir(), 'dosvob-account-'));
  const bundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error },
  });
  writeFileSync(path.join(work, 'bundle.js'), bundle.code);
  process.env.TEMPORAL_ADDRESS = server.address;
  process.env.DOSVOB_TEST_WORKFLOW_BUNDLE = path.join(work, 'bundle.js');
  const specs = sourceSpecs(VOLUMES, SEED);
  const totalGib = specs.reduce((a, x) => a + x.sizeGib, 0);
  console.log(
    `# ${VOLUMES} volumes in ${REGIONS.join(', ')}, ${totalGib} GiB in all (${specs.map((x) => x.sizeGib).join(', ')} GiB); ` +
      `time scale ${SCALE}; ${BYTES_PER_GIB / MiB} MiB on disk per GiB; background client at ${(BACKGROUND_SHARE * 100).toFixed(0)} % of the per-minute limit; ` +
      `${API_ATTEMPTS ?? DEFAULT_TIMINGS.apiMaximumAttempts} attempts per DigitalOcean step`,
  );
  const figures: RunFigures[] = [];
  const report = (f: RunFigures): void => {
    figures.push(f);
    console.log(rowOf(f));
  };
  try {
    for (const [i, level] of LEVELS.entries()) {
      const main = i === LEVELS.length - 1;
      await withHarness(level, async (h) => {
        const rng = new Rng(SEED + 1);
        const made = await prepare(h, specs, rng);
        const first = await runOnce(h, `clean run, c=${level}`, level, specs);
        report(first);
        if (!main) return;
        console.log(first.timeline);
        requestLines(first).forEach((l) => console.log(l));
        costLines(first).forEach((l) => console.log(l));
        if (args['clean-only']) return;
        // The next snapshot of a volume may come only 10 minutes (at 1x) after its last, which may have been near the
        // end of the first run.
        await new Promise((r) => setTimeout(r, 10 * 60_000 * SCALE + 2_000));
        for (const spec of specs) {
          const v = made.get(spec.name);
          if (v) await writeData(h, v.id, v.bytes, 0.01, rng);
        }
        const second = await runOnce(h, `1 % changed, c=${level}`, level, specs);
        report(second);
        console.log(second.timeline);
        requestLines(second).forEach((l) => console.log(l));
        costLines(second).forEach((l) => console.log(l));
      });
    }
    // A small run: with the 30-volume one, the fixed and per-volume parts of the history.
    const level = LEVELS[LEVELS.length - 1] ?? 2;
    const small = specs.slice(0, SMALL);
    await withHarness(level, async (h) => {
      await prepare(h, small, new Rng(SEED + 2));
      report(await runOnce(h, `small run, ${SMALL} volumes`, level, small));
    });
  } finally {
    await server.stop();
  }
  const big = figures.find((f) => f.label.startsWith('clean run') && f.concurrency === LEVELS[LEVELS.length - 1]);
  const small = figures.find((f) => f.label.startsWith('small run'));
  const lines = [
    '',
    `| run | concurrency | outcome | wall s | bound s | wall/bound | dosvob requests/volume | 429s/requests by client | history events | history KiB |`,
    '|---|---|---|---|---|---|---|---|---|---|',
    ...figures.map(rowOf),
  ];
  const seedRef = figures.find((f) => f.label.startsWith('clean run'));
  if (seedRef) {
    // The original's own words: "about a minute of setup, plus maybe fifteen seconds of further setup per volume",
    // strictly one volume after another; its transfers taken as this run's.
    const seedMs = (60_000 + 15_000 * VOLUMES) * SCALE + seedRef.bound.transferSumMs;
    lines.push(
      `| seed, computed from its own quoted figures (not this profile's) | 1 | - | ${s(seedMs)} | ${s(seedRef.bound.boundMs)} | ${(seedMs / seedRef.bound.boundMs).toFixed(2)} | - | - | - | - |`,
    );
  }
  for (const f of figures) {
    lines.push(
      `${f.label}: bound = droplet ready ${s(f.bound.dropletReadyMs)} s + Σ transfers ${s(f.bound.transferSumMs)} s + one volume's API steps (median) ${s(f.bound.setupMedianMs)} s, + 10 %`,
    );
  }
  if (big && small && big.volumes > small.volumes) {
    const perVolumeEvents = (big.events - small.events) / (big.volumes - small.volumes);
    const perVolumeBytes = (big.historyBytes - small.historyBytes) / (big.volumes - small.volumes);
    const fixedEvents = small.events - perVolumeEvents * small.volumes;
    const fixedBytes = small.historyBytes - perVolumeBytes * small.volumes;
    lines.push(
      `history: ${perVolumeEvents.toFixed(1)} events and ${(perVolumeBytes / 1024).toFixed(1)} KiB per volume, ${fixedEvents.toFixed(0)} events and ${(fixedBytes / 1024).toFixed(0)} KiB fixed;` +
        ` 300 volumes: about ${(fixedEvents + 300 * perVolumeEvents).toFixed(0)} events, ${((fixedBytes + 300 * perVolumeBytes) / MiB).toFixed(2)} MiB` +
        ` (Temporal warns at 10,240 events / 10 MiB and stops a run at 51,200 / 50 MiB)`,
    );
  }
  lines.push(`bench wall time ${s(Date.now() - benchStarted)} s`);
  console.log(lines.join('\n'));
  if (args.out)
    writeFileSync(
      args.out,
      [
        ...figures.map((f) => f.timeline),
        ...figures.flatMap(requestLines),
        ...figures.flatMap(costLines),
        ...lines,
      ].join('\n') + '\n',
    );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
