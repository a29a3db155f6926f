// Where dosvob's Temporal lives: TEMPORAL_ADDRESS (+ namespace, TLS, API key, following the SDK's
// environment configuration) for a real cluster, or else the embedded local dev server.
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { Client, Connection } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import path from 'node:path';
import { dataDir } from '../common/paths';
import { isListening, startDevServer, type DevServer } from './temporal-server';
import { UserError } from './errors';

export const EMBEDDED_ADDRESS = { ip: '127.0.0.1', port: 7233, uiPort: 8233 };

export interface TemporalTarget {
  client: Client;
  connection: Connection;
  /** For workers in this process. */
  nativeConnection(): Promise<NativeConnection>;
  namespace: string;
  /** Base of the web UI, when known. */
  uiUrl: string | undefined;
  /** True when this process started (and owns) the dev server. */
  embedded: boolean;
  close(): Promise<void>;
}

export function usesExternalCluster(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.TEMPORAL_ADDRESS);
}

export async function connectTemporal(
  options: {
    log?: (line: string) => void;
    env?: NodeJS.ProcessEnv;
    /** How long the SDK keeps trying to reach the server (Connection.connect's `connectTimeout`); default 10 s. */
    connectTimeoutMs?: number;
  } = {},
): Promise<TemporalTarget> {
  const env = options.env ?? process.env;
  let server: DevServer | undefined;
  let address: string;
  let namespace: string;
  let connectionOptions: Parameters<typeof Connection.connect>[0] = {};
  let uiUrl: string | undefined;

  if (usesExternalCluster(env)) {
    const vars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
    const cfg = loadClientConnectConfig({ overrideEnvVars: vars });
    connectionOptions = cfg.connectionOptions as Parameters<typeof Connection.connect>[0];
    address = cfg.connectionOptions.address ?? 'localhost:7233';
    namespace = cfg.namespace ?? 'default';
    uiUrl = env.DOSVOB_TEMPORAL_UI_URL;
  } else {
    const { ip, port, uiPort } = EMBEDDED_ADDRESS;
    address = `${ip}:${port}`;
    namespace = 'default';
    uiUrl = `http://${ip}:${uiPort}`;
    if (!(await isListening(ip, port))) {
      const dir = dataDir(env);
      options.log?.(`starting the local Temporal server (data in ${dir})...`);
      server = await startDevServer({
        ip,
        port,
        uiPort,
        dbFile: path.join(dir, 'temporal.sqlite'),
        logFile: path.join(dir, 'temporal-server.log'),
      });
    }
  }
  const connection = await connectOrExplain({ ...connectionOptions, address }, options.connectTimeoutMs ?? 10_000);
  const client = new Client({ connection, namespace });
  let native: NativeConnection | undefined;
  return {
    client,
    connection,
    namespace,
    uiUrl,
    embedded: server !== undefined,
    async nativeConnection() {
      // Loaded only by commands that run a worker here: `dosvob status` never pays for the worker's native module.
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- see lazy.ts: import() does not resolve under tsx
      const { NativeConnection: Native } = require('@temporalio/worker') as typeof import('@temporalio/worker');
      native ??= await Native.connect({
        ...(connectionOptions as Parameters<typeof Native.connect>[0]),
        address,
      });
      return native;
    },
    async close() {
      await connection.close();
      await native?.close();
      await server?.stop();
    },
  };
}

export function workflowUiLink(uiUrl: string | undefined, namespace: string, workflowId: string, runId: string) {
  return uiUrl
    ? `${uiUrl}/namespaces/${namespace}/workflows/${encodeURIComponent(workflowId)}/${runId}/history`
    : undefined;
}

/**
 * Connect and make one call, so a wrong or unreachable TEMPORAL_ADDRESS is one clear line now rather than a gRPC
 * "14 UNAVAILABLE" from whichever call happens to come first.
 */
async function connectOrExplain(
  options: Parameters<typeof Connection.connect>[0] & { address: string },
  connectTimeoutMs: number,
) {
  let connection: Connection | undefined;
  try {
    // The SDK retries the connection itself (gRPC's wait-for-ready) until `connectTimeout`: a server that is still
    // starting is waited for without a loop of our own.
    const c = await Connection.connect({ connectTimeout: connectTimeoutMs, ...options });
    connection = c;
    await c.withDeadline(Date.now() + 10_000, () => c.workflowService.getSystemInfo({}));
    return c;
  } catch (err) {
    await connection?.close().catch(() => undefined);
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new UserError(`cannot reach Temporal at ${options.address}: ${reason}`, 1);
  }
}
