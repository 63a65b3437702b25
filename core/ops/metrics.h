/*
 * NAME
 *	metrics - a Prometheus text exposition (format 0.0.4) builder
 * SYNOPSIS
 *	#include "core/ops/metrics.h"
 *
 *	struct metrics_buf *b = metrics_buf_create();
 *	metrics_family(b, "sluice_messages_accepted_total", METRICS_COUNTER, "Messages ...");
 *	metrics_u64(b, "sluice_messages_accepted_total", NULL, n);
 *	const char *text = metrics_buf_text(b, &len);
 *	metrics_buf_destroy(b);
 * DESCRIPTION
 *	A growing text buffer and the few writers the exposition needs: one
 *	HELP and TYPE line per family (metrics_family), samples with an
 *	optional label set (metrics_u64, metrics_double), and a whole
 *	histogram from per-bucket counts (metrics_histogram: the buckets are
 *	written cumulatively, the +Inf bucket equals _count, then _sum and
 *	_count).
 *
 *	Labels are given as a NULL-terminated array of name, value pairs
 *	({"worker", "0", NULL}); values are escaped as the format asks
 *	(backslash, double quote and line feed become \\, \" and \n), HELP
 *	text likewise (backslash and line feed).  Names are the caller's
 *	constants and are not checked beyond a panic on an empty one.
 *
 *	Counters are written as integers (uint64_t), exactly; gauges and
 *	sums that are fractions go through metrics_double ("%.17g", with
 *	+Inf, -Inf and NaN spelled as the format wants).
 * DIAGNOSTICS
 *	Out of memory is sticky: every later write is a no-op and
 *	metrics_buf_text() returns NULL.
 */
#ifndef SLUICE_CORE_METRICS_H
#define SLUICE_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics_buf;

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* NULL on out of memory. */
struct metrics_buf *metrics_buf_create(void);
void metrics_buf_destroy(struct metrics_buf *b);
/* The text so far (owned by b, valid until the next write or destroy),
 * NUL-terminated; *len (if not NULL) its length.  NULL after an
 * allocation failure. */
const char *metrics_buf_text(const struct metrics_buf *b, size_t *len);

/* The HELP and TYPE lines of a family; write it once, before its samples. */
void metrics_family(struct metrics_buf *b, const char *name, enum metrics_type type,
                    const char *help);
/* "# text": a comment line (a line feed in text is escaped as in HELP). */
void metrics_comment(struct metrics_buf *b, const char *text);
/* One sample.  labels: NULL or {"name", "value", ..., NULL} (borrowed). */
void metrics_u64(struct metrics_buf *b, const char *name, const char *const *labels, uint64_t v);
void metrics_double(struct metrics_buf *b, const char *name, const char *const *labels, double v);
/* A histogram's samples: name_bucket{...,le="bounds[i]"} for i < nbounds
 * and le="+Inf", name_sum, name_count.  counts has nbounds + 1 entries,
 * each the number of observations in that bucket alone (the last: above
 * every bound); they are summed here into cumulative buckets.  bounds
 * must be increasing (a panic otherwise). */
void metrics_histogram(struct metrics_buf *b, const char *name, const char *const *labels,
                       const double *bounds, size_t nbounds, const uint64_t *counts, double sum);

#endif
