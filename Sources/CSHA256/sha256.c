// SHA-256 (FIPS 180-4): a portable compression function and, on x86-64 with the SHA extensions, one
// that runs one or two messages with SHA-NI. See include/CSHA256.h.
#include "CSHA256.h"

#include <string.h>

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// MARK: Portable

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void blocks_portable(uint32_t h[8], const uint8_t *p, size_t blocks) {
    for (; blocks > 0; blocks--, p += 64) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
            uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
    }
}

// MARK: SHA-NI

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))

// The state as SHA-NI holds it: ABEF and CDGH.
SHANI static inline void ni_load(const uint32_t h[8], __m128i *abef, __m128i *cdgh) {
    __m128i dcba = _mm_loadu_si128((const __m128i *)h), hgfe = _mm_loadu_si128((const __m128i *)(h + 4));
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1), efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    *abef = _mm_alignr_epi8(cdab, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

SHANI static inline void ni_store(uint32_t h[8], __m128i abef, __m128i cdgh) {
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B), dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(dchg, feba, 8));
}

#define BYTE_SWAP _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)

// Rounds 4g..4g+3 with message words `w` (W[4g..4g+3]).
#define ROUNDS(abef, cdgh, w, g)                                                                 \
    do {                                                                                         \
        __m128i m_ = _mm_add_epi32((w), _mm_load_si128((const __m128i *)&K[4 * (g)]));           \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m_);                                            \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m_, 0x0E));                   \
    } while (0)

// W[4g..4g+3] from the four groups before it, in the ring `w` (group g lives in w[g % 4]):
// W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16].
#define SCHEDULE(w, g)                                                                                                     \
    (w)[(g) & 3] = _mm_sha256msg2_epu32(                                                                                   \
        _mm_add_epi32(_mm_sha256msg1_epu32((w)[(g) & 3], (w)[((g) + 1) & 3]), _mm_alignr_epi8((w)[((g) + 3) & 3], (w)[((g) + 2) & 3], 4)), \
        (w)[((g) + 3) & 3])

SHANI static void blocks_ni(uint32_t h[8], const uint8_t *p, size_t blocks) {
    __m128i abef, cdgh;
    ni_load(h, &abef, &cdgh);
    for (; blocks > 0; blocks--, p += 64) {
        __m128i abef0 = abef, cdgh0 = cdgh, w[4];
        for (int i = 0; i < 4; i++) w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), BYTE_SWAP);
#pragma clang loop unroll(full)
        for (int g = 0; g < 16; g++) {
            if (g >= 4) SCHEDULE(w, g);
            ROUNDS(abef, cdgh, w[g & 3], g);
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    ni_store(h, abef, cdgh);
}

// Two messages' blocks in one loop: their rounds are independent, so each fills the other's waits.
SHANI static void blocks_ni_pair(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb, size_t blocks) {
    __m128i aAbef, aCdgh, bAbef, bCdgh;
    ni_load(ha, &aAbef, &aCdgh);
    ni_load(hb, &bAbef, &bCdgh);
    for (; blocks > 0; blocks--, pa += 64, pb += 64) {
        __m128i aAbef0 = aAbef, aCdgh0 = aCdgh, bAbef0 = bAbef, bCdgh0 = bCdgh, wa[4], wb[4];
        for (int i = 0; i < 4; i++) {
            wa[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * i)), BYTE_SWAP);
            wb[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * i)), BYTE_SWAP);
        }
#pragma clang loop unroll(full)
        for (int g = 0; g < 16; g++) {
            if (g >= 4) {
                SCHEDULE(wa, g);
                SCHEDULE(wb, g);
            }
            ROUNDS(aAbef, aCdgh, wa[g & 3], g);
            ROUNDS(bAbef, bCdgh, wb[g & 3], g);
        }
        aAbef = _mm_add_epi32(aAbef, aAbef0);
        aCdgh = _mm_add_epi32(aCdgh, aCdgh0);
        bAbef = _mm_add_epi32(bAbef, bAbef0);
        bCdgh = _mm_add_epi32(bCdgh, bCdgh0);
    }
    ni_store(ha, aAbef, aCdgh);
    ni_store(hb, bAbef, bCdgh);
}

static int detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & bit_SHA) != 0;
}

int sm_sha256_accelerated(void) {
    // cpuid traps to the hypervisor in a VM (microseconds): asked once. -1: not asked yet.
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        v = detect();
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}

static void blocks(uint32_t h[8], const uint8_t *p, size_t n) {
    if (sm_sha256_accelerated()) blocks_ni(h, p, n);
    else blocks_portable(h, p, n);
}

