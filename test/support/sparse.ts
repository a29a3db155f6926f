// Content of sparse files, compared without reading their holes: a python3 program (the droplets' agent needs python3
// anyway) that reads only the data extents (SEEK_DATA / SEEK_HOLE). It runs locally here, and on the simulator's
// droplets over SSH in its tests.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * python3 program printing a digest of a file's CONTENT that reads only its data extents (SEEK_DATA/
 * SEEK_HOLE): sha256 over the size and every non-zero 4 KiB block with its offset. Equal bytes give equal
 * digests however the zeros are stored, and a mostly empty GiB costs milliseconds. Usage: python3 -c P FILE
 */
export const CONTENT_DIGEST_PY = `
import os, sys, hashlib
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.lseek(fd, 0, os.SEEK_END)
h = hashlib.sha256(str(size).encode())
zero = bytes(4096)
off = 0
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    e = os.lseek(fd, d, os.SEEK_HOLE)
    pos = d - d % 4096
    while pos < e:
        blk = os.pread(fd, min(1 << 20, e - pos), pos)
        if not blk:
            break
        for i in range(0, len(blk), 4096):
            b = blk[i:i + 4096]
            if b != zero[:len(b)]:
                h.update((pos + i).to_bytes(8, 'big'))
                h.update(b)
        pos += len(blk)
    off = max(e, pos)
print(h.hexdigest())
`;

export async function contentDigest(file: string): Promise<string> {
  const { stdout } = await promisify(execFile)('python3', ['-c', CONTENT_DIGEST_PY, file]);
  return stdout.trim();
}

/** True when both files have the same size and bytes (equal content digests); reads only where either has data. */
export async function sameSparseBytes(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([contentDigest(a), contentDigest(b)]);
  return da === db;
}
