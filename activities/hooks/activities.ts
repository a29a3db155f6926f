// Freeze and thaw hooks (conf.json `hooks`), as activities on the main task queue: they need the DigitalOcean token
// (to find the droplet's address) and the hook's private key, and both stay on this worker. Each attempt resolves the
// droplet, reads the key and connects afresh, so every one is safe to retry; the scripts (scripts.ts) make a repeated
// freeze or thaw harmless on the droplet's side.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { minimatch } from 'minimatch';
import type { IDroplet } from 'dots-wrapper/dist/droplet';
import type { HookConfig } from '../../common/hooks-config';
import { listAll, type DoApi } from '../digitalocean/api';
import { call, FailureTypes } from '../digitalocean/errors';
import { outputForError } from './redact';
import { commandOutput, freezeCommand, parseFreezeOutput, parseThawOutput, thawCommand } from './scripts';
import { checkPrivateKey, runOnDroplet, type HookSshTarget } from './ssh';
import {
  HookFailureTypes,
  type FreezeInput,
  type FreezeResult,
  type HookSummary,
  type ThawInput,
  type ThawResult,
} from './types';

export interface HookDeps {
  hooks: readonly HookConfig[];
  api: DoApi;
  /** Cut out of every message the hooks report (with each hook's private key). */
  doToken: string;
  /** Where private_key_env is looked up; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export function hookId(hook: HookConfig): string {
  return createHash('sha256').update(JSON.stringify(hook)).digest('hex').slice(0, 12);
}

export function summarizeHook(hook: HookConfig): HookSummary {
  return {
    hookId: hookId(hook),
    volumes: hook.volumes,
    droplet: hook.droplet,
    user: hook.ssh.user,
    port: hook.ssh.port,
    hostKeyFingerprint: hook.ssh.hostKeyFingerprint,
    maxFreezeSeconds: hook.maxFreezeSeconds,
    hooksRequired: hook.hooksRequired,
  };
}

/** The first hook whose glob matches the volume's name. */
export function hookFor(hooks: readonly HookConfig[], volumeName: string): HookConfig | undefined {
  return hooks.find((h) => minimatch(volumeName, h.volumes));
}

/** The freeze's token directory on the droplet: one per run and volume, and nothing a shell could misread. */
function tokenId(input: FreezeInput): string {
  return createHash('sha256').update(`${input.runId}\0${input.volumeName}`).digest('hex').slice(0, 16);
}

function refused(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, HookFailureTypes.refused);
}

function publicIpv4(d: IDroplet): string | undefined {
  return d.networks.v4.find((n) => n.type === 'public')?.ip_address;
}

