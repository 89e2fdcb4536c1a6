/*
 * uploader_route.h - the Kubernetes frontend's way to a datasource's
 * uploader (the seed: "User -> NGINX -> Airlock Frontend -(proxies
 * request)-> Airlock Uploader Instance"). docs/frontend.md, "Kubernetes".
 *
 * What it promises:
 *  - Waking: uploader_route_wake() makes sure the uploader Deployment of an
 *    Uploaded datasource (upload-<uid>, as src/operator/datasource.c names
 *    it) runs: at 0 replicas uploader_wake (replicas 1 and the annotation
 *    xlscsde.nhs.uk/scaled-up-at), and it says whether the Deployment is
 *    ready (uploader_is_ready). The upload page calls it and reloads itself
 *    until the uploader is ready.
 *  - Proxying: /uploads/<deployment>[/...] on the frontend goes to the
 *    uploader's Service (URL from a template) after the person is
 *    authenticated (the frontend's session with a CSRF header on a state
 *    change, or a bearer token as the API takes it) and allowed, by the
 *    rules of the embedded uploader (upload_access_of in
 *    uploader/upload_embed.h): people who may not see the datasource get
 *    404, writes need the right to upload (403) and stage Uploading (409),
 *    "all files uploaded" the requester or an admin.
 *  - Only tus headers are passed on (a fixed list), so whatever X-Airlock-*
 *    a client sends never arrives; the proxy adds X-Airlock-Proxy-Secret
 *    (from a file; never logged) and X-Airlock-User.
 *  - Request bodies are streamed (the HTTP server's streaming mode into
 *    libcurl's read callback, one chunk in flight): a 2 GiB PATCH is never
 *    held in memory. Answers of the tus protocol are small (headers, or a
 *    JSON listing) and are held, up to UPLOADER_ROUTE_MAX_ANSWER bytes.
 *  - A Location from the uploader is given back as a path of the frontend.
 *  - An uploader that cannot be reached answers 503 with Retry-After and a
 *    message for a person; the proxy also wakes the Deployment again (an
 *    idle uploader scaled down by the operator comes back by itself).
 *  - After the uploader answers 200 to POST <base>/complete ("all files
 *    uploaded": it sealed the volume and returns the manifest), the gates'
 *    upload-complete event is fired as that person (upload_fire_complete),
 *    and the answer is {"manifest", "datasource"} as in the embedded airlock.
 *  - Activity: while it proxies, and when the upload page is opened on a
 *    running uploader, the annotation xlscsde.nhs.uk/last-activity
 *    (uploader_activity_touch) is written, at most once every
 *    UPLOADER_TOUCH_INTERVAL_S per uploader and process (uploader_touch_due).
 *    The operator scales an uploader down when max(scaled-up-at,
 *    last-activity) is older than its idle time (uploader_decide).
 *  - Namespaces: the uploaders are in `namespace`; an uploader whose
 *    datasource (its owner annotation) is in another namespace than the
 *    API's (api_namespace) is not served (404).
 *
 * Every Kubernetes call is src/runtime/uploader_scale.h's: the annotation
 * contract is the operator's, written once.
 *
 * Ownership: options are copied (strings duplicated); api, kc and the
 * authenticate userdata are borrowed and must outlive the route.
 * Thread safety: every function may be called from many threads at once.
 */
#ifndef AL_WEB_UPLOADER_ROUTE_H
#define AL_WEB_UPLOADER_ROUTE_H

#include <jansson.h>

#include "kube/kube.h"
#include "uploader/upload_embed.h"
#include "web/api.h"
#include "web/http_server.h"

#define UPLOADER_ROUTE_PREFIX "/uploads/"
#define UPLOADER_ROUTE_DEFAULT_TEMPLATE "http://{name}.{namespace}.svc:80"
#define UPLOADER_ROUTE_MAX_ANSWER ((size_t)16 << 20)
#define UPLOADER_ROUTE_RETRY_AFTER_S 5

struct uploader_route_options {
	struct api_ctx *api;          /* store, configuration, bearer tokens */
	struct kube_client *kc;       /* for the Deployments */
	const char *namespace;        /* where the uploader Deployments and Services are */
	/* The uploader's base URL; {name} is the Deployment (= Service) name and
	 * {namespace} the namespace. NULL: UPLOADER_ROUTE_DEFAULT_TEMPLATE. */
	const char *url_template;
	const char *secret_file;      /* the proxy secret, at least 16 characters */
	/* The frontend's session (upload_auth_session); may be NULL. */
	upload_embed_auth_fn authenticate;
	void *authenticate_ud;
};

struct uploader_route;

/* Reads the secret; AL_ERR_INVALID (naming the setting) without one, for a
 * short one or a template without a scheme. */
int uploader_route_open(struct uploader_route **out, const struct uploader_route_options *o);
/* NULL-safe. The server must be stopped first. */
void uploader_route_close(struct uploader_route *r);

/* For http_server_start_stream(..., uploader_route_stream_ops(), route):
 * /uploads/... is proxied; every other path passes to the buffered handler. */
const struct http_stream_ops *uploader_route_stream_ops(void);

/* The uploader Deployment of `ds` (a new string "upload-<uid>"), or NULL
 * (no uid, or out of memory). */
char *uploader_route_name(const json_t *ds);

/* Makes sure the uploader of `ds` runs (at 0 replicas: uploader_wake, so
 * the operator's idle clock starts then; running: uploader_activity_touch
 * when due). AL_OK with *out_ready 1 when its Deployment is ready
 * (uploader_is_ready), 0 while it starts;
 * AL_ERR_NOT_FOUND while the operator has not made the Deployment yet.
 * *out_endpoint (may be NULL) gets the tus collection the browser uses,
 * "/uploads/<name>" (a new string). */
int uploader_route_wake(struct uploader_route *r, const json_t *ds, int *out_ready, char **out_endpoint);

/* The frontend_ctx.uploader_start hook over uploader_route_wake: ud is the
 * route. AL_OK when ready; AL_ERR_UNAVAILABLE (message for a person) while
 * it starts or is being made. */
int uploader_route_page_hook(void *ud, const json_t *ds, char **out_endpoint);

#endif
