/*
 * kube.h - a small Kubernetes API client in C over libcurl and jansson:
 * configuration (kubeconfig or in-cluster), one-shot requests, watch streams.
 *
 * Configuration: kube_config_load() reads, in order, the path given, then
 * $KUBECONFIG (first file), then ~/.kube/config - using its current context
 * (server, certificate-authority[-data], client-certificate[-data] /
 * client-key[-data], token / tokenFile, namespace) - or, when none exists and
 * KUBERNETES_SERVICE_HOST is set, the in-cluster service account
 * (/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}).
 * A token read from a file is re-read at most every 60 s, so rotated
 * service-account tokens are picked up.
 *
 * Requests: kube_request() makes one request and maps the answer onto the
 * airlock's error codes, with the API server's Status message:
 *   2xx -> AL_OK; 400/422 -> AL_ERR_INVALID; 401 -> AL_ERR_UNAUTHORIZED;
 *   403 -> AL_ERR_FORBIDDEN; 404 -> AL_ERR_NOT_FOUND;
 *   409 reason AlreadyExists -> AL_ERR_EXISTS, other 409 -> AL_ERR_CONFLICT;
 *   410 -> AL_ERR_GONE; 413 -> AL_ERR_TOO_LARGE; 429, 5xx and network
 *   errors -> AL_ERR_UNAVAILABLE (retryable).
 * kube_request_retry() retries AL_ERR_UNAVAILABLE with exponential back-off
 * and full jitter (honouring Retry-After) until a deadline.
 * kube_request_text() GETs a text answer (pod logs) with a size cap.
 * A request's encoded body and the raw answer are wiped (sodium_memzero)
 * before they are freed: they may carry a Secret's data.
 *
 * Watches: kube_watch() streams a watch on a collection path, splitting the
 * body into lines with a bounded buffer (a line over KUBE_WATCH_LINE_MAX is
 * an error), parsing each as an event and calling back. BOOKMARK events carry
 * only a resourceVersion. An ERROR event with code 410 (or an HTTP 410) is
 * returned as AL_ERR_GONE: the caller must relist.
 *
 * Secrets: tokens and keys never reach logs or error messages.
 * Thread safety: a kube_client may be used from many threads at once.
 * Ownership: json_t ** outputs are new references; inputs are borrowed.
 */
#ifndef AL_KUBE_KUBE_H
#define AL_KUBE_KUBE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#define KUBE_WATCH_LINE_MAX ((size_t)16 << 20)

struct kube_config {
	char *server;          /* https://host:port, no trailing '/' */
	char *ca_pem;          /* CA bundle (PEM) or NULL for the system store */
	char *client_cert_pem; /* client certificate (PEM) or NULL */
	char *client_key_pem;  /* client key (PEM) or NULL */
	char *token;           /* bearer token or NULL */
	char *token_file;      /* re-read every 60 s when set */
	char *namespace;       /* context / in-cluster namespace, "default" if none */
	int insecure_skip_tls_verify;
};

int kube_config_load(struct kube_config *out, const char *path);
void kube_config_free(struct kube_config *cfg);

struct kube_client;

int kube_client_new(struct kube_client **out, const struct kube_config *cfg);
void kube_client_free(struct kube_client *kc);
/* The namespace of the configuration. Borrowed. */
const char *kube_client_namespace(const struct kube_client *kc);
/* Requests sent so far, by verb (a watch counts as WATCH, not GET): for the
 * operator's metrics and the benchmark. */
enum kube_verb { KUBE_VERB_GET, KUBE_VERB_LIST_WATCH, KUBE_VERB_POST, KUBE_VERB_PUT, KUBE_VERB_PATCH,
		 KUBE_VERB_DELETE, KUBE_VERB_OTHER, KUBE_VERB_N };
/* The verb's name as the metric label shows it ("GET", "WATCH", ...). */
const char *kube_verb_name(enum kube_verb v);
void kube_client_request_counts(const struct kube_client *kc, unsigned long long out[KUBE_VERB_N]);

/* How often a token_file is re-read, in ms (default KUBE_TOKEN_REFRESH_MS);
 * 0 re-reads it before every request. For tests. */
#define KUBE_TOKEN_REFRESH_MS 60000
void kube_client_set_token_refresh_ms(struct kube_client *kc, int ms);

