// Telling what a raw image holds from its bytes (activities/verify/signature.ts), the checkers' verdicts, and when a
// version counts as suspect: no tools, no disk.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSuspectByChecks, type VersionCheck } from '../../activities/store';
import { CHECKERS, lastLines } from '../../activities/verify/checkers';
import { summarize, type FsckPart } from '../../activities/verify/fsck';
import {
  HEAD_BYTES,
  detectFilesystem,
  detectLayout,
  readPartitionTable,
  type ReadAt,
} from '../../activities/verify/signature';

function ext(incompat: number, compat = 0): Buffer {
  const head = Buffer.alloc(HEAD_BYTES);
  head.writeUInt16LE(0xef53, 1080);
  head.writeUInt32LE(compat, 1024 + 0x5c);
  head.writeUInt32LE(incompat, 1024 + 0x60);
  return head;
}

function readerOf(image: Buffer): ReadAt {
  return async (offset, length) => image.subarray(offset, Math.min(image.length, offset + length));
}

function mbr(entries: { type: number; start: number; sectors: number; boot?: number }[], size = 4 * 2 ** 20): Buffer {
  const img = Buffer.alloc(size);
  entries.forEach((p, i) => {
    const e = 446 + i * 16;
    img[e] = p.boot ?? 0;
    img[e + 4] = p.type;
    img.writeUInt32LE(p.start, e + 8);
    img.writeUInt32LE(p.sectors, e + 12);
  });
  img[510] = 0x55;
  img[511] = 0xaa;
  return img;
}

describe('filesystem signatures', () => {
  it('tells ext4, ext3 and ext2 apart by their feature flags', () => {
    assert.deepEqual(detectFilesystem(ext(0x40 | 0x200, 0x4)), { kind: 'checkable', fs: 'ext4' });
    assert.deepEqual(detectFilesystem(ext(0x2, 0x4)), { kind: 'checkable', fs: 'ext3' });
    assert.deepEqual(detectFilesystem(ext(0x2)), { kind: 'checkable', fs: 'ext2' });
  });

  it('finds XFS by its magic at 0', () => {
    const head = Buffer.alloc(HEAD_BYTES);
    head.write('XFSB', 0, 'latin1');
    assert.deepEqual(detectFilesystem(head), { kind: 'checkable', fs: 'xfs' });
  });

  it('names what it has no checker for, and says so for an empty device', () => {
    const btrfs = Buffer.alloc(HEAD_BYTES);
    btrfs.write('_BHRfS_M', 0x10040, 'latin1');
    const luks = Buffer.alloc(HEAD_BYTES);
    luks.write('LUKS\xba\xbe', 0, 'latin1');
    const swap = Buffer.alloc(HEAD_BYTES);
    swap.write('SWAPSPACE2', 4086, 'latin1');
    assert.match(String((detectFilesystem(btrfs) as { what: string }).what), /^btrfs/);
    assert.match(String((detectFilesystem(luks) as { what: string }).what), /^LUKS/);
    assert.match(String((detectFilesystem(swap) as { what: string }).what), /^swap/);
    assert.match(String((detectFilesystem(Buffer.alloc(HEAD_BYTES)) as { what: string }).what), /all zeros/);
    const noise = Buffer.alloc(HEAD_BYTES, 0x5a);
    assert.equal(detectFilesystem(noise), undefined);
  });

  it('does not take a short read for a filesystem', () => {
    assert.equal(detectFilesystem(Buffer.alloc(100, 1)), undefined);
  });
});

describe('partition tables', () => {
  it('reads an MBR: primary partitions at their offsets, an extended one apart', async () => {
    const img = mbr([
      { type: 0x83, start: 2048, sectors: 2048, boot: 0x80 },
      { type: 0x82, start: 4096, sectors: 1024 },
      { type: 0x05, start: 5120, sectors: 1024 },
    ]);
    const table = await readPartitionTable(readerOf(img), img.length);
    assert.equal(table?.kind, 'mbr');
    assert.deepEqual(
      table?.partitions.map((p) => [p.number, p.offset, p.length, p.type]),
      [
        [1, 2048 * 512, 2048 * 512, '83'],
        [2, 4096 * 512, 1024 * 512, '82'],
      ],
    );
    assert.deepEqual(
      table?.extended?.map((p) => p.number),
      [3],
    );
  });

  it('clips a partition that runs past the end of the image, and skips one that starts beyond it', async () => {
    const img = mbr([
      { type: 0x83, start: 2048, sectors: 1 << 30 },
      { type: 0x83, start: 1 << 30, sectors: 10 },
    ]);
    const table = await readPartitionTable(readerOf(img), img.length);
    assert.deepEqual(
      table?.partitions.map((p) => [p.offset, p.length]),
      [[2048 * 512, img.length - 2048 * 512]],
    );
  });

  it('reads a GPT behind its protective MBR, with names', async () => {
    const img = mbr([{ type: 0xee, start: 1, sectors: 0xffffffff }]);
    img.write('EFI PART', 512, 'latin1');
    img.writeBigUInt64LE(2n, 512 + 72);
    img.writeUInt32LE(4, 512 + 80);
    img.writeUInt32LE(128, 512 + 84);
    const e = 1024 + 128; // the second entry; the first is unused
    img.fill(0x11, e, e + 16);
    img.writeBigUInt64LE(2048n, e + 32);
    img.writeBigUInt64LE(4095n, e + 40);
    img.write('data', e + 56, 'utf16le');
    const table = await readPartitionTable(readerOf(img), img.length);
    assert.equal(table?.kind, 'gpt');
    assert.deepEqual(
      table?.partitions.map((p) => [p.number, p.offset, p.length, p.name]),
      [[2, 2048 * 512, 2048 * 512, 'data']],
    );
  });

  it('takes a boot sector that merely ends in 55 AA for no table', async () => {
    const img = Buffer.alloc(2 ** 20);
    img.fill(0x90, 0, 510); // code bytes where the entries would be: their boot flags are neither 0 nor 0x80
    img[510] = 0x55;
    img[511] = 0xaa;
    assert.equal(await readPartitionTable(readerOf(img), img.length), undefined);
    assert.deepEqual(await detectLayout(readerOf(img), img.length), { kind: 'unknown' });
  });

  it('prefers a whole-device filesystem to a table-looking first sector', async () => {
    const img = Buffer.concat([ext(0x40), Buffer.alloc(2 ** 20)]);
    img[510] = 0x55;
    img[511] = 0xaa;
    img[446 + 4] = 0x83;
    img.writeUInt32LE(10, 446 + 12);
    const layout = await detectLayout(readerOf(img), img.length);
    assert.deepEqual(layout, { kind: 'filesystem', signature: { kind: 'checkable', fs: 'ext4' } });
  });
});

