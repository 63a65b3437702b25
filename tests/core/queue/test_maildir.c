/*
 * NAME
 *	test_maildir - local delivery into Maildir: names, content, failures
 */
#include <criterion/criterion.h>

#include "core/queue/maildir.h"
#include "test_spoolmsg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static struct tsm spool;
static char base[64];  /* a fresh temporary directory */
static char root[128]; /* base/mail: not there yet */
static char err[1024];

static void setup(void)
{
    tsm_open(&spool);
    snprintf(base, sizeof(base), "/tmp/sluice-maildir-XXXXXX");
    cr_assert_not_null(mkdtemp(base));
    snprintf(root, sizeof(root), "%s/mail", base);
}

static void teardown(void)
{
    tsm_close(&spool);
    chmod(base, 0700);
    tsm_rmrf(base);
}

TestSuite(maildir, .init = setup, .fini = teardown);

/* Entries of dir other than . and .. (-1 if it cannot be opened). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int count_in(const char *user, const char *sub)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s/%s", root, user, sub);
    return count_entries(p);
}

/* The whole file; *len its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
        cr_assert_not_null(buf);
    }
    fclose(f);
    *len = n;
    return buf;
}

/* s with every CRLF turned into LF (what the file should hold). */
static char *lf(const char *s, size_t len, size_t *out)
{
    char *r = malloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (!(s[i] == '\r' && i + 1 < len && s[i + 1] == '\n'))
            r[n++] = s[i];
    *out = n;
    return r;
}

static void deliver_ok(const char *rcpt, const char *sender, const struct spool_msg *m, char *path,
                       size_t pathlen)
{
    err[0] = '\0';
    int r =
        maildir_deliver(root, "mx.sluice.test", rcpt, sender, m, path, pathlen, err, sizeof(err));
    cr_assert_eq(r, 0, "maildir_deliver %s: %d %s", rcpt, r, err);
}

static void expect_file(const char *path, const char *head, const char *body, size_t blen)
{
    size_t len, want_len;
    char *got = slurp(path, &len);
    char *want_body = lf(body, blen, &want_len);
    size_t hl = strlen(head);
    cr_assert_eq(len, hl + want_len, "size %zu, want %zu", len, hl + want_len);
    cr_assert_eq(memcmp(got, head, hl), 0, "head: %.*s", (int)(len < 200 ? len : 200), got);
    cr_assert_eq(memcmp(got + hl, want_body, want_len), 0, "body differs");
    free(got);
    free(want_body);
}

