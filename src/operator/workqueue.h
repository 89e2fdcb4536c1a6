/*
 * workqueue.h - the controllers' work queue (the shape of client-go's
 * delaying, rate-limited work queue), shared by the embedded controller
 * (controller.c, one thread) and the Kubernetes controller
 * (kube_controller.c, several workers).
 *
 * What it promises:
 *  - Coalescing: a key is in the queue at most once. Adding a key that is
 *    already waiting keeps one entry, due at the earlier of the two times.
 *  - One worker per key: a key handed out by workqueue_get is "processing"
 *    until workqueue_done. Adding it meanwhile does not hand it to another
 *    worker; it waits (coalesced) and becomes available after done.
 *  - Rate-limited retries: workqueue_add_rate_limited re-adds a key after
 *    base_ms << failures (capped at max_ms), counting failures per key until
 *    workqueue_forget. The embedded controller's figures are the defaults:
 *    100 ms doubling, at most 30 s.
 *  - Thread safety: every function may be called from any thread.
 *
 * Keys are strings ("namespace/name"); the queue copies them. Keys handed out
 * (char **) are new strings: free them after workqueue_done.
 */
#ifndef AL_OPERATOR_WORKQUEUE_H
#define AL_OPERATOR_WORKQUEUE_H

#include <stddef.h>
#include <stdint.h>

#define WORKQUEUE_BASE_BACKOFF_MS 100
#define WORKQUEUE_MAX_BACKOFF_MS 30000

struct workqueue;

/* base_ms / max_ms <= 0 take the defaults above. */
int workqueue_new(struct workqueue **out, int base_ms, int max_ms);
/* Frees the queue; no thread may be using it any more. NULL is a no-op. */
void workqueue_free(struct workqueue *q);

/* Adds `key`, due `delay_ms` from now (0 = at once). AL_ERR_NOMEM;
 * AL_ERR_UNAVAILABLE after shutdown. */
int workqueue_add(struct workqueue *q, const char *key, int64_t delay_ms);
/* Counts a failure of `key` and adds it after its back-off; *out_delay_ms
 * (may be NULL) says how long. */
int workqueue_add_rate_limited(struct workqueue *q, const char *key, int64_t *out_delay_ms);
/* Forgets the failures of `key` (after a success). */
void workqueue_forget(struct workqueue *q, const char *key);
/* Failures counted for `key` since the last forget. */
int workqueue_failures(struct workqueue *q, const char *key);

/* Hands out the key due first, waiting up to timeout_ms (0 = do not wait,
 * < 0 = until one is due or shutdown) for one to be due. AL_OK with *out_key
 * set, AL_ERR_TIMEOUT when none became due in time, AL_ERR_UNAVAILABLE after
 * shutdown. */
int workqueue_get(struct workqueue *q, int timeout_ms, char **out_key);
/* Ends processing of a key from workqueue_get. */
void workqueue_done(struct workqueue *q, const char *key);

/* Milliseconds until the next waiting key that is not being processed is
 * due (0 when one is due now), or -1 when there is none. */
int64_t workqueue_next_due_ms(struct workqueue *q);
/* Waiting keys (not counting those being processed). */
size_t workqueue_len(struct workqueue *q);
/* Wakes every waiting workqueue_get (they answer AL_ERR_UNAVAILABLE) and
 * refuses new keys. */
void workqueue_shutdown(struct workqueue *q);

/* "namespace/name" as a new string (NULL on out of memory); and back:
 * splits a key into new strings. */
char *workqueue_key(const char *ns, const char *name);
int workqueue_key_split(const char *key, char **out_ns, char **out_name);

#endif
