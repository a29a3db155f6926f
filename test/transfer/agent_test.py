# Unit tests of the remote agent (activities/transfer/agent.py), standard library only:
#   python3 -m unittest discover -s test/transfer -p 'agent_test.py'
# `npm test` runs them through test/transfer/agent-python.test.ts, which passes the exact command the transfer runs
# on the droplet in DOSVOB_AGENT_COMMAND; the end-to-end cases below run the agent through it.
import hashlib
import importlib.util
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_PATH = os.path.normpath(os.path.join(HERE, '..', '..', 'activities', 'transfer', 'agent.py'))
with open(AGENT_PATH, 'rb') as _f:
    CODE = _f.read()
COMMAND = os.environ.get('DOSVOB_AGENT_COMMAND') or (
    "'%s' -I -S -c 'import sys;exec(compile(sys.stdin.buffer.read(%d),\"dosvob-agent\",\"exec\"))'"
    % (sys.executable, len(CODE))
)
BS = 64 * 1024
NOHASH = bytes(32)


def load_agent():
    spec = importlib.util.spec_from_file_location('dosvob_agent', AGENT_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # does not run main(): that is only for __main__
    return mod


agent = load_agent()


def frame(obj):
    b = json.dumps(obj).encode('utf-8')
    return struct.pack('>I', len(b)) + b


def sha(b):
    return hashlib.sha256(b).digest()


def text_block(n, seed=0):
    line = lambda k: ('%d:%d GET /api/items/%d 200\n' % (seed, k, (k * 7919) % 10007)).encode()
    out = bytearray()
    k = 0
    while len(out) < n:
        out += line(k)
        k += 1
    return bytes(out[:n])


def random_block(n, seed=0):
    return random.Random(seed).randbytes(n)


class Reader:
    """The client's side of the framing, strict: every byte must be accounted for."""

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise AssertionError('truncated record at %d (+%d of %d)' % (self.pos, n, len(self.buf)))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self):
        return struct.unpack('>I', self.take(4))[0]

    def records(self):
        out = []
        while self.pos < len(self.buf):
            tag = self.take(1)
            if tag in (b'H', b'X'):
                n = self.u32()
                body = self.take(n)
                out.append((tag, json.loads(body) if tag == b'H' else body.decode()))
            elif tag in (b'U', b'Z', b'A'):
                out.append((tag, self.u32()))
            elif tag == b'P':
                out.append((tag,))
            elif tag == b'R':
                digest = self.take(32)
                n = self.u32()
                bad = [self.u32() for _ in range(self.u32())]
                out.append((tag, digest, n, bad))
            elif tag == b'D':
                n = self.u32()
                enc = self.take(1)[0]
                h = self.take(32)
                out.append((tag, enc, h, self.take(n)))
            elif tag == b'E':
                digest = self.take(32)
                stats = json.loads(self.take(self.u32()))
                out.append((tag, digest, stats))
            else:
                raise AssertionError('unknown tag %r at %d' % (tag, self.pos - 1))
        return out


