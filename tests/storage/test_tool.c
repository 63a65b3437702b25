/*
 * NAME
 *	test_tool - the sluice-spool command
 * DESCRIPTION
 *	Runs the built binary (<build>/bin/sluice-spool, found next to this
 *	test's own directory); skips when it has not been built.
 */
#include <libgen.h>
#include <limits.h>
#include <sys/wait.h>

#include "storage/spool_int.h"
#include "test_util.h"

static char *tmp, *dir;
static char tool[PATH_MAX];
static char out[65536], err[4096];
static uint64_t id_plain, id_odd;

static void find_tool(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    cr_assert_gt(n, 0);
    self[n] = '\0';
    char *d = dirname(dirname(self));
    snprintf(tool, sizeof(tool), "%s/bin/sluice-spool", d);
    if (access(tool, X_OK) != 0)
        cr_skip_test("%s not built", tool);
}

static void setup(void)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
}

static void teardown(void)
{
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

TestSuite(tool, .init = setup, .fini = teardown);

static size_t drain(int fd, char *buf, size_t cap)
{
    off_t n = lseek(fd, 0, SEEK_END);
    size_t len = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
    cr_assert_eq(pread(fd, buf, len, 0), (ssize_t)len);
    buf[len] = '\0';
    close(fd);
    return len;
}

/* Runs the tool with argv (NULL-terminated, without argv[0]); returns
 * its exit status and leaves its output in out and err. */
static int run(const char *const *args, size_t *outlen)
{
    const char *argv[16] = {tool};
    for (int i = 0; args[i]; i++)
        argv[i + 1] = args[i];
    int o = memfd_create("out", 0), e = memfd_create("err", 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(o, 1);
        dup2(e, 2);
        execv(tool, (char *const *)argv);
        _exit(127);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    size_t n = drain(o, out, sizeof(out));
    if (outlen)
        *outlen = n;
    drain(e, err, sizeof(err));
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void make_spool(void)
{
    struct spool *sp;
    struct spool_writer *w;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 1, &w), 0);
    struct tu_done d = {0};
    struct spool_env env = tu_env(1700000000123); /* 2023-11-14T22:13:20.123Z */
    id_plain = tu_put(w, &env, "Subject: hi\r\n\r\nbody\r\n", 21, &d);
    const char *rcpts[] = {"\"odd\\\\one\"@example.org", "caf\xc3\xa9@example.fr"};
    env.sender = "";
    env.helo = "bad\x01helo\xff";
    env.rcpts = rcpts;
    env.nrcpt = 2;
    id_odd = tu_put(w, &env, "\0\1\2", 3, &d);
    tu_sync(w);
    spool_writer_destroy(w);
    spool_close(sp);
}

Test(tool, list_text)
{
    find_tool();
    make_spool();
    char a[17], b[17], want[512];
    spool_id_str(id_plain, a);
    spool_id_str(id_odd, b);
    cr_assert_eq(run((const char *[]){dir, "list", NULL}, NULL), 0, "%s", err);
    snprintf(want, sizeof(want),
             "%s 2023-11-14T22:13:20.123Z 21 <sender@example.com> <alice@example.org> "
             "<bob@example.net> <carol@example.com>\n"
             "%s 2023-11-14T22:13:20.123Z 3 <> <\"odd\\\\one\"@example.org> "
             "<caf\xc3\xa9@example.fr>\n",
             a, b);
    cr_assert_str_eq(out, want);
}

Test(tool, list_json)
{
    find_tool();
    make_spool();
    char b[17];
    spool_id_str(id_odd, b);
    cr_assert_eq(run((const char *[]){dir, "list", "--json", NULL}, NULL), 0, "%s", err);
    cr_assert_eq(out[0], '[');
    cr_assert(strstr(out, "\"sender\": \"\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"helo\": \"bad\\u0001helo\\ufffd\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"rcpts\": [\"\\\"odd\\\\\\\\one\\\"@example.org\", "
                          "\"caf\xc3\xa9@example.fr\"]") != NULL,
              "%s", out);
    cr_assert(strstr(out, "\"arrival\": \"2023-11-14T22:13:20.123Z\"") != NULL);
    cr_assert(strstr(out, b) != NULL);
    cr_assert(strstr(out, "},\n") != NULL, "objects separated by commas");
    cr_assert(strlen(out) > 4 && strcmp(out + strlen(out) - 4, "}\n]\n") == 0, "%s", out);

    /* an empty spool is an empty array */
    char *empty = tu_join(tmp, "empty");
    mkdir(empty, 0700);
    cr_assert_eq(run((const char *[]){empty, "list", "--json", NULL}, NULL), 0);
    cr_assert_str_eq(out, "[]\n");
    free(empty);
}

Test(tool, cat_writes_the_exact_body)
{
    find_tool();
    make_spool();
    char a[17];
    size_t n;
    spool_id_str(id_odd, a);
    cr_assert_eq(run((const char *[]){dir, "cat", a, NULL}, &n), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(out, "\0\1\2", 3), 0);
    spool_id_str(id_odd + 1, a);
    cr_assert_eq(run((const char *[]){dir, "cat", a, NULL}, NULL), 1);
    cr_assert(strstr(err, "no such live message") != NULL, "%s", err);
    cr_assert_eq(run((const char *[]){dir, "cat", "xyz", NULL}, NULL), 2);
}

Test(tool, verify_and_stats)
{
    find_tool();
    make_spool();
    cr_assert_eq(run((const char *[]){dir, "verify", NULL}, NULL), 0, "%s", err);
    cr_assert(strstr(out, "1 segments, 6 records: ok") != NULL, "%s", out);
    cr_assert_eq(run((const char *[]){dir, "stats", NULL}, NULL), 0, "%s", err);
    cr_assert(strstr(out, "segments 1\n") && strstr(out, "records 6\n") &&
                  strstr(out, "live 2\n") && strstr(out, "incomplete 0\n"),
              "%s", out);

    char *seg = tu_join(dir, "seg-01-00000001.sg");
    int fd = open(seg, O_WRONLY | O_APPEND);
    cr_assert_eq(write(fd, "garbage!", 8), 8);
    close(fd);
    off_t size = tu_fsize(seg);
    cr_assert_eq(run((const char *[]){dir, "verify", NULL}, NULL), 1);
    cr_assert(strstr(out, "seg-01-00000001.sg: offset ") != NULL, "%s", out);
    cr_assert(strstr(out, "torn tail") != NULL, "%s", out);
    cr_assert(strstr(out, "1 segments, 6 records: damaged\n") != NULL, "%s", out);
    cr_assert_eq(run((const char *[]){dir, "list", NULL}, NULL), 0);
    cr_assert_eq(tu_fsize(seg), size, "the tool never repairs");
    free(seg);
}

Test(tool, usage_errors)
{
    find_tool();
    make_spool();
    cr_assert_eq(run((const char *[]){"--help", NULL}, NULL), 0);
    cr_assert(strstr(out, "usage:") != NULL);
    cr_assert_eq(run((const char *[]){NULL}, NULL), 2);
    cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "one line: %s", err);
    cr_assert_eq(run((const char *[]){dir, "frobnicate", NULL}, NULL), 2);
    cr_assert(strstr(err, "frobnicate") != NULL);
    cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "one line: %s", err);
    char *missing = tu_join(tmp, "missing");
    cr_assert_eq(run((const char *[]){missing, "list", NULL}, NULL), 2);
    cr_assert(strstr(err, "No such file or directory") != NULL, "%s", err);
    cr_assert_eq(run((const char *[]){dir, NULL}, NULL), 2);
    free(missing);
}