Test(maildir, user_names)
{
    char u[64];
    static const struct {
        const char *rcpt, *user;
    } ok[] = {
        {"Alice@Example.Test", "alice"},
        {"bob+lists@example.test", "bob"},
        {"bob+a+b@example.test", "bob"},
        {"postmaster", "postmaster"},
        {"\"John.Doe\"@example.test", "john.doe"},
        {"\"j\\\"q\"@example.test", "j\"q"},
        {"\"carol+x\"@example.test", "carol"},
        {"a@b@example.test", "a@b"}, /* the last '@' splits */
        {"first.last@example.test", "first.last"},
        {"J\xc3\xbcrgen@example.test", "j\xc3\xbcrgen"}, /* 8-bit octets kept */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(maildir_user(ok[i].rcpt, u, sizeof(u)), 0, "%s", ok[i].rcpt);
        cr_assert_str_eq(u, ok[i].user, "%s", ok[i].rcpt);
    }
    static const char *const bad[] = {
        "@example.test",        "",
        ".@example.test",       "..@example.test",
        ".hidden@example.test", "+x@example.test",
        "a/b@example.test",     "../x@example.test",
        "a\x01@example.test",   "a\x7f@example.test",
        "\"\"@example.test",    "\"..\"@example.test",
        "\"a/b\"@example.test", "\"\t\"@example.test",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(maildir_user(bad[i], u, sizeof(u)), -EINVAL, "accepted \"%s\" as %s", bad[i],
                     u);
    /* too long for the buffer: refused, not cut */
    cr_assert_eq(maildir_user("abcdefgh@example.test", u, 8), -EINVAL);
    cr_assert_eq(maildir_user("abcdefg@example.test", u, 8), 0);
}

Test(maildir, delivers_into_new)
{
    static const char body[] = "Received: from client.test\r\n"
                               "Subject: hello\r\n"
                               "\r\n"
                               "line one\r\n"
                               "bare\rcr stays\r\n"
                               ".dot line\r\n"
                               "last\r\n";
    size_t len = sizeof(body) - 1;
    /* cut right after a CR (the LF comes in the next piece) and elsewhere */
    const char *cr = strstr(body, "line one\r") + 8;
    size_t cuts[] = {10, (size_t)(cr - body + 1), len - 3};
    struct spool_msg *m = tsm_message(&spool, "sender@example.test", "User+tag@Example.Test", body,
                                      len, cuts, 3, NULL, 0);
    cr_assert_eq(spool_msg_size(m), len);
    char path[1024];
    deliver_ok("User+tag@Example.Test", "sender@example.test", m, path, sizeof(path));

    char newdir[256];
    snprintf(newdir, sizeof(newdir), "%s/user/new/", root);
    cr_assert_eq(strncmp(path, newdir, strlen(newdir)), 0, "path %s", path);
    /* time.M<usec>P<pid>Q<n>.host */
    char pid[32];
    snprintf(pid, sizeof(pid), "P%ld", (long)getpid());
    const char *name = path + strlen(newdir);
    cr_assert(strstr(name, ".M") != NULL && strstr(name, pid) != NULL &&
                  strstr(name, "Q") != NULL && strstr(name, ".mx.sluice.test") != NULL,
              "name %s", name);

    expect_file(path, "Return-Path: <sender@example.test>\nDelivered-To: User+tag@Example.Test\n",
                body, len);
    cr_assert_eq(count_in("user", "new"), 1);
    cr_assert_eq(count_in("user", "tmp"), 0, "something left in tmp/");
    cr_assert_eq(count_in("user", "cur"), 0);
    static const char *const subs[] = {"", "/user", "/user/new", "/user/cur", "/user/tmp"};
    for (size_t i = 0; i < 5; i++) {
        char p[512];
        struct stat st;
        snprintf(p, sizeof(p), "%s%s", root, subs[i]);
        cr_assert_eq(stat(p, &st), 0, "%s", p);
        cr_assert(S_ISDIR(st.st_mode));
        cr_assert_eq(st.st_mode & 0777, 0700, "%s mode %o", p, st.st_mode & 0777);
    }
    spool_msg_free(m);
}

Test(maildir, per_user_and_unique)
{
    static const char body[] = "Subject: x\r\n\r\nhi\r\n";
    struct spool_msg *m =
        tsm_message(&spool, "", "a@example.test", body, sizeof(body) - 1, NULL, 0, NULL, 0);
    char p1[1024], p2[1024], p3[1024];
    deliver_ok("a@example.test", "", m, p1, sizeof(p1));
    deliver_ok("A+other@example.test", "", m, p2, sizeof(p2));
    deliver_ok("b@example.test", "", m, p3, sizeof(p3));
    cr_assert_str_neq(p1, p2, "two deliveries, one name");
    cr_assert_eq(count_in("a", "new"), 2);
    cr_assert_eq(count_in("b", "new"), 1);
    cr_assert_eq(count_entries(root), 2);
    expect_file(p3, "Return-Path: <>\nDelivered-To: b@example.test\n", body, sizeof(body) - 1);
    /* path may be NULL */
    err[0] = '\0';
    cr_assert_eq(maildir_deliver(root, "h", "b@example.test", "", m, NULL, 0, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(count_in("b", "new"), 2);
    spool_msg_free(m);
}

Test(maildir, large_message_streams)
{
    /* 300 KiB of lines: several 64 KiB reads, CRLF pairs across the edges */
    size_t len = 300 * 1024;
    char *body = malloc(len);
    static const char head[] = "Subject: big\r\n\r\n";
    memcpy(body, head, sizeof(head) - 1);
    for (size_t i = sizeof(head) - 1; i < len; i++)
        body[i] = (i % 61 == 59) ? '\r' : (i % 61 == 60) ? '\n' : (char)('a' + i % 26);
    body[len - 2] = '\r';
    body[len - 1] = '\n';
    size_t cuts[] = {65535, 65536 + 7, 200000};
    struct spool_msg *m =
        tsm_message(&spool, "s@x.test", "big@x.test", body, len, cuts, 3, NULL, 0);
    const struct spool_piece *v;
    size_t np = spool_msg_pieces(m, &v), files = 0;
    for (size_t i = 0; i < np; i++)
        files += v[i].fd >= 0;
    cr_assert_gt(files, 0, "no file piece: the pread path goes untested");
    char path[1024];
    deliver_ok("big@x.test", "s@x.test", m, path, sizeof(path));
    expect_file(path, "Return-Path: <s@x.test>\nDelivered-To: big@x.test\n", body, len);
    spool_msg_free(m);
    free(body);
}

Test(maildir, header_edits_show)
{
    static const char body[] = "Received: from client.test by mx\r\n"
                               "Subject: original\r\n"
                               "X-Drop: secret\r\n"
                               "\r\n"
                               "text\r\n";
    struct spool_edit edits[] = {
        {.op = SPOOL_EDIT_ADD, .name = "X-Added", .value = "yes"},
        {.op = SPOOL_EDIT_REMOVE, .name = "x-drop", .value = NULL},
        {.op = SPOOL_EDIT_CHANGE, .name = "Subject", .value = "[tagged] original"},
    };
    struct spool_msg *m =
        tsm_message(&spool, "s@x.test", "e@x.test", body, sizeof(body) - 1, NULL, 0, edits, 3);
    char path[1024];
    deliver_ok("e@x.test", "s@x.test", m, path, sizeof(path));
    size_t len;
    char *got = slurp(path, &len);
    got = realloc(got, len + 1);
    got[len] = '\0';
    cr_assert_str_eq(got, "Return-Path: <s@x.test>\n"
                          "Delivered-To: e@x.test\n"
                          "Received: from client.test by mx\n"
                          "X-Added: yes\n"
                          "Subject: [tagged] original\n"
                          "\n"
                          "text\n");
    free(got);
    spool_msg_free(m);
}

Test(maildir, bad_mailbox_is_einval)
{
    static const char body[] = "Subject: x\r\n\r\nhi\r\n";
    struct spool_msg *m =
        tsm_message(&spool, "s@x.test", "x@x.test", body, sizeof(body) - 1, NULL, 0, NULL, 0);
    static const char *const bad[] = {"../etc@x.test", ".x@x.test", "a/b@x.test", "@x.test",
                                      "+x@x.test"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int r = maildir_deliver(root, "h", bad[i], "s@x.test", m, NULL, 0, err, sizeof(err));
        cr_assert_eq(r, -EINVAL, "%s: %d", bad[i], r);
        cr_assert(strstr(err, bad[i]) != NULL, "err \"%s\"", err);
    }
    cr_assert_eq(count_entries(root), -1, "nothing created for a bad name");
    spool_msg_free(m);
}

Test(maildir, unwritable_root)
{
    static const char body[] = "Subject: x\r\n\r\nhi\r\n";
    struct spool_msg *m =
        tsm_message(&spool, "s@x.test", "x@x.test", body, sizeof(body) - 1, NULL, 0, NULL, 0);
    /* a file where the root directory should be: fails for root too */
    int fd = open(root, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    err[0] = '\0';
    int r = maildir_deliver(root, "h", "x@x.test", "s", m, NULL, 0, err, sizeof(err));
    cr_assert_eq(r, -ENOTDIR, "%d %s", r, err);
    cr_assert(strstr(err, root) != NULL, "err \"%s\" names no path", err);
    unlink(root);

    /* a read-only root: EACCES (root bypasses permission bits: skipped) */
    if (geteuid() != 0) {
        cr_assert_eq(mkdir(root, 0500), 0);
        err[0] = '\0';
        r = maildir_deliver(root, "h", "x@x.test", "s", m, NULL, 0, err, sizeof(err));
        cr_assert_eq(r, -EACCES, "%d %s", r, err);
        cr_assert(strstr(err, root) != NULL, "err \"%s\"", err);
        cr_assert_eq(count_entries(root), 0);
        chmod(root, 0700);
    }
    spool_msg_free(m);
}

Test(maildir, write_error_leaves_nothing)
{
    /* a file size limit below the message: write(2) fails with EFBIG
     * (SIGXFSZ ignored), for root as well */
    size_t len = 256 * 1024;
    char *body = malloc(len);
    memset(body, 'x', len);
    memcpy(body, "Subject: y\r\n\r\n", 14);
    struct spool_msg *m =
        tsm_message(&spool, "s@x.test", "full@x.test", body, len, NULL, 0, NULL, 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = 100 * 1024, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    err[0] = '\0';
    int r = maildir_deliver(root, "h", "full@x.test", "s", m, NULL, 0, err, sizeof(err));
    rl.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_FSIZE, &rl);
    cr_assert_eq(r, -EFBIG, "%d %s", r, err);
    cr_assert(strstr(err, "/full/tmp/") != NULL, "err \"%s\"", err);
    cr_assert_eq(count_in("full", "tmp"), 0, "the partial file stays in tmp/");
    cr_assert_eq(count_in("full", "new"), 0);
    spool_msg_free(m);
    free(body);
}

struct par {
    const struct spool_msg *m;
    int fails;
};

static void *par_run(void *arg)
{
    struct par *p = arg;
    char e[512];
    for (int i = 0; i < 25; i++)
        if (maildir_deliver(root, "h", "many@x.test", "s", p->m, NULL, 0, e, sizeof(e)) != 0)
            p->fails++;
    return NULL;
}

Test(maildir, threads_never_collide)
{
    static const char body[] = "Subject: x\r\n\r\nhi\r\n";
    pthread_t th[4];
    struct par p[4];
    struct spool_msg *m[4];
    for (int i = 0; i < 4; i++) /* one message per thread: a spool_msg has one owner */
        m[i] = tsm_message(&spool, "s@x.test", "many@x.test", body, sizeof(body) - 1, NULL, 0, NULL,
                           0);
    for (int i = 0; i < 4; i++) {
        p[i] = (struct par){.m = m[i]};
        cr_assert_eq(pthread_create(&th[i], NULL, par_run, &p[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(p[i].fails, 0);
    }
    cr_assert_eq(count_in("many", "new"), 100);
    cr_assert_eq(count_in("many", "tmp"), 0);
    for (int i = 0; i < 4; i++)
        spool_msg_free(m[i]);
}