class AgentRun(unittest.TestCase):
    """Runs the agent as the transfer does: the bootstrap command, the code on stdin, then hello and job."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def device(self, blocks):
        path = os.path.join(self.tmp.name, 'device.img')
        with open(path, 'wb') as f:
            for b in blocks:
                f.write(b)
        return path

    def run_agent(self, stdin):
        p = subprocess.run(COMMAND, shell=True, input=stdin, capture_output=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def job_input(self, path, job, hashes=b''):
        return CODE + frame({'protocol': agent.PROTOCOL, 'device': path}) + frame(job) + hashes

    def sync(self, blocks, hashes=None, **job):
        path = self.device(blocks)
        n = len(blocks)
        j = {'blockSize': BS, 'ranges': [[0, n]], 'hashes': hashes is not None, 'threads': 2, 'compress': 'never', 'runCap': 256}
        j.update(job)
        code, out, err = self.run_agent(self.job_input(path, j, b''.join(hashes or [])))
        self.assertEqual(code, 0, err.decode())
        return Reader(out).records()


class Framing(AgentRun):
    def test_hello_records_and_end_account_for_every_byte(self):
        blocks = [random_block(BS, i) for i in range(3)]
        recs = self.sync(blocks)
        self.assertEqual(recs[0][0], b'H')
        hello = recs[0][1]
        self.assertEqual(hello['protocol'], agent.PROTOCOL)
        self.assertEqual(hello['size'], 3 * BS)
        self.assertGreaterEqual(hello['cpus'], 1)
        self.assertEqual([r[0] for r in recs[1:]], [b'D', b'D', b'D', b'E'])
        stats = recs[-1][2]
        self.assertEqual(stats['bytesRead'], 3 * BS)
        self.assertEqual(stats['dataBlocks'], 3)

    def test_frame_helpers(self):
        self.assertEqual(agent.frame_run(b'U', 5), b'U\x00\x00\x00\x05')
        head = agent.frame_data_head(1, b'h' * 32, 300)
        self.assertEqual(head, b'D' + struct.pack('>IB', 300, 1) + b'h' * 32)
        self.assertEqual(len(head), 38)
        self.assertEqual(agent.frame_json(b'H', {'a': 1}), b'H' + struct.pack('>I', 8) + b'{"a": 1}')
        end = agent.frame_end(b'd' * 32, {'x': 2})
        self.assertEqual(Reader(end).records(), [(b'E', b'd' * 32, {'x': 2})])

    def test_runs_are_cut_at_the_run_cap(self):
        recs = self.sync([bytes(BS)] * 10, runCap=4)
        self.assertEqual(recs[1:-1], [(b'Z', 4), (b'Z', 4), (b'Z', 2)])

    def test_only_the_requested_ranges_in_order(self):
        blocks = [random_block(BS, i) for i in range(6)]
        recs = self.sync(blocks, ranges=[[4, 6], [1, 2]])
        data = [r for r in recs if r[0] == b'D']
        self.assertEqual([r[3] for r in data], [blocks[4], blocks[5], blocks[1]])


class Hashing(AgentRun):
    def test_data_blocks_carry_their_sha256_and_the_end_digest_covers_every_block(self):
        blocks = [random_block(BS, 1), bytes(BS), random_block(BS - 1000, 2)]  # last block partial
        recs = self.sync(blocks)
        data = [r for r in recs if r[0] == b'D']
        self.assertEqual([r[2] for r in data], [sha(blocks[0]), sha(blocks[2])])
        self.assertEqual([r[3] for r in data], [blocks[0], blocks[2]])
        self.assertEqual(recs[-1][1], sha(b''.join(sha(b) for b in blocks)))

    def test_blocks_whose_hash_the_client_has_are_unchanged(self):
        blocks = [random_block(BS, i) for i in range(4)]
        changed = random_block(BS, 99)
        hashes = [sha(blocks[0]), sha(blocks[1]), sha(changed), NOHASH]
        recs = self.sync(blocks, hashes=hashes)
        self.assertEqual(recs[1], (b'U', 2))
        self.assertEqual([r[0] for r in recs[2:4]], [b'D', b'D'], 'a different and an unknown hash send the block')
        self.assertEqual(recs[-1][1], sha(b''.join(sha(b) for b in blocks)))
        self.assertEqual(recs[-1][2]['unchangedBlocks'], 2)


class ZeroDetection(AgentRun):
    def test_classify_finds_zeros_without_mistaking_one_set_byte(self):
        zh = agent.ZeroHashes()
        self.assertEqual(agent.classify(bytes(BS), NOHASH, 'never', zh), (0, sha(bytes(BS)), None))
        self.assertEqual(agent.classify(bytes(1000), NOHASH, 'never', zh, bytes(BS)), (0, sha(bytes(1000)), None))
        one = bytearray(BS)
        one[BS - 1] = 1
        kind, h, p = agent.classify(bytes(one), NOHASH, 'never', zh)
        self.assertEqual((kind, h, p), (2, sha(bytes(one)), (0, bytes(one))))

    def test_zero_blocks_travel_as_runs_or_as_unchanged(self):
        blocks = [bytes(BS), bytes(BS), random_block(BS, 3), bytes(BS - 4096)]
        recs = self.sync(blocks)
        self.assertEqual([r[0] for r in recs[1:]], [b'Z', b'D', b'Z', b'E'])
        self.assertEqual((recs[1][1], recs[3][1]), (2, 1))
        # A zero block the client already has as zeros is unchanged, not zeroed again.
        recs = self.sync(blocks, hashes=[sha(bytes(BS)), NOHASH, NOHASH, NOHASH])
        self.assertEqual([r[0] for r in recs[1:4]], [b'U', b'Z', b'D'])
        self.assertEqual(recs[-1][2]['zeroBlocks'], 2)


class Compression(AgentRun):
    def test_choice_by_mode_and_sample(self):
        text, rnd = text_block(BS), random_block(BS)
        self.assertTrue(agent.should_compress(text, 'auto'))
        self.assertFalse(agent.should_compress(rnd, 'auto'))
        self.assertFalse(agent.should_compress(text_block(16384), 'auto'), 'small blocks are not worth it')
        self.assertFalse(agent.should_compress(text, 'never'))
        self.assertTrue(agent.should_compress(rnd, 'always'))

    def test_a_block_is_sent_compressed_only_if_it_shrinks_by_an_eighth(self):
        enc, payload = agent.encode_block(text_block(BS), 'auto')
        self.assertEqual(enc, 1)
        self.assertEqual(zlib.decompress(payload), text_block(BS))
        self.assertLess(len(payload), BS - BS // 8)
        self.assertEqual(agent.encode_block(random_block(BS), 'always'), (0, random_block(BS)))
        r = random.Random(7)
        slight = bytes(r.randrange(200) for _ in range(BS))  # compresses, but by less than an eighth
        self.assertTrue(BS - BS // 8 <= len(zlib.compress(slight, 1)) < BS)
        self.assertEqual(agent.encode_block(slight, 'always'), (0, slight))

    def test_end_to_end_auto(self):
        blocks = [text_block(BS, 1), random_block(BS, 2)]
        recs = self.sync(blocks, compress='auto')
        (_, enc0, h0, p0), (_, enc1, h1, p1) = recs[1], recs[2]
        self.assertEqual((enc0, enc1), (1, 0))
        self.assertEqual(zlib.decompress(p0), blocks[0])
        self.assertEqual(h0, sha(blocks[0]), 'the hash is of the raw block')
        self.assertEqual(p1, blocks[1])
        self.assertEqual(recs[-1][2]['compressedBlocks'], 1)


class Truncated(AgentRun):
    def test_input_ending_in_the_hashes(self):
        path = self.device([random_block(BS, i) for i in range(4)])
        job = {'blockSize': BS, 'ranges': [[0, 4]], 'hashes': True, 'threads': 1, 'compress': 'never', 'runCap': 256}
        code, out, _ = self.run_agent(self.job_input(path, job, NOHASH + NOHASH[:10]))
        self.assertEqual(code, 2)
        recs = Reader(out).records()  # what was sent is whole records
        self.assertEqual(recs[0][0], b'H')
        self.assertNotIn(b'E', [r[0] for r in recs])

    def test_input_ending_in_the_hello(self):
        hello = frame({'protocol': agent.PROTOCOL, 'device': '/dev/null'})
        code, out, _ = self.run_agent(CODE + hello[:-3])
        self.assertEqual((code, out), (2, b''))

    def test_input_ending_before_the_job(self):
        path = self.device([random_block(BS)])
        code, out, _ = self.run_agent(CODE + frame({'protocol': agent.PROTOCOL, 'device': path}))
        self.assertEqual(code, 2)
        self.assertEqual([r[0] for r in Reader(out).records()], [b'H'])

    def test_protocol_mismatch_and_missing_device_are_messages(self):
        code, out, _ = self.run_agent(CODE + frame({'protocol': 99, 'device': '/dev/null'}))
        self.assertEqual(code, 3)
        self.assertRegex(Reader(out).records()[0][1], 'protocol mismatch: agent speaks %d' % agent.PROTOCOL)
        code, out, _ = self.run_agent(CODE + frame({'protocol': agent.PROTOCOL, 'device': os.path.join(self.tmp.name, 'none')}))
        self.assertEqual(code, 3)
        self.assertRegex(Reader(out).records()[0][1], 'cannot open device')


def write_record(i, block, enc=0, h=None):
    payload = zlib.compress(block, 1) if enc == 1 else block
    return b'D' + struct.pack('>IIB', i, len(payload), enc) + (h if h is not None else sha(block)) + payload


def sync_record(mark):
    return b'S' + struct.pack('>I', mark)


class WriteMode(AgentRun):
    """A restore: the client streams blocks, the agent checks and writes them, acks syncs, and reads them back."""

    def blank(self, nblocks, tail=0):
        path = os.path.join(self.tmp.name, 'target.img')
        with open(path, 'wb') as f:
            f.truncate(nblocks * BS + tail)
        return path

    def hello(self, path, write=True):
        return CODE + frame({'protocol': agent.PROTOCOL, 'device': path, 'write': write})

    def write_job(self, path, records, threads=2):
        stdin = self.hello(path) + frame({'write': True, 'blockSize': BS, 'threads': threads}) + records
        return self.run_agent(stdin)

    def test_written_bytes_equal_raw_and_zlib_and_zero_blocks_untouched(self):
        path = self.blank(6, tail=5000)  # the last block is partial
        blocks = {1: random_block(BS, 1), 2: text_block(BS, 2), 4: random_block(BS, 4), 6: random_block(5000, 6)}
        recs = b''.join(write_record(i, b, enc=1 if i == 2 else 0) for i, b in sorted(blocks.items()))
        code, out, err = self.write_job(path, recs + b'E')
        self.assertEqual(code, 0, err.decode())
        got = Reader(out).records()
        self.assertEqual(got[0][0], b'H')
        self.assertEqual((got[0][1]['write'], got[0][1]['size']), (True, 6 * BS + 5000))
        self.assertEqual(got[-1][0], b'E')
        self.assertEqual(got[-1][1], sha(b''.join(sha(b) for _, b in sorted(blocks.items()))))
        # Read back from the device: every block as written, the digest the same.
        self.assertEqual(got[-2], (b'R', got[-1][1], 4, []))
        stats = got[-1][2]
        self.assertEqual((stats['blocksWritten'], stats['bytesWritten']), (4, 3 * BS + 5000))
        with open(path, 'rb') as f:
            data = f.read()
        expected = b''.join(blocks.get(i, bytes(BS)) for i in range(6)) + blocks[6]
        self.assertEqual(data, expected)

    def test_a_block_whose_bytes_fail_its_sha256_is_refused_naming_it(self):
        path = self.blank(4)
        good, bad = random_block(BS, 1), random_block(BS, 2)
        recs = write_record(0, good) + write_record(3, bad, h=sha(b'something else'))
        code, out, _ = self.write_job(path, recs + b'E')
        self.assertEqual(code, 3)
        msgs = [r[1] for r in Reader(out).records() if r[0] == b'X']
        self.assertEqual(len(msgs), 1)
        self.assertRegex(msgs[0], r'^block 3: SHA-256 mismatch')
        with open(path, 'rb') as f:
            f.seek(3 * BS)
            self.assertEqual(f.read(BS), bytes(BS), 'nothing of the bad block is written')
        # A damaged zlib payload is refused the same way.
        code, out, _ = self.write_job(path, write_record(2, good, enc=1)[:-9] + b'\x00' * 8 + b'E')
        self.assertNotEqual(code, 0)

    def test_a_block_past_the_end_and_a_write_job_on_a_read_only_hello_are_refused(self):
        path = self.blank(2)
        code, out, _ = self.write_job(path, write_record(2, random_block(BS)) + b'E')
        self.assertEqual(code, 3)
        self.assertRegex(Reader(out).records()[-1][1], r'^block 2: past the end of the device')
        stdin = self.hello(path, write=False) + frame({'write': True, 'blockSize': BS}) + b'E'
        code, out, _ = self.run_agent(stdin)
        self.assertEqual(code, 3)
        self.assertRegex(Reader(out).records()[-1][1], 'needs a hello with write: true')

    def test_sync_requests_are_acked_in_order_only_after_their_blocks_are_written(self):
        path = self.blank(8)
        blocks = [random_block(BS, 10 + i) for i in range(8)]
        p = subprocess.Popen(COMMAND, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.kill(), p.wait(), p.stdout.close(), p.stderr.close()))
        p.stdin.write(self.hello(path) + frame({'write': True, 'blockSize': BS, 'threads': 4}))
        p.stdin.flush()
        self.assertEqual(p.stdout.read(1), b'H')
        json.loads(p.stdout.read(struct.unpack('>I', p.stdout.read(4))[0]))
        for mark, span in ((4, range(0, 4)), (8, range(4, 8))):
            p.stdin.write(b''.join(write_record(i, blocks[i]) for i in span) + sync_record(mark))
            p.stdin.flush()
            self.assertEqual(p.stdout.read(5), b'A' + struct.pack('>I', mark))
            with open(path, 'rb') as f:  # acked: every block sent before the sync is on the device
                self.assertEqual(f.read(mark * BS), b''.join(blocks[:mark]))
        p.stdin.write(b'E')
        p.stdin.close()
        rest = Reader(p.stdout.read()).records()
        self.assertEqual(p.wait(), 0)
        self.assertEqual([r[0] for r in rest], [b'R', b'E'])
        self.assertEqual(rest[0][1:], (sha(b''.join(sha(b) for b in blocks)), 8, []))
        self.assertEqual(rest[1][2]['syncs'], 2)

    def test_the_read_back_names_a_block_the_device_did_not_keep(self):
        # A device that loses a write (run in-process with a pwrite that reports block 3 written and keeps nothing):
        # the read-back from the device names the block, and its digest is not the one written.
        path = self.blank(5)
        blocks = {i: random_block(BS, 30 + i) for i in (0, 1, 3, 4)}
        order = [0, 1, 3, 4]
        recs = write_record(0, blocks[0]) + write_record(1, blocks[1]) + sync_record(2)
        recs += write_record(3, blocks[3]) + write_record(4, blocks[4]) + b'E'
        stdin = io.BytesIO(frame({'protocol': agent.PROTOCOL, 'device': path, 'write': True}) + frame({'write': True, 'blockSize': BS, 'threads': 2}) + recs)
        out = io.BytesIO()
        real = os.pwrite

        def lossy(fd, data, off):
            return len(data) if off == 3 * BS else real(fd, data, off)

        os.pwrite = lossy
        try:
            agent.main(stdin, out)
        finally:
            os.pwrite = real
        recs = Reader(out.getvalue()).records()
        self.assertEqual([r[0] for r in recs], [b'H', b'A', b'R', b'E'])
        _, digest, n, bad = recs[2]
        self.assertEqual((n, bad), (4, [3]))
        self.assertEqual(recs[3][1], sha(b''.join(sha(blocks[i]) for i in order)), 'what was sent')
        self.assertEqual(digest, sha(b''.join(sha(blocks[i] if i != 3 else bytes(BS)) for i in order)), 'what the device holds')

    def test_a_ping_is_answered_before_the_job(self):
        path = self.blank(2)
        block = random_block(BS, 40)
        stdin = self.hello(path) + frame({'ping': True}) + frame({'ping': True})
        stdin += frame({'write': True, 'blockSize': BS, 'threads': 2}) + write_record(1, block) + b'E'
        code, out, err = self.run_agent(stdin)
        self.assertEqual(code, 0, err.decode())
        self.assertEqual([r[0] for r in Reader(out).records()], [b'H', b'P', b'P', b'R', b'E'])

    def test_read_back_verification_with_the_read_job(self):
        path = self.blank(6)
        blocks = {0: random_block(BS, 20), 1: random_block(BS, 21), 4: random_block(BS, 24)}
        code, _, err = self.write_job(path, b''.join(write_record(i, b) for i, b in blocks.items()) + b'E')
        self.assertEqual(code, 0, err.decode())
        ranges = [[0, 2], [4, 5]]
        hashes = [sha(blocks[0]), sha(blocks[1]), sha(blocks[4])]
        job = {'blockSize': BS, 'ranges': ranges, 'hashes': True, 'threads': 2, 'compress': 'never', 'runCap': 256, 'dropCache': True}
        code, out, err = self.run_agent(self.hello(path, write=False) + frame(job) + b''.join(hashes))
        self.assertEqual(code, 0, err.decode())
        recs = Reader(out).records()
        self.assertEqual([r[:2] for r in recs[1:-1]], [(b'U', 3)])
        self.assertEqual(recs[-1][1], sha(b''.join(hashes)), 'the digests agree')
        # A block the device did not keep (here: overwritten behind the agent's back) does not come back unchanged.
        with open(path, 'r+b') as f:
            f.seek(1 * BS)
            f.write(bytes(BS))
        code, out, _ = self.run_agent(self.hello(path, write=False) + frame(job) + b''.join(hashes))
        recs = Reader(out).records()
        self.assertEqual([r[:2] for r in recs[1:-1]], [(b'U', 1), (b'Z', 1), (b'U', 1)])
        self.assertNotEqual(recs[-1][1], sha(b''.join(hashes)))


if __name__ == '__main__':
    unittest.main()
