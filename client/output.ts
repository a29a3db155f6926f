// Where the CLI writes: human lines on stdout, diagnostics on stderr, and with --json exactly one JSON document on
// stdout, so `dosvob status --json | jq` never has to skip a banner.
import type { Writable } from 'node:stream';

export interface Output {
  /** A line for a person (suppressed with --json). */
  line(text: string): void;
  /** A note that is not the command's answer (stderr, never suppressed: progress of a slow wait, warnings). */
  note(text: string): void;
  /** The command's machine-readable answer (only with --json). */
  json(value: unknown): void;
  readonly jsonMode: boolean;
  /** The stream of human output, for the live progress display. */
  readonly stream: Writable & { isTTY?: boolean; columns?: number };
}

export function createOutput(options: { json?: boolean; stdout?: Output['stream']; stderr?: Writable } = {}): Output {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const jsonMode = options.json === true;
  return {
    jsonMode,
    stream: stdout,
    line(text) {
      if (!jsonMode) stdout.write(`${text}\n`);
    },
    note(text) {
      stderr.write(`${text}\n`);
    },
    json(value) {
      if (jsonMode) stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
  };
}

/** Fixed-width columns for a small table; the last column is not padded. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [fmt(header), ...rows.map(fmt)];
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Local time to the minute: what a person scanning a list of runs wants. */
export function formatTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
