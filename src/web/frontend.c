#include "web/frontend.h"

#include "audit/audit.h"
#include "auth/accounts.h"
#include "auth/oidc.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/gates.h"
#include "uploader/upload_embed.h"
#include "resource/resource.h"
#include "store/store.h"
#include "web/assets/assets.h"
#include "web/html.h"
#include "web/login_oidc.h"
#include "web/session.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define KIND_DS "AnalyticsWorkspaceDataSource"
#define WORKSPACE_LABEL "xlscsde.nhs.uk/workspace"
#define TYPE_LABEL "xlscsde.nhs.uk/type"
#define MAX_SEGMENTS 8
#define PAGE_MAX ((size_t)16 << 20)
#define COOKIE_SESSION "airlock_session"
#define COOKIE_SESSION_SECURE "__Host-airlock_session"
#define COOKIE_LOGIN "airlock_login"
#define COOKIE_LOGIN_SECURE "__Host-airlock_login"
#define LOGIN_COOKIE_SECONDS 3600
#define HISTORY_MAX 500        /* audit records shown on one page, newest kept */
#define AUDIT_BATCH 1000
#define PREPARING_REFRESH_S 2  /* the upload page reloads itself while the area is made */

/* One page request being served. */
struct page {
	struct frontend_ctx *f;
	const struct http_request *req;
	struct http_response *resp;
	struct session sess;
	int have_session;
	json_t *user;          /* {username, roles[]} while logged in */
	const char *username;
	json_t *form;          /* the fields of a POST body */
	const char *seg[MAX_SEGMENTS];
	size_t nseg;
	char *path_copy;
	struct buf html;       /* the content of <main> */
	int err;               /* first error while building html: the page answers 500 */
	const char *extra_csp; /* the upload widget's sources, on its page only */
	int refresh;           /* > 0: the page reloads itself after this many seconds */
};

/* ---- small helpers ----------------------------------------------------- */

/* Appends to the page; the first failure sticks and later calls do nothing,
 * so page code reads as a template and checks once, in finish(). */
static void emit(struct page *p, const char *fmt, ...)
{
	va_list ap;
	int rc;
	if (p->err)
		return;
	va_start(ap, fmt);
	rc = html_vfmt(&p->html, fmt, ap);
	va_end(ap);
	if (rc)
		p->err = rc;
}

/* The value at a dotted path ("status.manifest.digest"), or NULL. */
static const json_t *jget(const json_t *o, const char *path)
{
	char key[64];
	const char *p = path;
	while (o && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		o = json_object_get(o, key);
		p += n + (dot ? 1 : 0);
	}
	return o;
}

/* A string at a dotted path, or NULL. */
static const char *jstr(const json_t *o, const char *path)
{
	return json_string_value(jget(o, path));
}

static const char *label_of(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(jget(obj, "metadata.labels"), key));
}

static const char *field(const struct page *p, const char *name)
{
	return json_string_value(json_object_get(p->form, name));
}

static int has_role(const json_t *user, const char *role)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(user, "roles"), i, r)
		if (json_is_string(r) && !strcmp(json_string_value(r), role))
			return 1;
	return 0;
}

/* "1.2 MB (1234567 bytes)"-style sizes for people; out holds 32 bytes. */
static void human_size(json_int_t n, char out[32])
{
	static const char *const unit[] = { "bytes", "kB", "MB", "GB", "TB", "PB" };
	double v = (double)n;
	size_t u = 0;
	while (v >= 1000.0 && u < 5) {
		v /= 1000.0;
		u++;
	}
	if (u == 0)
		snprintf(out, 32, "%lld bytes", (long long)n);
	else
		snprintf(out, 32, "%.1f %s", v, unit[u]);
}

static int secure_site(const struct page *p)
{
	return p->f->tls || (p->f->external_url && !strncasecmp(p->f->external_url, "https://", 8));
}

static const char *session_cookie(const struct page *p)
{
	return secure_site(p) ? COOKIE_SESSION_SECURE : COOKIE_SESSION;
}

static const char *login_cookie(const struct page *p)
{
	return secure_site(p) ? COOKIE_LOGIN_SECURE : COOKIE_LOGIN;
}

/* Reads cookie `name` into out if it has the shape of an id. */
static int cookie_id(const struct page *p, const char *name, char out[SESSION_ID_LEN + 1])
{
	const char *v;
	size_t len;
	if (session_cookie_find(http_request_header(p->req, "Cookie"), name, &v, &len) || len != SESSION_ID_LEN)
		return 0;
	memcpy(out, v, len);
	out[len] = '\0';
	return session_id_valid(out);
}

/* value NULL clears the cookie. One Set-Cookie header per cookie: a second
 * call for the same cookie replaces the first, other cookies are kept (a
 * login sets the session cookie and clears the pre-login one). */
static int set_cookie(struct page *p, const char *name, const char *value, int max_age)
{
	struct http_response *r = p->resp;
	size_t nlen = strlen(name);
	struct buf b;
	int rc;
	buf_init(&b, 1024);
	rc = buf_appendf(&b, "%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s", name, value ? value : "",
			 value ? max_age : 0, secure_site(p) ? "; Secure" : "");
	for (size_t i = 0; !rc && i < r->n_headers; i++) {
		if (!strcasecmp(r->headers[i].name, "Set-Cookie") && !strncmp(r->headers[i].value, name, nlen) &&
		    r->headers[i].value[nlen] == '=') {
			char *v = buf_detach(&b);
			if (!v)
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			else {
				free(r->headers[i].value);
				r->headers[i].value = v;
			}
			buf_free(&b);
			return rc;
		}
	}
	if (!rc)
		rc = http_response_add_header(r, "Set-Cookie", buf_cstr(&b));
	buf_free(&b);
	return rc;
}

static int status_code(int http_status)
{
	switch (http_status) {
	case 400: return AL_ERR_INVALID;
	case 401: return AL_ERR_UNAUTHORIZED;
	case 403: return AL_ERR_FORBIDDEN;
	case 404: return AL_ERR_NOT_FOUND;
	case 409: return AL_ERR_CONFLICT;
	case 410: return AL_ERR_GONE;
	case 413: return AL_ERR_TOO_LARGE;
	case 503: return AL_ERR_UNAVAILABLE;
	case 504: return AL_ERR_TIMEOUT;
	default: return AL_ERR_INTERNAL;
	}
}

/* ---- the API, in-process, as the logged-in user --------------------------- */

/* Calls /api/v1 as p->user. On 2xx *out is the answer; otherwise the API's
 * message is set as the error, with the code its status stands for. */