Test(tool, list_shows_delivery_state_and_stats_live_octets)
{
    find_tool();
    make_spool();
    struct spool *sp;
    struct spool_writer *q;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 9, &q), 0);
    struct spool_state s[] = {
        {SPOOL_ST_DELIVERED, 0, 1, 0, "250 ok", 0, NULL},
        {SPOOL_ST_FAILED, 2, 2, 0, "550 \"no\"", 0, NULL},
        {SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 1700000060000, 2, "451 try later", 0, NULL},
        {SPOOL_ST_HOLD, SPOOL_RCPT_ALL, 3, 0, NULL, 0, NULL},
    };
    for (int i = 0; i < 4; i++)
        cr_assert_eq(spool_writer_state(q, id_plain, &s[i]), 0);
    tu_sync(q);
    spool_writer_destroy(q);
    spool_close(sp);

    char a[17], b[17], want[512];
    spool_id_str(id_plain, a);
    spool_id_str(id_odd, b);
    cr_assert_eq(run((const char *[]){dir, "list", NULL}, NULL), 0, "%s", err);
    snprintf(want, sizeof(want),
             "%s 2023-11-14T22:13:20.123Z 21 held <sender@example.com> "
             "<alice@example.org>=delivered <bob@example.net> <carol@example.com>=failed "
             "attempts=2 next=2023-11-14T22:14:20.000Z error=\"451 try later\"\n"
             "%s 2023-11-14T22:13:20.123Z 3 <> <\"odd\\\\one\"@example.org> "
             "<caf\xc3\xa9@example.fr>\n",
             a, b);
    cr_assert_str_eq(out, want);

    cr_assert_eq(run((const char *[]){dir, "list", "--json", NULL}, NULL), 0, "%s", err);
    cr_assert(strstr(out,
                     "\"held\": true, \"warned\": false, \"attempts\": 2, "
                     "\"next_attempt_ms\": 1700000060000, \"next_attempt\": "
                     "\"2023-11-14T22:14:20.000Z\", \"last_error\": \"451 try later\"") != NULL,
              "%s", out);
    cr_assert(strstr(out,
                     "\"delivery\": [{\"rcpt\": \"alice@example.org\", \"state\": "
                     "\"delivered\"}, {\"rcpt\": \"bob@example.net\", \"state\": \"pending\"}, "
                     "{\"rcpt\": \"carol@example.com\", \"state\": \"failed\"}]") != NULL,
              "%s", out);
    cr_assert(strstr(out, "\"held\": false, \"warned\": false, \"attempts\": 0, "
                          "\"next_attempt_ms\": 0, \"next_attempt\": null") != NULL,
              "%s", out);
    cr_assert(strstr(out, "\"rcpts\": [\"alice@example.org\", ") != NULL, "rcpts stay strings");

    cr_assert_eq(run((const char *[]){dir, "stats", NULL}, NULL), 0, "%s", err);
    cr_assert(strstr(out, "live 2\n") && strstr(out, "live_bytes ") && strstr(out, "live_percent "),
              "%s", out);
    unsigned long long lb = 0;
    const char *p = strstr(out, "live_bytes ");
    cr_assert_eq(sscanf(p, "live_bytes %llu", &lb), 1);
    cr_assert_gt(lb, 200, "START, DATA and COMMIT of two messages and four STATE records");
}
