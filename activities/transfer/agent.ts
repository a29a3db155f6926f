// The remote half of the transfer protocol: one python3 program (standard library only) that is sent through the
// SSH session itself and executed from memory. Nothing is installed or left on the droplet.
//
// Wire protocol (all integers big-endian), see protocol.ts for the client side:
//   client -> agent : <agent source, N bytes> u32 len + JSON hello {protocol, device}
//   agent  -> client: 'H' u32 len + JSON {protocol, size, python, cpus}        (or 'X' u32 len + message, then exit)
//   client -> agent : u32 len + JSON job {blockSize, ranges:[[start,end],...], hashes:bool, threads, compress, runCap}
//                     then, if hashes, 32 bytes (SHA-256 of the local block, or 32 zero bytes = unknown) per block,
//                     in the order of the ranges. The agent reads them lazily, as it goes.
//   agent  -> client: records, in block order over the ranges:
//                       'U' u32 n          next n blocks unchanged (their hash equals the client's)
//                       'Z' u32 n          next n blocks are all zeros
//                       'D' u32 len u8 enc sha256[32] payload[len]   next block's bytes (enc 0 raw, 1 zlib)
//                     and finally 'E' sha256[32] u32 len + JSON stats, where the digest is SHA-256 over the
//                     concatenated block hashes of every block of the job, in order (zero blocks: SHA-256 of zeros).
//                     'X' u32 len + message on error.
//
// Reads use a small pool of threads (os.pread, hashlib and zlib release the GIL); results are emitted in order.

export const PROTOCOL_VERSION = 1;

