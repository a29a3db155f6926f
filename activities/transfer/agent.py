# dosvob's remote agent: reads a block device on the droplet and streams what changed, or writes a kept version onto
# it (a restore); protocol version 3.
#
# Standard library only. It is never installed: the client runs `python3 -I -S -c '<bootstrap>'` over SSH, the
# bootstrap reads exactly this file's bytes from stdin and exec()s them (see agent.ts), and nothing is left behind.
#
# Wire protocol (all integers big-endian; see session.ts for the client side):
#   client -> agent : <this file, N bytes> u32 len + JSON hello {protocol, device, write?}
#                     (write: true opens the device read-write, for a write job; otherwise read-only)
#   agent  -> client: 'H' u32 len + JSON {protocol, size, python, cpus, write}  (or 'X' u32 len + message, then exit)
#   client -> agent : u32 len + JSON {"ping": true}, any number of times before the job
#   agent  -> client: 'P' per ping: the client times the round trip on the warm channel (protocol 3)
#
#   Read job (a backup, or the read-back of a restore):
#   client -> agent : u32 len + JSON job {blockSize, ranges:[[start,end],...], hashes:bool, threads, compress, runCap,
#                     dropCache?, sizeBytes?} then, if hashes, 32 bytes (SHA-256 of the local block, or 32 zero bytes =
#                     unknown) per block, in the order of the ranges. The agent reads them lazily, as it goes.
#                     dropCache: fsync and drop the device's page cache first, so what is read comes from the device
#                     itself. sizeBytes: blocks end there rather than at the device's end (a restored version on a
#                     larger volume: its last block may be partial).
#                     (A job {"stop": true} ends the session after the hello.)
#   agent  -> client: records, in block order over the ranges:
#                       'U' u32 n          next n blocks unchanged (their hash equals the client's)
#                       'Z' u32 n          next n blocks are all zeros
#                       'D' u32 len u8 enc sha256[32] payload[len]   next block's bytes (enc 0 raw, 1 zlib level 1)
#                     and finally 'E' sha256[32] u32 len + JSON stats, where the digest is SHA-256 over the
#                     concatenated block hashes of every block of the job, in order (zero blocks: SHA-256 of zeros).
#                     'X' u32 len + message on error.
#   Runs of 'U'/'Z' are cut at runCap blocks or 0.5 s, so the client's progress keeps moving through long stretches.
#   A block is sent compressed ('auto') only if a 16 KiB sample compresses below ~80% and the block shrinks by 1/8.
#
#   Write job (a restore; the hello asked for write):
#   client -> agent : u32 len + JSON job {write: true, blockSize, sizeBytes, threads}, then records (sizeBytes: the
#                     version's, at most the device's; the last block ends there):
#                       'D' u32 index u32 len u8 enc sha256[32] payload[len]   block `index`'s bytes (enc 0 raw, 1 zlib);
#                                          checked against the SHA-256 of its raw bytes, then pwrite at index*blockSize
#                       'S' u32 mark       sync: every block sent before it is written and fsynced, then acked
#                       'E'                end of the job
#   agent  -> client: 'A' u32 mark per 'S', in order, only once those blocks are durable on the device. Once a sync's
#                     blocks are fsynced they are read back from the device (their cached pages dropped first) and
#                     hashed while later blocks still arrive (protocol 3). At 'E': fsync, drop the device's page
#                     cache, read back the blocks sent since the last sync, then
#                     'R' sha256[32] u32 n u32 nbad u32[nbad]: the read-back: the digest over the SHA-256 of each of
#                                        the n blocks written as read back from the device, in the order sent, and the
#                                        blocks whose read-back differs from the hash they were written with
#                     'E' sha256[32] u32 len + JSON stats, the digest over the hashes of the blocks written, in order.
#                     A block that fails its check is 'X' "block <index>: ..." (nothing of it is written).
#
# Exit codes: 0 done, 2 the client closed its side (truncated input), 3 after an 'X' message.
#
# Reads and writes use a small pool of threads (os.pread/os.pwrite, hashlib and zlib release the GIL); reads are
# emitted in order; writes at their own offsets need no order.
import os, sys, struct, json, hashlib, zlib, collections, time, threading, queue
PROTOCOL = 3
NOHASH = bytes(32)


