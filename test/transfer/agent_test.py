# Unit tests of the remote agent (activities/transfer/agent.py), standard library only:
#   python3 -m unittest discover -s test/transfer -p 'agent_test.py'
# `npm test` runs them through test/transfer/agent-python.test.ts, which passes the exact command the transfer runs
# on the droplet in DOSVOB_AGENT_COMMAND; the end-to-end cases below run the agent through it.
import hashlib
import importlib.util
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
            elif tag in (b'U', b'Z'):
                out.append((tag, self.u32()))
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
        return CODE + frame({'protocol': 1, 'device': path}) + frame(job) + hashes

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
        self.assertEqual(hello['protocol'], 1)
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
        hello = frame({'protocol': 1, 'device': '/dev/null'})
        code, out, _ = self.run_agent(CODE + hello[:-3])
        self.assertEqual((code, out), (2, b''))

    def test_input_ending_before_the_job(self):
        path = self.device([random_block(BS)])
        code, out, _ = self.run_agent(CODE + frame({'protocol': 1, 'device': path}))
        self.assertEqual(code, 2)
        self.assertEqual([r[0] for r in Reader(out).records()], [b'H'])

    def test_protocol_mismatch_and_missing_device_are_messages(self):
        code, out, _ = self.run_agent(CODE + frame({'protocol': 99, 'device': '/dev/null'}))
        self.assertEqual(code, 3)
        self.assertRegex(Reader(out).records()[0][1], 'protocol mismatch: agent speaks 1')
        code, out, _ = self.run_agent(CODE + frame({'protocol': 1, 'device': os.path.join(self.tmp.name, 'none')}))
        self.assertEqual(code, 3)
        self.assertRegex(Reader(out).records()[0][1], 'cannot open device')


if __name__ == '__main__':
    unittest.main()
