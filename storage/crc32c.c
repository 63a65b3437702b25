/*
 * NAME
 *	crc32c - CRC-32C (Castagnoli) for spool records
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n);
 *	uint32_t spool_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
 * DESCRIPTION
 *	spool_crc32c() continues crc over n more octets (start with 0):
 *	crc32c(crc32c(0, A), B) == crc32c(0, A||B).  It uses the SSE4.2
 *	crc32 instruction when the CPU has it (checked once) and a
 *	slicing-by-8 table otherwise; spool_crc32c_sw() and _hw() force one
 *	path (for the tests).
 *
 *	spool_crc32c_combine() computes crc32c(A||B) from crc32c(A),
 *	crc32c(B) and the length of B without touching the data (zlib's
 *	method: multiply crc(A) by x^(8*len(B)) modulo the polynomial).  The
 *	writer uses it to fold each DATA record's payload crc into the body
 *	crc that COMMIT carries, so the body is read once.
 * DIAGNOSTICS
 *	None.
 */
#include "storage/spool_int.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define SPOOL_CRC_X86 1
#endif

#define CRC32C_POLY 0x82f63b78u /* reflected 0x1EDC6F41 */

static uint32_t crc_tab[8][256];
static uint32_t crc_x2n[32]; /* x^(2^k) mod P */
static bool crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* a * b modulo P, both reflected; a must be non-zero. */
static uint32_t crc_multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

/* x^(n * 2^k) modulo P. */
static uint32_t crc_x2nmodp(uint64_t n, unsigned k)
{
    uint32_t p = 1u << 31; /* x^0 */
    while (n) {
        if (n & 1)
            p = crc_multmodp(crc_x2n[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_tab[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_tab[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc_tab[0][c & 0xff] ^ (c >> 8);
            crc_tab[k][n] = c;
        }
    }
    uint32_t p = 1u << 30; /* x^1 */
    crc_x2n[0] = p;
    for (int n = 1; n < 32; n++)
        crc_x2n[n] = p = crc_multmodp(p, p);
#ifdef SPOOL_CRC_X86
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline void crc_ready(void)
{
    pthread_once(&crc_once, crc_init);
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo = c ^ spool_get32(p);
        uint32_t hi = spool_get32(p + 4);
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
            crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
            crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#ifdef SPOOL_CRC_X86
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const unsigned char *p,
                                                            size_t n)
{
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8(c, *p++);
        n--;
    }
#ifdef __x86_64__
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
#endif
    while (n >= 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        c = _mm_crc32_u32(c, v);
        p += 4;
        n -= 4;
    }
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return ~c;
}
#endif

uint32_t spool_crc32c_sw(uint32_t crc, const void *p, size_t n)
{
    crc_ready();
    return crc_sw(crc, p, n);
}

bool spool_crc32c_hw_ok(void)
{
    crc_ready();
    return crc_hw;
}

uint32_t spool_crc32c_hw(uint32_t crc, const void *p, size_t n)
{
    crc_ready();
#ifdef SPOOL_CRC_X86
    if (crc_hw)
        return crc_sse42(crc, p, n);
#endif
    return crc_sw(crc, p, n);
}

uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n)
{
    return spool_crc32c_hw(crc, p, n);
}

uint32_t spool_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    crc_ready();
    if (len_b == 0)
        return crc_a;
    return crc_multmodp(crc_x2nmodp(len_b, 3), crc_a) ^ crc_b;
}
