/*
 * NAME
 *	sb_daemon - `sluice-bench sink --daemon`: a binding in a real sluiced
 * SYNOPSIS
 *	#include "bench/sb/sb.h"
 *	int sb_daemon_run(const char *binding_text, const char *sluiced,
 *			  double seconds, unsigned sessions, uint64_t size, bool json);
 * DESCRIPTION
 *	Starts sluiced (the path given, else the sluiced next to this
 *	program) on a free loopback port with a fresh spool in a temporary
 *	directory, 2 workers and relayhost=hold (mail stays queued: ingest
 *	alone is measured), once with a configuration holding only
 *	binding_text and once with an empty one; drives each with this
 *	program's load (sessions, size-byte messages, connection reuse,
 *	pipelining, closed loop) for `seconds`; three such pairs, the order
 *	alternating, and the medians.  Prints msg/s without and with the
 *	binding and the ratio.
 * DIAGNOSTICS
 *	1 with a line on stderr when sluiced does not start (the tail of its
 *	log), exits early, or the load fails.  Every process started here is
 *	ended here (SIGTERM, then SIGKILL after 30 s).
 */
#include "bench/sb/sb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DM_RUNS 3

static int dm_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool dm_log_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void dm_tail(const char *path)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "tail -n 8 '%s' >&2", path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log at %s)\n", path);
}

static void dm_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int dm_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 600; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
        dm_sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* One sluiced with conf, one load; msg/s or -1. */
static double dm_once(const char *dir, const char *sluiced, const char *conf, double seconds,
                      unsigned sessions, uint64_t size, int run)
{
    int port = dm_free_port();
    char spool[PATH_MAX], log[PATH_MAX], listen[64], spool_opt[PATH_MAX + 16], target[64];
    snprintf(spool, sizeof(spool), "%s/spool-%d", dir, run);
    snprintf(log, sizeof(log), "%s/sluiced-%d.log", dir, run);
    snprintf(listen, sizeof(listen), "listen=127.0.0.1:%d", port);
    snprintf(spool_opt, sizeof(spool_opt), "spool_dir=%s", spool);
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    if (port < 0 || mkdir(spool, 0700) < 0) {
        fprintf(stderr, "sluice-bench: %s: %s\n", spool, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_RDWR);
        if (fd >= 0 && nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(fd, 2);
        }
        execl(sluiced, sluiced, "-c", conf, "-o", listen, "-o", spool_opt, "-o", "workers=2", "-o",
              "hostname=bench.example.test", "-o", "relayhost=hold", "-o", "max_conn_per_ip=0",
              (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", sluiced, strerror(errno));
        _exit(127);
    }
    if (pid < 0)
        return -1;
    char needle[80];
    snprintf(needle, sizeof(needle), "listening on 127.0.0.1:%d", port);
    int i;
    for (i = 0; i < 600 && !dm_log_has(log, needle); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "sluice-bench: sluiced exited during start-up; its log:\n");
            dm_tail(log);
            return -1;
        }
        dm_sleep_ms(50);
    }
    if (i == 600) {
        fprintf(stderr, "sluice-bench: sluiced did not listen within 30 s; its log:\n");
        dm_tail(log);
        dm_stop(pid);
        return -1;
    }
    struct sb_load_opts o;
    sb_load_defaults(&o);
    o.progress = false;
    o.sessions = sessions;
    o.duration = seconds;
    o.sizes[0] = size;
    char err[300];
    struct sb_load_result *r = malloc(sizeof(*r));
    double rate = -1;
    if (r != NULL && sb_parse_target(target, &o, err, sizeof(err)) == 0) {
        if (sb_load_run(&o, r) == 0 && r->accepted > 0)
            rate = (double)r->accepted / r->seconds;
        else
            fprintf(stderr, "sluice-bench: load on sluiced: %s (%llu accepted)\n",
                    r->error[0] ? r->error : "nothing accepted", (unsigned long long)r->accepted);
    }
    free(r);
    if (dm_stop(pid) < 0) {
        fprintf(stderr, "sluice-bench: sluiced did not stop cleanly; its log:\n");
        dm_tail(log);
        rate = -1;
    }
    return rate;
}

static int dm_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int sb_daemon_run(const char *binding_text, const char *sluiced, double seconds, unsigned sessions,
                  uint64_t size, bool json)
{
    char exe[PATH_MAX], path[PATH_MAX + 16];
    if (sluiced == NULL) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 16);
        if (n <= 0)
            return 1;
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        *slash = 0;
        snprintf(path, sizeof(path), "%.4000s/sluiced", exe);
        sluiced = path;
    }
    if (access(sluiced, X_OK) != 0) {
        fprintf(stderr, "sluice-bench: no sluiced at %s (--sluiced PATH)\n", sluiced);
        return 1;
    }
    char dir[] = "/tmp/sluice-bench-daemon.XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char conf_with[PATH_MAX], conf_without[PATH_MAX];
    snprintf(conf_with, sizeof(conf_with), "%s/with.conf", dir);
    snprintf(conf_without, sizeof(conf_without), "%s/without.conf", dir);
    FILE *f1 = fopen(conf_with, "w"), *f2 = fopen(conf_without, "w");
    if (f1 == NULL || f2 == NULL)
        return 1;
    fputs(binding_text, f1);
    fputs("# no bindings\n", f2);
    fclose(f1);
    fclose(f2);
    double with[DM_RUNS], without[DM_RUNS];
    int rc = 0;
    for (int r = 0; r < DM_RUNS && rc == 0; r++) {
        bool first_with = r % 2;
        for (int k = 0; k < 2 && rc == 0; k++) {
            bool w = k == 0 ? first_with : !first_with;
            double v = dm_once(dir, sluiced, w ? conf_with : conf_without, seconds, sessions, size,
                               r * 2 + k);
            if (v < 0)
                rc = 1;
            (w ? with : without)[r] = v;
        }
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "sluice-bench: could not remove %s\n", dir);
    if (rc != 0)
        return 1;
    qsort(with, DM_RUNS, sizeof(double), dm_cmp);
    qsort(without, DM_RUNS, sizeof(double), dm_cmp);
    double mw = with[DM_RUNS / 2], mwo = without[DM_RUNS / 2];
    if (json)
        printf("{\"daemon\":{\"sessions\":%u,\"size\":%llu,\"seconds\":%.1f,\"runs\":%d,"
               "\"without_msg_per_s\":%.1f,\"with_msg_per_s\":%.1f,\"ratio\":%.4f}}\n",
               sessions, (unsigned long long)size, seconds, DM_RUNS, mwo, mw, mw / mwo);
    else
        printf("sluiced under sluice-bench load (%u sessions, %llu-byte messages, reuse, %.0f s "
               "each, median of %d):\n  without the binding %10.0f msg/s\n  with the binding    "
               "%10.0f msg/s  (%.2fx)\n",
               sessions, (unsigned long long)size, seconds, DM_RUNS, mwo, mw, mw / mwo);
    return 0;
}
