/*
 * api.h - the JSON REST API under /api/v1, plus /healthz and /readyz.
 *
 * Authentication: "Authorization: Bearer <token>" from POST /api/v1/login,
 * or (with oidc configured) an access token from the identity provider: a
 * bearer that looks like a JWT goes to src/auth/oidc, and the user's groups
 * claim adds workspaces to those of their AnalyticsWorkspaceBindings.
 * Authorization: roles (researcher, data-engineer, approver, admin) and
 * workspace membership (AnalyticsWorkspaceBinding, unexpired). Objects of
 * workspaces a user cannot see answer 404, never 403, so their existence
 * does not leak. Every error is {"error": {code, message, status}}.
 * Bad input changes nothing. docs/api.md lists every route.
 *
 * The API only fires people's events in the gates state machine; the
 * system's events (collection, checks, publishing) belong to the operator.
 */
#ifndef AL_WEB_API_H
#define AL_WEB_API_H

#include "config/config.h"
#include "store/store.h"
#include "web/http_server.h"

struct accounts;
struct credstore;
struct oidc;

struct api_ctx {
	struct store *store;               /* borrowed */
	struct accounts *accounts;         /* borrowed */
	struct credstore *creds;           /* borrowed */
	struct oidc *oidc;                 /* borrowed; NULL: no identity-provider tokens */
	const struct airlock_config *cfg;  /* borrowed */
	int (*ready)(void *ud);            /* readiness probe; NULL = always ready */
	void *ready_ud;
	/* The embedded uploader's side of "all files uploaded"
	 * (src/uploader/upload_embed.h), or NULL. POST .../uploaded calls it for
	 * a datasource at stage Uploading, after the requester check and before
	 * the gate event: it refuses (AL_ERR_CONFLICT) while uploads are
	 * unfinished, writes the manifest and makes the files read-only. */
	int (*seal_uploads)(void *ud, const json_t *ds, const char *username);
	void *seal_uploads_ud;
	/* The one namespace the API keeps and looks for its objects in
	 * (datasources, bindings, workspaces, workspace bindings); borrowed.
	 * NULL: API_DEFAULT_NAMESPACE (the embedded store's). `airlock frontend`
	 * sets it to the namespace of the custom resources. */
	const char *namespace;
};

#define API_DEFAULT_NAMESPACE "default"

/* api->namespace, or API_DEFAULT_NAMESPACE. Never NULL. */
const char *api_namespace(const struct api_ctx *api);

/* The http_handler_fn for the whole API; userdata is a struct api_ctx. */
void api_handle(void *userdata, const struct http_request *req, struct http_response *resp);

/* For routes of /api/v1 served beside api_handle (the embedded uploader's
 * streaming routes, src/uploader/upload_embed.c), so that they know people
 * exactly as the API does. */
/* Authenticates `req` as api_handle does; *out_user = {username, roles}
 * (new reference). AL_ERR_UNAUTHORIZED (message set) when it fails. */
int api_authenticate_request(struct api_ctx *api, const struct http_request *req, json_t **out_user);
/* 1 if `user` (as above) is a current member of workspace `ws`. */
int api_user_in_workspace(struct api_ctx *api, const json_t *user, const char *ws);

/* The same API for a caller the web frontend has already authenticated
 * through its session: `user` is {"username", "roles": [...]} (borrowed), and
 * every route, check and audit record is exactly api_handle's; only the
 * bearer token is not looked at (and /api/v1/login and /logout answer 404).
 * The frontend builds `req` itself (connection NULL, query in test_query). */
void api_handle_as(void *userdata, const json_t *user, const struct http_request *req, struct http_response *resp);

#endif
