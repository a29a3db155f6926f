// Turns DigitalOcean API errors into Temporal failures with the right retry behaviour.
// Messages are built from status and DigitalOcean's own message only: never from the request,
// whose headers carry the token.
import { ApplicationFailure } from '@temporalio/common';
import { isAxiosError } from 'axios';

export const FailureTypes = {
  auth: 'DigitalOceanAuthError',
  notFound: 'DigitalOceanNotFound',
  rejected: 'DigitalOceanRejected',
  rateLimited: 'DigitalOceanRateLimited',
  unavailable: 'DigitalOceanUnavailable',
  actionErrored: 'DigitalOceanActionErrored',
  config: 'ConfigurationError',
  hostKeyMismatch: 'HostKeyMismatch',
  sourceGone: 'SourceVolumeGone',
} as const;

export interface ApiErrorInfo {
  status: number | undefined;
  id: string | undefined;
  message: string;
  retryAfterSeconds: number | undefined;
}

function header(headers: unknown, name: string): string | undefined {
  if (!headers || typeof headers !== 'object') return undefined;
  const value = (headers as Record<string, unknown>)[name];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

export function apiErrorInfo(err: unknown): ApiErrorInfo | undefined {
  if (!isAxiosError(err)) return undefined;
  const body = err.response?.data as { id?: unknown; message?: unknown } | undefined;
  const status = err.response?.status;
  let retryAfterSeconds: number | undefined;
  const retryAfter = header(err.response?.headers, 'retry-after');
  const reset = header(err.response?.headers, 'ratelimit-reset');
  if (retryAfter !== undefined && Number.isFinite(Number(retryAfter))) retryAfterSeconds = Number(retryAfter);
  else if (reset !== undefined && Number.isFinite(Number(reset)))
    retryAfterSeconds = Math.max(1, Number(reset) - Math.floor(Date.now() / 1000));
  return {
    status,
    id: typeof body?.id === 'string' ? body.id : undefined,
    message: typeof body?.message === 'string' ? body.message : err.code ? `network error ${err.code}` : 'no answer',
    retryAfterSeconds,
  };
}

export function isNotFound(err: unknown): boolean {
  return apiErrorInfo(err)?.status === 404;
}

/** Transient 422s: DigitalOcean serialises actions per droplet. */
const TRANSIENT_422 = /pending event|already has a pending|in progress/i;

/** Classify an error thrown by a DigitalOcean call made while doing `what`. */
export function toFailure(err: unknown, what: string): Error {
  if (err instanceof ApplicationFailure) return err;
  const info = apiErrorInfo(err);
  if (!info) {
    const message = err instanceof Error ? err.message : String(err);
    return ApplicationFailure.retryable(`${what}: ${message}`, FailureTypes.unavailable);
  }
  const detail = `${what}: DigitalOcean answered ${info.status ?? 'nothing'}${info.id ? ` ${info.id}` : ''}: ${info.message}`;
  switch (true) {
    case info.status === 401 || info.status === 403:
      return ApplicationFailure.nonRetryable(
        `${what}: DigitalOcean rejected the token (${info.status}): check do_token / DIGITALOCEAN_TOKEN; it needs read and write scope`,
        FailureTypes.auth,
      );
    case info.status === 429:
      return ApplicationFailure.create({
        message: detail,
        type: FailureTypes.rateLimited,
        nextRetryDelay: `${Math.max(1, info.retryAfterSeconds ?? 5)}s`,
      });
    case info.status === 404:
      return ApplicationFailure.nonRetryable(detail, FailureTypes.notFound);
    case info.status === 409 || (info.status === 422 && TRANSIENT_422.test(info.message)):
      return ApplicationFailure.retryable(detail, FailureTypes.rejected);
    case info.status === 400 || info.status === 422:
      return ApplicationFailure.nonRetryable(detail, FailureTypes.rejected);
    default:
      return ApplicationFailure.retryable(detail, FailureTypes.unavailable);
  }
}

/** Run one DigitalOcean call; classify what it throws. */
export async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toFailure(err, what);
  }
}

/** Run a call where 404 means "already gone" (deletes) and is success. */
export async function callIgnoringNotFound(what: string, fn: () => Promise<unknown>): Promise<'deleted' | 'absent'> {
  try {
    await fn();
    return 'deleted';
  } catch (err) {
    if (isNotFound(err)) return 'absent';
    throw toFailure(err, what);
  }
}
