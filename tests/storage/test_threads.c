/*
 * NAME
 *	test_threads - the accounting and shared descriptors across threads
 * DESCRIPTION
 *	Two ingest writers (their own threads, small segments so they rotate
 *	often) hand every durable message to a queue-manager thread through
 *	the durable hook; that thread reads each message whole, removes it on
 *	its own writer, syncs (reclaim runs there) and frees it, while the
 *	ingest threads keep committing.  At the end nothing is live and only
 *	the writers' last segments remain.  Meant for ThreadSanitizer as well
 *	(build-*-tsan); bounded in count.
 */
#include <pthread.h>

#include "storage/writer_int.h"
#include "test_qm.h"

#define PER_WRITER 400
#define NWRITERS 2

static char *tmp, *dir;
static struct spool *sp;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct spool_msg *queue[NWRITERS * PER_WRITER];
static size_t qhead, qtail;

static void hook(void *arg, struct spool_msg *m)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    queue[qtail++] = m;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void *ingest(void *arg)
{
    unsigned worker = (unsigned)(uintptr_t)arg;
    struct spool_writer *w;
    cr_assert_eq(spool_writer_create(sp, worker, &w), 0);
    static _Thread_local char body[3000];
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    for (int i = 0; i < PER_WRITER; i++) {
        size_t len = 100 + (size_t)(i * 37) % 2800;
        memset(body, 'a' + i % 26, len);
        memcpy(body, "Subject: t\r\n\r\n", 14);
        struct spool_txn *t = spool_txn_begin(w, &env);
        struct iovec v = {body, len};
        if (i % 3 == 0) {
            struct spool_edit e = {SPOOL_EDIT_ADD, "X-Worker", "yes"};
            cr_assert_eq(spool_txn_set_edits(t, &e, 1), 0);
        }
        cr_assert_eq(spool_txn_commit(t, &v, 1, tu_done_cb, &d), 0);
        if (i % 4 == 3)
            tu_sync(w);
    }
    tu_sync(w);
    spool_writer_destroy(w);
    return NULL;
}

static void *qmgr(void *arg)
{
    (void)arg;
    struct spool_writer *q;
    cr_assert_eq(spool_writer_create(sp, 9, &q), 0);
    char *buf = malloc(8192);
    for (size_t done = 0; done < NWRITERS * PER_WRITER; done++) {
        pthread_mutex_lock(&mu);
        while (qhead == qtail)
            pthread_cond_wait(&cv, &mu);
        struct spool_msg *m = queue[qhead++];
        pthread_mutex_unlock(&mu);
        uint64_t n = spool_msg_size(m);
        cr_assert_leq(n, 8192);
        cr_assert_eq(spool_msg_read(m, 0, buf, (size_t)n), 0);
        bool edited = n >= 15 && memcmp(buf, "X-Worker: yes\r\n", 15) == 0;
        cr_assert_eq(memcmp(buf + (edited ? 15 : 0), "Subject: t\r\n\r\n", 14), 0);
        struct spool_state s = {SPOOL_ST_DELIVERED, 0, 1, 0, "250", 0, NULL};
        cr_assert_eq(spool_writer_state(q, spool_msg_info(m)->id, &s), 0);
        cr_assert_eq(spool_writer_remove(q, spool_msg_info(m)->id), 0);
        if (done % 5 == 4)
            tu_sync(q);
        spool_msg_free(m);
    }
    tu_sync(q);
    free(buf);
    spool_writer_destroy(q);
    return NULL;
}

Test(threads, ingest_read_remove_reclaim)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    spool_set_segment_size(sp, 32768);
    spool_set_durable(sp, hook, NULL);
    pthread_t t[NWRITERS + 1];
    cr_assert_eq(pthread_create(&t[0], NULL, qmgr, NULL), 0);
    for (int i = 0; i < NWRITERS; i++)
        cr_assert_eq(pthread_create(&t[i + 1], NULL, ingest, (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i <= NWRITERS; i++)
        pthread_join(t[i], NULL);
    struct spool_usage u;
    spool_usage(sp, &u);
    cr_assert_eq(u.live_messages, 0);
    cr_assert_eq(u.live_bytes, 0);
    cr_assert_gt(u.unlinked, 20, "segments came and went: %llu", (unsigned long long)u.unlinked);
    cr_assert_eq(u.segments, tq_nsegs(dir));
    spool_close(sp);
    struct spool_scan_report rep;
    cr_assert_eq(spool_open(dir, NULL, NULL, &rep, &sp), 0);
    cr_assert_eq(rep.live, 0);
    cr_assert_eq(tq_nsegs(dir), 0, "nothing needed: all gone at start");
    spool_close(sp);
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}
