/*
 * NAME
 *	crit_tsan - Criterion, or a stand-in for it under ThreadSanitizer
 * SYNOPSIS
 *	#include "tests/sched/crit_tsan.h"
 * DESCRIPTION
 *	Criterion cannot start under ThreadSanitizer here: its sandbox maps an
 *	"inheritable arena" at a random fixed address between 0x2000'0000'0000
 *	and 0x6000'0000'0000, and TSan has reserved nearly all of that range
 *	for its shadow and guard regions, so criterion_initialize() aborts
 *	with "Could not initialize inheritable arena" before any test runs
 *	(Snaipe/Criterion#274; with gcc and clang alike).
 *
 *	So in a TSan build this header supplies the small part of Criterion
 *	the sched tests use: Test() with .timeout and .signal, the cr_assert
 *	family, cr_log_info, and a main() that runs each test in a forked
 *	child, as Criterion does, and accepts (and ignores) Criterion's
 *	command-line options such as --jobs.  The test bodies are the same in
 *	every build.  In other builds this is just <criterion/criterion.h>.
 */
#ifndef SLUICE_TESTS_SCHED_CRIT_TSAN_H
#define SLUICE_TESTS_SCHED_CRIT_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#if !UNDER_TSAN
#include <criterion/criterion.h>
#else

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* cr_assert(x) passes "" as the format when there is no message. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

struct crt_opts {
    int unused; /* so that an empty option list still initialises */
    unsigned timeout;
    int signal;
};

struct crt_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct crt_opts opts;
};

#define CRT_MAX 128
static struct crt_test crt_tests[CRT_MAX];
static unsigned crt_ntests;

static void crt_register(const char *suite, const char *name, void (*fn)(void), struct crt_opts o)
{
    if (crt_ntests == CRT_MAX)
        abort();
    crt_tests[crt_ntests++] = (struct crt_test){suite, name, fn, o};
}

#define Test(suite, name, ...)                                                                     \
    static void suite##_##name(void);                                                              \
    __attribute__((constructor)) static void suite##_##name##_register(void)                       \
    {                                                                                              \
        crt_register(#suite, #name, suite##_##name, (struct crt_opts){.unused = 0, __VA_ARGS__});  \
    }                                                                                              \
    static void suite##_##name(void)

__attribute__((format(printf, 4, 5), noreturn)) static void
crt_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[FAIL] %s:%d: %s", file, line, expr);
    if (fmt[0] != '\0') {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    exit(1);
}

#define cr_assert(cond, ...)                                                                       \
    ((cond) ? (void)0 : crt_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__))
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_log_info(...) (fprintf(stderr, "[----] " __VA_ARGS__), fputc('\n', stderr))

static int crt_run(const struct crt_test *t)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm(t->opts.timeout ? t->opts.timeout : 60);
        t->fn();
        exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (t->opts.signal != 0)
        return !(WIFSIGNALED(st) && WTERMSIG(st) == t->opts.signal);
    return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv; /* Criterion's options (--jobs 1, ...) do not apply */
    unsigned failed = 0;
    for (unsigned i = 0; i < crt_ntests; i++) {
        const struct crt_test *t = &crt_tests[i];
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        int bad = crt_run(t);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        fprintf(stderr, "[%s] %s::%s: (%.2fs)\n", bad ? "FAIL" : "PASS", t->suite, t->name, s);
        failed += (unsigned)bad;
    }
    fprintf(stderr, "[====] Synthesis: Tested: %u | Passing: %u | Failing: %u\n", crt_ntests,
            crt_ntests - failed, failed);
    return failed != 0;
}

#endif /* UNDER_TSAN */
#endif
