/*
 * NAME
 *	sched - lock-free work-stealing task scheduler
 * SYNOPSIS
 *	#include "sched/sched.h"
 *
 *	struct job { struct sched_task task; ... };
 *	static void job_run(struct sched_task *t) { struct job *j = ...; }
 *
 *	struct sched_pool *p = sched_pool_create(2, NULL);
 *	sched_pool_start(p);
 *	j->task.fn = job_run;
 *	sched_spawn(p, &j->task);
 *	...
 *	sched_pool_destroy(p);
 * DESCRIPTION
 *	A pool has N workers.  Each worker owns a Chase-Lev deque (the C11
 *	version of Le, Pop, Cohen and Zappa Nardelli, PPoPP 2013) that only it
 *	pushes and pops and that other workers steal from, a LIFO slot holding
 *	the task it made ready last, an MPSC inbox for tasks that other threads
 *	post to it, and an eventfd that wakes it when it is parked.
 *
 *	Tasks are intrusive: the caller embeds a struct sched_task, sets fn,
 *	and keeps the memory alive until fn has been called (fn may free it).
 *	The scheduler never allocates per task.  Each queued task runs exactly
 *	once, on some worker thread.
 *
 *	Where a task runs: sched_spawn() from a worker thread keeps the task on
 *	that worker (LIFO slot, older tasks move to the deque where idle workers
 *	steal them); from any other thread it posts to the workers' inboxes in
 *	turn.  sched_post() pins a task to one worker: inbox tasks are never
 *	stolen, and the tasks one thread posts to one worker run in the order
 *	they were posted.  That is how work for a worker's own sockets or ring
 *	reaches it.
 *
 *	Two ways to drive the workers.  sched_pool_start() runs one thread per
 *	worker that runs tasks and parks on the eventfd when idle.  Or an
 *	external event loop (net/, one io_uring ring per worker) owns the
 *	thread: sched_worker_attach() once, then each loop turn reaps its
 *	completions, calls sched_worker_run_budget(), and before it blocks calls
 *	sched_worker_park_begin(); if that says yes it waits with the wake fd
 *	watched by its ring (POLL_ADD), then calls sched_worker_park_end().
 *	docs/scheduler.md has the loop.
 * DIAGNOSTICS
 *	0 or a negative errno (-ENOMEM, -EINVAL, or what eventfd(2) and
 *	pthread_create(3) return); constructors return NULL.  Broken contracts
 *	(a worker driven from a thread that does not own it, a bad worker
 *	index) panic with the function's name.
 */
#ifndef SLUICE_SCHED_SCHED_H
#define SLUICE_SCHED_SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Cache line size for padding the hot indices (x86-64, most arm64). */
#define SCHED_CACHELINE 64

/* A unit of work, embedded by the caller.  fn is called once, with the task;
 * after that the scheduler no longer touches the task, so fn may free or
 * reuse it.  next belongs to the scheduler while the task is queued. */
struct sched_task {
    void (*fn)(struct sched_task *task);
    struct sched_task *next; /* inbox link */
};

/*
 * The Chase-Lev deque.  The owner pushes and pops at bottom; thieves steal
 * at top.  top and bottom only grow (64-bit, signed: no wrap-around in
 * practice and b - 1 at bottom 0 is -1, not SIZE_MAX).  The circular array
 * doubles when full; an outgrown array may still be read by a thief that
 * loaded the pointer earlier, so it is kept on a list and freed by fini.
 * Caller owns the storage (init/fini); the struct must be aligned to
 * SCHED_CACHELINE (static, automatic, or aligned_alloc storage).
 */
struct sched_deque_array;

struct sched_deque {
    /* Thieves' line: CAS target of every steal and of the owner's last pop. */
    _Alignas(SCHED_CACHELINE) _Atomic int64_t top;
    /* Owner's line: written by the owner only, read by thieves. */
    _Alignas(SCHED_CACHELINE) _Atomic int64_t bottom;
    _Atomic(struct sched_deque_array *) array;
    struct sched_deque_array *retired; /* owner only; freed by fini */
};

/* sched_deque_steal(): lost a race with another thief or the owner's last
 * pop; the deque may still hold tasks, try again.  Never a real task
 * (tasks are pointer-aligned). */
#define SCHED_ABORT ((struct sched_task *)(uintptr_t)1)

/* Initial capacity 2^log_cap (1..30); 0 or -ENOMEM / -EINVAL. */
int sched_deque_init(struct sched_deque *q, unsigned log_cap);
/* Frees the arrays; tasks still queued are forgotten (the caller owns them).
 * No thread may use q any more. */
void sched_deque_fini(struct sched_deque *q);
/* Owner thread only.  Queues task (borrowed until it is popped or stolen);
 * 0, or -ENOMEM when the array had to grow and could not. */
int sched_deque_push_owner(struct sched_deque *q, struct sched_task *task);
/* Owner thread only.  The newest task, or NULL when empty. */
struct sched_task *sched_deque_pop_owner(struct sched_deque *q);
/* Any thread.  The oldest task, NULL when empty, or SCHED_ABORT. */
struct sched_task *sched_deque_steal(struct sched_deque *q);
/* Any thread; a snapshot, exact only on the owner thread. */
int64_t sched_deque_size(const struct sched_deque *q);

