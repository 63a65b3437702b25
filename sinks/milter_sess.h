/*
 * NAME
 *	milter_sess - one SMTP session as a milter sees it: the steps, the
 *	packets each sends, the replies and what they mean; no I/O
 * SYNOPSIS
 *	#include "sinks/milter_sess.h"
 *
 *	struct milter_sess *s = milter_sess_new(&cfg);
 *	milter_sess_start(s, MILTER_S_HELO, &in);
 *	for (;;) {
 *	    int st = milter_sess_pump(s);   // packets appended to s->out
 *	    if (st != MILTER_WAIT) break;   // MILTER_DONE or MILTER_FAIL
 *	    ... write s->out, read into s->in, then milter_sess_input(s) ...
 *	}
 *	// s->res: the verdict, the reply, the edits made through cfg.edit
 * DESCRIPTION
 *	Steps follow Postfix's milter8.c: optneg once per connection, then
 *	connect, helo, mail, rcpt, data, eom (headers, end of headers, body
 *	chunks of at most 65535 octets, end of body), abort, quit.  Before a
 *	command its macros go in an SMFIC_MACRO packet: the names the milter
 *	asked for at that stage (its optneg symbol lists), else Postfix's
 *	defaults; a macro without a value is not sent.  A step the milter
 *	switched off (SMFIP_NO*) sends nothing; one it asked not to answer
 *	(SMFIP_NR_*) is sent without waiting.  One packet waits for its
 *	reply before the next goes (no pipelining), as Postfix does.
 *
 *	Replies: continue goes on; accept ends the step and skips the rest of
 *	the message (at connect or helo: the rest of the session); reject,
 *	tempfail and replycode end the step with that verdict (at rcpt: that
 *	recipient); discard marks the message, which eom then discards;
 *	skip ends the body early; progress only shows the milter is alive
 *	(s->progress counts it).  At eom the milter's edits before its final
 *	reply go through cfg.edit as header operations sluice can apply
 *	(see enum milter_edit_op); quarantine turns an accepting final reply
 *	into SINK_QUARANTINE.  A message already accepted or discarded is
 *	aborted (SMFIC_ABORT) before the next MAIL.
 *
 *	The header list: the first field (the Received: the session
 *	prepends) is not shown to the milter, as in Postfix; one space after
 *	the colon is eaten unless SMFIP_HDR_LEADSPC; continuation lines are
 *	joined with "\n" (Sendmail's form).
 * DIAGNOSTICS
 *	MILTER_FAIL with s->why set: a protocol error (malformed reply, a
 *	reply that does not fit the step, an action not negotiated), or
 *	negotiation refused.  After it the session is in error and every
 *	step fails at once; the caller closes the connection.
 */
#ifndef SLUICE_SINKS_MILTER_SESS_H
#define SLUICE_SINKS_MILTER_SESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sinks/milter_proto.h"
#include "sinks/sink.h"

enum milter_step {
    MILTER_S_OPTNEG,
    MILTER_S_CONNECT,
    MILTER_S_HELO,
    MILTER_S_MAIL,
    MILTER_S_RCPT,
    MILTER_S_DATA,
    MILTER_S_EOM,
    MILTER_S_ABORT,
    MILTER_S_QUIT,
};

enum { MILTER_WAIT, MILTER_DONE, MILTER_FAIL };

/* What the edits at eom become in sluice's terms. */
enum milter_edit_op {
    MILTER_E_ADD,       /* sink_header_add(name, value) */
    MILTER_E_CHANGE,    /* sink_header_change(name, value): the first field */
    MILTER_E_REMOVE,    /* sink_header_remove(name): every field (there is one) */
    MILTER_E_UNSUPPORTED, /* value: why; nothing applied */
};

struct milter_sess_cfg {
    uint32_t actions; /* offered, MILTER_F_* */
    uint32_t proto;   /* offered, MILTER_P_* */
    bool skip_first_header;
    /* A macro's value by name without braces ("i", "client_addr"); NULL
     * when there is none. */
    const char *(*macro)(void *arg, const char *name);
    /* eom: the stored message at off; 0 at the end, or -errno. */
    ssize_t (*read)(void *arg, uint64_t off, void *buf, size_t len);
    /* eom: an edit; 0 or -errno (logged by the caller, the step goes on) */
    int (*edit)(void *arg, enum milter_edit_op op, const char *name, const char *value);
    void *arg;
};

/* Arguments of one step (borrowed until the step is done). */
struct milter_step_in {
    const char *host;     /* connect: the client's name ("[192.0.2.1]" if none) */
    char family;          /* connect: '4', '6', 'L', 'U' */
    uint16_t port;
    const char *addr;     /* connect: client address; mail/rcpt: the address */
    const char *helo;     /* helo */
    const char *params;   /* mail/rcpt: ESMTP parameters, space-separated */
};

struct milter_result {
    enum sink_verdict verdict; /* CONTINUE, REJECT, TEMPFAIL, DISCARD, QUARANTINE, DROP */
    int code;                  /* replycode: 400..599; else 0 */
    char enhanced[16];
    char text[512];
};

struct milter_sess {
    struct milter_sess_cfg cfg;
    struct milter_buf out; /* to write */
    struct milter_buf in;  /* read, not yet parsed */
    /* negotiated (after optneg) */
    uint32_t version, actions, proto;
    char *symlist[MILTER_M_COUNT]; /* NULL: Postfix's default for the stage */
    /* per session */
    bool negotiated, conn_done, failed, in_txn, msg_done, discard, quarantine;
    unsigned progress;
    char why[256];
    /* the current step */
    enum milter_step step;
    struct milter_step_in sin;
    bool waiting; /* a packet awaits its reply */
    bool step_over;
    struct milter_result res;
    /* eom */
    int phase; /* 0 headers, 1 eoh, 2 body, 3 eob, 4 wait final */
    char *hdr;         /* the header section, copied */
    size_t nfield, ifield;
    struct milter_field {
        char *name, *value;
    } *field;
    uint64_t body_off;
    unsigned char *chunk;
};

struct milter_sess *milter_sess_new(const struct milter_sess_cfg *cfg);
void milter_sess_free(struct milter_sess *s);
/* Begins a step: optneg first when not negotiated yet (the caller
 * starts MILTER_S_OPTNEG itself, then the step). */
void milter_sess_start(struct milter_sess *s, enum milter_step step, const struct milter_step_in *in);
/* Appends the step's next packets to s->out: MILTER_WAIT (a reply is
 * awaited), MILTER_DONE (the step is over: s->res), MILTER_FAIL. */
int milter_sess_pump(struct milter_sess *s);
/* Parses the replies in s->in: MILTER_WAIT (more to read, or pump
 * again: a reply arrived and the step goes on; see s->waiting),
 * MILTER_DONE, MILTER_FAIL. */
int milter_sess_input(struct milter_sess *s);
/* "connect", "eom", ... */
const char *milter_step_name(enum milter_step st);
/* The steps the milter takes part in, e.g. "connect helo mail rcpt data
 * header eoh body eom" (for --bindings and logs). */
void milter_sess_steps(const struct milter_sess *s, char *buf, size_t len);

#endif