export function createHookActivities(deps: HookDeps) {
  const env = deps.env ?? process.env;

  function configured(input: FreezeInput): HookConfig {
    const hook = deps.hooks.find((h) => hookId(h) === input.hookId);
    if (!hook) {
      throw refused(
        `the hook for ${input.volumeName} is not in this worker's conf.json (${input.hookId}): the workers' ` +
          `configurations differ, or conf.json changed during the run`,
      );
    }
    return hook;
  }

  /** The key, read now, on this worker: never an input, never logged. */
  async function privateKey(hook: HookConfig, volumeName: string): Promise<string> {
    const { privateKeyFile: file, privateKeyEnv: name } = hook.ssh;
    let key: string | undefined;
    let source: string;
    if (file !== undefined) {
      source = `private_key_file ${file} (hook for ${volumeName})`;
      try {
        key = await readFile(file, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
        throw refused(`the hook for ${volumeName} cannot read its SSH key: ${source}: ${code}`);
      }
    } else {
      source = `environment variable ${name ?? '?'} (private_key_env of the hook for ${volumeName})`;
      key = name !== undefined ? env[name] : undefined;
      if (!key) throw refused(`the hook for ${volumeName} has no SSH key: ${source} is not set on this worker`);
    }
    checkPrivateKey(key, source);
    return key;
  }

  async function findDroplet(hook: HookConfig, volumeName: string): Promise<IDroplet> {
    const what = `looking up droplet ${hook.droplet} (hook for ${volumeName})`;
    if (/^\d+$/.test(hook.droplet)) {
      try {
        return (await call(what, () => deps.api.droplet.getDroplet({ droplet_id: Number(hook.droplet) }))).data.droplet;
      } catch (err) {
        if (err instanceof ApplicationFailure && err.type === FailureTypes.notFound) {
          throw refused(`the hook for ${volumeName} names droplet ${hook.droplet}, which does not exist`);
        }
        throw err;
      }
    }
    const all = await call(what, () =>
      listAll(async (page, per_page) => {
        const { data } = await deps.api.droplet.listDroplets({ page, per_page });
        return { items: data.droplets, total: data.meta?.total };
      }),
    );
    const named = all.filter((d) => d.name === hook.droplet);
    if (named.length === 0) throw refused(`the hook for ${volumeName} names droplet "${hook.droplet}": there is none`);
    if (named.length > 1) {
      throw refused(
        `the hook for ${volumeName} names droplet "${hook.droplet}", but ${named.length} droplets have that name ` +
          `(ids ${named.map((d) => d.id).join(', ')}): give its id instead`,
      );
    }
    return named[0]!;
  }

  /** Everything that can be checked before a command runs on the droplet. */
  async function target(input: FreezeInput): Promise<{ hook: HookConfig; droplet: IDroplet; ssh: HookSshTarget }> {
    const hook = configured(input);
    const key = await privateKey(hook, input.volumeName);
    const droplet = await findDroplet(hook, input.volumeName);
    const ip = publicIpv4(droplet);
    if (droplet.status !== 'active' || !ip) {
      throw ApplicationFailure.retryable(
        `droplet ${droplet.name} (hook for ${input.volumeName}) is ${droplet.status}${ip ? '' : ', without a public IPv4 address'}`,
        HookFailureTypes.failed,
      );
    }
    return {
      hook,
      droplet,
      ssh: {
        what: `droplet ${droplet.name} (${ip})`,
        host: ip,
        port: hook.ssh.port,
        username: hook.ssh.user,
        privateKey: key,
        hostKeyFingerprint: hook.ssh.hostKeyFingerprint,
        ...(hook.ssh.hostKeyType !== undefined ? { hostKeyType: hook.ssh.hostKeyType } : {}),
        secrets: [deps.doToken, key],
      },
    };
  }

  return {
    /** The hook for a volume, without its commands or key; null: the volume has none (it is snapshotted as always). */
    async resolveVolumeHook(input: { volumeName: string }): Promise<HookSummary | null> {
      const hook = hookFor(deps.hooks, input.volumeName);
      return hook ? summarizeHook(hook) : null;
    },

    /**
     * Freeze: arms the droplet's dead-man timer (max_freeze_seconds), then runs the freeze command; returns once it
     * succeeded. Refusals (key, host key, droplet) happen before anything runs on the droplet.
     */
    async freezeVolume(input: FreezeInput): Promise<FreezeResult> {
      const { hook, droplet, ssh } = await target(input);
      const command = freezeCommand(tokenId(input), hook.maxFreezeSeconds, hook.freeze, hook.thaw);
      const res = await runOnDroplet(ssh, command, {
        timeoutMs: (hook.maxFreezeSeconds + 30) * 1000,
        signal: Context.current().cancellationSignal,
      });
      const output = outputForError(commandOutput(res.stdout, res.stderr), ssh.secrets);
      const outcome = parseFreezeOutput(res.stdout);
      const where = `the freeze hook for ${input.volumeName} on ${ssh.what}`;
      switch (outcome.kind) {
        case 'frozen':
          return {
            dropletId: String(droplet.id),
            dropletName: droplet.name,
            ip: ssh.host,
            generation: outcome.generation,
            again: outcome.again,
          };
        case 'failed':
          throw ApplicationFailure.nonRetryable(
            `${where} failed (exit ${outcome.exitCode}), and was undone: ${output}`,
            HookFailureTypes.failed,
          );
        case 'expired':
          throw ApplicationFailure.nonRetryable(
            `${where} took longer than max_freeze_seconds (${hook.maxFreezeSeconds} s): the droplet's timer thawed ` +
              `it before the snapshot could be taken: ${output}`,
            HookFailureTypes.failed,
          );
        case 'setup-failed':
          throw ApplicationFailure.nonRetryable(`${where} could not start: ${outcome.detail}`, HookFailureTypes.failed);
        case 'unknown':
          throw ApplicationFailure.retryable(
            `${where} ended without a verdict (exit ${res.exitCode ?? 'none'}): ${output}`,
            HookFailureTypes.failed,
          );
      }
    },

    /**
     * Thaw: runs the thaw command if the freeze's token is still there, and cancels the timer by taking it. Thawing
     * twice, or after the timer did, or when nothing was frozen, is success (and says which).
     */
    async thawVolume(input: ThawInput): Promise<ThawResult> {
      const { ssh } = await target(input);
      const res = await runOnDroplet(ssh, thawCommand(tokenId(input)), { timeoutMs: 120_000 });
      const outcome = parseThawOutput(res.stdout);
      const output = outputForError(commandOutput(res.stdout, res.stderr), ssh.secrets);
      const where = `the thaw hook for ${input.volumeName} on ${ssh.what}`;
      if (outcome.kind === 'thawed') return { thawedBy: outcome.by };
      if (outcome.kind === 'failed') {
        throw ApplicationFailure.retryable(
          `${where} failed (exit ${outcome.exitCode}): ${output}`,
          HookFailureTypes.failed,
        );
      }
      throw ApplicationFailure.retryable(
        `${where} ended without a verdict (exit ${res.exitCode ?? 'none'}): ${output}`,
        HookFailureTypes.failed,
      );
    },
  };
}

export type HookActivities = ReturnType<typeof createHookActivities>;