/*
 * The MPSC inbox: a Treiber stack that producers push with a CAS and the
 * owner empties with one exchange, reversing what it got.  Ordering: the
 * drained list is in the order the pushes took effect, so the tasks of one
 * producer come out in the order it posted them, and a task posted before
 * another one started posting comes out first.  Caller owns the storage.
 */
struct sched_inbox {
    _Alignas(SCHED_CACHELINE) _Atomic(struct sched_task *) head;
};

void sched_inbox_init(struct sched_inbox *in);
/* Any thread.  task is borrowed until the owner drains it. */
void sched_inbox_post(struct sched_inbox *in, struct sched_task *task);
/* Owner (single consumer) only.  Everything posted so far, oldest first,
 * linked through next and NULL-terminated; NULL when empty. */
struct sched_task *sched_inbox_drain_owner(struct sched_inbox *in);
/* Any thread; a snapshot. */
bool sched_inbox_empty(const struct sched_inbox *in);

/*
 * Pools and workers.
 */
struct sched_pool;
struct sched_worker;

struct sched_pool_opts {
    unsigned deque_log_cap; /* initial deque capacity 2^n; 0: 8 (256) */
    unsigned budget;        /* tasks per run_budget in the pool's threads; 0: 64 */
};

/* nworkers 1..1024 (0: one per online CPU); opts may be NULL.  No thread is
 * started.  NULL on error (errno-free: out of memory, too many fds). */
struct sched_pool *sched_pool_create(unsigned nworkers, const struct sched_pool_opts *opts);
/* Starts one thread per worker (attached to it).  0 or -errno; on error
 * no thread is left running. */
int sched_pool_start(struct sched_pool *pool);
/* Asks the pool's threads to exit and joins them.  Tasks still queued are
 * not run: callers that need every task finished wait for that first.
 * Idempotent; a no-op when the pool was never started. */
void sched_pool_stop(struct sched_pool *pool);
/* Stops the pool and frees it.  The workers must be detached. */
void sched_pool_destroy(struct sched_pool *pool);
unsigned sched_pool_size(const struct sched_pool *pool);
/* Worker i (borrowed, lives as long as the pool). */
struct sched_worker *sched_pool_worker(struct sched_pool *pool, unsigned i);

/* Queues task on the calling worker when called from one of this pool's
 * worker threads (LIFO slot; the task it displaces goes to the deque and an
 * idle worker is woken to steal), otherwise posts it to the next worker's
 * inbox in round-robin order.  0 or -ENOMEM. */
int sched_spawn(struct sched_pool *pool, struct sched_task *task);
/* Like sched_spawn(), but from a worker thread the task goes straight onto
 * its deque (not the LIFO slot), so another worker can steal it at once:
 * for work the spawning worker should not run ahead of its own sockets
 * (offloaded sinks).  0 or -ENOMEM. */
int sched_spawn_shared(struct sched_pool *pool, struct sched_task *task);
/* Any thread.  Pins task to worker i: its inbox, then a wake-up if it is
 * parked (one eventfd write, and none when it is awake). */
void sched_post(struct sched_pool *pool, unsigned i, struct sched_task *task);

/* The worker the calling thread is attached to, or NULL. */
struct sched_worker *sched_worker_current(void);
unsigned sched_worker_index(const struct sched_worker *w);
/* Makes the calling thread w's owner (one thread per worker, one worker per
 * thread).  Only the owner may call the _owner-style functions below. */
void sched_worker_attach(struct sched_worker *w);
void sched_worker_detach(struct sched_worker *w);

/* Owner.  Runs up to budget tasks: LIFO slot, own deque, inbox, then steals
 * from random victims (every 32nd task looks at the inbox first, and the
 * LIFO slot yields after 3 runs in a row, so neither starves).  Returns how
 * many ran. */
unsigned sched_worker_run_budget(struct sched_worker *w, unsigned budget);
/* Owner.  Whether run_budget would find a task without stealing. */
bool sched_worker_has_work(struct sched_worker *w);

/*
 * Parking (owner).  park_begin announces that w is about to sleep and then
 * looks for work once more (its own queues, every victim's deque, the stop
 * flag).  false: work arrived, do not sleep.  true: sleep until the wake fd
 * is readable (and anything else the loop waits for), then call park_end,
 * which resets the fd.  Wake-ups are never lost; a spurious one is possible.
 */
bool sched_worker_park_begin(struct sched_worker *w);
void sched_worker_park_end(struct sched_worker *w);
/* For a loop whose wait watches the wake fd itself (an io_uring poll on it):
 * park_end without the read(2), and wake_reset (the read) only when the
 * loop saw the fd readable, so a wait that ended for another reason costs
 * no syscall. */
void sched_worker_park_end_nofd(struct sched_worker *w);
void sched_worker_wake_reset(struct sched_worker *w);
/* The eventfd (EFD_NONBLOCK) that becomes readable when w must wake up;
 * owned by the pool. */
int sched_worker_wake_fd(const struct sched_worker *w);

/* Counters, any thread (each is exact once the worker is idle). */
struct sched_worker_stats {
    uint64_t ran;    /* tasks run */
    uint64_t stolen; /* tasks taken from other workers' deques */
    uint64_t parked; /* times park_begin let the worker sleep */
    uint64_t wakes;  /* eventfd writes made to wake this worker */
};
void sched_worker_stats(const struct sched_worker *w, struct sched_worker_stats *out);

#endif
