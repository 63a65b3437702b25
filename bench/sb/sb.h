/*
 * NAME
 *	sb.h - sluice-bench's internal interfaces (bench/sb/)
 * SYNOPSIS
 *	#include "bench/sb/sb.h"
 * DESCRIPTION
 *	sluice-bench is one program in a few files:
 *	sb_main.c	the command line of the load generator, its report
 *			(text and --json), the sub-command table
 *	sb_load.c	the load generator: one io_uring per thread, a state
 *			machine per SMTP session (sb_load_run)
 *	sb_tls.c	TLS over memory BIOs, so the ring does every socket
 *			operation (OpenSSL only encrypts and decrypts)
 *	sb_hist.c	a log-linear latency histogram (HdrHistogram's
 *			layout: 128 linear sub-buckets per power of two, so a
 *			value is kept within 1/64 of itself)
 *	sb_sink.c	`sluice-bench sink`: a sink measured in-process on
 *			the real engine
 *	sb_daemon.c	`sluice-bench sink --daemon`: the same binding in a
 *			real sluiced under this generator's load
 *
 *	Ownership: a struct sb_load_opts is the caller's and read-only during
 *	a run; a struct sb_load_result is filled by sb_load_run and then the
 *	caller's.  Nothing here is shared between threads except where said
 *	(sb_load_run's threads each own their ring and sessions and merge
 *	their results into the caller's after joining).
 */
#ifndef SLUICE_BENCH_SB_H
#define SLUICE_BENCH_SB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* ---- histogram (sb_hist.c) ---- */
#define SB_HIST_SUB_BITS 7
#define SB_HIST_HALF (1u << (SB_HIST_SUB_BITS - 1)) /* 64 */
#define SB_HIST_BUCKETS (SB_HIST_HALF * 60)
struct sb_hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    double sum;
    uint64_t b[SB_HIST_BUCKETS];
};
void sb_hist_init(struct sb_hist *h);
void sb_hist_add(struct sb_hist *h, uint64_t v);
void sb_hist_merge(struct sb_hist *into, const struct sb_hist *from);
/* The value at quantile q (0..1): the upper bound of the bucket holding it
 * (never below the true value, at most 1/64 above); 0 when empty. */
uint64_t sb_hist_quantile(const struct sb_hist *h, double q);
double sb_hist_mean(const struct sb_hist *h);

/* ---- the load generator (sb_load.c) ---- */
#define SB_MAX_SIZES 64
struct sb_load_opts {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *target; /* "host:port" as given, for messages */
    unsigned sessions;
    unsigned threads;
    uint64_t messages; /* total; 0: until duration */
    double duration;   /* seconds; 0: until messages */
    double rate;       /* open loop: messages/s offered; 0: closed loop */
    unsigned rcpts;
    bool pipelining;
    bool reuse;
    enum { SB_TLS_NONE, SB_TLS_STARTTLS, SB_TLS_IMPLICIT } tls;
    const char *auth_user, *auth_pass;
    const char *helo, *from, *rcpt_domain;
    /* message sizes: nsizes values with cumulative weights (a fixed size is
     * one entry) */
    unsigned nsizes;
    uint64_t sizes[SB_MAX_SIZES];
    double weights[SB_MAX_SIZES]; /* cumulative, last = 1 */
    double timeout;               /* seconds without any completed I/O: the run fails */
    bool progress;
    bool quiet; /* no warnings about replies */
};

#define SB_CODES 600
struct sb_load_result {
    uint64_t sent;     /* messages whose end of data got a final reply */
    uint64_t accepted; /* ... a 2xx one */
    uint64_t failed;   /* messages given up without a final reply to the dot
                          (MAIL/RCPT/DATA refused, connection lost) */
    uint64_t bytes;    /* message bytes (header and body) accepted */
    uint64_t connections, conn_failed, protocol_errors;
    uint64_t replies[SB_CODES]; /* by code; [0]: unparsable */
    double seconds;             /* first connect to last final reply */
    struct sb_hist lat_mail;    /* MAIL sent (open loop: intended) -> final reply, us */
    struct sb_hist lat_connect; /* connect -> final reply of a connection's first message, us */
    struct sb_hist lat_service; /* open loop only: MAIL actually sent -> final reply, us */
    char error[256];            /* why the run failed (sb_load_run returned -1) */
};

/* Runs the load; 0, or -1 with result->error set (setup failure, a stall
 * of opts->timeout seconds).  Refused messages are counted, not errors. */
int sb_load_run(const struct sb_load_opts *o, struct sb_load_result *r);
/* Parses "host:port", "[v6]:port" or "port" (127.0.0.1) into o->addr. */
int sb_parse_target(const char *s, struct sb_load_opts *o, char *err, size_t errlen);
/* Sizes: "4096", "4k", "100K", "1M", or "@FILE" (lines "SIZE [WEIGHT]",
 * '#' comments; weight 1 when absent). */
int sb_parse_sizes(const char *s, struct sb_load_opts *o, char *err, size_t errlen);
uint64_t sb_parse_bytes(const char *s, bool *ok);
void sb_load_defaults(struct sb_load_opts *o);
/* Report: text (human) or JSON (one object). */
void sb_report_text(FILE *f, const struct sb_load_opts *o, const struct sb_load_result *r);
void sb_report_json(FILE *f, const struct sb_load_opts *o, const struct sb_load_result *r);
/* The load generator's own command line (argv[0] is the program); used by
 * main and by `sink --daemon` (which takes the same load options). */
int sb_load_parse(int argc, char **argv, int *used, struct sb_load_opts *o, bool *json, char *err,
                  size_t errlen);
void sb_load_usage(FILE *f);

/* ---- TLS over memory BIOs (sb_tls.c) ---- */
struct sb_tls;
int sb_tls_global_init(char *err, size_t errlen);
struct sb_tls *sb_tls_new(void);
void sb_tls_free(struct sb_tls *t);
/* Feed ciphertext received from the socket. */
int sb_tls_feed(struct sb_tls *t, const void *p, size_t n);
/* Drives the handshake: 1 done, 0 needs more input, -1 failed. */
int sb_tls_handshake(struct sb_tls *t);
/* Encrypts n plaintext bytes (into the pending output); -1 on failure. */
int sb_tls_write(struct sb_tls *t, const void *p, size_t n);
/* Decrypts what it can into buf: bytes, 0 (needs more), -1 on failure. */
long sb_tls_read(struct sb_tls *t, void *buf, size_t n);
/* Ciphertext waiting to be sent, and taking it (copied into buf). */
size_t sb_tls_outlen(struct sb_tls *t);
size_t sb_tls_take(struct sb_tls *t, void *buf, size_t cap);
const char *sb_tls_error(void);

/* ---- sub-commands ---- */
int sb_sink_main(int argc, char **argv); /* sb_sink.c */
int sb_daemon_run(const char *binding_text, const char *sluiced, double seconds, unsigned sessions,
                  uint64_t size, bool json); /* sb_daemon.c */

/* helpers (sb_main.c) */
double sb_now(void); /* monotonic seconds */
void sb_json_str(FILE *f, const char *s);

#endif
