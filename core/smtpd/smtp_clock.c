/*
 * NAME
 *	smtp_clock - the clock of the SMTP sessions
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	uint64_t smtp_now_ms(void);
 *
 *	#ifdef SLUICE_TEST_HOOKS
 *	void smtp_set_test_clock(uint64_t now_ms);
 *	#endif
 * DESCRIPTION
 *	smtp_now_ms() is CLOCK_MONOTONIC_COARSE in milliseconds: the idle
 *	and data-rate timers, the AUTH failure window.
 *
 *	smtp_set_test_clock() exists only where SLUICE_TEST_HOOKS is defined:
 *	the unit tests (tests/CMakeLists.txt) link their own build of this
 *	file ahead of the libraries, so the library's member, which has no
 *	hook, is never pulled in there.  Its clock replaces the real one
 *	until it is set to 0 again.
 */
#include <stdint.h>

#include "core/base/clock.h"
#include "core/smtpd/smtp.h"
#include "core/smtpd/smtp_int.h"

#ifdef SLUICE_TEST_HOOKS
#include <stdatomic.h>

/* Relaxed is enough: a test sets it on the thread that then runs the
 * sessions, nothing is published through it. */
static _Atomic uint64_t smtp_test_now;

void smtp_set_test_clock(uint64_t now_ms)
{
    atomic_store_explicit(&smtp_test_now, now_ms, memory_order_relaxed);
}

uint64_t smtp_now_ms(void)
{
    uint64_t t = atomic_load_explicit(&smtp_test_now, memory_order_relaxed);
    return t != 0 ? t : clock_coarse_ms();
}

#else

uint64_t smtp_now_ms(void)
{
    return clock_coarse_ms();
}

#endif
