/*
 * store_kube.h - the object store (store/store.h) over the Kubernetes API
 * server: the airlock's custom resources (group xlscsde.nhs.uk/v1) are the
 * objects, a reflector per kind feeds store_watch, and the audit log is a
 * hash-chained series of AirlockAuditRecord custom resources. How it maps
 * onto the API, and the guarantees it keeps and cannot keep (there are no
 * transactions in Kubernetes): docs/kube-store.md.
 *
 * Kinds: AnalyticsWorkspace, AnalyticsWorkspaceBinding,
 * AnalyticsWorkspaceDataSource, AnalyticsWorkspaceDataBinding (any spelling
 * resource_kind_parse accepts); any other kind is AL_ERR_INVALID.
 *
 * Differences from the embedded store that callers can see:
 *  - a change and its audit record are two API calls, not one transaction:
 *    if the process dies between them, the change stands without its record;
 *    if the record cannot be written the call returns that error although the
 *    change was made (the message says so);
 *  - create of an object that carries a status is two calls too (POST, then
 *    PUT on /status, as the status subresource ignores status on create);
 *    when the second fails the object is deleted again (best effort);
 *  - create_many creates in order and stops at the first failure;
 *  - watch history starts when the kind's reflector starts (the first
 *    store_watch of that kind): a watch from a resourceVersion older than
 *    that, or older than the oldest retained event, answers AL_ERR_CONFLICT
 *    ("too old: relist");
 *  - metadata.managedFields is removed from every object returned.
 *
 * Ownership: the store borrows `kc`, which must outlive store_close().
 * Thread safety: as store.h - a store may be used from many threads at once.
 */
#ifndef AL_STORE_STORE_KUBE_H
#define AL_STORE_STORE_KUBE_H

#include "kube/kube.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_KUBE_WATCH_HISTORY 10000   /* events retained per kind */
#define STORE_KUBE_REQUEST_DEADLINE_MS 15000
#define STORE_KUBE_WATCH_TIMEOUT_MIN_S 240
#define STORE_KUBE_WATCH_TIMEOUT_MAX_S 360

/* Zero fields take the defaults above; opts itself may be NULL. */
struct store_kube_options {
	size_t watch_history;     /* events retained per kind */
	int request_deadline_ms;  /* how long one call retries 429/5xx/network errors */
	int watch_timeout_min_s;  /* each watch asks for a timeoutSeconds drawn */
	int watch_timeout_max_s;  /* uniformly from [min, max] */
};

/* Opens a store over `kc`. `namespace` is where the audit records live
 * (AirlockAuditRecord objects, created there); NULL means the client's
 * namespace. Makes no API call: the first use does. */
int store_kube_open(struct store **out, struct kube_client *kc, const char *namespace,
		    const struct store_kube_options *opts);

/* Watch health, for metrics. relists: full lists after the first one per
 * kind (after a 410, an ERROR event or repeated failures); reconnects:
 * watches restarted after an error; watches: every watch request made. */
struct store_kube_watch_stats {
	uint64_t relists;
	uint64_t reconnects;
	uint64_t watches;
};

/* AL_ERR_INVALID when `s` is not a Kubernetes store. */
int store_kube_watch_stats(struct store *s, struct store_kube_watch_stats *out);
/* relists + reconnects; 0 for a store that is not a Kubernetes store. */
uint64_t store_kube_watch_restarts(struct store *s);

/* For tests: while paused, the reflectors end their watches and make no API
 * call; on resume each watches again from where it stopped (so a history
 * compacted meanwhile forces a relist). */
void store_kube_pause_watches(struct store *s, int paused);

#endif
