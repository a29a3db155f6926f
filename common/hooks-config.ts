// conf.json's `hooks`: for volumes matching a glob, the droplet that mounts them, how to reach it over SSH (host key
// pinned), and the commands that freeze and thaw its filesystem around the snapshot (activities/hooks/).
// The schema sits in configSchema (common/config.ts), so zod's issue paths name the field (`hooks.0.ssh.host_key`).
// The private key itself is never read here: only on the worker that runs the hook, at the moment it connects.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ParsedKey } from 'ssh2';
import { z } from 'zod';

/** `SHA256:` + unpadded base64 of the key blob's SHA-256, as `ssh-keygen -l` prints it. */
export function sha256Fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

export interface HostKeyPin {
  /** SHA-256 fingerprint. */
  fingerprint: string;
  /** The key's type (`ssh-ed25519`, `ssh-rsa`, …) when the pin is a key line: the droplet is asked for that type. */
  type?: string;
}

/**
 * The pinned host key, from a fingerprint, a public key line (`ssh-ed25519 AAAA… comment`) or a known_hosts line
 * (`host[,host] ssh-ed25519 AAAA…`, hashed host names included). Undefined if it is none of these.
 */
export function parseHostKeyPin(hostKey: string): HostKeyPin | undefined {
  const text = hostKey.trim();
  if (FINGERPRINT.test(text)) return { fingerprint: text };
  const fields = text.split(/\s+/);
  // A marked line (@revoked, @cert-authority) pins no host key.
  if (fields[0]?.startsWith('@')) return undefined;
  // ssh2 (and its native binding) only when a conf.json has a key line to parse: loading every config must not cost
  // `dosvob status` its start-up. require(), not import(): see client/lazy.ts.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { utils } = require('ssh2') as typeof import('ssh2');
  // The first adjacent "type base64" pair that parses as a public key: host names before it are skipped.
  for (let i = 0; i + 1 < fields.length; i++) {
    const parsed: ParsedKey | Error | ParsedKey[] = utils.parseKey(`${fields[i]} ${fields[i + 1]}`);
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (key && !(key instanceof Error) && !key.isPrivateKey()) {
      return { fingerprint: sha256Fingerprint(key.getPublicSSH()), type: key.type };
    }
  }
  return undefined;
}

export function pinnedFingerprint(hostKey: string): string | undefined {
  return parseHostKeyPin(hostKey)?.fingerprint;
}

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');

const sshSchema = z
  .object({
    user: z.string().min(1, 'must not be empty').default('root'),
    port: z.int().min(1).max(65535).default(22),
    private_key_file: z.string().min(1, 'must not be empty').optional(),
    private_key_env: envName.optional(),
    host_key: z
      .string({ error: 'is required: the droplet\'s host key, as a known_hosts line or a "SHA256:…" fingerprint' })
      .refine(
        (k) => pinnedFingerprint(k) !== undefined,
        'must be a known_hosts line, a public key line or a "SHA256:…" fingerprint (ssh-keyscan HOST | ssh-keygen -lf -)',
      ),
  })
  .strict()
  .superRefine((ssh, ctx) => {
    const both = ssh.private_key_file !== undefined && ssh.private_key_env !== undefined;
    const neither = ssh.private_key_file === undefined && ssh.private_key_env === undefined;
    if (both || neither) {
      ctx.addIssue({
        code: 'custom',
        path: ['private_key_file'],
        message: `set one of private_key_file and private_key_env${both ? ', not both' : ''}`,
      });
    }
  });

const hookSchema = z
  .object({
    volumes: z.string().min(1, 'must be a glob of volume names, e.g. "db-*"'),
    droplet: z.union([z.string().min(1), z.int().positive()], {
      error: "must be the droplet's name or id",
    }),
    ssh: sshSchema,
    freeze: z.string().min(1, 'must be a command, e.g. "fsfreeze -f /mnt/db"'),
    thaw: z.string().min(1, 'must be a command, e.g. "fsfreeze -u /mnt/db"'),
    max_freeze_seconds: z.int().min(1).max(3600).default(30),
    hooks_required: z.boolean().default(true),
  })
  .strict();

export const hooksConfigShape = {
  hooks: z.array(hookSchema).optional(),
};

export type HookConfigFile = z.input<typeof hookSchema>;

/** One hook as the worker holds it. `privateKeyFile` is absolute; the key is read when the hook runs. */
export interface HookConfig {
  /** Which volumes it is for (minimatch glob on the name); the first matching hook wins. */
  readonly volumes: string;
  /** A droplet name, or its id (digits). */
  readonly droplet: string;
  readonly ssh: {
    readonly user: string;
    readonly port: number;
    readonly privateKeyFile?: string;
    readonly privateKeyEnv?: string;
    /** SHA-256 fingerprint of the pinned host key. */
    readonly hostKeyFingerprint: string;
    /**
     * Its type, when conf.json gave the key itself: the droplet is asked for that type of host key (a server with
     * several presents the one the client prefers). A fingerprint alone: ssh2's preference, ed25519 first.
     */
    readonly hostKeyType?: string;
  };
  readonly freeze: string;
  readonly thaw: string;
  readonly maxFreezeSeconds: number;
  readonly hooksRequired: boolean;
}

export function resolveHooks(
  hooks: z.output<typeof hookSchema>[] | undefined,
  configFile: string | undefined,
): HookConfig[] {
  const base = configFile ? path.dirname(configFile) : process.cwd();
  return (hooks ?? []).map((h) => {
    const pin = parseHostKeyPin(h.ssh.host_key);
    return {
      volumes: h.volumes,
      droplet: String(h.droplet),
      ssh: {
        user: h.ssh.user,
        port: h.ssh.port,
        ...(h.ssh.private_key_file !== undefined ? { privateKeyFile: path.resolve(base, h.ssh.private_key_file) } : {}),
        ...(h.ssh.private_key_env !== undefined ? { privateKeyEnv: h.ssh.private_key_env } : {}),
        hostKeyFingerprint: pin?.fingerprint ?? '',
        ...(pin?.type !== undefined ? { hostKeyType: pin.type } : {}),
      },
      freeze: h.freeze,
      thaw: h.thaw,
      maxFreezeSeconds: h.max_freeze_seconds,
      hooksRequired: h.hooks_required,
    };
  });
}
