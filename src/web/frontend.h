/*
 * frontend.h - the web pages of `airlock serve`: log in, see your
 * workspaces and their datasources, create an Uploaded datasource and get
 * to its upload page, follow a datasource through the gates, and (for
 * approvers) the approval queue. docs/frontend.md lists every route.
 *
 * What it promises:
 *  - Pages are rendered on the server as HTML in which every value is
 *    escaped (web/html.h); they work without JavaScript (there is none,
 *    but for the upload widget on the upload page, web/upload_widget.h) and
 *    on a phone (viewport meta, one small responsive stylesheet served from
 *    /static/airlock.css).
 *  - Every page carries the Content-Security-Policy
 *      default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';
 *      frame-ancestors 'none'; base-uri 'none'
 *    and Referrer-Policy: same-origin (so a form post carries our Origin).
 *  - Logged-in state is a server-side session (web/session.h) in an
 *    HttpOnly, SameSite=Lax, Path=/ cookie, Secure (and named
 *    __Host-airlock_session) when the airlock is reached over https. Every
 *    request other than GET/HEAD must carry the session's CSRF token in the
 *    form field "csrf" and, when the browser sends Origin (or Referer), come
 *    from our own origin: otherwise 403 and nothing changes. The login form
 *    is protected the same way through a pre-login cookie.
 *  - The pages change nothing themselves: they call /api/v1 in-process as
 *    the logged-in user (api_handle_as), so creating a datasource, "all
 *    files uploaded" and approve/reject run exactly the API's code, with its
 *    authorization, segregation of duties and audit records. Objects the
 *    user may not see answer 404, as in the API.
 *  - Errors are pages with the status the API would give (400, 403, 404,
 *    409, ...) and a message for a person.
 *
 * Login methods: local accounts (src/auth/accounts.h) through the form at
 * /login, and, with oidc.issuer and oidc.clientSecretFile configured,
 * Keycloak (src/auth/oidc.h): the authorization code flow with PKCE through
 * GET /login/oidc and GET /login/callback, each state usable once, a new
 * session per login, ending no later than the access token (no refresh);
 * logout offers Keycloak's end-session link. docs/frontend.md ("Logging in
 * with Keycloak") tells the whole story; web/login_oidc.h holds its rules.
 *
 * Ownership: everything in struct frontend_ctx is borrowed and must outlive
 * the server. frontend_handle is thread-safe (the stores it uses are).
 */
#ifndef AL_WEB_FRONTEND_H
#define AL_WEB_FRONTEND_H

#include <jansson.h>

#include "common/buf.h"
#include "web/api.h"
#include "web/http_server.h"
#include "web/session.h"


/* The policy of every page (the upload page may add the widget's sources). */
#define FRONTEND_CSP                                                                                       \
	"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; " \
	"base-uri 'none'"

/* The upload widget (issue 6, the uploader's part) fills the upload page.
 * It is given the datasource (as the API returns it, stage Uploading) and
 * the session's CSRF token, and appends its markup to html. Its extra
 * policy sources (e.g. "script-src 'self'; connect-src 'self'") are added
 * to that page's Content-Security-Policy, and to no other page. */
typedef int (*frontend_upload_widget_fn)(void *ud, const json_t *ds, const char *csrf, struct buf *html);

struct frontend_ctx {
	struct api_ctx *api;               /* the API the pages call, and what it holds */
	struct session_store *sessions;
	/* The URL people use to reach this airlock (e.g. https://airlock.example),
	 * or NULL: then the origin a form must come from is the request's Host.
	 * https:// makes the cookies Secure. */
	const char *external_url;
	int tls;                           /* 1 when this server itself speaks TLS */
	/* NULL: the upload page shows a placeholder and the "All files uploaded"
	 * button only. */
	frontend_upload_widget_fn upload_widget;
	void *upload_widget_ud;
	const char *upload_widget_csp;     /* extra CSP directives, or NULL */
	/* Kubernetes (airlock frontend): makes sure the datasource's uploader
	 * runs (web/uploader_route.h). AL_OK with *endpoint (a new string, the
	 * tus collection such as /uploads/upload-<uid>) once it is ready;
	 * AL_ERR_UNAVAILABLE while it starts: the page says so and reloads
	 * itself. NULL (airlock serve): the embedded uploader, always there, at
	 * /api/v1/datasources/<name>/uploads. */
	int (*uploader_start)(void *ud, const json_t *ds, char **endpoint);
	void *uploader_start_ud;
};

/* The http_handler_fn of `airlock serve`: /api/..., /healthz and /readyz go
 * to api_handle (userdata->api); every other path is a page. userdata is a
 * struct frontend_ctx. */
void frontend_handle(void *userdata, const struct http_request *req, struct http_response *resp);

/* The person behind the request's session cookie, resolved exactly as the
 * pages do: AL_OK with *out_user = {"username", "roles", ...} (new
 * reference) and csrf = the session's CSRF token; AL_ERR_NOT_FOUND when the
 * request has no session cookie; AL_ERR_UNAUTHORIZED when the session has
 * ended (it is then deleted). For handlers beside the pages, such as the
 * uploader's (web/upload_auth.h). */
int frontend_session_user(struct frontend_ctx *f, const struct http_request *req, json_t **out_user,
			  char csrf[SESSION_CSRF_LEN + 1]);

/* 1 when the request comes from this airlock's own origin as the forms'
 * CSRF check sees it (Origin, else Referer, against web.externalUrl or the
 * Host; neither header: 1, the CSRF token then decides); 0 otherwise. */
int frontend_same_origin(struct frontend_ctx *f, const struct http_request *req);

#endif
