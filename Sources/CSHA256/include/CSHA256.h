// SHA-256 for blob ids, many messages at once in two lanes. Ids are hashed over every byte a backup
// reads and a restore or check verifies, and SHA-256 was half of a forced re-read's time. One message
// runs at the latency of SHA-NI's round instruction (~1.9 GB/s per core on this project's machines);
// two independent messages interleaved in one loop fill the gaps between dependent rounds and run
// ~1.5× as fast (2.9 GB/s; three or four lanes gain little more and need more registers than SSE has:
// 3.2 GB/s for four, measured standalone). Without SHA-NI (or off x86-64) a portable C compression
// function does the same work, one message after the other.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Where a hash starts: SHA-256's initial state, or that state after whole 64-byte blocks (an HMAC
/// key's padded block), with the bytes they held.
typedef struct {
    uint32_t h[8];
    uint64_t length;
} SMSHA256Start;

/// SHA-256's own starting point (no bytes absorbed).
SMSHA256Start sm_sha256_start(void);

/// `start` with the 64-byte block `block` absorbed.
SMSHA256Start sm_sha256_absorb(SMSHA256Start start, const uint8_t *_Nonnull block);

/// The SHA-256 of `start`'s bytes followed by `count` bytes at `bytes`, into `digest` (32 bytes).
void sm_sha256(const SMSHA256Start *_Nonnull start, const void *_Nullable bytes, size_t count, uint8_t *_Nonnull digest);

/// The digests of `count` messages (`messages[i]`, `counts[i]` bytes), into `digests` (32 bytes each,
/// in order), as `sm_sha256` from `start` would give them: two at a time where the CPU has SHA-NI.
void sm_sha256_many(
    const SMSHA256Start *_Nonnull start, size_t count, const void *_Nullable const *_Nonnull messages, const size_t *_Nonnull counts,
    uint8_t *_Nonnull digests);

/// `sm_sha256` with the portable compression function whatever the CPU has (tests compare the two).
void sm_sha256_portable(const SMSHA256Start *_Nonnull start, const void *_Nullable bytes, size_t count, uint8_t *_Nonnull digest);

/// 1 when this CPU has the SHA extensions (and SSSE3, SSE4.1) the fast path uses.
int sm_sha256_accelerated(void);
