// conf.json: the original dosvob's keys (do_token, region, healthchecks) plus dosvob's own.
// Validated once on load; every bad field is named in one message so a user fixes them all at once.
import { readFileSync } from 'node:fs';

import path from 'node:path';
import { z } from 'zod';
import { isValidInstallationId } from './names';
import { DEFAULT_PRICES, type Prices } from './pricing';
import type { RetentionPolicy } from './retention';
import { resolveRetentionPolicy, retentionConfigShape } from './retention-config';
import { DEFAULT_STORE_TASK_QUEUE } from './task-queues';
import { hooksConfigShape, resolveHooks, type HookConfig } from './hooks-config';
import { ConfigError } from './config-error';

export const DEFAULT_API_URL = 'https://api.digitalocean.com';
export const TOKEN_HELP = 'create a token at https://cloud.digitalocean.com/account/api/tokens';

const regionSlug = z.string().regex(/^[a-z]{3}[0-9]$/, 'must be a region slug such as "nyc3" or "fra1"');
const glob = z.string().min(1, 'must not be empty');
const installationIdField = z
  .string()
  .refine(isValidInstallationId, 'must be 1 to 12 lowercase letters and digits (and not 10 hex digits)');

/** conf.json.example's token: a copy of the example that was never edited says so, rather than "401 Unauthorized". */
export function isPlaceholderToken(token: string): boolean {
  return token.includes('...') || /\s/.test(token);
}

export const configSchema = z
  .object({
    do_token: z.string().min(1, 'must not be empty').optional(),
    region: regionSlug.optional(),
    regions: z.array(regionSlug).min(1, 'must list at least one region').optional(),
    healthchecks: z.url({ message: 'must be a URL such as "https://hc-ping.com/<uuid>"' }).optional(),
    api_url: z.url({ message: 'must be a URL such as "https://api.digitalocean.com"' }).optional(),
    backups_dir: z.string().min(1).default('backups'),
    include: z.array(glob).default(['*']),
    exclude: z.array(glob).default([]),
    droplet_size: z.string().min(1).default('s-1vcpu-1gb'),
    droplet_image: z.string().min(1).default('debian-12-x64'),
    concurrency: z.int().min(1).max(7).default(2),
    block_size: z
      .int()
      .min(64 * 1024)
      .max(64 * 1024 * 1024)
      .refine((n) => (n & (n - 1)) === 0, 'must be a power of two')
      .optional(),
    key_secret: z.string().min(32, 'must be at least 32 characters').optional(),
    installation_id: installationIdField.optional(),
    store_task_queue: z
      .string()
      .regex(/^[A-Za-z0-9._@:-]+$/)
      .optional(),
    ssh_port: z.int().min(1).max(65535).default(22),
    api_timeout_ms: z.int().min(100).max(600_000).optional(),
    schedule: z.string().min(1).default('4h'),
    prices: z
      .object({
        droplet_per_hour: z.number().nonnegative(),
        volume_per_gib_month: z.number().nonnegative(),
        snapshot_per_gib_month: z.number().nonnegative(),
      })
      .partial()
      .optional(),
    ...retentionConfigShape,
    ...hooksConfigShape,
    /** How each new version is checked: its blocks' hashes as received (always), or also its filesystem (issue 12). */
    verify: z.enum(['hashes', 'fsck']).default('hashes'),
  })
  .strict();

export type ConfigFile = z.input<typeof configSchema>;

export interface Config {
  /** Never leaves the worker process: not in workflow inputs, history, logs or errors. */
  readonly doToken: string;
  readonly apiUrl: string;
  readonly regions: readonly string[];
  readonly healthchecks: string | undefined;
  readonly backupsDir: string;
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly dropletSize: string;
  readonly dropletImage: string;
  readonly concurrency: number;
  readonly blockSize: number | undefined;
  readonly keySecret: string | undefined;
  /** Set in conf.json or DOSVOB_INSTALLATION_ID; otherwise workers derive it (common/installation.ts). */
  readonly installationId?: string;
  readonly storeTaskQueue: string;
  readonly sshPort: number;
  /** Timeout of one DigitalOcean API request; default 15 s (dots-wrapper's). */
  readonly apiTimeoutMs?: number;
  readonly schedule: string;
  readonly prices: Prices;
  /** Which versions pruning keeps: `keep` or `snapshot_retention` of conf.json, else the default. */
  readonly retention: RetentionPolicy;
  /** Freeze/thaw hooks around snapshots (common/hooks-config.ts); absent or empty: none. */
  readonly hooks?: readonly HookConfig[];
  /** `fsck`: after each sync the new version is checked read-only by its filesystem's checker. Default `hashes`. */
  readonly verify?: 'hashes' | 'fsck';
  readonly sourcePath: string | undefined;
}

