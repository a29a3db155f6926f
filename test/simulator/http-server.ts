// node:http front: bearer auth, rate limits, fault injection, JSON answers, the call log.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiError, badRequest, notFound, serverError, tooManyRequests, unauthorized } from './errors';
import type { FaultInjector } from './faults';
import type { RateLimiter } from './ratelimit';
import { matchRoute, type Route, type RouteResult } from './routes';
import type { CallLogEntry, RuntimeOptions } from './types';

const MAX_BODY_BYTES = 1024 * 1024;

export interface HttpDeps {
  routes: readonly Route[];
  tokens: () => readonly string[];
  limiter: RateLimiter;
  faults: FaultInjector;
  options: RuntimeOptions;
  log: (entry: Omit<CallLogEntry, 'seq'>) => void;
  /** Awaited after a request has taken effect and before its answer is sent (tests kill workers here). */
  afterHandle?: (call: HandledCall) => Promise<void> | void;
}

export interface HandledCall {
  method: string;
  template: string;
  params: Readonly<Record<string, string>>;
  requestBody: unknown;
  status: number;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 'request_entity_too_large', 'request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ApiHttpServer {
  private readonly server: Server;
  private address: AddressInfo | undefined;

  constructor(private readonly deps: HttpDeps) {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    this.address = this.server.address() as AddressInfo;
    return { host, port: this.address.port };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const requestId = randomUUID();
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://simulator');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const { match, pathKnown, template } = matchRoute(this.deps.routes, method, path);
    const routeKey = `${method} ${template ?? path}`;
    let headers: Record<string, string> = {};
    let requestBody: unknown;
    let fault: CallLogEntry['fault'];
    let result: RouteResult;
    try {
      const raw = await readBody(req);
      if (raw.trim() !== '') {
        try {
          requestBody = JSON.parse(raw) as unknown;
        } catch {
          requestBody = raw;
          throw badRequest('the request body is not valid JSON');
        }
      }
      const auth = req.headers.authorization ?? '';
      const token = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
      if (!token || !this.deps.tokens().includes(token)) throw unauthorized();
      const rate = this.deps.limiter.take(token, started, {
        perMinute: this.deps.options.rateLimitPerMinute,
        perHour: this.deps.options.rateLimitPerHour,
      });
      headers = rate.headers;
      if (!rate.allowed) throw tooManyRequests(rate.retryAfterSeconds);
      if (!match) {
        if (pathKnown) throw new ApiError(405, 'method_not_allowed', `${method} is not allowed on ${path}`);
        throw notFound();
      }
      const before = this.deps.faults.before(routeKey);
      if (before) {
        fault = before.kind;
        throw before.kind === 'rate_limit_burst'
          ? tooManyRequests(before.retryAfterSeconds)
          : serverError(before.status);
      }
      if (method === 'GET' && match.route.template === '/v2/account/keys') {
        const k = this.deps.limiter.takeKeyList(token, started, this.deps.options.sshKeyListPerMinute);
        if (!k.allowed) throw tooManyRequests(k.retryAfterSeconds);
      }
      result = await match.route.handler({ params: match.params, query: url.searchParams, body: requestBody, path });
      await this.deps.afterHandle?.({
        method,
        template: match.route.template,
        params: match.params,
        requestBody,
        status: result.status,
      });
      const after = this.deps.faults.after(routeKey);
      if (after.slowMs !== undefined) {
        fault = 'slow';
        await sleep(after.slowMs);
      }
      if (after.lostStatus !== undefined) {
        fault = 'lost_response';
        throw serverError(after.lostStatus);
      }
    } catch (err) {
      const e = err instanceof ApiError ? err : serverError(500);
      if (!(err instanceof ApiError)) process.emitWarning(`simulator: ${routeKey} failed: ${String(err)}`);
      headers = { ...headers, ...e.headers };
      result = { status: e.status, body: { id: e.id, message: e.message, request_id: requestId } };
    }
    if (Object.keys(headers).length === 0) {
      const limit = String(this.deps.options.rateLimitPerHour);
      headers = {
        'ratelimit-limit': limit,
        'ratelimit-remaining': limit,
        'ratelimit-reset': String(Math.ceil(started / 1000) + 3600),
      };
    }
    const payload = result.body === undefined ? '' : JSON.stringify(result.body);
    res.statusCode = result.status;
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.setHeader('x-request-id', requestId);
    if (payload !== '') {
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.setHeader('content-length', Buffer.byteLength(payload));
    }
    res.end(payload);
    this.deps.log({
      method,
      path,
      query: url.search.replace(/^\?/, ''),
      template: match?.route.template,
      status: result.status,
      time: started,
      durationMs: Date.now() - started,
      requestBody,
      responseBody: result.body,
      ...(fault ? { fault } : {}),
      ...(req.headers['user-agent'] ? { userAgent: req.headers['user-agent'] } : {}),
    });
  }
}
