// The DigitalOcean API client as activities use it: dots-wrapper, plus the paging it lacks.
import { createApiClient } from 'dots-wrapper';

export type DoApi = ReturnType<typeof createApiClient>;

export interface DoApiSettings {
  /** Never logged, never part of an activity's input or result. */
  token: string;
  /** Base URL without /v2, e.g. https://api.digitalocean.com */
  apiUrl: string;
  requestTimeoutMs?: number;
}

export function createDoApi(settings: DoApiSettings): DoApi {
  return createApiClient({
    token: settings.token,
    endpoint: `${settings.apiUrl}/v2`,
    requestTimeoutInMs: settings.requestTimeoutMs ?? 15_000,
  });
}

const PER_PAGE = 200;

interface Page<T> {
  items: readonly T[];
  total: number | undefined;
}

/**
 * Every item of a paginated list. Pages are requested by number: DigitalOcean's `links.pages.next`
 * holds absolute production URLs, which would send a simulator or proxy run to the real host.
 */
export async function listAll<T>(fetchPage: (page: number, perPage: number) => Promise<Page<T>>): Promise<T[]> {
  const all: T[] = [];
  for (let page = 1; ; page++) {
    const { items, total } = await fetchPage(page, PER_PAGE);
    all.push(...items);
    if (items.length < PER_PAGE || (total !== undefined && all.length >= total) || items.length === 0) return all;
  }
}
