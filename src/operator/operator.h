/*
 * operator.h - the reconcilers. Written once against the store and runtime
 * interfaces, so the same logic drives directories and child processes in
 * the embedded mode and PVCs and Jobs in Kubernetes.
 *
 * Level-based and idempotent: a reconcile reads the object, looks at what
 * exists (volumes, jobs), does the next step, and records it through the
 * gates state machine. Children have deterministic names derived from the
 * object's uid and attempt, so a reconcile killed at any instant and run
 * again finds what the first one made and never starts a job twice.
 */
#ifndef AL_OPERATOR_OPERATOR_H
#define AL_OPERATOR_OPERATOR_H

#include <jansson.h>

#include "config/config.h"
#include "runtime/runtime.h"
#include "store/store.h"

struct credstore;

#define OPERATOR_ACTOR "airlock-operator"

/*
 * Where source credentials come from: the embedded airlock's credstore
 * (`creds`), or, when `cred_lookup` is set, that function (the operator reads
 * the chart's source-credentials Secret). It returns AL_OK with *out_value a
 * new string (released with credstore_value_free, which wipes it),
 * AL_ERR_NOT_FOUND with a message a person can act on when the key (or its
 * whole source) does not exist - the datasource then fails with that
 * reason - or another error, which is retried.
 */
typedef int (*operator_cred_lookup_fn)(void *userdata, const char *key, char **out_value);

/*
 * Called after every transition the reconciler records (NULL: nobody is
 * told, as in the embedded airlock). `ds` is the datasource as written (its
 * new status), `event` the gate event's name ("collect-failed"), `failure`
 * 1 for the events that mean something went wrong (collect-failed,
 * checks-failed, data-changed). The operator turns it into a Kubernetes
 * Event. It must not block for long and must never publish a secret.
 */
typedef void (*operator_transition_fn)(void *userdata, const json_t *ds, const char *event, int failure);

struct operator_ctx {
	struct store *store;               /* borrowed */
	struct runtime *runtime;           /* borrowed */
	const struct airlock_config *cfg;  /* borrowed */
	struct credstore *creds;           /* borrowed; source credentials */
	const char *self_exe;              /* unused: the runtime supplies the airlock executable
	                                    * (kept until cmd_serve.c stops setting it) */
	operator_cred_lookup_fn cred_lookup; /* optional; overrides creds (see above) */
	void *cred_lookup_ud;
	operator_transition_fn on_transition; /* optional (see above) */
	void *on_transition_ud;
	/* How soon to look again at a running (or just started) job, in ms.
	 * 0 = poll often (500 ms; 200 ms right after a start), for runtimes
	 * that tell nobody when a job ends (the embedded airlock). The
	 * operator watches Jobs and sets a long safety-net interval. */
	int job_poll_ms;
};

/* Reconciles one AnalyticsWorkspaceDataSource. *requeue_ms > 0 asks to be
 * called again after that long (a job is running). AL_ERR_CONFLICT means the
 * object changed under us: requeue at once. */
int operator_reconcile_datasource(struct operator_ctx *ctx, const char *ns, const char *name, int *requeue_ms);
/* The same on an object the caller has just read (borrowed; the reconciler
 * changes it in place to what it wrote): saves reading it again. A step that
 * records a transition is followed at once by the next step, at most
 * OPERATOR_STEPS_MAX in one call. */
#define OPERATOR_STEPS_MAX 4
int operator_reconcile_datasource_object(struct operator_ctx *ctx, json_t *ds, int *requeue_ms);

/* 1 if the operator has something to do for a datasource in this state (it
 * waits on people otherwise); lets the watch skip events, resync still
 * visits everything. */
int operator_has_work(const json_t *ds);

/* Cleans up what a deleted datasource left (staging volume, its import,
 * check and publish jobs and their secrets). */
int operator_cleanup_datasource(struct operator_ctx *ctx, const json_t *deleted);

/* Deterministic child names (new strings; free them): the staging volume
 * ds-<uid>, the import job import-<uid>-<attempt>, and the current round's
 * check and publish jobs check-/publish-<uid>-<attempt>-<status.dataChanges>. */
char *operator_volume_name(const json_t *ds);
char *operator_job_name(const json_t *ds);
char *operator_check_job_name(const json_t *ds);
char *operator_publish_job_name(const json_t *ds);

struct controller;

/* Starts the controller thread: watches datasources, coalesces keys in a work
 * queue, resyncs every `resync_seconds`, and calls the reconciler. */
int controller_start(struct controller **out, struct operator_ctx *ctx, int resync_seconds);
/* Stops the thread and frees the controller. */
void controller_stop(struct controller *c);
/* 1 once the first full list has been reconciled. */
int controller_synced(struct controller *c);

#endif
