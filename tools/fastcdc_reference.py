#!/usr/bin/env python3
"""FastCDC 2020 reference cut points, for checking ShadowMover's chunker.

A direct, unoptimised transcription of the published algorithm (Xia et al. 2020, as implemented by
fastcdc-rs `v2020::cut`): gear table entry i = first 8 bytes (big-endian) of MD5 of 64 bytes of value i,
masks indexed by round(log2(avg)) +/- the normalization level, cut-point skipping below `min`, and
two bytes per step. It shares no code with the Swift implementation.

Usage:
  tools/fastcdc_reference.py FILE [--min N --avg N --max N --level L]   # prints offset<TAB>length
  tools/fastcdc_reference.py --vectors                                   # prints the Swift test vectors
"""
import argparse
import hashlib
import math
import sys

MASK64 = (1 << 64) - 1
MASKS = [0, 0, 0, 0, 0,
         0x0000000001804110, 0x0000000001803110, 0x0000000018035100, 0x0000001800035300,
         0x0000019000353000, 0x0000590003530000, 0x0000d90003530000, 0x0000d90103530000,
         0x0000d90303530000, 0x0000d90313530000, 0x0000d90f03530000, 0x0000d90303537000,
         0x0000d90703537000, 0x0000d90707537000, 0x0000d91707537000, 0x0000d91747537000,
         0x0000d91767537000, 0x0000d93767537000, 0x0000d93777537000, 0x0000d93777577000,
         0x0000db3777577000]
GEAR = [int.from_bytes(hashlib.md5(bytes([i]) * 64).digest()[:8], "big") for i in range(256)]
GEAR_LS = [(g << 1) & MASK64 for g in GEAR]


def cut(data, start, mn, avg, mx, mask_s, mask_l):
    remaining = len(data) - start
    if remaining <= mn:
        return remaining
    center = avg
    if remaining > mx:
        remaining = mx
    elif remaining < center:
        center = remaining
    idx = mn // 2
    h = 0
    ms_ls, ml_ls = (mask_s << 1) & MASK64, (mask_l << 1) & MASK64
    while idx < center // 2:
        a = idx * 2
        h = ((h << 2) + GEAR_LS[data[start + a]]) & MASK64
        if h & ms_ls == 0:
            return a
        h = (h + GEAR[data[start + a + 1]]) & MASK64
        if h & mask_s == 0:
            return a + 1
        idx += 1
    while idx < remaining // 2:
        a = idx * 2
        h = ((h << 2) + GEAR_LS[data[start + a]]) & MASK64
        if h & ml_ls == 0:
            return a
        h = (h + GEAR[data[start + a + 1]]) & MASK64
        if h & mask_l == 0:
            return a + 1
        idx += 1
    return remaining


def chunks(data, mn, avg, mx, level):
    bits = int(math.floor(math.log2(avg) + 0.5))
    mask_s, mask_l = MASKS[bits + level], MASKS[bits - level]
    out, off = [], 0
    while off < len(data):
        n = cut(data, off, mn, avg, mx, mask_s, mask_l)
        out.append((off, n))
        off += n
    return out


def xorshift_bytes(seed, count):
    """The test corpus: xorshift64 (13, 7, 17), each state's 8 bytes little-endian."""
    out = bytearray()
    x = seed
    while len(out) < count:
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
        out += x.to_bytes(8, "little")
    return bytes(out[:count])


def text_bytes(seed, count):
    """A compressible corpus: words picked by the same generator, so content repeats but shifts."""
    words = [b"shadow", b"mover", b"chunk", b"store", b"freeze", b"thaw", b"writer", b"volume",
             b"snapshot", b"pack", b"index", b"tree", b"\n", b"  ", b"0123456789", b"backup"]
    rnd = xorshift_bytes(seed, count)
    out = bytearray()
    i = 0
    while len(out) < count:
        out += words[rnd[i % len(rnd)] & 15]
        i += 1
    return bytes(out[:count])


VECTOR_CASES = [
    # (name, corpus, seed, size, min, avg, max, level)
    ("random 16K level 1", "random", 1, 1 << 20, 4096, 16384, 65536, 1),
    ("random 16K level 0", "random", 2, 1 << 20, 4096, 16384, 65536, 0),
    ("random 16K level 3", "random", 3, 1 << 20, 8192, 16384, 65535, 3),
    ("text 8K level 2", "text", 4, 1 << 19, 2048, 8192, 32768, 2),
    ("random 64K level 2", "random", 5, 2 << 20, 16384, 65536, 262144, 2),
    ("random 1M level 2 (store default)", "random", 6, 12 << 20, 262144, 1048576, 4194304, 2),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file", nargs="?")
    p.add_argument("--min", type=int, default=262144)
    p.add_argument("--avg", type=int, default=1048576)
    p.add_argument("--max", type=int, default=4194304)
    p.add_argument("--level", type=int, default=2)
    p.add_argument("--vectors", action="store_true")
    a = p.parse_args()
    if a.vectors:
        for name, corpus, seed, size, mn, avg, mx, level in VECTOR_CASES:
            data = (xorshift_bytes if corpus == "random" else text_bytes)(seed, size)
            lengths = [n for _, n in chunks(data, mn, avg, mx, level)]
            print(f'        Vector(name: "{name}", corpus: .{corpus}, seed: {seed}, size: {size}, '
                  f'min: {mn}, avg: {avg}, max: {mx}, level: {level},')
            print(f'               lengths: {lengths}),')
        return
    if not a.file:
        p.error("give a FILE or --vectors")
    with open(a.file, "rb") as f:
        data = f.read()
    for off, n in chunks(data, a.min, a.avg, a.max, a.level):
        print(f"{off}\t{n}")


if __name__ == "__main__":
    main()
