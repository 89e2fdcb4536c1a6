/*
 * The operator's metrics and probes (metrics.h).
 */
#include "operator/metrics.h"
#include "common/error.h"
#include "common/util.h"
#include "kube/kube.h"
#include "operator/kube_controller.h"
#include "operator/leader.h"
#include "store/store_kube.h"
#include "web/http_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct metrics_server {
	struct metrics_source src;
	struct http_server *srv;
};

static int family(struct buf *b, const char *name, const char *type, const char *help, unsigned long long v)
{
	return buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

int metrics_render(const struct metrics_source *src, struct buf *out)
{
	struct kube_controller_stats st;
	unsigned long long restarts;
	int leading, rc;

	kube_controller_stats(src->controller, &st);
	restarts = st.watch_restarts + (src->store ? store_kube_watch_restarts(src->store) : 0);
	leading = src->leader ? leader_is_leader(src->leader) : 1;
	if ((rc = family(out, "airlock_reconcile_total", "counter", "Datasource reconciles run.", st.reconciles)) ||
	    (rc = family(out, "airlock_reconcile_errors_total", "counter",
			 "Datasource reconciles that failed and are retried with back-off.", st.errors)) ||
	    (rc = family(out, "airlock_reconcile_conflicts_total", "counter",
			 "Datasource reconciles that met a conflict (409) and were requeued.", st.conflicts)) ||
	    (rc = family(out, "airlock_workqueue_depth", "gauge", "Keys waiting in the work queue.",
			 (unsigned long long)st.queue_depth)) ||
	    (rc = family(out, "airlock_watch_restarts_total", "counter",
			 "Relists and watches restarted after an error.", restarts)) ||
	    (rc = family(out, "airlock_events_total", "counter", "Kubernetes Events written.", st.events)) ||
	    (rc = family(out, "airlock_job_wakeups_total", "counter",
			 "Datasources woken by the end or deletion of one of their Jobs.", st.job_wakeups)) ||
	    (rc = family(out, "airlock_watch_echoes_skipped_total", "counter",
			 "Datasource watch events skipped as the echo of the operator's own write.", st.own_echoes)) ||
	    (rc = buf_appendf(out, "# HELP airlock_uploader_scale_downs_total Uploaders scaled back to 0 replicas, by "
				   "reason (idle: no use for AIRLOCK_UPLOADER_IDLE_SECONDS; sealed: the datasource left "
				   "Uploading).\n# TYPE airlock_uploader_scale_downs_total counter\n"
				   "airlock_uploader_scale_downs_total{reason=\"idle\"} %llu\n"
				   "airlock_uploader_scale_downs_total{reason=\"sealed\"} %llu\n",
			      (unsigned long long)st.uploader_scale_downs_idle,
			      (unsigned long long)st.uploader_scale_downs_sealed)) ||
	    (rc = family(out, "airlock_leader", "gauge",
			 "1 while this replica holds the leader Lease (or leader election is off).",
			 (unsigned long long)leading)))
		return rc;
	if (src->kc) {
		unsigned long long n[KUBE_VERB_N];
		kube_client_request_counts(src->kc, n);
		if ((rc = buf_appends(out, "# HELP airlock_kube_requests_total Requests sent to the Kubernetes API "
					   "server, by verb (WATCH: watches opened).\n"
					   "# TYPE airlock_kube_requests_total counter\n")))
			return rc;
		for (int i = 0; i < KUBE_VERB_N; i++)
			if ((rc = buf_appendf(out, "airlock_kube_requests_total{verb=\"%s\"} %llu\n",
					      kube_verb_name((enum kube_verb)i), n[i])))
				return rc;
	}
	return buf_appendf(out, "# HELP airlock_build_info The airlock's version.\n# TYPE airlock_build_info gauge\n"
				"airlock_build_info{version=\"%s\"} 1\n", AIRLOCK_VERSION);
}

static void handle(void *ud, const struct http_request *req, struct http_response *resp)
{
	struct metrics_server *m = ud;

	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
		http_response_text(resp, 405, "only GET\n");
		http_response_header(resp, "Allow", "GET, HEAD");
		return;
	}
	if (!strcmp(req->path, "/metrics")) {
		struct buf b;
		buf_init(&b, (size_t)1 << 20);
		if (metrics_render(&m->src, &b))
			http_response_text(resp, 500, "cannot render the metrics\n");
		else
			http_response_bytes(resp, 200, "text/plain; version=0.0.4; charset=utf-8", buf_cstr(&b), b.len);
		buf_free(&b);
	} else if (!strcmp(req->path, "/healthz")) {
		http_response_text(resp, 200, "ok\n");
	} else if (!strcmp(req->path, "/readyz")) {
		if (!m->src.controller || kube_controller_synced(m->src.controller))
			http_response_text(resp, 200, "ok\n");
		else
			http_response_text(resp, 503, "not ready: the first list of datasources has not succeeded yet\n");
	} else {
		http_response_text(resp, 404, "not found: /metrics, /healthz, /readyz\n");
	}
}

int metrics_parse_listen(const char *listen, char **out_host, unsigned short *out_port)
{
	const char *colon, *hs, *he;
	char *end = NULL;
	long port;

	*out_host = NULL;
	*out_port = 0;
	if (!listen || !(colon = strrchr(listen, ':')))
		return al_error_set(AL_ERR_INVALID, "--metrics-listen \"%s\": give HOST:PORT, such as 0.0.0.0:9090",
				    listen ? listen : "");
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
		return al_error_set(AL_ERR_INVALID, "--metrics-listen \"%s\": the port must be 0 to 65535", listen);
	hs = listen;
	he = colon;
	if (hs < he && *hs == '[') {
		if (he[-1] != ']')
			return al_error_set(AL_ERR_INVALID, "--metrics-listen \"%s\": an IPv6 address goes in [ ]", listen);
		hs++;
		he--;
	} else if (strchr(hs, ':') != colon) {
		return al_error_set(AL_ERR_INVALID, "--metrics-listen \"%s\": put an IPv6 address in [ ], e.g. [::]:9090",
				    listen);
	}
	*out_host = he > hs ? strndup(hs, (size_t)(he - hs)) : util_strdup("0.0.0.0");
	if (!*out_host)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	*out_port = (unsigned short)port;
	return AL_OK;
}

int metrics_start(struct metrics_server **out, const char *listen, const struct metrics_source *src)
{
	struct metrics_server *m;
	char *host = NULL;
	unsigned short port = 0;
	int rc;

	*out = NULL;
	if ((rc = metrics_parse_listen(listen, &host, &port)))
		return rc;
	if (!(m = calloc(1, sizeof(*m)))) {
		free(host);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	m->src = *src;
	rc = http_server_start(&m->srv, host, port, 4096, handle, m);
	free(host);
	if (rc) {
		free(m);
		return al_error_wrap(rc, "--metrics-listen %s", listen);
	}
	*out = m;
	return AL_OK;
}

unsigned short metrics_port(const struct metrics_server *m)
{
	return m ? http_server_port(m->srv) : 0;
}

void metrics_stop(struct metrics_server *m)
{
	if (!m)
		return;
	http_server_stop(m->srv);
	free(m);
}