export const AGENT_SOURCE = String.raw`
import os, sys, struct, json, hashlib, zlib, collections, time, threading, queue
PROTOCOL = 1
inp = sys.stdin.buffer
out = sys.stdout.buffer

def rd(n):
    b = inp.read(n)
    if b is None or len(b) != n:
        raise EOFError('client closed the input')
    return b

def rjson():
    (n,) = struct.unpack('>I', rd(4))
    return json.loads(rd(n).decode('utf-8'))

def send_json(tag, obj):
    b = json.dumps(obj).encode('utf-8')
    out.write(tag + struct.pack('>I', len(b)) + b)
    out.flush()

def fail(msg):
    b = msg.encode('utf-8', 'replace')
    try:
        out.write(b'X' + struct.pack('>I', len(b)) + b)
        out.flush()
    except Exception:
        pass
    os._exit(3)

def main():
    req = rjson()
    if req.get('protocol') != PROTOCOL:
        fail('protocol mismatch: agent speaks %d, client speaks %r' % (PROTOCOL, req.get('protocol')))
    try:
        fd = os.open(req['device'], os.O_RDONLY)
    except OSError as e:
        fail('cannot open device %s: %s' % (req['device'], e.strerror))
    size = os.lseek(fd, 0, os.SEEK_END)
    send_json(b'H', {'protocol': PROTOCOL, 'size': size, 'python': sys.version.split()[0], 'cpus': os.cpu_count() or 1})
    job = rjson()
    if job.get('stop'):
        return
    bs = int(job['blockSize'])
    ranges = job['ranges']
    has = bool(job['hashes'])
    threads = max(1, int(job.get('threads') or 2))
    mode = job.get('compress', 'auto')
    run_cap = max(1, int(job.get('runCap') or 256))
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except Exception:
        pass
    zero_full = bytes(bs)
    zhash = {}
    def zero_hash(n):
        h = zhash.get(n)
        if h is None:
            h = zhash[n] = hashlib.sha256(bytes(n)).digest()
        return h
    nohash = bytes(32)
    stats = {'bytesRead': 0, 'dataBlocks': 0, 'zeroBlocks': 0, 'unchangedBlocks': 0, 'payloadBytes': 0, 'compressedBlocks': 0}

    def work(i, old):
        off = i * bs
        n = min(bs, size - off)
        if n <= 0:
            raise IOError('block %d is past the end of the device' % i)
        b = os.pread(fd, n, off)
        if len(b) != n:
            raise IOError('short read at block %d' % i)
        if b == (zero_full if n == bs else bytes(n)):
            return (0, zero_hash(n), None, n)
        h = hashlib.sha256(b).digest()
        if h == old:
            return (1, h, None, n)
        enc = 0
        payload = b
        if mode == 'always' or (mode == 'auto' and n >= 32768 and len(zlib.compress(memoryview(b)[:16384], 1)) < 13000):
            c = zlib.compress(b, 1)
            if len(c) < n - (n >> 3):
                enc = 1
                payload = c
        return (2, h, (enc, payload), n)

    digest = hashlib.sha256()
    run = [None, 0, 0.0]  # kind, count, started

    def flush_run():
        if run[1]:
            out.write(run[0] + struct.pack('>I', run[1]))
            out.flush()
        run[0] = None
        run[1] = 0

    def emit(old, r):
        kind, h, p, n = r
        digest.update(h)
        stats['bytesRead'] += n
        if kind == 2:
            flush_run()
            enc, payload = p
            out.write(b'D' + struct.pack('>IB', len(payload), enc) + h)
            out.write(payload)
            stats['dataBlocks'] += 1
            stats['payloadBytes'] += len(payload)
            if enc:
                stats['compressedBlocks'] += 1
            return
        if kind == 1 or old == h:
            k = b'U'
            stats['unchangedBlocks'] += 1
        else:
            k = b'Z'
            stats['zeroBlocks'] += 1
        now = time.monotonic()
        if run[0] != k or run[1] >= run_cap or now - run[2] > 0.5:
            flush_run()
            run[0] = k
            run[2] = now
        run[1] += 1

    depth = max(threads * 2, min(64, (32 << 20) // bs))
    tasks = queue.SimpleQueue()

    def worker():
        while True:
            t = tasks.get()
            if t is None:
                return
            try:
                t[2] = work(t[0], t[1])
            except BaseException as e:
                t[3] = e
            t[4].release()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for th in pool:
        th.start()
    q = collections.deque()

    def take():
        t = q.popleft()
        t[4].acquire()
        if t[3] is not None:
            raise t[3]
        emit(t[1], t[2])

    for s, e in ranges:
        for i in range(s, e):
            old = rd(32) if has else nohash
            lk = threading.Lock()
            lk.acquire()
            t = [i, old, None, None, lk]
            q.append(t)
            tasks.put(t)
            if len(q) >= depth:
                take()
    while q:
        take()
    for th in pool:
        tasks.put(None)
    flush_run()
    try:
        import resource
        ru = resource.getrusage(resource.RUSAGE_SELF)
        stats['cpuUserS'] = ru.ru_utime
        stats['cpuSysS'] = ru.ru_stime
        stats['maxRssKiB'] = ru.ru_maxrss
    except Exception:
        pass
    b = json.dumps(stats).encode('utf-8')
    out.write(b'E' + digest.digest() + struct.pack('>I', len(b)) + b)
    out.flush()

try:
    main()
except (BrokenPipeError, EOFError):
    os._exit(2)
except SystemExit:
    raise
except BaseException as e:
    fail('agent error: %s: %s' % (type(e).__name__, e))
`;

const AGENT_BYTES = Buffer.from(AGENT_SOURCE, 'utf8');

/** The exec command: a one-line bootstrap that reads the agent's code from stdin and runs it. */
export function agentCommand(python = 'python3'): string {
  const boot = `import sys;exec(compile(sys.stdin.buffer.read(${AGENT_BYTES.length}),"dosvob-agent","exec"))`;
  // -I -S: isolated from the droplet's environment and site-packages (also starts ~40 ms faster).
  return `${python} -I -S -c '${boot}'`;
}

export function agentCode(): Buffer {
  return AGENT_BYTES;
}