def read_exact(inp, n):
    b = inp.read(n)
    if b is None or len(b) != n:
        raise EOFError('client closed the input')
    return b


def read_json(inp):
    (n,) = struct.unpack('>I', read_exact(inp, 4))
    return json.loads(read_exact(inp, n).decode('utf-8'))


def frame_json(tag, obj):
    b = json.dumps(obj).encode('utf-8')
    return tag + struct.pack('>I', len(b)) + b


def frame_error(msg):
    b = msg.encode('utf-8', 'replace')
    return b'X' + struct.pack('>I', len(b)) + b


def frame_run(kind, n):
    return kind + struct.pack('>I', n)


def frame_data_head(enc, h, length):
    return b'D' + struct.pack('>IB', length, enc) + h


def frame_end(digest, stats):
    b = json.dumps(stats).encode('utf-8')
    return b'E' + digest + struct.pack('>I', len(b)) + b


def fail(out, msg):
    try:
        out.write(frame_error(msg))
        out.flush()
    except Exception:
        pass
    os._exit(3)


def should_compress(b, mode):
    """Whether to try zlib on this block: always, never, or (auto) when a 16 KiB sample compresses well."""
    if mode == 'always':
        return True
    return mode == 'auto' and len(b) >= 32768 and len(zlib.compress(memoryview(b)[:16384], 1)) < 13000


def encode_block(b, mode):
    """(enc, payload): zlib level 1 only when it is worth it (the block shrinks by at least 1/8)."""
    if should_compress(b, mode):
        c = zlib.compress(b, 1)
        if len(c) < len(b) - (len(b) >> 3):
            return (1, c)
    return (0, b)


class ZeroHashes:
    def __init__(self):
        self.cache = {}

    def __call__(self, n):
        h = self.cache.get(n)
        if h is None:
            h = self.cache[n] = hashlib.sha256(bytes(n)).digest()
        return h


def classify(b, old, mode, zero_hash, zero_full=None):
    """One block: (0 zeros | 1 unchanged | 2 data, its SHA-256, (enc, payload) for data else None).

    Zeros are found by comparison (no hash needed); otherwise the hash decides unchanged against `old`."""
    n = len(b)
    if b == (zero_full if zero_full is not None and len(zero_full) == n else bytes(n)):
        return (0, zero_hash(n), None)
    h = hashlib.sha256(b).digest()
    if h == old:
        return (1, h, None)
    return (2, h, encode_block(b, mode))


def drop_cache(fd):
    """Write back and forget the device's cached pages: what is read next comes from the device, not from memory."""
    try:
        os.fsync(fd)
    except OSError:
        pass
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except Exception:
        pass


def usage(stats):
    try:
        import resource
        ru = resource.getrusage(resource.RUSAGE_SELF)
        stats['cpuUserS'] = ru.ru_utime
        stats['cpuSysS'] = ru.ru_stime
        stats['maxRssKiB'] = ru.ru_maxrss
    except Exception:
        pass
    return stats


class BlockError(Exception):
    def __init__(self, index, why):
        Exception.__init__(self, 'block %d: %s' % (index, why))


def write_block(fd, size, bs, i, enc, h, payload):
    """Check one received block against its SHA-256 and pwrite it at its offset; the bytes written."""
    off = i * bs
    n = min(bs, size - off)
    if n <= 0:
        raise BlockError(i, 'past the end of the device (%d bytes)' % size)
    if enc == 1:
        try:
            b = zlib.decompress(payload)
        except zlib.error as e:
            raise BlockError(i, 'cannot decompress: %s' % e)
    elif enc == 0:
        b = payload
    else:
        raise BlockError(i, 'unknown encoding %d' % enc)
    if len(b) != n:
        raise BlockError(i, '%d bytes received, the block has %d' % (len(b), n))
    if hashlib.sha256(b).digest() != h:
        raise BlockError(i, 'SHA-256 mismatch: the bytes received are not the block sent; nothing written')
    mv = memoryview(b)
    done = 0
    while done < n:
        done += os.pwrite(fd, mv[done:], off + done)
    return n


