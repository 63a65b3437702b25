/*
 * NAME
 *	fuzz - what the libFuzzer harnesses share
 * SYNOPSIS
 *	#include "tests/fuzz/fuzz.h"
 *
 *	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
 *	{
 *		FUZZ_CHECK(invariant, "what broke: %zu", n);
 *		return 0;
 *	}
 * DESCRIPTION
 *	Every tests/fuzz/fuzz_<target>.c defines LLVMFuzzerTestOneInput (and
 *	may define LLVMFuzzerInitialize).  The same file is built twice: as a
 *	libFuzzer target (clang, -DSLUICE_FUZZ=ON, build-fuzz/) and, linked
 *	with replay.c, as a plain program the unit tests run over the
 *	committed corpus and regression inputs (any compiler).
 *
 *	FUZZ_CHECK is an invariant: a failure prints the reason and aborts,
 *	which libFuzzer records as a crash with the input that caused it.
 *
 *	fuzz_take() hands out the input front to back: a harness reads the
 *	few control octets it wants (split points, modes) and then the rest.
 */
#ifndef SLUICE_TESTS_FUZZ_H
#define SLUICE_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

/* One octet from the front (0 when the input is used up). */
static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* Up to n octets from the front; *got says how many. */
static inline const uint8_t *fuzz_take(struct fuzz_in *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;
    *got = n < in->n ? n : in->n;
    in->p += *got;
    in->n -= *got;
    return p;
}

/* A malloc'd NUL-terminated copy of p[0..n). */
static inline char *fuzz_str(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        s[i] = (char)p[i];
    s[n] = '\0';
    return s;
}

#endif
