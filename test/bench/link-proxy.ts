// Bench helper: a rate-and-delay TCP proxy emulating a WAN link (this machine's kernel has no netem). Each direction
// serializes data at the link rate and delivers it half an RTT later, with a queue of a few bandwidth-delay products,
// so TCP and SSH flow control (the 2 MiB channel window) see the link's rate and round trip. Counts bytes both ways.
// Prints its port; on stdin end prints {"up":N,"down":N} for the connections so far and exits.
import { createServer, connect, type Socket } from 'node:net';

const [targetPortArg = '0', rateMbitArg = '100', rttMsArg = '20'] = process.argv.slice(2);
const targetPort = Number(targetPortArg);
const bytesPerMs = (Number(rateMbitArg) * 1e6) / 8 / 1000;
const oneWayMs = Number(rttMsArg) / 2;
const limit = Math.max(1 << 20, Math.ceil(bytesPerMs * Number(rttMsArg) * 4));
const totals = { up: 0, down: 0 };

function pipe(src: Socket, dst: Socket, dir: 'up' | 'down'): void {
  const queue: { chunk: Buffer; at: number }[] = [];
  let queued = 0;
  let lastDepart = 0;
  let timer: NodeJS.Timeout | undefined;
  let paused = false;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.at <= now + 0.5) {
      const { chunk } = queue.shift()!;
      queued -= chunk.length;
      totals[dir] += chunk.length;
      dst.write(chunk);
    }
    if (paused && queued < limit / 2) {
      paused = false;
      src.resume();
    }
    if (queue.length > 0) schedule();
    else if (ended) dst.end();
  };
  const schedule = () => {
    if (timer || queue.length === 0) return;
    timer = setTimeout(flush, Math.max(0, queue[0]!.at - performance.now()));
  };
  src.on('data', (chunk: Buffer) => {
    const now = performance.now();
    const depart = Math.max(now, lastDepart) + chunk.length / bytesPerMs;
    lastDepart = depart;
    queue.push({ chunk, at: depart + oneWayMs });
    queued += chunk.length;
    if (queued > limit && !paused) {
      paused = true;
      src.pause();
    }
    schedule();
  });
  src.on('end', () => {
    ended = true;
    if (queue.length === 0) dst.end();
  });
  src.on('error', () => dst.destroy());
  src.on('close', () => {
    if (queue.length === 0) dst.destroy();
  });
}

const server = createServer((client) => {
  const upstream = connect({ host: '127.0.0.1', port: targetPort });
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  pipe(client, upstream, 'up');
  pipe(upstream, client, 'down');
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => {
  process.stdout.write(`${JSON.stringify(totals)}\n`);
  process.exit(0);
});
