// Small deterministic helpers for workflow code.
import { ActivityFailure } from '@temporalio/workflow';

/** The reason an activity (or anything) failed, in words for a run's result. */
export function reason(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** Run `fn` over `items` with at most `limit` in flight; resolves when all are done. */
export async function limitConcurrency<T>(
  limit: number,
  items: readonly T[],
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** Bytes of `s` in UTF-8 (no TextEncoder needed in the workflow sandbox). */
function utf8Length(s: string): number {
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

/**
 * A keyword list for a search attribute: the first items that fit in `maxBytes` (as the JSON the server stores),
 * then one "(+N more)" item for the rest. Temporal rejects a value over its size limit (2 KiB by default,
 * `limit.searchAttributesSizeOfValueLimit`) by failing the workflow task, which is retried for ever.
 */
export function cappedKeywordList(items: readonly string[], maxBytes = 1024): string[] {
  const size = (list: readonly string[]) => utf8Length(JSON.stringify(list));
  if (size(items) <= maxBytes) return [...items];
  const kept: string[] = [];
  for (const item of items) {
    const more = `(+${items.length - kept.length - 1} more)`;
    if (size([...kept, item, more]) > maxBytes) break;
    kept.push(item);
  }
  return [...kept, `(+${items.length - kept.length} more)`];
}
