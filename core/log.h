/*
 * NAME
 *	log - diagnostics to stderr
 * SYNOPSIS
 *	#include "core/log.h"
 *	log_msg(LOG_WARN, "spool: %s: %s", path, strerror(-err));
 * DESCRIPTION
 *	One line per call, prefixed with the time, the level and the thread's
 *	worker tag.  Thread-safe (one write(2) per line).
 */
#ifndef SLUICE_CORE_LOG_H
#define SLUICE_CORE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lv);
int log_level_parse(const char *s, enum log_level *out); /* 0 or -EINVAL */
/* Tag for this thread's lines, e.g. "w0". */
void log_set_thread_tag(const char *tag);
void log_msg(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
