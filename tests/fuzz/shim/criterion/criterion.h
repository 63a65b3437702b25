/*
 * NAME
 *	criterion.h (fuzz shim) - the unit-test harnesses' asserts as aborts
 * DESCRIPTION
 *	The fuzz harnesses reuse test headers written for Criterion (such
 *	as tests/core/smtpd/test_smtp_harness.h).  Outside a Criterion test
 *	a failed assertion must abort, so that libFuzzer (or the replay
 *	program) reports it with its input: this directory comes first on
 *	the include path of the fuzz programs only.
 */
#ifndef SLUICE_FUZZ_CRITERION_SHIM_H
#define SLUICE_FUZZ_CRITERION_SHIM_H

#include <stdio.h>
#include <stdlib.h>

#define cr_assert(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#define cr_assert_not(c, ...) cr_assert(!(c))
#define cr_assert_null(p, ...) cr_assert((p) == NULL)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b))
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b))
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b))
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b))
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b))
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b))

#endif
