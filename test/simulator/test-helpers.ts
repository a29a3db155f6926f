// Helpers for the simulator's own tests.
import { Client } from 'ssh2';
import type { Simulator } from './simulator';

export interface ApiAnswer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** One API request; `path` starts with /v2. */
export async function api(
  sim: Simulator,
  method: string,
  path: string,
  body?: unknown,
  token: string = sim.token,
): Promise<ApiAnswer> {
  const res = await fetch(`${sim.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** Property access on an unknown JSON value: get(body, 'volume', 'id'). */
export function get(value: unknown, ...keys: (string | number)[]): unknown {
  let v = value;
  for (const k of keys) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v;
}

export const str = (value: unknown, ...keys: (string | number)[]): string => String(get(value, ...keys));
export const num = (value: unknown, ...keys: (string | number)[]): number => Number(get(value, ...keys));

/**
 * For simulators whose tests are not about the rate limit. DigitalOcean's 250 a minute is a budget a faster machine
 * spends sooner (its requests come quicker), so only the limiter's own tests (simulator-faults) keep one, each on a
 * simulator of its own.
 */
export const NO_RATE_LIMIT = { rateLimitPerMinute: 1_000_000_000, rateLimitPerHour: 1_000_000_000 } as const;

/** Polls start at least this far apart, however quickly the simulator answers. */
export const POLL_INTERVAL_MS = 50;
/** A deadline for failing, not a schedule: generous enough for a loaded machine pinned to one core. */
export const WAIT_DEADLINE_MS = 60_000;

/** Poll `fn` until it gives a value; `intervalMs` is measured from the start of one poll to the next. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  { deadlineMs = WAIT_DEADLINE_MS, intervalMs = POLL_INTERVAL_MS }: { deadlineMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const started = Date.now();
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, Math.max(0, started + intervalMs - Date.now())));
  }
}

/** Poll an action until it leaves in-progress. */
export async function waitAction(sim: Simulator, actionId: number): Promise<string> {
  return waitFor(`action ${actionId}`, async () => {
    const r = await api(sim, 'GET', `/v2/actions/${actionId}`);
    const status = str(r.body, 'action', 'status');
    return status === 'in-progress' ? undefined : status;
  });
}

export async function waitActive(sim: Simulator, dropletId: number): Promise<unknown> {
  return waitFor(`droplet ${dropletId} active`, async () => {
    const r = await api(sim, 'GET', `/v2/droplets/${dropletId}`);
    return str(r.body, 'droplet', 'status') === 'active' ? r.body : undefined;
  });
}

export interface ExecResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  hostKey: Buffer;
}

/** Run one command over SSH; resolves with its output and the host key the server presented. */
export function sshExec(
  host: string,
  port: number,
  privateKey: string,
  command: string,
  onConnected?: (client: Client) => void,
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let hostKey: Buffer = Buffer.alloc(0);
    client
      .on('ready', () => {
        onConnected?.(client);
        client.exec(command, (err, stream) => {
          if (err) {
            client.end();
            reject(err);
            return;
          }
          const out: Buffer[] = [];
          let stderr = '';
          let code: number | null = null;
          stream.on('data', (d: Buffer) => out.push(d));
          stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          stream.on('exit', (c: number | null) => (code = c));
          stream.on('close', () => {
            client.end();
            resolve({ code, stdout: Buffer.concat(out), stderr, hostKey });
          });
        });
      })
      .on('error', reject)
      .on('close', () => reject(new Error('connection closed')))
      .connect({
        host,
        port,
        username: 'root',
        privateKey,
        // A failure bound only (the refused and rejected logins the tests expect fail at once).
        readyTimeout: 30_000,
        hostVerifier: (key: Buffer) => {
          hostKey = key;
          return true;
        },
      });
  });
}

export { CONTENT_DIGEST_PY, contentDigest } from '../support/sparse';
