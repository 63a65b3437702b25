/*
 * NAME
 *	log - diagnostics: text or JSON lines to stderr, a file or syslog
 * SYNOPSIS
 *	#include "core/base/log.h"
 *	log_msg(LOG_WARN, "spool: %s: %s", path, strerror(-err));
 *	log_kv(LOG_INFO, "accepted", "id", id, "client", ip, "size", "1234", NULL);
 * DESCRIPTION
 *	One line per call, with the time, the level and the thread's worker
 *	tag.  Thread-safe and cheap: each line is formatted on the stack and
 *	written with one write(2) (or one syslog(3) call).
 *
 *	Formats (log_configure): LOG_FMT_TEXT, the historical
 *	  2026-11-29T14:44:12.123Z sluiced[w0] info: message key=value ...
 *	and LOG_FMT_JSON, one object per line:
 *	  {"ts":"2026-11-29T14:44:12.123Z","level":"info","thread":"w0",
 *	   "msg":"message","key":"value",...}
 *	log_msg() fills "msg"; log_kv() takes "msg" and then (key, value)
 *	string pairs ended by NULL (a NULL value is skipped).  Values are
 *	always JSON strings.  JSON escaping covers quotes, backslashes,
 *	control characters (\n, \t, \u00XX) and invalid UTF-8 (each bad
 *	byte becomes \ufffd); in text, control characters become \n, \t or
 *	\xNN and a value with a space or a quote is quoted, so that no
 *	client-supplied string can forge a line.  A line longer than
 *	LOG_LINE_MAX is cut, and stays valid JSON.
 *
 *	Outputs: LOG_OUT_STDERR (the default), LOG_OUT_FILE (appended,
 *	created 0640; log_reopen() opens the path again, for logrotate: send
 *	SIGUSR1 after renaming) and LOG_OUT_SYSLOG (facility mail, ident
 *	"sluiced"; syslog adds its own time stamp, the line is the same
 *	otherwise).  The descriptor lines are written to never changes:
 *	log_configure() and log_reopen() dup2() the new file over it, so a
 *	thread in the middle of a write never sees a closed descriptor.
 *	log_configure() may be called again at run time (reload); the level,
 *	the format and the output change atomically for other threads.
 * DIAGNOSTICS
 *	log_configure() and log_reopen() return 0, or -errno with one line
 *	in err naming the file; the previous output stays in use.
 */
#ifndef SLUICE_CORE_LOG_H
#define SLUICE_CORE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };
enum log_output { LOG_OUT_STDERR, LOG_OUT_FILE, LOG_OUT_SYSLOG };

#define LOG_LINE_MAX 4096

void log_set_level(enum log_level lv);
/* Any case; syslog's names too: notice -> info, warning -> warn,
 * err crit alert emerg -> error. */
int log_level_parse(const char *s, enum log_level *out); /* 0 or -EINVAL */
#define LOG_LEVEL_NAMES "debug, info, notice, warn, warning, err, error, crit, alert, emerg"
int log_format_parse(const char *s, enum log_format *out); /* "text" | "json"; 0 or -EINVAL */
/* path: the file for LOG_OUT_FILE (borrowed; copied), else ignored. */
int log_configure(enum log_format fmt, enum log_output out, const char *path, char *err,
                  size_t errlen);
/* LOG_OUT_FILE: open the path again (after a rename); else nothing. */
int log_reopen(char *err, size_t errlen);
/* Tag for this thread's lines, e.g. "w0". */
void log_set_thread_tag(const char *tag);
void log_msg(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_kv(enum log_level lv, const char *msg, ...) __attribute__((sentinel));
/* A line whose text form is the printf message alone (for lines whose text
 * other tools already parse) and whose JSON form adds the fields of kv, a
 * NULL-ended array of (key, value) pairs (borrowed). */
void log_fields(enum log_level lv, const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Async-signal-safe: the log file's descriptor when lines go to a file,
 * else -1 (stderr or syslog): for a fatal signal handler's last line. */
int log_crash_fd(void);

/* Exposed for the tests: formats one line into out (at least LOG_LINE_MAX
 * bytes), without the time when ts is NULL; returns its length, newline
 * included.  kv: npairs (key, value) pairs. */
size_t log_format_line(char *out, enum log_format fmt, const char *ts, enum log_level lv,
                       const char *thread, const char *msg, const char *const *kv, size_t npairs);

#endif