static int api_call(struct page *p, const char *method, const char *path, const char *const *query,
		    const json_t *body, json_t **out)
{
	struct http_request r;
	struct http_response resp;
	char *text = NULL;
	json_t *answer = NULL;
	int rc;

	*out = NULL;
	if (body && !(text = json_dumps(body, JSON_COMPACT)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	memset(&r, 0, sizeof(r));
	r.method = method;
	r.path = path;
	r.body = text ? text : "";
	r.body_len = text ? strlen(text) : 0;
	r.remote_addr = p->req->remote_addr;
	r.test_query = query;
	http_response_init(&resp);
	api_handle_as(p->f->api, p->user, &r, &resp);
	if (resp.body.len)
		answer = json_loadb(resp.body.ptr, resp.body.len, 0, NULL);
	if (resp.status >= 200 && resp.status < 300 && answer) {
		*out = answer;
		rc = AL_OK;
	} else {
		const char *msg = jstr(answer, "error.message");
		rc = al_error_set(status_code(resp.status), "%s", msg ? msg : "the request could not be done");
		json_decref(answer);
	}
	http_response_free(&resp);
	free(text);
	return rc;
}

/* GET /api/v1/<coll>/<name> */
static int api_get(struct page *p, const char *coll, const char *name, json_t **out)
{
	struct buf path;
	int rc;
	buf_init(&path, 4096);
	*out = NULL;
	rc = buf_appendf(&path, "/api/v1/%s%s%s", coll, name ? "/" : "", name ? name : "");
	if (!rc)
		rc = api_call(p, "GET", buf_cstr(&path), NULL, NULL, out);
	buf_free(&path);
	return rc;
}

/* The workspace, if the user may act in it (a member, or an admin). */
static int get_workspace(struct page *p, const char *ws, json_t **out)
{
	int rc = api_get(p, "workspaces", ws, out);
	if (rc == AL_ERR_NOT_FOUND)
		return al_error_set(AL_ERR_NOT_FOUND, "workspace '%s' not found", ws);
	return rc;
}

/* A datasource of workspace ws; one of another workspace is not found, even
 * if the user may see it by other means (it is not this page's). */
static int get_ds_in(struct page *p, const char *ws, const char *name, json_t **ws_out, json_t **out)
{
	json_t *w = NULL;
	int rc;

	*out = NULL;
	if ((rc = get_workspace(p, ws, &w)))
		return rc;
	rc = api_get(p, "datasources", name, out);
	if (!rc && (!label_of(*out, WORKSPACE_LABEL) || strcmp(label_of(*out, WORKSPACE_LABEL), ws))) {
		json_decref(*out);
		*out = NULL;
		rc = al_error_set(AL_ERR_NOT_FOUND, "datasource '%s' not found", name);
	}
	if (!rc && ws_out)
		*ws_out = w;
	else
		json_decref(w);
	return rc;
}

/* ---- gates, as the pages need them ---------------------------------------- */

/* The approval types of the gate a stage waits on (NULL: none). */
static const struct gate_approval_type *gate_types(const struct page *p, const char *stage, size_t *n)
{
	const struct gates_config *g = &p->f->api->cfg->gates;
	*n = 0;
	if (!strcmp(stage, STAGE_AWAITING_REQUEST)) {
		*n = g->n_request;
		return g->request;
	}
	if (!strcmp(stage, STAGE_AWAITING_APPROVAL)) {
		*n = g->n_review;
		return g->review;
	}
	return NULL;
}

static int can_decide_at(const struct page *p, const char *stage)
{
	size_t n;
	const struct gate_approval_type *t = gate_types(p, stage, &n);
	for (size_t i = 0; i < n; i++)
		if (has_role(p->user, t[i].role))
			return 1;
	return 0;
}

/* May the user review anything at all (the approver queue)? */
static int is_reviewer(const struct page *p)
{
	return can_decide_at(p, STAGE_AWAITING_REQUEST) || can_decide_at(p, STAGE_AWAITING_APPROVAL);
}

static int may_upload(const struct page *p)
{
	return has_role(p->user, "researcher") || has_role(p->user, "data-engineer") || has_role(p->user, "admin");
}

/* ---- responses ------------------------------------------------------------- */

static const char *stage_class(const char *stage)
{
	if (!strcmp(stage, STAGE_APPROVED) || !strcmp(stage, STAGE_PUBLISHED))
		return "stage ok";
	if (!strcmp(stage, STAGE_REJECTED) || !strcmp(stage, STAGE_FAILED) || !strcmp(stage, STAGE_PURGED))
		return "stage bad";
	if (*stage)
		return "stage wait";
	return "stage";
}

static void emit_stage(struct page *p, const char *stage)
{
	emit(p, "<span class=\"%s\">%s</span>", stage_class(stage), *stage ? stage : "Submitted");
}

static int security_headers(struct page *p)
{
	struct buf csp;
	int rc;
	buf_init(&csp, 4096);
	rc = buf_appends(&csp, FRONTEND_CSP);
	if (!rc && p->extra_csp)
		rc = buf_appendf(&csp, "; %s", p->extra_csp);
	if (!rc)
		rc = http_response_header(p->resp, "Content-Security-Policy", buf_cstr(&csp));
	buf_free(&csp);
	/* same-origin: our own form posts carry Origin (no-referrer would make
	 * it "null"), and no URL of ours is told to other sites. */
	if (!rc)
		rc = http_response_header(p->resp, "Referrer-Policy", "same-origin");
	if (!rc)
		rc = http_response_header(p->resp, "X-Frame-Options", "DENY");
	return rc;
}

/* Wraps p->html into a whole document and sends it. */
static void finish(struct page *p, int status, const char *title)
{
	struct buf doc;
	int rc;

	if (p->err) {
		log_error("cannot render %s: %s", p->req->path, al_error_message());
		http_response_text(p->resp, 500, "the page could not be rendered");
		return;
	}
	buf_init(&doc, PAGE_MAX);
	rc = html_fmt(&doc,
		      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
		      NULL);
	if (!rc && p->refresh > 0)
		rc = html_fmt(&doc, "<meta http-equiv=\"refresh\" content=\"%d\">\n", p->refresh);
	if (!rc)
		rc = html_fmt(&doc,
			      "<title>%s &middot; Airlock</title>\n<link rel=\"stylesheet\" href=\"/static/airlock.css\">\n"
			      "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n"
			      "</head>\n<body>\n<header class=\"top\"><a class=\"brand\" href=\"/\">Airlock</a>",
			      title);
	if (!rc && p->have_session && p->username) {
		rc = html_fmt(&doc, "<nav><a href=\"/\">Workspaces</a>%R<span class=\"who\">%s</span>"
				    "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"%s\">"
				    "<button type=\"submit\">Log out</button></form></nav>",
			      is_reviewer(p) ? "<a href=\"/approvals\">Approvals</a>" : "", p->username, p->sess.csrf);
	}
	if (!rc)
		rc = html_fmt(&doc, "</header>\n<main>\n%R</main>\n</body>\n</html>\n", buf_cstr(&p->html));
	if (!rc)
		rc = security_headers(p);
	if (!rc)
		rc = http_response_bytes(p->resp, status, "text/html; charset=utf-8", doc.ptr, doc.len);
	if (rc) {
		log_error("cannot send %s: %s", p->req->path, al_error_message());
		http_response_text(p->resp, 500, "the page could not be rendered");
	}
	buf_free(&doc);
}

static void redirect(struct page *p, const char *location)
{
	http_response_text(p->resp, 303, "See Other");
	if (http_response_header(p->resp, "Location", location) || security_headers(p))
		http_response_text(p->resp, 500, "cannot redirect");
}

static const char *status_title(int status)
{
	switch (status) {
	case 400: return "That did not work";
	case 401: return "Please log in";
	case 403: return "Not allowed";
	case 404: return "Not found";
	case 409: return "Not possible right now";
	case 413: return "Too large";
	case 503: return "Busy, try again";
	default: return "Something went wrong";
	}
}

/* The error page for rc, with the message set for it. */
static int fail(struct page *p, int rc)
{
	int status = al_error_http_status(rc);
	char *msg = util_strdup(*al_error_message() ? al_error_message() : al_error_name(rc));

	if (status >= 500)
		log_error("page %s %s: %s", p->req->method, p->req->path, msg ? msg : "?");
	buf_reset(&p->html);
	p->err = 0;
	p->refresh = 0;
	p->extra_csp = NULL;
	emit(p, "<h1>%s</h1>\n<div class=\"card error\"><p>%s</p></div>\n", status_title(status),
	     msg ? msg : "out of memory");
	if (status == 401)
		emit(p, "<p><a class=\"button\" href=\"/login\">Log in</a></p>\n");
	else
		emit(p, "<p><a href=\"/\">Back to your workspaces</a></p>\n");
	free(msg);
	finish(p, status, status_title(status));
	return rc;
}

static void audit_user(struct page *p, const char *actor, const char *action)
{
	json_t *a = audit_entry_new("user", actor, action, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	json_t *ref = json_pack("{s:s, s:s, s:s}", "kind", "User", "namespace", "", "name", actor);
	if (a && ref && json_object_set_new(a, "object", ref) == 0) {
		ref = NULL;
		if (store_audit_append(p->f->api->store, a))
			log_warn("cannot audit %s of %s: %s", action, actor, al_error_message());
	}
	json_decref(ref);
	json_decref(a);
}

/* ---- same origin --------------------------------------------------------- */

/* Does "scheme://host[:port]" (len bytes) name this airlock? With an
 * external URL it must be that URL's origin; without one, the host must be
 * the Host the browser asked for (the scheme is not compared: behind a TLS
 * proxy we cannot know it, and an attacker cannot choose our Host). */
static int origin_is_ours(const struct page *p, const char *o, size_t len)
{
	const char *ext = p->f->external_url;
	if (ext) {
		const char *hs = strstr(ext, "://");
		const char *end = hs ? strchr(hs + 3, '/') : NULL;
		size_t elen = end ? (size_t)(end - ext) : strlen(ext);
		return hs && elen == len && !strncasecmp(ext, o, len);
	} else {
		const char *host = http_request_header(p->req, "Host");
		const char *hs = memmem(o, len, "://", 3);
		if (!host || !hs)
			return 0;
		hs += 3;
		return strlen(host) == len - (size_t)(hs - o) && !strncasecmp(hs, host, strlen(host));
	}
}

/* A state change must come from our own pages. Browsers say where a form
 * came from in Origin (or at least Referer); a request with neither is not
 * from a browser's cross-site form, and the CSRF token still decides. */
static int same_origin(const struct page *p)
{
	const char *origin = http_request_header(p->req, "Origin");
	const char *referer = http_request_header(p->req, "Referer");
	if (origin)
		return strcmp(origin, "null") && origin_is_ours(p, origin, strlen(origin));
	if (referer) {
		const char *hs = strstr(referer, "://");
		const char *end = hs ? strchr(hs + 3, '/') : NULL;
		return hs && origin_is_ours(p, referer, end ? (size_t)(end - referer) : strlen(referer));
	}
	return 1;
}

/* ---- sessions -------------------------------------------------------------- */

static int oidc_session_user(struct page *p);

/* Loads the session named by the cookie, and the user behind it. */
static int load_session(struct page *p)
{
	char id[SESSION_ID_LEN + 1];
	const char *source;
	int rc;

	if (!cookie_id(p, session_cookie(p), id))
		return al_error_set(AL_ERR_UNAUTHORIZED, "log in first");
	if ((rc = session_get(p->f->sessions, id, &p->sess)))
		return rc;
	p->have_session = 1;
	source = json_string_value(json_object_get(p->sess.data, "source"));
	if (source && !strcmp(source, "local") && p->sess.secret) {
		/* The session holds the local account's bearer token, so a password
		 * change, disabling or deleting the user ends it too. */
		rc = accounts_authenticate(p->f->api->accounts, p->sess.secret, &p->user);
	} else if (source && !strcmp(source, "oidc") && p->f->api->oidc) {
		/* The user Keycloak's tokens gave at login (roles, workspaces from
		 * the groups claim), for as long as those tokens are good. */
		rc = oidc_session_user(p);
	} else {
		/* Anything else (a pending OIDC login among them) is not a login. */
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "your session has ended: log in again");
	}
	if (rc == AL_ERR_UNAUTHORIZED) {
		session_destroy(p->f->sessions, id);
		session_free(&p->sess);
		p->have_session = 0;
		return al_error_set(AL_ERR_UNAUTHORIZED, "your session has ended: log in again");
	}
	if (rc)
		return rc;
	p->username = json_string_value(json_object_get(p->user, "username"));
	return p->username ? AL_OK : al_error_set(AL_ERR_INTERNAL, "a session without a user");
}

/* ---- OIDC login (docs/frontend.md, "Logging in with Keycloak") ------------- */

/* The Keycloak button needs a provider and a confidential client. */
static int oidc_enabled(const struct page *p)
{
	return p->f->api->oidc && p->f->api->cfg && p->f->api->cfg->oidc.client_secret_file;
}

/* <our origin><path>, as registered at the provider (redirect URIs). */
static int our_url(const struct page *p, const char *path, struct buf *out)
{
	int rc = login_oidc_base_url(out, p->f->external_url, p->f->tls, http_request_header(p->req, "Host"));
	return rc ? rc : buf_appends(out, path);
}

/* An OIDC login that did not work: nothing was made, so the way on is to
 * start again (not "back to your workspaces"). */
static int login_failed(struct page *p, int rc)
{
	int status = al_error_http_status(rc);
	char *msg = util_strdup(*al_error_message() ? al_error_message() : al_error_name(rc));

	if (status >= 500)
		log_error("page %s %s: %s", p->req->method, p->req->path, msg ? msg : "?");
	buf_reset(&p->html);
	p->err = 0;
	emit(p, "<h1>Login failed</h1>\n<div class=\"card error\" role=\"alert\"><p>%s</p></div>\n"
		"<p><a class=\"button\" href=\"/login\">Log in again</a></p>\n",
	     msg ? msg : "out of memory");
	free(msg);
	finish(p, status, "Login failed");
	return rc;
}

/* GET /login/oidc: the authorization code flow with PKCE starts here. What
 * the callback must check (state, nonce, PKCE verifier) stays on the server
 * in a pending session named by the pre-login cookie. */
static int oidc_start(struct page *p)
{
	struct oidc_login l;
	struct session pending;
	struct buf uri;
	json_t *data = NULL;
	char old[SESSION_ID_LEN + 1];
	int rc;

	memset(&l, 0, sizeof(l));
	memset(&pending, 0, sizeof(pending));
	buf_init(&uri, 4096);
	if (!oidc_enabled(p))
		rc = al_error_set(AL_ERR_NOT_FOUND, "this airlock has no Keycloak login: use the login form");
	else if (!(rc = our_url(p, "/login/callback", &uri)) &&
		 !(rc = oidc_login_start(p->f->api->oidc, buf_cstr(&uri), NULL, &l)) &&
		 !(rc = login_oidc_pending_data(&l, (int64_t)time(NULL), &data)))
		rc = session_create(p->f->sessions, data, l.code_verifier, &pending);
	if (!rc) {
		/* One login in progress per browser: an earlier one is dropped. */
		if (cookie_id(p, login_cookie(p), old))
			session_destroy(p->f->sessions, old);
		rc = set_cookie(p, login_cookie(p), pending.id, LOGIN_OIDC_PENDING_SECONDS);
		if (rc)
			session_destroy(p->f->sessions, pending.id);
	}
	if (!rc)
		redirect(p, l.url);
	json_decref(data);
	session_free(&pending);
	oidc_login_free(&l);
	buf_free(&uri);
	return rc ? login_failed(p, rc) : AL_OK;
}

/* GET /login/callback?code&state (or ?error): the provider sends the
 * browser back. state is this step's CSRF protection; the pending login is
 * used up whatever happens, so a state or code is tried at most once. */
static int oidc_callback(struct page *p)
{
	const char *error = http_request_query(p->req, "error"), *state = http_request_query(p->req, "state");
	const char *code = http_request_query(p->req, "code");
	char pre[SESSION_ID_LEN + 1], old[SESSION_ID_LEN + 1];
	struct session pending, fresh;
	struct oidc_tokens t;
	struct buf uri;
	json_t *data = NULL;
	char *secret = NULL;
	int have_pending = 0, rc;

	memset(&pending, 0, sizeof(pending));
	memset(&fresh, 0, sizeof(fresh));
	memset(&t, 0, sizeof(t));
	buf_init(&uri, 4096);
	if (!oidc_enabled(p))
		return fail(p, al_error_set(AL_ERR_NOT_FOUND, "there is no such page"));
	if (cookie_id(p, login_cookie(p), pre) && !session_get(p->f->sessions, pre, &pending)) {
		have_pending = 1;
		session_destroy(p->f->sessions, pre);
	}
	if (error)
		rc = login_oidc_provider_error(error);
	else
		rc = login_oidc_pending_check(have_pending ? pending.data : NULL, state, (int64_t)time(NULL));
	if (!rc && (!code || !*code))
		rc = al_error_set(AL_ERR_INVALID, "Keycloak sent no authorization code. Please log in again.");
	if (!rc)
		rc = our_url(p, "/login/callback", &uri);
	if (!rc) {
		rc = oidc_login_finish(p->f->api->oidc, code, buf_cstr(&uri), pending.secret,
				       json_string_value(json_object_get(pending.data, "nonce")), &t);
		if (rc == AL_ERR_UNAUTHORIZED)
			log_info("oidc: a web login was refused: %s", al_error_message());
	}
	if (!rc)
		rc = login_oidc_session_new(&t, &data, &secret);
	/* A new id at every login: a session id planted before it is worth nothing. */
	if (!rc)
		rc = session_create(p->f->sessions, data, secret, &fresh);
	if (!rc) {
		if (cookie_id(p, session_cookie(p), old))
			session_destroy(p->f->sessions, old);
		audit_user(p, json_string_value(json_object_get(data, "username")), "login");
		if ((rc = set_cookie(p, session_cookie(p), fresh.id, session_store_max_seconds(p->f->sessions))))
			session_destroy(p->f->sessions, fresh.id);
		/* The pending login it named is used up: the browser need not keep
		 * sending it (the login form makes a new one when it needs one). */
		else if (have_pending && set_cookie(p, login_cookie(p), NULL, 0))
			log_warn("oidc: cannot clear the pre-login cookie: %s", al_error_message());
	}
	if (secret) {
		sodium_memzero(secret, strlen(secret));
		free(secret);
	}
	json_decref(data);
	oidc_tokens_free(&t);
	session_free(&pending);
	session_free(&fresh);
	buf_free(&uri);
	if (rc)
		return login_failed(p, rc);
	redirect(p, "/");
	return AL_OK;
}

/* Takes `data` and `secret` (stolen) as the page's session. */
static void adopt_session(struct page *p, json_t *data, char *secret)
{
	json_decref(p->sess.data);
	p->sess.data = data;
	if (p->sess.secret) {
		sodium_memzero(p->sess.secret, strlen(p->sess.secret));
		free(p->sess.secret);
	}
	p->sess.secret = secret;
}

/* Another request of the same session may have refreshed it first (and the
 * provider, rotating refresh tokens, then refuses ours): if the stored
 * session has newer tokens than the ones we read, they are ours too. Read
 * again after a moment if not yet: the winner writes right after its
 * answer. 1 if adopted. */
static int adopt_winner(struct page *p)
{
	int64_t had = (int64_t)json_integer_value(json_object_get(p->sess.data, "expires_at"));

	for (int i = 0; i < 2; i++) {
		struct session again;
		if (i)
			usleep(500 * 1000);
		if (session_get(p->f->sessions, p->sess.id, &again))
			return 0;
		if ((int64_t)json_integer_value(json_object_get(again.data, "expires_at")) > had) {
			adopt_session(p, again.data, again.secret);
			again.data = NULL;
			again.secret = NULL;
			session_free(&again);
			return 1;
		}
		session_free(&again);
	}
	return 0;
}

/* Refreshes the tokens of the page's OIDC session and stores the result
 * under the same id (docs/frontend.md, "Refreshing"). AL_ERR_UNAUTHORIZED:
 * the provider ended it (the session must end); AL_ERR_UNAVAILABLE: the
 * provider cannot be reached (nothing changed). */
static int oidc_refresh_session(struct page *p, const char *refresh_token)
{
	const char *subject = json_string_value(json_object_get(json_object_get(p->sess.data, "user"), "subject"));
	const char *username = json_string_value(json_object_get(p->sess.data, "username"));
	struct oidc_tokens t;
	json_t *data = NULL;
	char *secret = NULL;
	int rc;

	memset(&t, 0, sizeof(t));
	rc = oidc_refresh(p->f->api->oidc, refresh_token, subject, &t);
	if (rc == AL_ERR_UNAUTHORIZED && adopt_winner(p)) {
		log_info("oidc: the session of %s was refreshed by another request", username ? username : "?");
		return AL_OK;
	}
	if (rc == AL_ERR_UNAUTHORIZED)
		log_info("oidc: the session of %s ends: %s", username ? username : "?", al_error_message());
	if (!rc)
		rc = login_oidc_session_refreshed(p->sess.data, p->sess.secret, &t, &data, &secret);
	if (!rc)
		rc = session_update(p->f->sessions, p->sess.id, data, secret);
	if (!rc) {
		adopt_session(p, data, secret);
		data = NULL;
		secret = NULL;
	}
	json_decref(data);
	if (secret) {
		sodium_memzero(secret, strlen(secret));
		free(secret);
	}
	oidc_tokens_free(&t);
	return rc;
}

/* load_session for an "oidc" session: its user while the tokens are good,
 * refreshed shortly before they end. When Keycloak cannot be reached the
 * session goes on only as long as the tokens it already gave (no access
 * beyond what Keycloak allowed); after that the pages answer 503 but the
 * session is kept, so it resumes when Keycloak is back. */
static int oidc_session_user(struct page *p)
{
	int64_t now = (int64_t)time(NULL);
	char *refresh_token = NULL;
	int rc;

	if ((rc = login_oidc_secret_token(p->sess.secret, "refresh_token", &refresh_token)))
		return rc;
	if (login_oidc_refresh_state(p->sess.data, refresh_token != NULL, now) == LOGIN_OIDC_REFRESH) {
		rc = oidc_refresh_session(p, refresh_token);
		if (rc == AL_ERR_UNAVAILABLE) {
			json_t *exp = json_object_get(p->sess.data, "expires_at");
			log_warn("oidc: cannot refresh a web session: %s", al_error_message());
			rc = json_is_integer(exp) && (int64_t)json_integer_value(exp) > now
				     ? AL_OK
				     : al_error_set(AL_ERR_UNAVAILABLE, "Keycloak cannot be reached to renew your "
									"session. Try again in a minute.");
		}
	}
	if (refresh_token) {
		sodium_memzero(refresh_token, strlen(refresh_token));
		free(refresh_token);
	}
	if (rc)
		return rc;
	return login_oidc_session_user(p->sess.data, now, &p->user);
}

/* After POST /logout of an OIDC session: the airlock session is gone; the
 * provider's session ends through RP-initiated logout, offered as a link
 * because form-action 'self' forbids redirecting a form post off-site. */
static void oidc_logged_out(struct page *p, const char *id_token)
{
	struct buf back;
	char *url = NULL;
	int rc;

	p->have_session = 0;
	buf_init(&back, 4096);
	if (!(rc = our_url(p, "/login", &back)))
		rc = oidc_logout_url(p->f->api->oidc, id_token, buf_cstr(&back), &url);
	if (rc)
		log_warn("oidc: no logout link for the provider: %s", al_error_message());
	emit(p, "<h1>Logged out</h1>\n<div class=\"card notice\"><p>You are logged out of the airlock.</p>\n");
	if (url)
		emit(p, "<p>You may still be logged in at Keycloak (and so into other services). To end that "
			"too:</p>\n<p><a class=\"button\" id=\"oidc-logout\" href=\"%s\">Log out of Keycloak</a></p>\n",
		     url);
	emit(p, "</div>\n<p><a href=\"/login\">Log in again</a></p>\n");
	finish(p, 200, "Logged out");
	free(url);
	buf_free(&back);
}

/* ---- login and logout -------------------------------------------------------- */

static int login_page(struct page *p, int status, const char *username, const char *message)
{
	char pre[SESSION_ID_LEN + 1], csrf[SESSION_CSRF_LEN + 1];
	int rc;

	/* The login form has its CSRF token too (login CSRF: someone else's
	 * site must not log you in as them), bound to a pre-login cookie. */
	if (!cookie_id(p, login_cookie(p), pre)) {
		if ((rc = session_new_id(pre)) || (rc = set_cookie(p, login_cookie(p), pre, LOGIN_COOKIE_SECONDS)))
			return fail(p, rc);
	}
	if ((rc = session_csrf_token(pre, csrf)))
		return fail(p, rc);
	emit(p, "<h1>Log in</h1>\n");
	if (message)
		emit(p, "<div class=\"card error\" role=\"alert\"><p>%s</p></div>\n", message);
	/* A link, not a form: form-action 'self' would forbid the redirect to
	 * the provider that follows. */
	if (oidc_enabled(p))
		emit(p, "<div class=\"card stack\"><a class=\"button\" href=\"/login/oidc\">Log in with Keycloak</a>"
			"</div>\n<p class=\"muted\">Or with a local account of this airlock:</p>\n");
	emit(p, "<form class=\"card stack\" method=\"post\" action=\"/login\">\n"
		"<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n"
		"<label for=\"username\">Username</label>\n"
		"<input type=\"text\" id=\"username\" name=\"username\" value=\"%s\" autocomplete=\"username\" "
		"autocapitalize=\"none\" spellcheck=\"false\" required>\n"
		"<label for=\"password\">Password</label>\n"
		"<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\n"
		"<button type=\"submit\">Log in</button>\n</form>\n",
	     csrf, username ? username : "");
	sodium_memzero(csrf, sizeof(csrf));
	finish(p, status, "Log in");
	return AL_OK;
}

static int login_submit(struct page *p)
{
	char pre[SESSION_ID_LEN + 1];
	const char *u = field(p, "username"), *pw = field(p, "password");
	struct session fresh;
	json_t *user = NULL, *data = NULL;
	char *token = NULL;
	int rc, ttl = session_store_max_seconds(p->f->sessions);

	memset(&fresh, 0, sizeof(fresh));
	if (!cookie_id(p, login_cookie(p), pre) || !session_csrf_check(pre, field(p, "csrf")))
		return login_page(p, 403, u, "The login form has expired or did not come from this site. Please try again.");
	if (!u || !*u || !pw || !*pw)
		return login_page(p, 400, u, "Enter your username and password.");
	if (ttl > ACCOUNTS_TOKEN_TTL_MAX)
		ttl = ACCOUNTS_TOKEN_TTL_MAX;
	rc = accounts_login(p->f->api->accounts, u, pw, ttl, "web session", &token);
	sodium_memzero((char *)pw, strlen(pw));
	if (rc == AL_ERR_UNAUTHORIZED || rc == AL_ERR_INVALID)
		return login_page(p, 401, u, "Invalid username or password.");
	if (!rc)
		rc = accounts_authenticate(p->f->api->accounts, token, &user);
	if (!rc && !(data = json_pack("{s:s, s:O}", "source", "local", "username", json_object_get(user, "username"))))
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	/* A new id at every login: a session id planted before it is worth nothing. */
	if (!rc)
		rc = session_create(p->f->sessions, data, token, &fresh);
	if (rc && token)
		accounts_logout(p->f->api->accounts, token);
	if (token) {
		sodium_memzero(token, strlen(token));
		free(token);
	}
	if (!rc) {
		char old[SESSION_ID_LEN + 1];
		if (cookie_id(p, session_cookie(p), old))
			session_destroy(p->f->sessions, old);
		audit_user(p, json_string_value(json_object_get(user, "username")), "login");
		rc = set_cookie(p, session_cookie(p), fresh.id, session_store_max_seconds(p->f->sessions));
	}
	json_decref(user);
	json_decref(data);
	session_free(&fresh);
	if (rc)
		return fail(p, rc);
	redirect(p, "/");
	return AL_OK;
}

static int logout(struct page *p)
{
	const char *source = json_string_value(json_object_get(p->sess.data, "source"));
	int oidc = source && !strcmp(source, "oidc");
	char *id_token = NULL;

	/* Local sessions end their bearer token too; an OIDC session's ID token
	 * is kept for the provider's logout link. */
	if (oidc)
		login_oidc_secret_token(p->sess.secret, "id_token", &id_token);
	else if (p->sess.secret)
		accounts_logout(p->f->api->accounts, p->sess.secret);
	session_destroy(p->f->sessions, p->sess.id);
	audit_user(p, p->username, "logout");
	set_cookie(p, session_cookie(p), NULL, 0);
	if (!oidc || !p->f->api->oidc) {
		redirect(p, "/login");
	} else {
		oidc_logged_out(p, id_token);
	}
	if (id_token) {
		sodium_memzero(id_token, strlen(id_token));
		free(id_token);
	}
	return AL_OK;
}

/* ---- pages: workspaces ----------------------------------------------------- */

static int home(struct page *p)
{
	json_t *list = NULL;
	size_t i;
	json_t *w;
	int rc;

	if ((rc = api_get(p, "workspaces", NULL, &list)))
		return fail(p, rc);
	emit(p, "<h1>Your workspaces</h1>\n");
	if (!json_array_size(json_object_get(list, "items")))
		emit(p, "<div class=\"card notice\"><p>You are not a member of any workspace yet. "
			"Ask an administrator to add you to one.</p></div>\n");
	else
		emit(p, "<div class=\"card\"><ul class=\"plain\">\n");
	json_array_foreach(json_object_get(list, "items"), i, w) {
		const char *name = jstr(w, "metadata.name"), *dn = jstr(w, "spec.displayName");
		emit(p, "<li><a href=\"/workspaces/%U\">%s</a> <span class=\"muted\"><code>%s</code></span></li>\n", name,
		     dn && *dn ? dn : name, name);
	}
	if (json_array_size(json_object_get(list, "items")))
		emit(p, "</ul></div>\n");
	if (is_reviewer(p))
		emit(p, "<div class=\"card notice\"><p>You review data for the airlock: see "
			"<a href=\"/approvals\">what waits for approval</a>.</p></div>\n");
	json_decref(list);
	finish(p, 200, "Your workspaces");
	return AL_OK;
}

static int workspace_page(struct page *p, const char *ws)
{
	json_t *w = NULL, *list = NULL;
	const char *query[] = { "workspace", ws, NULL };
	const char *dn;
	size_t i;
	json_t *ds;
	int rc;

	if ((rc = get_workspace(p, ws, &w)) ||
	    (rc = api_call(p, "GET", "/api/v1/datasources", query, NULL, &list))) {
		json_decref(w);
		return fail(p, rc);
	}
	dn = jstr(w, "spec.displayName");
	emit(p, "<h1>%s</h1>\n", dn && *dn ? dn : ws);
	if (jstr(w, "spec.description") && *jstr(w, "spec.description") && (!dn || strcmp(dn, jstr(w, "spec.description"))))
		emit(p, "<p class=\"muted\">%s</p>\n", jstr(w, "spec.description"));
	if (may_upload(p))
		emit(p, "<p><a class=\"button\" href=\"/workspaces/%U/new\">Bring new data (upload)</a></p>\n", ws);
	emit(p, "<h2>Datasources</h2>\n");
	if (!json_array_size(json_object_get(list, "items"))) {
		emit(p, "<div class=\"card\"><p>No datasources yet.</p></div>\n");
	} else {
		emit(p, "<div class=\"table-wrap\"><table>\n<thead><tr><th>Datasource</th><th>Type</th><th>Stage</th>"
			"<th>Data state</th><th>Requested by</th><th>Created</th></tr></thead>\n<tbody>\n");
		json_array_foreach(json_object_get(list, "items"), i, ds) {
			const char *name = jstr(ds, "metadata.name"), *title = jstr(ds, "spec.displayName");
			emit(p, "<tr><td><a href=\"/workspaces/%U/datasources/%U\">%s</a><br><code class=\"muted\">%s</code></td>"
				"<td>%s</td><td>",
			     ws, name, title && *title ? title : name, name, jstr(ds, "spec.type"));
			emit_stage(p, gates_stage(ds));
			emit(p, "</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", gates_data_state(ds),
			     jstr(ds, "status.requestedBy"), jstr(ds, "metadata.creationTimestamp"));
		}
		emit(p, "</tbody></table></div>\n");
	}
	finish(p, 200, dn && *dn ? dn : ws);
	json_decref(w);
	json_decref(list);
	return AL_OK;
}

/* ---- pages: datasource details ------------------------------------------- */

static void emit_fact(struct page *p, const char *label, const char *value)
{
	if (value && *value)
		emit(p, "<dt>%s</dt><dd>%s</dd>\n", label, value);
}

static void emit_facts(struct page *p, const json_t *ds)
{
	const char *org = jstr(ds, "spec.publisher.organisation");
	const char *cname = jstr(ds, "spec.publisher.contact.name"), *crole = jstr(ds, "spec.publisher.contact.role");

	emit(p, "<dl class=\"facts\">\n<dt>Name</dt><dd><code>%s</code></dd>\n", jstr(ds, "metadata.name"));
	emit_fact(p, "Workspace", label_of(ds, WORKSPACE_LABEL));
	emit_fact(p, "Type", jstr(ds, "spec.type"));
	emit(p, "<dt>Stage</dt><dd>");
	emit_stage(p, gates_stage(ds));
	emit(p, "</dd>\n");
	emit_fact(p, "Data state", gates_data_state(ds));
	emit_fact(p, "Requested by", jstr(ds, "status.requestedBy"));
	emit_fact(p, "Created", jstr(ds, "metadata.creationTimestamp"));
	emit_fact(p, "Message", jstr(ds, "status.message"));
	emit_fact(p, "Description", jstr(ds, "spec.description"));
	emit_fact(p, "Licence", jstr(ds, "spec.license"));
	if (org) {
		emit(p, "<dt>Publisher</dt><dd>%s", org);
		if (cname)
			emit(p, "<br>Contact: %s%s%s%s", cname, crole && *crole ? " (" : "", crole, crole && *crole ? ")" : "");
		emit(p, "</dd>\n");
	}
	emit_fact(p, "Project", jstr(ds, "spec.project.id"));
	emit(p, "</dl>\n");
}

static void emit_manifest(struct page *p, const json_t *ds)
{
	const json_t *man = jget(ds, "status.manifest");
	char size[32];
	size_t i;
	json_t *f;

	emit(p, "<h2>Files</h2>\n");
	if (!json_is_object(man)) {
		emit(p, "<div class=\"card\"><p class=\"muted\">No manifest yet: it is made once the data has been "
			"collected or uploaded.</p></div>\n");
		return;
	}
	human_size(json_integer_value(json_object_get(man, "totalBytes")), size);
	emit(p, "<p>%j %s, %s. Manifest digest (SHA-256): <code class=\"hash\">%s</code></p>\n",
	     (long long)json_integer_value(json_object_get(man, "fileCount")),
	     json_integer_value(json_object_get(man, "fileCount")) == 1 ? "file" : "files", size, jstr(man, "digest"));
	emit(p, "<div class=\"table-wrap\"><table>\n<thead><tr><th>Path</th><th>Size</th><th>SHA-256</th></tr></thead>\n"
		"<tbody>\n");
	json_array_foreach(json_object_get(man, "files"), i, f) {
		human_size(json_integer_value(json_object_get(f, "size")), size);
		emit(p, "<tr><td><code>%s</code></td><td class=\"num\">%s</td><td><code class=\"hash\">%s</code></td></tr>\n",
		     jstr(f, "path"), size, jstr(f, "sha256"));
	}
	emit(p, "</tbody></table></div>\n");
}

static void emit_checks(struct page *p, const json_t *ds)
{
	const json_t *checks = jget(ds, "status.checks");
	size_t i;
	json_t *c;

	emit(p, "<h2>Automated checks</h2>\n");
	if (!json_array_size(checks)) {
		emit(p, "<div class=\"card\"><p class=\"muted\">No check results yet.</p></div>\n");
		return;
	}
	emit(p, "<div class=\"table-wrap\"><table>\n<thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr></thead>\n"
		"<tbody>\n");
	json_array_foreach(checks, i, c) {
		const char *r = jstr(c, "result");
		emit(p, "<tr><td>%s</td><td><span class=\"%s\">%s</span></td><td>%s</td></tr>\n", jstr(c, "name"),
		     r && !strcmp(r, "passed") ? "stage ok" : (r && !strcmp(r, "failed") ? "stage bad" : "stage wait"), r,
		     jstr(c, "message"));
	}
	emit(p, "</tbody></table></div>\n");
}

static void emit_approvals(struct page *p, const json_t *ds)
{
	const json_t *list = jget(ds, "status.approvals");
	size_t i;
	json_t *a;

	if (!json_array_size(list))
		return;
	emit(p, "<h2>Decisions</h2>\n<div class=\"table-wrap\"><table>\n<thead><tr><th>When</th><th>Who</th>"
		"<th>Gate</th><th>Type</th><th>Decision</th><th>Reason</th></tr></thead>\n<tbody>\n");
	json_array_foreach(list, i, a)
		emit(p, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", jstr(a, "time"),
		     jstr(a, "user"), jstr(a, "gate"), jstr(a, "type"), jstr(a, "decision"), jstr(a, "reason"));
	emit(p, "</tbody></table></div>\n");
}

/* The audit records about this datasource, oldest first, at most
 * HISTORY_MAX (the newest). The caller has already been allowed to see it. */
static int history_of(struct page *p, const json_t *ds, json_t **out)
{
	const char *name = jstr(ds, "metadata.name"), *uid = jstr(ds, "metadata.uid");
	json_t *found = json_array();
	uint64_t after = 0;

	*out = NULL;
	if (!found)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (;;) {
		json_t *batch = NULL, *r;
		size_t i, n;
		int rc = store_audit_list(p->f->api->store, after, AUDIT_BATCH, &batch);
		if (rc) {
			json_decref(found);
			return rc;
		}
		n = json_array_size(batch);
		json_array_foreach(batch, i, r) {
			const json_t *o = json_object_get(r, "object");
			const char *k = jstr(o, "kind"), *nm = jstr(o, "name"), *ruid = jstr(o, "uid");
			after = (uint64_t)json_integer_value(json_object_get(r, "seq"));
			/* The uid tells apart an older datasource of the same name. */
			if (!k || strcmp(k, KIND_DS) || !nm || strcmp(nm, name) || (uid && ruid && strcmp(uid, ruid)))
				continue;
			if (json_array_size(found) == HISTORY_MAX)
				json_array_remove(found, 0);
			json_array_append(found, r);
		}
		json_decref(batch);
		if (n < AUDIT_BATCH)
			break;
	}
	*out = found;
	return AL_OK;
}

static int emit_history(struct page *p, const json_t *ds)
{
	json_t *hist = NULL, *r;
	size_t i;
	int rc;

	if ((rc = history_of(p, ds, &hist)))
		return rc;
	emit(p, "<h2>History</h2>\n<div class=\"table-wrap\"><table>\n<thead><tr><th>When</th><th>Who</th><th>What</th>"
		"<th>Stage</th><th>Reason</th></tr></thead>\n<tbody>\n");
	json_array_foreach(hist, i, r) {
		const char *sb = jstr(r, "stageBefore"), *sa = jstr(r, "stageAfter");
		int system = jstr(r, "actor.type") && !strcmp(jstr(r, "actor.type"), "system");
		emit(p, "<tr><td>%s</td><td>%s%s</td><td>%s</td><td>", jstr(r, "time"), jstr(r, "actor.name"),
		     system ? " (system)" : "", jstr(r, "action"));
		/* Events that move the stage show the move; others (a decision
		 * that leaves approvals missing, a submit) show where it stood. */
		if (sb && sa && *sb && *sa && strcmp(sb, sa))
			emit(p, "%s &rarr; %s", sb, sa);
		else if (sa && *sa)
			emit(p, "%s", sa);
		else if (sb && *sb)
			emit(p, "%s &rarr; Submitted", sb);
		emit(p, "</td><td>%s</td></tr>\n", jstr(r, "reason"));
	}
	emit(p, "</tbody></table></div>\n");
	json_decref(hist);
	return AL_OK;
}

static int datasource_page(struct page *p, const char *ws, const char *name)
{
	json_t *ds = NULL;
	const char *title;
	struct upload_access acc;
	int rc;

	if ((rc = get_ds_in(p, ws, name, NULL, &ds)))
		return fail(p, rc);
	if ((rc = upload_access_of(p->f->api, p->user, ds, &acc))) {
		json_decref(ds);
		return fail(p, rc);
	}
	title = jstr(ds, "spec.displayName");
	emit(p, "<p><a href=\"/workspaces/%U\">&larr; %s</a></p>\n<h1>%s</h1>\n", ws, ws, title && *title ? title : name);
	/* The upload page's link for whoever it offers the widget to (the
	 * uploader's rule, upload_access_of). */
	if (!strcmp(gates_stage(ds), STAGE_UPLOADING) && acc.may_upload)
		emit(p, "<p><a class=\"button\" href=\"/workspaces/%U/datasources/%U/upload\">Upload files</a></p>\n", ws,
		     name);
	emit(p, "<div class=\"card\">\n");
	emit_facts(p, ds);
	emit(p, "</div>\n");
	emit_manifest(p, ds);
	emit_checks(p, ds);
	emit_approvals(p, ds);
	if ((rc = emit_history(p, ds))) {
		json_decref(ds);
		return fail(p, rc);
	}
	finish(p, 200, title && *title ? title : name);
	json_decref(ds);
	return AL_OK;
}

/* ---- pages: a new Uploaded datasource ------------------------------------- */

static int new_form(struct page *p, const char *ws, int status, const char *message)
{
	json_t *w = NULL;
	int rc;

	if ((rc = get_workspace(p, ws, &w)))
		return fail(p, rc);
	json_decref(w);
	if (!may_upload(p))
		return fail(p, al_error_set(AL_ERR_FORBIDDEN, "uploading data needs the 'researcher' or 'data-engineer' role"));
	emit(p, "<p><a href=\"/workspaces/%U\">&larr; %s</a></p>\n<h1>Bring new data</h1>\n", ws, ws);
	emit(p, "<p>Describe the data you are bringing into <strong>%s</strong>. You upload the files on the next page; "
		"they are checked and reviewed before they appear in the workspace.</p>\n",
	     ws);
	if (message)
		emit(p, "<div class=\"card error\" role=\"alert\"><p>%s</p></div>\n", message);
	emit(p, "<form class=\"card stack\" method=\"post\" action=\"/workspaces/%U/datasources\">\n"
		"<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n",
	     ws, p->sess.csrf);
	emit(p, "<label for=\"displayName\">Name of the dataset</label>\n"
		"<input type=\"text\" id=\"displayName\" name=\"displayName\" maxlength=\"256\" required value=\"%s\">\n",
	     field(p, "displayName"));
	emit(p, "<label for=\"description\">Description</label>\n"
		"<textarea id=\"description\" name=\"description\">%s</textarea>\n",
	     field(p, "description"));
	emit(p, "<label for=\"license\">Licence <span class=\"hint\">the terms the data may be used under</span></label>\n"
		"<textarea id=\"license\" name=\"license\">%s</textarea>\n",
	     field(p, "license"));
	emit(p, "<label for=\"organisation\">Publisher organisation</label>\n"
		"<input type=\"text\" id=\"organisation\" name=\"organisation\" maxlength=\"256\" value=\"%s\">\n"
		"<label for=\"contactName\">Contact name</label>\n"
		"<input type=\"text\" id=\"contactName\" name=\"contactName\" maxlength=\"256\" value=\"%s\">\n"
		"<label for=\"contactRole\">Contact role</label>\n"
		"<input type=\"text\" id=\"contactRole\" name=\"contactRole\" maxlength=\"256\" value=\"%s\">\n"
		"<label for=\"project\">Project id</label>\n"
		"<input type=\"text\" id=\"project\" name=\"project\" maxlength=\"253\" value=\"%s\">\n",
	     field(p, "organisation"), field(p, "contactName"), field(p, "contactRole"), field(p, "project"));
	emit(p, "<button type=\"submit\">Create and go to the upload</button>\n</form>\n");
	finish(p, status, "Bring new data");
	return AL_OK;
}

/* A form field as a JSON string for the resource: NULL when empty; text
 * areas' CRLF line ends (as browsers send them) become LF. */
static json_t *form_text(const struct page *p, const char *name)
{
	const char *v = field(p, name);
	struct buf b;
	json_t *s;
	if (!v || !*v)
		return NULL;
	buf_init(&b, strlen(v) + 1);
	for (const char *c = v; *c; c++)
		if (!(c[0] == '\r' && c[1] == '\n') && buf_appendc(&b, *c)) {
			buf_free(&b);
			return NULL;
		}
	s = json_string(buf_cstr(&b));
	buf_free(&b);
	return s;
}

/* The Uploaded datasource of the seed, without a name: the API names it
 * ds-<32 hex> and binds it (dsb-<same>) to the workspace. */
static json_t *uploaded_resource(const struct page *p)
{
	json_t *spec = json_pack("{s:s}", "type", "Uploaded");
	json_t *obj = json_pack("{s:s, s:s, s:{s:{s:s}}}", "apiVersion", RESOURCE_API_VERSION, "kind", KIND_DS,
				"metadata", "labels", TYPE_LABEL, "uploaded");
	json_t *v;

	if (!spec || !obj) {
		json_decref(spec);
		json_decref(obj);
		return NULL;
	}
	/* displayName is required: sent even if empty, so the API's schema
	 * check says what is wrong. */
	json_object_set_new(spec, "displayName", json_string(field(p, "displayName") ? field(p, "displayName") : ""));
	if ((v = form_text(p, "description")))
		json_object_set_new(spec, "description", v);
	if ((v = form_text(p, "license")))
		json_object_set_new(spec, "license", v);
	/* publisher and its contact as the seed has them; half a publisher is
	 * sent as it is, for the schema check to name what is missing. */
	{
		json_t *org = form_text(p, "organisation"), *cn = form_text(p, "contactName");
		json_t *cr = form_text(p, "contactRole");
		if (org || cn || cr) {
			json_t *pub = json_object();
			if (org)
				json_object_set_new(pub, "organisation", org);
			if (cn || cr) {
				json_t *contact = json_object();
				if (cn)
					json_object_set_new(contact, "name", cn);
				if (cr)
					json_object_set_new(contact, "role", cr);
				json_object_set_new(pub, "contact", contact);
			}
			json_object_set_new(spec, "publisher", pub);
		}
	}
	if ((v = form_text(p, "project")))
		json_object_set_new(spec, "project", json_pack("{s:o}", "id", v));
	json_object_set_new(obj, "spec", spec);
	return obj;
}

static int create_uploaded(struct page *p, const char *ws)
{
	const char *query[] = { "workspace", ws, NULL };
	json_t *obj = uploaded_resource(p), *out = NULL;
	struct buf loc;
	int rc;

	if (!obj)
		return fail(p, al_error_set(AL_ERR_NOMEM, "out of memory"));
	/* The API's own create: validation, roles, membership, the binding and
	 * the audit records are all its. */
	rc = api_call(p, "POST", "/api/v1/datasources", query, obj, &out);
	json_decref(obj);
	if (rc == AL_ERR_INVALID || rc == AL_ERR_CONFLICT) {
		char *msg = util_strdup(al_error_message());
		rc = new_form(p, ws, al_error_http_status(rc), msg ? msg : "the datasource could not be created");
		free(msg);
		return rc;
	}
	if (rc)
		return fail(p, rc);
	buf_init(&loc, 4096);
	rc = html_fmt(&loc, "/workspaces/%U/datasources/%U/upload", ws, jstr(out, "metadata.name"));
	json_decref(out);
	if (rc) {
		buf_free(&loc);
		return fail(p, rc);
	}
	redirect(p, buf_cstr(&loc));
	buf_free(&loc);
	return AL_OK;
}

/* ---- pages: upload --------------------------------------------------------- */

/* Where the upload widget sends tus requests: the embedded uploader's
 * routes, or (Kubernetes) the proxied uploader once it runs. */
static int uploader_endpoint(struct page *p, const json_t *ds, const char *name, char **out)
{
	struct buf b;
	*out = NULL;
	if (p->f->uploader_start)
		return p->f->uploader_start(p->f->uploader_start_ud, ds, out);
	buf_init(&b, 4096);
	if (buf_appendf(&b, "/api/v1/datasources/%s/uploads", name)) {
		buf_free(&b);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	*out = buf_detach(&b);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

/* "All files uploaded", for those who may say it (upload_access.may_complete). */
static void complete_form(struct page *p, const char *ws, const char *name)
{
	emit(p, "<form class=\"card stack\" method=\"post\" action=\"/workspaces/%U/datasources/%U/uploaded\">\n"
		"<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n"
		"<p>When every file is uploaded, say so. The files are then fixed: they are listed, checked and "
		"wait for approval.</p>\n"
		"<button type=\"submit\" id=\"upload-complete\" data-testid=\"upload-complete\">All files uploaded</button>\n"
		"</form>\n",
	     ws, name, p->sess.csrf);
}

static int upload_page(struct page *p, const char *ws, const char *name)
{
	json_t *ds = NULL;
	char *endpoint = NULL;
	const char *title, *stage, *requester;
	struct upload_access acc;
	int rc;

	if ((rc = get_ds_in(p, ws, name, NULL, &ds)))
		return fail(p, rc);
	title = jstr(ds, "spec.displayName");
	stage = gates_stage(ds);
	requester = jstr(ds, "status.requestedBy");
	/* The uploader's own rule (upload_embed.h), not a copy of it: the page
	 * offers the widget to exactly those whose uploads the uploader takes,
	 * and "all files uploaded" to those it lets say so. */
	if ((rc = upload_access_of(p->f->api, p->user, ds, &acc))) {
		json_decref(ds);
		return fail(p, rc);
	}
	emit(p, "<p><a href=\"/workspaces/%U/datasources/%U\">&larr; Details</a></p>\n<h1>Upload: %s</h1>\n", ws, name,
	     title && *title ? title : name);
	emit(p, "<div class=\"card\">\n");
	emit_facts(p, ds);
	emit(p, "</div>\n");
	if (!strcmp(stage, STAGE_NONE) && !strcmp(jstr(ds, "spec.type") ? jstr(ds, "spec.type") : "", "Uploaded")) {
		/* The operator has not opened the upload area yet: it takes a
		 * moment. Without JavaScript, the page reloads itself. */
		p->refresh = PREPARING_REFRESH_S;
		emit(p, "<div class=\"card notice\"><p>The upload area is being prepared. This page reloads by itself.</p></div>\n");
	} else if (strcmp(stage, STAGE_UPLOADING)) {
		emit(p, "<div class=\"card notice\"><p>This datasource does not take uploads now (stage %s).</p></div>\n",
		     *stage ? stage : "Submitted");
	} else if (!acc.may_upload && !acc.may_complete) {
		emit(p, "<div class=\"card notice\" id=\"upload-not-yours\"><p>Only %s, who created this datasource, and "
			"members of its workspace with the researcher or data-engineer role can upload to it.</p></div>\n",
		     requester ? requester : "its requester");
	} else if (acc.may_upload && (rc = uploader_endpoint(p, ds, name, &endpoint)) == AL_ERR_UNAVAILABLE) {
		/* Kubernetes: the uploader is scaled up and starts; without
		 * JavaScript, the page reloads itself until it is ready. */
		p->refresh = PREPARING_REFRESH_S;
		emit(p, "<div class=\"card notice\"><p>Starting the uploader (%s). This page reloads by itself.</p></div>\n",
		     al_error_message());
	} else if (rc) {
		json_decref(ds);
		return fail(p, rc);
	} else if (!acc.may_upload) {
		/* An admin outside the workspace: may end the uploads, not add to them. */
		emit(p, "<div class=\"card notice\" id=\"upload-not-yours\"><p>Only %s, who created this datasource, and "
			"members of its workspace with the researcher or data-engineer role can upload to it.</p></div>\n",
		     requester ? requester : "its requester");
		complete_form(p, ws, name);
	} else {
		/* The widget's tus endpoint, for its script to read. */
		emit(p, "<div class=\"upload-area\" id=\"upload-area\" data-endpoint=\"%s\">\n", endpoint);
		if (p->f->upload_widget) {
			struct buf w;
			buf_init(&w, PAGE_MAX);
			if ((rc = p->f->upload_widget(p->f->upload_widget_ud, ds, p->sess.csrf, &w))) {
				buf_free(&w);
				free(endpoint);
				json_decref(ds);
				return fail(p, rc);
			}
			emit(p, "%R", buf_cstr(&w));
			buf_free(&w);
			p->extra_csp = p->f->upload_widget_csp;
		} else {
			emit(p, "<div class=\"card notice\" id=\"upload-widget\"><p>The browser upload widget will appear "
				"here.</p></div>\n");
		}
		emit(p, "</div>\n");
		if (acc.may_complete)
			complete_form(p, ws, name);
		else
			emit(p, "<div class=\"card notice\" id=\"upload-complete-by\"><p>%s, who created this datasource, "
				"says when all files are uploaded.</p></div>\n",
			     requester ? requester : "Its requester");
	}
	finish(p, 200, title && *title ? title : name);
	free(endpoint);
	json_decref(ds);
	return AL_OK;
}

static int uploaded_submit(struct page *p, const char *ws, const char *name)
{
	json_t *ds = NULL, *out = NULL;
	struct buf path;
	int rc;

	if ((rc = get_ds_in(p, ws, name, NULL, &ds)))
		return fail(p, rc);
	json_decref(ds);
	buf_init(&path, 4096);
	if (!(rc = buf_appendf(&path, "/api/v1/datasources/%s/uploaded", name)))
		rc = api_call(p, "POST", buf_cstr(&path), NULL, NULL, &out);
	json_decref(out);
	buf_reset(&path);
	if (!rc)
		rc = html_fmt(&path, "/workspaces/%U/datasources/%U", ws, name);
	if (rc) {
		buf_free(&path);
		return fail(p, rc);
	}
	redirect(p, buf_cstr(&path));
	buf_free(&path);
	return AL_OK;
}

/* ---- pages: approvals ----------------------------------------------------- */

static int approvals_page(struct page *p)
{
	json_t *list = NULL, *ds;
	size_t i, shown = 0;
	int rc;

	if (!is_reviewer(p))
		return fail(p, al_error_set(AL_ERR_FORBIDDEN, "the approval queue is for people who review data "
							     "(the approver role)"));
	if ((rc = api_call(p, "GET", "/api/v1/datasources", NULL, NULL, &list)))
		return fail(p, rc);
	emit(p, "<h1>Waiting for approval</h1>\n");
	json_array_foreach(json_object_get(list, "items"), i, ds) {
		const char *stage = gates_stage(ds), *name = jstr(ds, "metadata.name"), *title = jstr(ds, "spec.displayName");
		const json_t *man = jget(ds, "status.manifest");
		char size[32] = "";
		if (!can_decide_at(p, stage))
			continue;
		if (!shown++)
			emit(p, "<div class=\"table-wrap\"><table>\n<thead><tr><th>Datasource</th><th>Workspace</th>"
				"<th>Gate</th><th>Requested by</th><th>Files</th></tr></thead>\n<tbody>\n");
		if (json_is_object(man))
			human_size(json_integer_value(json_object_get(man, "totalBytes")), size);
		emit(p, "<tr><td><a href=\"/approvals/%U\">%s</a><br><code class=\"muted\">%s</code></td><td>%s</td><td>", name,
		     title && *title ? title : name, name, label_of(ds, WORKSPACE_LABEL));
		emit_stage(p, stage);
		emit(p, "</td><td>%s</td><td>", jstr(ds, "status.requestedBy"));
		if (json_is_object(man))
			emit(p, "%j, %s", (long long)json_integer_value(json_object_get(man, "fileCount")), size);
		emit(p, "</td></tr>\n");
	}
	if (shown)
		emit(p, "</tbody></table></div>\n");
	else
		emit(p, "<div class=\"card\"><p>Nothing waits for you.</p></div>\n");
	json_decref(list);
	finish(p, 200, "Waiting for approval");
	return AL_OK;
}

/* The approval types still missing at the datasource's gate that this user
 * may give (new array of {type}). */
static json_t *my_types(const struct page *p, const json_t *ds)
{
	json_t *missing = gates_missing_approvals(&p->f->api->cfg->gates, ds), *mine = json_array(), *t;
	size_t n, i;
	const struct gate_approval_type *types = gate_types(p, gates_stage(ds), &n);

	json_array_foreach(missing, i, t)
		for (size_t k = 0; k < n; k++)
			if (json_is_string(t) && !strcmp(types[k].type, json_string_value(t)) && has_role(p->user, types[k].role))
				json_array_append(mine, t);
	json_decref(missing);
	return mine;
}

static void emit_type_choice(struct page *p, const json_t *types, const char *id)
{
	size_t i;
	json_t *t;
	if (json_array_size(types) == 1) {
		emit(p, "<input type=\"hidden\" name=\"type\" value=\"%s\">\n", json_string_value(json_array_get(types, 0)));
		return;
	}
	emit(p, "<label for=\"%s\">As</label>\n<select id=\"%s\" name=\"type\">\n", id, id);
	json_array_foreach(types, i, t)
		emit(p, "<option value=\"%s\">%s</option>\n", json_string_value(t), json_string_value(t));
	emit(p, "</select>\n");
}

static int review_page(struct page *p, const char *name)
{
	json_t *ds = NULL, *types = NULL, *missing = NULL;
	const char *title, *stage, *requester, *digest, *given;
	int rc;

	if (!is_reviewer(p))
		return fail(p, al_error_set(AL_ERR_FORBIDDEN, "reviewing needs the approver role"));
	if ((rc = api_get(p, "datasources", name, &ds)))
		return fail(p, rc);
	title = jstr(ds, "spec.displayName");
	stage = gates_stage(ds);
	requester = jstr(ds, "status.requestedBy");
	digest = jstr(ds, "status.manifest.digest");
	emit(p, "<p><a href=\"/approvals\">&larr; Waiting for approval</a></p>\n<h1>Review: %s</h1>\n",
	     title && *title ? title : name);
	emit(p, "<div class=\"card\">\n");
	emit_facts(p, ds);
	emit(p, "</div>\n");
	emit_manifest(p, ds);
	emit_checks(p, ds);
	emit_approvals(p, ds);
	if ((rc = emit_history(p, ds))) {
		json_decref(ds);
		return fail(p, rc);
	}
	emit(p, "<h2>Decision</h2>\n");
	types = can_decide_at(p, stage) ? my_types(p, ds) : NULL;
	/* One person, one approval type per gate (gates.c refuses a second):
	 * after approving as one type, offer no Approve for another. */
	given = gates_user_approved(ds, p->username);
	if (given && can_decide_at(p, stage)) {
		struct buf list;
		size_t i;
		json_t *t;
		buf_init(&list, 4096);
		missing = gates_missing_approvals(&p->f->api->cfg->gates, ds);
		json_array_foreach(missing, i, t)
			if (json_is_string(t) && (buf_appendf(&list, "%s%s", list.len ? ", " : "", json_string_value(t)) < 0))
				p->err = 1;
		emit(p, "<div class=\"card notice\" id=\"approved-as\"><p>You have approved as %s; another person must "
			"give %s.</p></div>\n",
		     given, list.len ? buf_cstr(&list) : "the remaining approvals");
		buf_free(&list);
	}
	if (!can_decide_at(p, stage)) {
		emit(p, "<div class=\"card\"><p>Nothing to decide here now (stage %s).</p></div>\n", *stage ? stage : "Submitted");
	} else if (requester && !strcmp(requester, p->username)) {
		emit(p, "<div class=\"card notice\"><p>You requested this datasource, so another person must decide on "
			"it.</p></div>\n");
	} else if (!json_array_size(types)) {
		if (!given)
			emit(p, "<div class=\"card\"><p>Every approval you could give here has been given.</p></div>\n");
	} else {
		int review = !strcmp(stage, STAGE_AWAITING_APPROVAL);
		emit(p, "<div class=\"actions\">\n");
		/* Rejecting stays open to them (the gates allow it). */
		if (!given) {
			emit(p, "<form class=\"card stack\" method=\"post\" action=\"/approvals/%U\">\n"
				"<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n"
				"<input type=\"hidden\" name=\"decision\" value=\"approve\">\n",
			     name, p->sess.csrf);
			if (review && digest)
				emit(p, "<input type=\"hidden\" name=\"digest\" value=\"%s\">\n"
					"<p>You approve exactly the files listed above (digest <code class=\"hash\">%s</code>). "
					"If they change, your approval no longer counts.</p>\n",
				     digest, digest);
			else
				emit(p, "<p>You allow the airlock to collect this data.</p>\n");
			emit_type_choice(p, types, "approve-type");
			emit(p, "<button type=\"submit\">Approve</button>\n</form>\n");
		}
		emit(p, "<form class=\"card stack\" method=\"post\" action=\"/approvals/%U\">\n"
			"<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n"
			"<input type=\"hidden\" name=\"decision\" value=\"reject\">\n"
			"<label for=\"reason\">Reason for rejecting <span class=\"hint\">shown to the requester</span></label>\n"
			"<textarea id=\"reason\" name=\"reason\" maxlength=\"4096\" required></textarea>\n",
		     name, p->sess.csrf);
		emit_type_choice(p, types, "reject-type");
		emit(p, "<button type=\"submit\" class=\"danger\">Reject</button>\n</form>\n</div>\n");
	}
	json_decref(types);
	json_decref(missing);
	finish(p, 200, title && *title ? title : name);
	json_decref(ds);
	return AL_OK;
}

static int decide_submit(struct page *p, const char *name)
{
	static const char *const keys[] = { "decision", "type", "digest", "reason" };
	json_t *body = json_object(), *out = NULL;
	struct buf path;
	int rc = AL_OK;

	if (!body)
		return fail(p, al_error_set(AL_ERR_NOMEM, "out of memory"));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !rc; i++) {
		json_t *v = form_text(p, keys[i]);
		if (v && json_object_set_new(body, keys[i], v))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	buf_init(&path, 4096);
	if (!rc && !(rc = buf_appendf(&path, "/api/v1/datasources/%s/approvals", name)))
		rc = api_call(p, "POST", buf_cstr(&path), NULL, body, &out);
	json_decref(body);
	json_decref(out);
	buf_reset(&path);
	if (!rc)
		rc = html_fmt(&path, "/approvals/%U", name);
	if (rc) {
		buf_free(&path);
		return fail(p, rc);
	}
	redirect(p, buf_cstr(&path));
	buf_free(&path);
	return AL_OK;
}

/* ---- dispatch ---------------------------------------------------------------- */

static int split_path(struct page *p)
{
	char *s;
	p->path_copy = util_strdup(p->req->path);
	if (!p->path_copy)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	s = p->path_copy;
	while (*s) {
		char *slash;
		while (*s == '/')
			s++;
		if (!*s)
			break;
		if (p->nseg == MAX_SEGMENTS)
			return al_error_set(AL_ERR_NOT_FOUND, "there is no such page");
		p->seg[p->nseg++] = s;
		slash = strchr(s, '/');
		if (!slash)
			break;
		*slash = '\0';
		s = slash + 1;
	}
	return AL_OK;
}

static int is(const struct page *p, size_t i, const char *s)
{
	return i < p->nseg && !strcmp(p->seg[i], s);
}

static int route(struct page *p)
{
	const char *m = p->req->method;
	int get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), rc;
	size_t n;

	if ((rc = split_path(p)))
		return fail(p, rc);
	n = p->nseg;
	if (!get) {
		/* Every state change: from our own pages, with the form's token. */
		if (!same_origin(p))
			return fail(p, al_error_set(AL_ERR_FORBIDDEN, "this form was sent from another site, so it was refused"));
		if (memchr(p->req->body, '\0', p->req->body_len) ||
		    (rc = html_form_parse(p->req->body, p->req->body_len, &p->form)))
			return fail(p, rc ? rc : al_error_set(AL_ERR_INVALID, "the form contains a NUL byte"));
	}
	if (n == 2 && is(p, 0, "login") && get) {
		if (is(p, 1, "oidc"))
			return oidc_start(p);
		if (is(p, 1, "callback"))
			return oidc_callback(p);
	}
	if (n == 1 && is(p, 0, "login")) {
		if (get) {
			if (!load_session(p))
				redirect(p, "/");
			else
				login_page(p, 200, NULL, NULL);
			return AL_OK;
		}
		if (!strcmp(m, "POST"))
			return login_submit(p);
	}
	if ((rc = load_session(p))) {
		if (rc != AL_ERR_UNAUTHORIZED)
			return fail(p, rc);
		if (get) {
			char stale[SESSION_ID_LEN + 1];
			if (cookie_id(p, session_cookie(p), stale))
				set_cookie(p, session_cookie(p), NULL, 0);
			redirect(p, "/login");
			return AL_OK;
		}
		return fail(p, rc);
	}
	if (!get && !session_csrf_check(p->sess.id, field(p, "csrf")))
		return fail(p, al_error_set(AL_ERR_FORBIDDEN, "this form has expired or did not come from this site: "
							     "go back, reload the page and try again"));
	if (n == 1 && is(p, 0, "logout") && !strcmp(m, "POST"))
		return logout(p);
	if (n == 0 && get)
		return home(p);
	if (n >= 2 && is(p, 0, "workspaces")) {
		const char *ws = p->seg[1];
		if (n == 2 && get)
			return workspace_page(p, ws);
		if (n == 3 && is(p, 2, "new") && get)
			return new_form(p, ws, 200, NULL);
		if (n == 3 && is(p, 2, "datasources") && !strcmp(m, "POST"))
			return create_uploaded(p, ws);
		if (n == 4 && is(p, 2, "datasources") && get)
			return datasource_page(p, ws, p->seg[3]);
		if (n == 5 && is(p, 2, "datasources") && is(p, 4, "upload") && get)
			return upload_page(p, ws, p->seg[3]);
		if (n == 5 && is(p, 2, "datasources") && is(p, 4, "uploaded") && !strcmp(m, "POST"))
			return uploaded_submit(p, ws, p->seg[3]);
	}
	if (n == 1 && is(p, 0, "approvals") && get)
		return approvals_page(p);
	if (n == 2 && is(p, 0, "approvals") && get)
		return review_page(p, p->seg[1]);
	if (n == 2 && is(p, 0, "approvals") && !strcmp(m, "POST"))
		return decide_submit(p, p->seg[1]);
	return fail(p, al_error_set(AL_ERR_NOT_FOUND, "there is no such page"));
}

static int is_api_path(const char *path)
{
	return !strcmp(path, "/api") || !strncmp(path, "/api/", 5) || !strcmp(path, "/healthz") ||
	       !strcmp(path, "/readyz");
}

void frontend_handle(void *userdata, const struct http_request *req, struct http_response *resp)
{
	struct frontend_ctx *f = userdata;
	struct page p;

	if (is_api_path(req->path)) {
		api_handle(f->api, req, resp);
		return;
	}
	if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
		const char *data, *type;
		size_t len;
		if (!assets_find(req->path, &data, &len, &type)) {
			http_response_bytes(resp, 200, type, data, len);
			http_response_header(resp, "Cache-Control", "public, max-age=3600");
			return;
		}
	}
	memset(&p, 0, sizeof(p));
	p.f = f;
	p.req = req;
	p.resp = resp;
	buf_init(&p.html, PAGE_MAX);
	al_error_clear();
	route(&p);
	if (p.form) {
		/* The login form carried a password: wiped in login_submit. */
		json_decref(p.form);
	}
	json_decref(p.user);
	session_free(&p.sess);
	buf_free(&p.html);
	free(p.path_copy);
}

/* ---- the session for other handlers (the uploader's routes) --------------- */

int frontend_session_user(struct frontend_ctx *f, const struct http_request *req, json_t **out_user,
			  char csrf[SESSION_CSRF_LEN + 1])
{
	struct page p;
	char id[SESSION_ID_LEN + 1];
	int rc;

	*out_user = NULL;
	csrf[0] = '\0';
	memset(&p, 0, sizeof(p));
	p.f = f;
	p.req = req;
	if (!cookie_id(&p, session_cookie(&p), id))
		return al_error_set(AL_ERR_NOT_FOUND, "no session cookie");
	/* The same resolution as every page's, so whatever load_session
	 * accepts (local today, OIDC later) is accepted here too. */
	if (!(rc = load_session(&p))) {
		memcpy(csrf, p.sess.csrf, SESSION_CSRF_LEN + 1);
		*out_user = p.user;
		p.user = NULL;
	}
	json_decref(p.user);
	session_free(&p.sess);
	return rc;
}

int frontend_same_origin(struct frontend_ctx *f, const struct http_request *req)
{
	struct page p;

	memset(&p, 0, sizeof(p));
	p.f = f;
	p.req = req;
	return same_origin(&p);
}
