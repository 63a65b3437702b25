/*
 * NAME
 *	test_stats - per-binding counters, latency histogram, the printout
 */
#include "tests/sinks/sink_test.h"

Test(stats, buckets)
{
    cr_assert_eq(sink_stats_bucket(0), 0);
    cr_assert_eq(sink_stats_bucket(999), 0, "< 1 us");
    cr_assert_eq(sink_stats_bucket(1000), 1, "[1, 2) us");
    cr_assert_eq(sink_stats_bucket(1999), 1);
    cr_assert_eq(sink_stats_bucket(2000), 2);
    cr_assert_eq(sink_stats_bucket(3999), 2);
    cr_assert_eq(sink_stats_bucket(4000), 3);
    cr_assert_eq(sink_stats_bucket((UINT64_C(1) << 19) * 1000), 20, "[2^19, 2^20) us");
    cr_assert_eq(sink_stats_bucket((UINT64_C(1) << 20) * 1000), 21, ">= 2^20 us");
    cr_assert_eq(sink_stats_bucket(UINT64_MAX), 21);
}

Test(stats, quantiles)
{
    struct sink_stats *st = sink_stats_new();
    cr_assert_eq((uintptr_t)st % SCHED_CACHELINE, 0);
    cr_assert_eq(sink_stats_quantile_us(st, 0.5), 0, "empty");
    for (int i = 0; i < 98; i++)
        sink_stats_latency(st, 500);              /* < 1 us */
    sink_stats_latency(st, 3000);                 /* [2, 4) us */
    sink_stats_latency(st, UINT64_C(5000000000)); /* 5 s: >= 2^20 us */
    cr_assert_eq(sink_stats_quantile_us(st, 0.5), 1, "p50 < 1 us");
    cr_assert_eq(sink_stats_quantile_us(st, 0.98), 1);
    cr_assert_eq(sink_stats_quantile_us(st, 0.99), 4, "p99 < 4 us");
    cr_assert_eq(sink_stats_quantile_us(st, 1.0), UINT64_MAX, "the open bucket");
    sink_stats_free(st);
}

Test(stats, counts_and_printout)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding ok { event = mail; sink = \"builtin:script\"; priority = 1;"
                  " properties { tag = ok; } }\n"
                  "binding picky { event = mail; sink = \"builtin:script\"; priority = 2;"
                  " rule = \"MAIL FROM=*@bad.example\"; properties { verdict = reject; } }\n"
                  "binding off { event = mail; sink = \"builtin:script\"; enabled = false; }\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    for (int i = 0; i < 10; i++) {
        d.sender = i < 3 ? "x@bad.example" : "x@good.example";
        sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res);
    }
    struct sink_stats *ok = st_binding(e, "ok")->stats, *picky = st_binding(e, "picky")->stats;
    cr_assert_eq(st_stat(&ok->calls), 10);
    cr_assert_eq(st_stat(&ok->verdicts[SINK_CONTINUE]), 10);
    cr_assert_eq(st_stat(&picky->calls), 3);
    cr_assert_eq(st_stat(&picky->skipped), 7);
    cr_assert_eq(st_stat(&picky->verdicts[SINK_REJECT]), 3);
    uint64_t h = 0;
    for (int i = 0; i < SINK_HIST_BUCKETS; i++)
        h += st_stat(&ok->hist[i]);
    cr_assert_eq(h, 10, "one latency per call");

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    sink_engine_print_stats(e, f);
    fclose(f);
    cr_log_info("%s", out);
    cr_assert_not_null(strstr(out, "binding"));
    cr_assert_not_null(strstr(out, "p99"));
    char *line = strstr(out, "\npicky");
    cr_assert_not_null(line, "%s", out);
    unsigned long long calls, skipped, cont, cons, rej;
    cr_assert_eq(
        sscanf(line, "\npicky mail %llu %llu %llu %llu %llu", &calls, &skipped, &cont, &cons, &rej),
        5, "%s", line);
    cr_assert_eq(calls, 3);
    cr_assert_eq(skipped, 7);
    cr_assert_eq(rej, 3);
    cr_assert_not_null(strstr(out, "(disabled)"));
    free(out);
    st_rig_fini(&r, e);
}
