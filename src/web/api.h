/*
 * api.h - the JSON REST API under /api/v1, plus /healthz and /readyz.
 *
 * Authentication: "Authorization: Bearer <token>" from POST /api/v1/login.
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

struct api_ctx {
	struct store *store;               /* borrowed */
	struct accounts *accounts;         /* borrowed */
	struct credstore *creds;           /* borrowed */
	const struct airlock_config *cfg;  /* borrowed */
	int (*ready)(void *ud);            /* readiness probe; NULL = always ready */
	void *ready_ud;
};

/* The http_handler_fn for the whole API; userdata is a struct api_ctx. */
void api_handle(void *userdata, const struct http_request *req, struct http_response *resp);

#endif