def write_job(inp, out, fd, size, job):
    bs = int(job['blockSize'])
    want = int(job.get('sizeBytes') or size)
    if want > size:
        fail(out, 'the device has %d bytes, the job needs %d' % (size, want))
    size = want
    threads = max(1, int(job.get('threads') or 2))
    stats = {'blocksWritten': 0, 'bytesWritten': 0, 'payloadBytes': 0, 'syncs': 0}
    digest = hashlib.sha256()
    tasks = queue.SimpleQueue()
    syncs = queue.SimpleQueue()
    cv = threading.Condition()
    out_lock = threading.Lock()
    # Blocks in flight in all, and per epoch (the blocks between two sync requests).
    state = {'pending': 0, 'error': None}
    per_epoch = collections.Counter()
    depth = max(threads * 2, min(32, (32 << 20) // bs))
    # (index, hash) of each epoch's blocks in the order sent, for the read-back once the epoch is durable.
    sent = []
    checks = queue.SimpleQueue()
    readback = {'digest': hashlib.sha256(), 'n': 0, 'bad': []}

    def die(msg):
        out_lock.acquire(timeout=5)  # not in the middle of an ack
        fail(out, msg)

    def check(err):
        if err is not None:
            die(str(err) if isinstance(err, BlockError) else 'write failed: %s: %s' % (type(err).__name__, err))

    def worker():
        while True:
            t = tasks.get()
            if t is None:
                return
            err = None
            n = 0
            try:
                n = write_block(fd, size, bs, *t[1:])
            except BaseException as e:
                err = e
            with cv:
                state['pending'] -= 1
                per_epoch[t[0]] -= 1
                if err is not None and state['error'] is None:
                    state['error'] = err
                if n:
                    stats['blocksWritten'] += 1
                    stats['bytesWritten'] += n
                cv.notify_all()

    def syncer():
        """Acks each sync once the blocks before it are written and fsynced, while the main thread receives more."""
        while True:
            item = syncs.get()
            if item is None:
                return
            epoch, mark, blocks = item
            with cv:
                while per_epoch[epoch] > 0 and state['error'] is None:
                    cv.wait()
                err = state['error']
            check(err)
            try:
                os.fsync(fd)
            except OSError as e:
                die('fsync of the device failed: %s' % e.strerror)
            with out_lock:
                out.write(b'A' + mark)
                out.flush()
            stats['syncs'] += 1
            checks.put(blocks)

    def checker():
        """Reads back each durable epoch's blocks from the device (not the page cache) while later blocks arrive."""
        while True:
            blocks = checks.get()
            if blocks is None:
                return
            try:
                read_back(blocks)
            except OSError as e:
                die('read-back of the device failed: %s' % (e.strerror or e))

    def read_back(blocks):
        # Clean after the fsync, so dropping them makes the preads below come from the device itself; WILLNEED then
        # has the kernel read the whole range from the device at once rather than block by block as pread asks.
        for advice in (os.POSIX_FADV_DONTNEED, os.POSIX_FADV_WILLNEED):
            for i, _ in blocks:
                try:
                    os.posix_fadvise(fd, i * bs, min(bs, size - i * bs), advice)
                except Exception:
                    pass
        for i, h in blocks:
            off = i * bs
            n = min(bs, size - off)
            b = os.pread(fd, n, off)
            got = hashlib.sha256(b).digest() if len(b) == n else NOHASH
            readback['digest'].update(got)
            readback['n'] += 1
            if got != h:
                readback['bad'].append(i)

    def wait(limit):
        """Until at most `limit` blocks are in flight; a block that failed ends the job here."""
        with cv:
            while state['pending'] > limit and state['error'] is None:
                cv.wait()
            err = state['error']
        check(err)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for th in pool:
        th.start()
    sync_thread = threading.Thread(target=syncer, daemon=True)
    sync_thread.start()
    check_thread = threading.Thread(target=checker, daemon=True)
    check_thread.start()
    epoch = 0
    while True:
        tag = read_exact(inp, 1)
        if tag == b'D':
            i, n, enc = struct.unpack('>IIB', read_exact(inp, 9))
            h = read_exact(inp, 32)
            payload = read_exact(inp, n)
            digest.update(h)
            sent.append((i, h))
            stats['payloadBytes'] += n
            wait(depth - 1)
            with cv:
                state['pending'] += 1
                per_epoch[epoch] += 1
            tasks.put((epoch, i, enc, h, payload))
        elif tag == b'S':
            # Epochs are synced in order, so "epoch e is written" means every block before this request is.
            syncs.put((epoch, read_exact(inp, 4), sent))
            sent = []
            epoch += 1
        elif tag == b'E':
            break
        else:
            die('unexpected record %r in a write job' % tag)
    syncs.put(None)
    sync_thread.join()
    wait(0)
    for th in pool:
        tasks.put(None)
    os.fsync(fd)
    drop_cache(fd)
    checks.put(sent)
    checks.put(None)
    check_thread.join()
    bad = readback['bad']
    stats['readBackBlocks'] = readback['n']
    out.write(b'R' + readback['digest'].digest() + struct.pack('>II', readback['n'], len(bad)) + b''.join(struct.pack('>I', i) for i in bad))
    out.write(frame_end(digest.digest(), usage(stats)))
    out.flush()


def widen_pipe(f):
    """A 1 MiB pipe rather than 64 KiB when stdin is one (sshd -> agent): sshd hands over a block's worth at a time
    instead of waking the agent for every 64 KiB, which on a loaded machine cost a scheduler delay each time."""
    try:
        import fcntl
        fcntl.fcntl(f.fileno(), getattr(fcntl, 'F_SETPIPE_SZ', 1031), 1 << 20)
    except Exception:
        pass


def main(inp, out):
    widen_pipe(inp)
    req = read_json(inp)
    if req.get('protocol') != PROTOCOL:
        fail(out, 'protocol mismatch: agent speaks %d, client speaks %r' % (PROTOCOL, req.get('protocol')))
    writing = req.get('write') is True
    try:
        fd = os.open(req['device'], os.O_RDWR if writing else os.O_RDONLY)
    except OSError as e:
        fail(out, 'cannot open device %s%s: %s' % (req['device'], ' for writing' if writing else '', e.strerror))
    size = os.lseek(fd, 0, os.SEEK_END)
    hello = {'protocol': PROTOCOL, 'size': size, 'python': sys.version.split()[0], 'cpus': os.cpu_count() or 1, 'write': writing}
    out.write(frame_json(b'H', hello))
    out.flush()
    job = read_json(inp)
    while job.get('ping'):
        out.write(b'P')
        out.flush()
        job = read_json(inp)
    if job.get('stop'):
        return
    if job.get('write'):
        if not writing:
            fail(out, 'a write job needs a hello with write: true (the device is open read-only)')
        return write_job(inp, out, fd, size, job)
    if job.get('dropCache'):
        drop_cache(fd)
    if job.get('sizeBytes'):
        size = min(size, int(job['sizeBytes']))
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
    zero_hash = ZeroHashes()
    stats = {'bytesRead': 0, 'dataBlocks': 0, 'zeroBlocks': 0, 'unchangedBlocks': 0, 'payloadBytes': 0, 'compressedBlocks': 0}

    def work(i, old):
        off = i * bs
        n = min(bs, size - off)
        if n <= 0:
            raise IOError('block %d is past the end of the device' % i)
        b = os.pread(fd, n, off)
        if len(b) != n:
            raise IOError('short read at block %d' % i)
        kind, h, p = classify(b, old, mode, zero_hash, zero_full)
        return (kind, h, p, n)

    digest = hashlib.sha256()
    run = [None, 0, 0.0]  # kind, count, started

    def flush_run():
        if run[1]:
            out.write(frame_run(run[0], run[1]))
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
            out.write(frame_data_head(enc, h, len(payload)))
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
            old = read_exact(inp, 32) if has else NOHASH
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
    out.write(frame_end(digest.digest(), usage(stats)))
    out.flush()


# Run by the bootstrap (exec in __main__); imported by the unit tests (test/transfer/agent_test.py).
if __name__ == '__main__':
    _out = sys.stdout.buffer
    try:
        main(sys.stdin.buffer, _out)
    except (BrokenPipeError, EOFError):
        os._exit(2)
    except SystemExit:
        raise
    except BaseException as e:
        fail(_out, 'agent error: %s: %s' % (type(e).__name__, e))
