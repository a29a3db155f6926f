// A local stand-in for healthchecks.io: records every ping's path.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface PingServer {
  url: string;
  pings: string[];
  close(): Promise<void>;
}

export async function startPingServer(status = 200): Promise<PingServer> {
  const pings: string[] = [];
  const server = http.createServer((req, res) => {
    pings.push(req.url ?? '');
    req.resume();
    res.writeHead(status).end('OK');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/ping/abc-123`,
    pings,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
