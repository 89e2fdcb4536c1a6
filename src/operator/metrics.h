/*
 * metrics.h - the operator's HTTP listener (issue 4, item 8): Prometheus
 * text exposition on /metrics and the chart's probes on /healthz and
 * /readyz (deploy/helm/airlock/templates/deployment.yaml), over
 * web/http_server.h.
 *
 *   airlock_reconcile_total          counter  datasource reconciles run
 *   airlock_reconcile_errors_total   counter  reconciles that failed (retried with back-off)
 *   airlock_reconcile_conflicts_total counter reconciles that met a 409 and were requeued
 *   airlock_workqueue_depth          gauge    keys waiting in the work queue
 *   airlock_watch_restarts_total     counter  relists and watches restarted after an error
 *                                             (the controller's, plus store_kube's reflectors')
 *   airlock_events_total             counter  Kubernetes Events written
 *   airlock_leader                   gauge    1 while this replica holds the Lease (or
 *                                             leader election is off), else 0
 *   airlock_build_info{version}      gauge    1
 *
 * /healthz answers 200 while the process serves. /readyz answers 200 once the
 * controller's first list succeeded, on a standby too (a standby that is not
 * the leader is ready: the chart's rolling update waits on it), else 503.
 * Anything else is 404; only GET and HEAD are served.
 */
#ifndef AL_OPERATOR_METRICS_H
#define AL_OPERATOR_METRICS_H

#include "common/buf.h"

struct kube_controller;
struct leader;
struct store;

struct metrics_source {
	struct kube_controller *controller; /* borrowed; may be NULL */
	struct leader *leader;              /* borrowed; NULL = leader election off */
	struct store *store;                /* borrowed; a store_kube adds its watch restarts; may be NULL */
	struct kube_client *kc;             /* borrowed; its request counts by verb; may be NULL */
};

/* Appends the exposition text. */
int metrics_render(const struct metrics_source *src, struct buf *out);

struct metrics_server;

/* Listens on `listen` ("HOST:PORT", "[V6]:PORT" or ":PORT"; port 0 picks a
 * free one). `src` is copied; what it points to must outlive the server. */
int metrics_start(struct metrics_server **out, const char *listen, const struct metrics_source *src);
unsigned short metrics_port(const struct metrics_server *m);
/* NULL is a no-op. */
void metrics_stop(struct metrics_server *m);

/* Splits a listen address into host (new string; "0.0.0.0" for ":PORT") and
 * port. AL_ERR_INVALID naming the value otherwise. */
int metrics_parse_listen(const char *listen, char **out_host, unsigned short *out_port);

#endif