/* One request. `path` starts with '/' and may carry a query. `body` may be
 * NULL; `content_type` NULL means application/json (use
 * "application/merge-patch+json" for a merge patch). out_status and out_json
 * may be NULL; *out_json is also set for error answers (the Status object). */
int kube_request(struct kube_client *kc, const char *method, const char *path, const json_t *body,
		 const char *content_type, long *out_status, json_t **out_json);
/* As kube_request, retrying retryable failures until `deadline_ms` from now. */
int kube_request_retry(struct kube_client *kc, const char *method, const char *path, const json_t *body,
		       const char *content_type, int deadline_ms, long *out_status, json_t **out_json);

/* GETs `path`, whose answer is text rather than JSON (a pod's log), into
 * *out: a new NUL-terminated string (free it), *out_len its length (may be
 * NULL; the text may hold NUL bytes). At most `max` bytes (1 to 64 MiB) are
 * kept: with KUBE_TEXT_TAIL the LAST `max` bytes of a longer answer (a log's
 * end is what matters; at most 2 * max bytes are held while reading), else a
 * longer answer is AL_ERR_TOO_LARGE. timeout_ms <= 0 means kube_request's
 * (60 s). An error answer maps onto the error codes as for kube_request,
 * with the Status' message; a 2xx with no body gives "". Counted as a GET;
 * not retried. */
#define KUBE_TEXT_TAIL 1
int kube_request_text(struct kube_client *kc, const char *path, size_t max, int flags, long timeout_ms, char **out,
		      size_t *out_len);

/* Called for every watch event. `type` is ADDED, MODIFIED, DELETED or
 * BOOKMARK; `object` is borrowed. Return non-zero to stop the watch. */
typedef int (*kube_watch_fn)(void *userdata, const char *type, const json_t *object);

/* Watches `collection_path` (e.g. /apis/xlscsde.nhs.uk/v1/namespaces/ns/analyticsworkspacedatasources)
 * from `resource_version` with allowWatchBookmarks and timeoutSeconds, until
 * the server ends the stream (AL_OK), the callback stops it (AL_OK), *stop
 * becomes non-zero (AL_OK), or an error (AL_ERR_GONE: relist). `label_selector`
 * may be NULL. */
int kube_watch(struct kube_client *kc, const char *collection_path, const char *label_selector,
	       const char *resource_version, int timeout_seconds, kube_watch_fn fn, void *userdata,
	       const atomic_int *stop);

/* Splits a byte stream into lines for watch parsing; exposed for tests and
 * fuzzing. Feed chunks as they arrive; complete lines are passed to `line`
 * without their "\n" or "\r\n" (empty lines too). A line longer than
 * max_line bytes is AL_ERR_TOO_LARGE. A non-zero return from `line` stops the
 * feed and is returned; after any non-zero result the splitter keeps
 * returning it. */
struct kube_line_splitter;
typedef int (*kube_line_fn)(void *userdata, const char *line, size_t len);
int kube_line_splitter_new(struct kube_line_splitter **out, size_t max_line, kube_line_fn fn, void *userdata);
int kube_line_splitter_feed(struct kube_line_splitter *s, const char *data, size_t len);
/* At the end of the stream: passes a last line that had no newline, if any. */
int kube_line_splitter_flush(struct kube_line_splitter *s);
void kube_line_splitter_free(struct kube_line_splitter *s);

/* Parses one watch line into its type and object (new reference). */
int kube_watch_event_parse(const char *line, size_t len, char **out_type, json_t **out_object);

/* Path builders (new strings, free them). `ns` NULL = cluster scope / all
 * namespaces. For the airlock's kinds the group is xlscsde.nhs.uk/v1; core
 * kinds (v1), batch/v1, apps/v1, networking.k8s.io/v1, coordination.k8s.io/v1
 * and events.k8s.io/v1 are known by their resource (plural) name. */
char *kube_path(const char *api_group_version, const char *ns, const char *resource, const char *name,
		const char *subresource);

/* Back-off for retries: exponential from base_ms, capped at max_ms, with full
 * jitter (a random delay in [0, computed]). attempt starts at 0. */
int kube_backoff_ms(int attempt, int base_ms, int max_ms);

#endif