static void blocks_pair(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb, size_t n) {
    if (sm_sha256_accelerated()) {
        blocks_ni_pair(ha, pa, hb, pb, n);
    } else {
        blocks_portable(ha, pa, n);
        blocks_portable(hb, pb, n);
    }
}
#else
int sm_sha256_accelerated(void) { return 0; }

static void blocks(uint32_t h[8], const uint8_t *p, size_t n) { blocks_portable(h, p, n); }

static void blocks_pair(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb, size_t n) {
    blocks_portable(ha, pa, n);
    blocks_portable(hb, pb, n);
}
#endif

// MARK: Messages

typedef void (*Blocks)(uint32_t h[8], const uint8_t *p, size_t n);

SMSHA256Start sm_sha256_start(void) {
    SMSHA256Start s = {{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}, 0};
    return s;
}

SMSHA256Start sm_sha256_absorb(SMSHA256Start start, const uint8_t *block) {
    blocks_portable(start.h, block, 1);
    start.length += 64;
    return start;
}

// The last bytes (fewer than 64) with the padding and the length in bits: one or two blocks.
static void finish(uint32_t h[8], uint64_t total, const uint8_t *tail, size_t count, Blocks run, uint8_t *digest) {
    uint8_t last[128] = {0};
    if (count > 0) memcpy(last, tail, count);
    last[count] = 0x80;
    size_t size = count + 9 <= 64 ? 64 : 128;
    uint64_t bits = total * 8;
    for (int i = 0; i < 8; i++) last[size - 1 - i] = (uint8_t)(bits >> (8 * i));
    run(h, last, size / 64);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)h[i];
    }
}

static void digest_with(Blocks run, const SMSHA256Start *start, const void *bytes, size_t count, uint8_t *digest) {
    uint32_t h[8];
    memcpy(h, start->h, sizeof h);
    const uint8_t *p = bytes ? bytes : (const uint8_t *)"";  // no arithmetic on NULL (an empty message)
    size_t whole = count / 64;
    if (whole > 0) run(h, p, whole);
    finish(h, start->length + count, p + whole * 64, count % 64, run, digest);
}

void sm_sha256(const SMSHA256Start *start, const void *bytes, size_t count, uint8_t *digest) {
    digest_with(blocks, start, bytes, count, digest);
}

void sm_sha256_portable(const SMSHA256Start *start, const void *bytes, size_t count, uint8_t *digest) {
    digest_with(blocks_portable, start, bytes, count, digest);
}

void sm_sha256_many(const SMSHA256Start *start, size_t count, const void *const *messages, const size_t *counts, uint8_t *digests) {
    // Two lanes, each hashing one message at a time; a lane whose message is done takes the next, so
    // both run together until the last message (an unequal pair would leave the longer one's rest alone).
    // Up to 64 messages are taken longest first, which leaves the least to the last one alone (a
    // restore's runs of a few chunks of 0.25-4 MiB); beyond that, in order (the tail is then a small
    // part of the whole).
    size_t order[64];
    size_t sorted = count <= 64 ? count : 0;
    for (size_t i = 0; i < sorted; i++) {  // insertion sort, longest first
        size_t j = i;
        for (; j > 0 && counts[order[j - 1]] < counts[i]; j--) order[j] = order[j - 1];
        order[j] = i;
    }
    struct {
        size_t message;
        const uint8_t *p;
        size_t blocks;  // whole blocks left
        uint32_t h[8];
    } lane[2];
    size_t next = 0;
    int active = 0;  // lanes in use: lane[0..<active]
    for (;;) {
        while (active < 2 && next < count) {  // fill the free lanes
            size_t m = next < sorted ? order[next] : next;
            lane[active].message = m;
            lane[active].p = messages[m] ? messages[m] : (const uint8_t *)"";  // no arithmetic on NULL
            lane[active].blocks = counts[m] / 64;
            memcpy(lane[active].h, start->h, sizeof lane[active].h);
            active++, next++;
        }
        if (active == 0) return;
        if (active == 2) {
            size_t both = lane[0].blocks < lane[1].blocks ? lane[0].blocks : lane[1].blocks;
            if (both > 0) blocks_pair(lane[0].h, lane[0].p, lane[1].h, lane[1].p, both);
            for (int l = 0; l < 2; l++) lane[l].p += both * 64, lane[l].blocks -= both;
        } else {  // the last message, alone
            blocks(lane[0].h, lane[0].p, lane[0].blocks);
            lane[0].p += lane[0].blocks * 64, lane[0].blocks = 0;
        }
        for (int l = active - 1; l >= 0; l--) {  // finish the lanes whose whole blocks are done
            if (lane[l].blocks > 0) continue;
            size_t m = lane[l].message;
            finish(lane[l].h, start->length + counts[m], lane[l].p, counts[m] % 64, blocks, digests + 32 * m);
            if (l == 0 && active == 2) lane[0] = lane[1];
            active--;
        }
    }
}
