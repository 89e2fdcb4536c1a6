/*
 * kube_controller.h - the controller of `airlock operator`: the same
 * reconciler as the embedded airlock (operator.h, datasource.c) driven
 * against a real API server (issue 4, items 2, 5, 6).
 *
 * What it does:
 *  - one watch thread lists the AnalyticsWorkspaceDataSources of the watched
 *    namespace (or every namespace), then watches from the list's
 *    resourceVersion with bookmarks and a randomised timeout; a 410 (or three
 *    failures in a row) relists; every `resync_seconds` it lists again. A
 *    standby watches too and keeps its queue, so the keys are waiting when
 *    it becomes the leader. Only keys go into the work
 *    queue (workqueue.h), which coalesces them and rate-limits retries; the
 *    workers take the object of the key's last watch event when there is
 *    one (held only while the key waits) and read it fresh otherwise; no
 *    cache of all objects is kept.
 *  - a second watch thread lists and watches the Jobs of the workload
 *    namespace that the runtime made (RUNTIME_KUBE_SELECTOR); a Job that
 *    ends or is deleted queues the datasource named by its owner annotation,
 *    so running Jobs are not polled (ctx->job_poll_ms is set to
 *    KUBE_CONTROLLER_JOB_POLL_MS, a safety net);
 *  - a watch event that only echoes the controller's own last write
 *    (status or finalizer, same resourceVersion) is skipped: the reconcile
 *    that wrote it went straight on (operator_reconcile_datasource_object);
 *  - the binding of a datasource is read once per process and list (not on
 *    every reconcile): the controller remembers the bindings it saw in place
 *    and forgets them at every full list;
 *  - `workers` threads take keys and reconcile, and only while
 *    opts->is_leader says so (checked before every key): a replica that
 *    loses its Lease stops at the next key;
 *  - for each datasource: the finalizer KUBE_CONTROLLER_FINALIZER is added
 *    (store_update with the resourceVersion); once deletionTimestamp is set,
 *    operator_cleanup_datasource removes what the datasource owns (jobs,
 *    their Secrets, the staging claim, the uploader - never a workspace's
 *    claim), its AnalyticsWorkspaceDataBinding goes, then the finalizer;
 *  - a datasource labelled xlscsde.nhs.uk/workspace gets its
 *    AnalyticsWorkspaceDataBinding dsb-<name without "ds-"> (as the API
 *    creates it), owned by the datasource, its spec.workspace kept in step
 *    with the label;
 *  - a core/v1 Event on the datasource for every transition the reconciler
 *    records (type Normal, or Warning for failures; reason the gate event in
 *    CamelCase, "CollectFailed"; message the status message): the
 *    controller installs itself as ctx->on_transition;
 *  - a third watch thread lists and watches the uploader Deployments the
 *    runtime made in the workload namespace (jobs_namespace); one with
 *    spec.replicas > 0 queues its datasource. For an Uploaded datasource
 *    past READY, every reconcile reads its uploader and decides with
 *    uploader_decide (runtime/uploader_scale.h): a running uploader whose
 *    datasource left stage Uploading is scaled to 0 at once, an idle one
 *    (no wake or activity for uploader_idle_seconds) is scaled to 0, one
 *    in use requeues its datasource for the second it will be idle (no
 *    polling), and one running with no time at all gets scaled-up-at =
 *    now. A scale-down carries the resourceVersion read (a wake or touch
 *    in between wins), is counted, logged and becomes a Normal Event
 *    UploaderScaledDown on the datasource;
 *  - a 409 (AL_ERR_CONFLICT) requeues at once; other errors back off.
 *
 * Why not store_watch: the store_kube reflector lists every namespace (403
 * under the chart's default, namespaced RBAC) and keeps a copy of every
 * object plus its history; this controller needs only keys. The store is
 * still used for every read and write.
 */
#ifndef AL_OPERATOR_KUBE_CONTROLLER_H
#define AL_OPERATOR_KUBE_CONTROLLER_H

#include <stddef.h>
#include <stdint.h>

#include "operator/operator.h"

struct kube_client;

#define KUBE_CONTROLLER_FINALIZER "xlscsde.nhs.uk/airlock-cleanup"
#define KUBE_CONTROLLER_DEFAULT_WORKERS 4
#define KUBE_CONTROLLER_MAX_WORKERS 64
#define KUBE_CONTROLLER_DEFAULT_RESYNC_S 300
#define KUBE_CONTROLLER_COMPONENT "airlock-operator"
/* With Jobs watched, a running Job is looked at again after this long only
 * in case an event was missed (a relist would also catch it). */
#define KUBE_CONTROLLER_JOB_POLL_MS 60000

struct kube_controller_options {
	struct kube_client *kc;        /* borrowed: watches and Events */
	const char *watch_namespace;   /* NULL or "" = every namespace */
	const char *jobs_namespace;    /* where the runtime makes Jobs: watched (RUNTIME_KUBE_SELECTOR) so a
	                                * Job's end wakes its datasource; NULL or "" = not watched, running
	                                * Jobs are polled (operator_ctx.job_poll_ms) */
	int workers;                   /* 0 = default */
	int resync_seconds;            /* 0 = default */
	int (*is_leader)(void *ud);    /* NULL = always act */
	void *leader_ud;
	const char *instance;          /* reportingInstance of Events (the pod name); may be NULL */
	int watch_timeout_min_s;       /* 0 = 240 */
	int watch_timeout_max_s;       /* 0 = 360 */
	int uploader_idle_seconds;     /* AIRLOCK_UPLOADER_IDLE_SECONDS; 0 = UPLOADER_IDLE_DEFAULT_S. Uploaders
	                                * are watched and scaled down only when jobs_namespace is set */
};

struct kube_controller;

/* Starts the watch and worker threads. `ctx` is borrowed and must outlive
 * the controller; its on_transition is set to the controller's Event
 * emitter. */
int kube_controller_start(struct kube_controller **out, struct operator_ctx *ctx,
			  const struct kube_controller_options *o);
/* Stops and joins every thread (a reconcile in progress finishes first),
 * frees. NULL is a no-op. */
void kube_controller_stop(struct kube_controller *c);

struct kube_controller_stats {
	uint64_t reconciles;      /* keys reconciled (any outcome) */
	uint64_t errors;          /* reconciles that failed (conflicts not counted) */
	uint64_t conflicts;       /* reconciles that hit a 409 and were requeued */
	uint64_t watch_restarts;  /* relists after the first list + watches restarted after an error */
	uint64_t events;          /* Kubernetes Events written */
	uint64_t job_wakeups;     /* datasources woken by the end (or deletion) of one of their Jobs */
	uint64_t own_echoes;      /* watch events skipped as the echo of the controller's own write */
	uint64_t uploader_scale_downs_idle;   /* uploaders scaled to 0 after idle_seconds without use */
	uint64_t uploader_scale_downs_sealed; /* uploaders scaled to 0 because their datasource left Uploading */
	size_t queue_depth;       /* keys waiting */
	int synced;               /* the first list has been queued */
};

void kube_controller_stats(struct kube_controller *c, struct kube_controller_stats *out);
/* 1 once the first list succeeded (readiness). */
int kube_controller_synced(struct kube_controller *c);

#endif