export { ConfigError };

function formatIssues(file: string, error: z.ZodError): string {
  const lines = error.issues.map((issue) => {
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    if (issue.code === 'unrecognized_keys') return `  - unknown key(s): ${issue.keys.join(', ')}`;
    return `  - ${where}: ${issue.message}`;
  });
  return `${file} is invalid:\n${lines.join('\n')}`;
}

export interface LoadConfigOptions {
  /** Path to conf.json; when omitted, ./conf.json is used if it exists. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** The token is only needed by commands that talk to DigitalOcean. */
  requireToken?: boolean;
}

function readJson(file: string, explicit: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit) return {};
    throw new ConfigError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const explicit = options.path !== undefined || env.DOSVOB_CONFIG !== undefined;
  const file = path.resolve(options.path ?? env.DOSVOB_CONFIG ?? 'conf.json');
  const raw = readJson(file, explicit);
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(formatIssues(file, parsed.error));
  const c = parsed.data;

  const envToken = env.DIGITALOCEAN_TOKEN ?? env.DIGITALOCEAN_ACCESS_TOKEN;
  // The example's placeholder counts as "left out" (as the example itself says), so the environment's token applies.
  const placeholder = c.do_token !== undefined && isPlaceholderToken(c.do_token);
  const doToken = (placeholder ? undefined : c.do_token) ?? envToken ?? '';
  if (placeholder && !doToken && options.requireToken !== false) {
    throw new ConfigError(
      `do_token in ${file} is still the example's placeholder: put your DigitalOcean token there, or remove it and set DIGITALOCEAN_TOKEN (${TOKEN_HELP})`,
    );
  }
  if (!doToken && options.requireToken !== false) {
    throw new ConfigError(
      `no DigitalOcean token: set "do_token" in ${file} or the DIGITALOCEAN_TOKEN environment variable (${TOKEN_HELP})`,
    );
  }
  if (c.region && c.regions) {
    throw new ConfigError(`${file} is invalid:\n  - region, regions: set one of them, not both`);
  }
  const regions = c.regions ?? (c.region ? [c.region] : []);
  if (regions.length === 0) {
    throw new ConfigError(
      `${file} is invalid:\n  - region: missing (e.g. "region": "nyc3", or "regions": ["nyc3", "fra1"])`,
    );
  }
  const installationId = c.installation_id ?? (env.DOSVOB_INSTALLATION_ID || undefined);
  if (installationId !== undefined && !isValidInstallationId(installationId)) {
    throw new ConfigError(
      `DOSVOB_INSTALLATION_ID="${installationId}" must be 1 to 12 lowercase letters and digits (and not 10 hex digits)`,
    );
  }
  let retention: RetentionPolicy;
  try {
    retention = resolveRetentionPolicy(c);
  } catch (err) {
    throw new ConfigError(`${file} is invalid:\n  - ${(err as Error).message}`);
  }
  const apiUrl = (env.DIGITALOCEAN_API_URL ?? c.api_url ?? DEFAULT_API_URL).replace(/\/+$/, '').replace(/\/v2$/, '');
  return {
    doToken,
    apiUrl,
    regions: [...new Set(regions)],
    healthchecks: c.healthchecks,
    backupsDir: path.resolve(path.dirname(file), c.backups_dir),
    include: c.include,
    exclude: c.exclude,
    dropletSize: c.droplet_size,
    dropletImage: c.droplet_image,
    concurrency: c.concurrency,
    blockSize: c.block_size,
    keySecret: c.key_secret ?? env.DOSVOB_KEY_SECRET,
    installationId,
    storeTaskQueue: c.store_task_queue ?? env.DOSVOB_STORE_TASK_QUEUE ?? DEFAULT_STORE_TASK_QUEUE,
    sshPort: c.ssh_port,
    apiTimeoutMs: c.api_timeout_ms,
    schedule: c.schedule,
    prices: { ...DEFAULT_PRICES, ...c.prices },
    retention,
    hooks: resolveHooks(c.hooks, file),
    verify: c.verify,
    sourcePath: file,
  };
}
