/*
 * upload_embed.h - the uploader inside `airlock serve`: the tus engine
 * (tus.h) mounted under /api/v1/datasources/<name>/uploads, on the same
 * server and port as the API.
 *
 *   /api/v1/datasources/<name>/uploads            OPTIONS, POST (creation), GET (list)
 *   /api/v1/datasources/<name>/uploads/<id>       HEAD, PATCH, DELETE, GET
 *   /api/v1/datasources/<name>/uploads/complete   POST: "all files uploaded"
 *
 * Who: a person the API knows (its bearer tokens, local or from the identity
 * provider, through api_authenticate_request; or, when set, the web
 * frontend's session through `authenticate`). Uploading is for the
 * datasource's requester and for members of its workspace with the
 * researcher or data-engineer role; others who may see the datasource
 * (admins, members without those roles) read their own (no) uploads and are
 * refused writes (403); people who may not see it get 404, as in the API.
 * Uploads belong to the person who created them: another user's upload
 * answers 404. "All files uploaded" is the requester's (or an admin's), as
 * POST .../uploaded is in the API.
 *
 * When: writes only while the datasource is at stage Uploading and its
 * staging volume (<stagingRoot>/ds-<uid>) exists; otherwise 409 naming the
 * stage. "All files uploaded" (POST .../uploads/complete here, or the API's
 * POST .../uploaded, through the seal hook) refuses while any upload is
 * unfinished, writes the manifest, makes the files read-only and fires the
 * gates' upload-complete event as that person, which sends the datasource
 * on to the checks and then to awaiting approval. From then on writes
 * answer 403 (read-only) or 409 (no longer Uploading). A round is
 * status.attempt: after a retry the datasource takes uploads again.
 *
 * Limits: checks.maxFileBytes (Tus-Max-Size), checks.maxTotalBytes (the
 * quota per datasource) and checks.maxFiles of the configuration, each
 * overridable by tus_limits_from_env; unfinished uploads expire after
 * AIRLOCK_UPLOAD_EXPIRE_SECONDS (default 24 h) without a write and a sweeper
 * thread removes them.
 *
 * Ownership: options are copied, but the api_ctx they point to is borrowed
 * and must outlive the handle.
 */
#ifndef AL_UPLOADER_UPLOAD_EMBED_H
#define AL_UPLOADER_UPLOAD_EMBED_H

#include <jansson.h>

#include "uploader/tus.h"
#include "web/api.h"
#include "web/http_server.h"

/* Optional extra authentication (the web frontend's session cookie). AL_OK
 * with *out_user = {"username", "roles"} (new reference) for a person;
 * AL_ERR_NOT_FOUND when the request carries no such credential (the bearer
 * token is tried next); AL_ERR_FORBIDDEN refuses it with 403 (a person
 * known, a request not allowed: a state change without the session's CSRF
 * header, web/upload_auth.h); AL_ERR_IO, _NOMEM, _INTERNAL and _UNAVAILABLE
 * answer their own status; any other error refuses it with 401. The message
 * is answered as it is. */
typedef int (*upload_embed_auth_fn)(void *ud, const struct http_request *req, json_t **out_user);

struct upload_embed_options {
	struct api_ctx *api;            /* store, configuration, authentication */
	const char *staging_root;       /* the local runtime's staging root */
	struct tus_limits limits;
	int sweep_seconds;
	upload_embed_auth_fn authenticate; /* may be NULL */
	void *authenticate_ud;
};

struct upload_embed;

/* Also starts the sweeper. */
int upload_embed_open(struct upload_embed **out, const struct upload_embed_options *o);
/* Stops the sweeper; the server using it must be stopped first. NULL-safe. */
void upload_embed_close(struct upload_embed *e);

/* For http_server_start_stream(..., tus_stream_ops(), upload_embed_tus(e)). */
struct tus *upload_embed_tus(struct upload_embed *e);

/* Defaults for options.limits from the configuration, then the environment. */
int upload_embed_limits(const struct airlock_config *cfg, struct tus_limits *out, int *sweep_seconds);

/* Who may do what with an Uploaded datasource's uploads: the rules above,
 * shared with the Kubernetes frontend's proxy (src/web/uploader_route.h), so
 * both modes decide alike. `workspace` is borrowed from ds. */
struct upload_access {
	int visible;        /* may see it at all (else answer 404) */
	int may_upload;     /* the requester, or a member with researcher / data-engineer */
	int may_complete;   /* "all files uploaded": the requester or an admin */
	const char *workspace;
};
/* user is {"username", "roles"} (borrowed); ds as the store returns it. */
int upload_access_of(struct api_ctx *api, const json_t *user, const json_t *ds, struct upload_access *out);

/* Fires the gates' upload-complete event on datasource `name` as `user`
 * ({"username", "roles"}, borrowed), which moves it from Uploading to
 * Checking; *out gets the updated datasource (new reference). Errors as
 * gates_apply and the store give them (AL_ERR_CONFLICT at another stage). */
int upload_fire_complete(struct api_ctx *api, const char *name, const json_t *user, json_t **out);

/* The api_ctx.seal_uploads hook: ud is the struct upload_embed. */
int upload_embed_seal(void *ud, const json_t *ds, const char *username);

#endif
