// The DigitalOcean API client as activities use it: dots-wrapper, plus the paging it lacks.
import { createApiClient, modules } from 'dots-wrapper';
import { isAxiosError, type AxiosInstance } from 'axios';
import { pacerFor, type Pacer } from './pacer';

export type DoApi = ReturnType<typeof createApiClient>;

export interface DoApiSettings {
  /** Never logged, never part of an activity's input or result. */
  token: string;
  /** Base URL without /v2, e.g. https://api.digitalocean.com */
  apiUrl: string;
  requestTimeoutMs?: number;
}

/** How the simulator (and DigitalOcean's logs) tell dosvob's requests from the user's other tools. */
export const USER_AGENT = 'dosvob';

/** Set on a request's config (which its response carries back) when it leaves, after its wait for the pacer. */
const SENT_AT = 'dosvobSentAtMs';

/**
 * When the request that `response` answers left this worker, by its clock: a create's billing starts there, not
 * when the activity began (which may have waited for its turn in the rate limit).
 */
export function sentAtMs(response: object): number | undefined {
  // dots-wrapper's answers are axios responses, though its types leave out the request config they carry.
  const at = (response as { config?: Record<string, unknown> }).config?.[SENT_AT];
  return typeof at === 'number' ? at : undefined;
}

/** Every request waits for its slot from the token's pacer, which learns from every answer. */
function pace(http: AxiosInstance, pacer: Pacer): void {
  http.interceptors.request.use(async (request) => {
    await pacer.acquire();
    request.headers.set('User-Agent', USER_AGENT);
    return Object.assign(request, { [SENT_AT]: Date.now() });
  });
  http.interceptors.response.use(
    (response) => {
      pacer.observe(response.status, response.headers as Record<string, unknown>, sentAtMs(response));
      return response;
    },
    (err: unknown) => {
      if (isAxiosError(err) && err.response) {
        pacer.observe(err.response.status, err.response.headers as Record<string, unknown>, sentAtMs(err.response));
      } else pacer.abandon();
      throw err;
    },
  );
}

// dots-wrapper keeps its axios instance inside the context it makes: make that context ourselves.
const createPacedApiClient = modules.common.createApiClient({
  modules,
  createContext: (options) => {
    const context = modules.common.createContext(options);
    pace(context.httpClient, pacerFor(options.token));
    return context;
  },
});

export function createDoApi(settings: DoApiSettings): DoApi {
  return createPacedApiClient({
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