describe('checker verdicts', () => {
  it("reads e2fsck's exit bits: errors are failed, its own trouble is an error", () => {
    assert.equal(CHECKERS.ext4.judge(0, '').result, 'passed');
    assert.deepEqual(CHECKERS.ext4.judge(4, ''), { result: 'failed', words: 'errors left uncorrected' });
    assert.deepEqual(CHECKERS.ext4.judge(12, ''), {
      result: 'failed',
      words: 'errors left uncorrected, operational error',
    });
    assert.throws(() => CHECKERS.ext4.judge(16, ''), /usage error/);
    assert.throws(() => CHECKERS.ext4.judge(32, ''), /cancelled/);
    assert.equal(CHECKERS.xfs.judge(1, 'Phase 7 - verify link counts...').result, 'failed');
    const dirtyLog =
      'ALERT: The filesystem has valuable metadata changes in a log which is being\n' +
      'ignored because the -n option was used.  Expect spurious inconsistencies\n';
    assert.equal(CHECKERS.xfs.judge(1, dirtyLog).result, 'unchecked', 'a log only a mount replays: not a verdict');
  });

  it('keeps the last lines worth reading', () => {
    const out = 'e2fsck 1.47.0 (5-Feb-2023)\nPass 1\n\n\nPass 2\nimg: ***** WARNING *****\n';
    assert.deepEqual(lastLines(out, 2), ['Pass 2', 'img: ***** WARNING *****']);
    assert.deepEqual(lastLines(out), ['Pass 1', 'Pass 2', 'img: ***** WARNING *****']);
  });

  it('summarizes failed, passed and unchecked parts in one line', () => {
    const part = (partition: number | null, result: FsckPart['result'], verdict: string): FsckPart => ({
      partition,
      offset: 0,
      length: 1,
      filesystem: result === 'unchecked' ? 'swap space' : 'ext4',
      result,
      verdict,
    });
    assert.equal(
      summarize('failed', [
        part(1, 'passed', 'e2fsck: exit 0 (no errors)'),
        part(2, 'failed', 'e2fsck: exit 4 (x)\nmore'),
      ]),
      'failed: partition 2 ext4: e2fsck: exit 4 (x)',
    );
    assert.equal(
      summarize('passed', [part(1, 'passed', 'e2fsck: exit 0 (no errors)'), part(2, 'unchecked', 'unchecked: swap')]),
      'passed: partition 1 ext4: e2fsck: exit 0 (no errors); not checked: partition 2 swap space',
    );
    assert.equal(
      summarize('unchecked', [part(null, 'unchecked', 'unchecked: no filesystem')]),
      'unchecked: no filesystem',
    );
  });
});

describe('suspect versions', () => {
  const check = (kind: string, at: string, ok: boolean, result?: VersionCheck['result']): VersionCheck => ({
    kind,
    at,
    ok,
    ...(result ? { result } : {}),
  });

  it('is suspect while the latest check of some kind failed', () => {
    assert.equal(isSuspectByChecks([]), false);
    assert.equal(isSuspectByChecks([check('fsck', '2026-12-01T00:00:00Z', false)]), true);
    assert.equal(
      isSuspectByChecks([check('fsck', '2026-12-01T00:00:00Z', false), check('fsck', '2026-12-02T00:00:00Z', true)]),
      false,
      'a later pass of the same kind clears it',
    );
    assert.equal(
      isSuspectByChecks([check('fsck', '2026-12-01T00:00:00Z', false), check('hashes', '2026-12-02T00:00:00Z', true)]),
      true,
      'a pass of another kind does not',
    );
    assert.equal(
      isSuspectByChecks([check('fsck', '2026-12-02T00:00:00Z', true), check('fsck', '2026-12-01T00:00:00Z', false)]),
      false,
      'by time, not by order in the file',
    );
    assert.equal(isSuspectByChecks([check('fsck', '2026-12-01T00:00:00Z', true, 'unchecked')]), false);
  });
});
