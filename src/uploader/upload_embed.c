#include "uploader/upload_embed.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/gates.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KIND_DS "AnalyticsWorkspaceDataSource"
#define WORKSPACE_LABEL "xlscsde.nhs.uk/workspace"
#define PREFIX "/api/v1/datasources/"
#define SUFFIX "/uploads"
#define NAME_MAX_LEN 253

struct upload_embed {
	struct api_ctx *api;
	char *staging_root;
	upload_embed_auth_fn authenticate;
	void *authenticate_ud;
	struct tus *tus;
	struct tus_sweeper *sweeper;
};

static int has_role(const json_t *user, const char *role)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(user, "roles"), i, r)
		if (json_is_string(r) && !strcmp(json_string_value(r), role))
			return 1;
	return 0;
}

static const char *status_str(const json_t *ds, const char *key)
{
	return json_string_value(json_object_get(json_object_get(ds, "status"), key));
}

/* <stagingRoot>/ds-<uid>: the local runtime's staging volume of ds (the
 * operator's operator_volume_name). NULL without a uid or on OOM. */
static char *staging_dir(const struct upload_embed *e, const json_t *ds)
{
	const char *uid = json_string_value(json_object_get(json_object_get(ds, "metadata"), "uid"));
	struct buf b;
	if (!uid || !*uid || strchr(uid, '/') || strstr(uid, ".."))
		return NULL;
	buf_init(&b, 8192);
	if (buf_appendf(&b, "%s/ds-%s", e->staging_root, uid)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* status.attempt: a retry opens a new round of uploads. */
static char *round_of(const json_t *ds)
{
	char n[32];
	json_int_t a = json_integer_value(json_object_get(json_object_get(ds, "status"), "attempt"));
	snprintf(n, sizeof(n), "%lld", (long long)a);
	return util_strdup(n);
}

static void answer(struct http_response *resp, int code, const char *message)
{
	http_response_error(resp, code, message);
}

static int authenticate(struct upload_embed *e, const struct http_request *req, json_t **user)
{
	int rc;
	if (e->authenticate) {
		rc = e->authenticate(e->authenticate_ud, req, user);
		if (rc != AL_ERR_NOT_FOUND)
			return rc;
		json_decref(*user);
		*user = NULL;
	}
	return api_authenticate_request(e->api, req, user);
}

static enum tus_route_result route(void *ud, const struct http_request *req, struct http_response *resp,
				   struct tus_route *out)
{
	struct upload_embed *e = ud;
	const char *p = req->path, *name, *slash, *rest;
	const char *method = req->method, *override = http_request_header(req, "X-HTTP-Method-Override");
	json_t *user = NULL, *ds = NULL;
	char *ds_name = NULL;
	struct buf base;
	enum tus_route_result res = TUS_ROUTE_ANSWERED;
	int rc, may_upload;
	struct upload_access acc;
	const char *stage, *type, *ws;

	memset(out, 0, sizeof(*out));
	if (strncmp(p, PREFIX, strlen(PREFIX)))
		return TUS_ROUTE_PASS;
	name = p + strlen(PREFIX);
	slash = strchr(name, '/');
	if (!slash || slash == name || (size_t)(slash - name) > NAME_MAX_LEN || strncmp(slash, SUFFIX, strlen(SUFFIX)))
		return TUS_ROUTE_PASS;
	rest = slash + strlen(SUFFIX);
	if (*rest && *rest != '/')
		return TUS_ROUTE_PASS;
	if (override && !strcmp(method, "POST"))
		method = override;
	buf_init(&base, 1024);
	if (!(ds_name = util_strndup(name, (size_t)(slash - name))) || buf_append(&base, p, (size_t)(rest - p))) {
		answer(resp, AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!strcmp(method, "OPTIONS")) {
		/* Discovery needs no one: it names no datasource's data. */
		out->base = buf_detach(&base);
		res = out->base ? TUS_ROUTE_OK : TUS_ROUTE_ANSWERED;
		goto out;
	}
	if ((rc = authenticate(e, req, &user))) {
		/* 403 for a known person whose request is refused (a missing CSRF
		 * token), 500/503 for our own failures, 401 for everything else. */
		if (rc != AL_ERR_FORBIDDEN && rc != AL_ERR_IO && rc != AL_ERR_NOMEM && rc != AL_ERR_INTERNAL &&
		    rc != AL_ERR_UNAVAILABLE)
			rc = AL_ERR_UNAUTHORIZED;
		answer(resp, rc, al_error_message());
		goto out;
	}
	rc = store_get(e->api->store, KIND_DS, api_namespace(e->api), ds_name, &ds);
	if (rc) {
		if (rc == AL_ERR_NOT_FOUND)
			al_error_set(AL_ERR_NOT_FOUND, "datasource '%s' not found", ds_name);
		answer(resp, rc, al_error_message());
		goto out;
	}
	upload_access_of(e->api, user, ds, &acc);
	may_upload = acc.may_upload;
	ws = acc.workspace;
	if (!acc.visible) {
		al_error_set(AL_ERR_NOT_FOUND, "datasource '%s' not found", ds_name);
		answer(resp, AL_ERR_NOT_FOUND, al_error_message());
		goto out;
	}
	type = json_string_value(json_object_get(json_object_get(ds, "spec"), "type"));
	if (!type || strcmp(type, "Uploaded")) {
		al_error_set(AL_ERR_NOT_FOUND, "datasource '%s' is of type %s: it takes no uploads", ds_name,
			     type ? type : "unknown");
		answer(resp, AL_ERR_NOT_FOUND, al_error_message());
		goto out;
	}
	out->dir = staging_dir(e, ds);
	out->base = buf_detach(&base);
	out->user = util_strdup(json_string_value(json_object_get(user, "username")));
	out->round = round_of(ds);
	if (!out->dir || !out->base || !out->user || !out->round) {
		answer(resp, AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	stage = gates_stage(ds);
	out->writable = 0;
	out->closed_status = 409;
	if (!may_upload) {
		out->closed_status = 403;
		al_error_set(AL_ERR_FORBIDDEN,
			     "uploading to '%s' is for its requester and for members of workspace '%s' with the researcher or data-engineer role",
			     ds_name, ws ? ws : "?");
	} else if (strcmp(stage, STAGE_UPLOADING)) {
		al_error_set(AL_ERR_CONFLICT, "datasource '%s' is at stage %s: it takes uploads only while Uploading", ds_name,
			     *stage ? stage : "<unset>");
	} else if (!util_path_exists(out->dir)) {
		al_error_set(AL_ERR_CONFLICT, "the upload area of datasource '%s' is being prepared: try again in a moment",
			     ds_name);
	} else {
		out->writable = 1;
	}
	if (!out->writable && !(out->closed_message = util_strdup(al_error_message()))) {
		answer(resp, AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	out->may_complete = acc.may_complete;
	out->host_ctx = user; /* the roles, for the gate event */
	user = NULL;
	res = TUS_ROUTE_OK;
out:
	buf_free(&base);
	free(ds_name);
	json_decref(user);
	json_decref(ds);
	return res;
}

int upload_access_of(struct api_ctx *api, const json_t *user, const json_t *ds, struct upload_access *out)
{
	const char *requester = status_str(ds, "requestedBy");
	const char *username = json_string_value(json_object_get(user, "username"));
	int is_requester, member, admin;

	memset(out, 0, sizeof(*out));
	out->workspace =
		json_string_value(json_object_get(json_object_get(json_object_get(ds, "metadata"), "labels"), WORKSPACE_LABEL));
	is_requester = requester && username && !strcmp(requester, username);
	member = out->workspace && api_user_in_workspace(api, user, out->workspace);
	admin = has_role(user, "admin");
	out->may_upload = is_requester || (member && (has_role(user, "researcher") || has_role(user, "data-engineer")));
	out->visible = out->may_upload || member || admin;
	out->may_complete = is_requester || admin;
	return AL_OK;
}

/* Re-reads on a concurrent change, as the API's own events do. */
int upload_fire_complete(struct api_ctx *api, const char *name, const json_t *user, json_t **out)
{
	struct gate_actor actor = { .system = 0, .name = json_string_value(json_object_get(user, "username")),
				    .roles = json_object_get(user, "roles") };
	int rc = AL_OK;

	*out = NULL;
	for (int attempt = 0; attempt < 5; attempt++) {
		json_t *ds = NULL, *audit = NULL;
		if ((rc = store_get(api->store, KIND_DS, api_namespace(api), name, &ds)))
			return rc;
		rc = gates_apply(&api->cfg->gates, ds, GATE_EV_UPLOAD_COMPLETE, &actor, NULL, &audit);
		if (!rc)
			rc = store_update_status(api->store, ds, audit, out);
		json_decref(ds);
		json_decref(audit);
		if (!rc)
			return AL_OK;
		json_decref(*out);
		*out = NULL;
		if (rc != AL_ERR_CONFLICT || strstr(al_error_message(), "modified") == NULL)
			break;
	}
	return rc;
}

static int completed(void *ud, struct tus_route *rt, const json_t *record, json_t **out_body)
{
	struct upload_embed *e = ud;
	const char *p = rt->base + strlen(PREFIX), *slash = strchr(p, '/');
	char *name = slash ? util_strndup(p, (size_t)(slash - p)) : NULL;
	json_t *ds = NULL;
	int rc;

	*out_body = NULL;
	if (!name)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = upload_fire_complete(e->api, name, rt->host_ctx, &ds);
	free(name);
	if (rc)
		return rc;
	*out_body = json_pack("{s:O, s:o}", "manifest", json_object_get(record, "manifest"), "datasource", ds);
	return *out_body ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

static void route_free(void *ud, struct tus_route *rt)
{
	(void)ud;
	json_decref(rt->host_ctx);
	rt->host_ctx = NULL;
}

int upload_embed_seal(void *ud, const json_t *ds, const char *username)
{
	struct upload_embed *e = ud;
	char *dir = staging_dir(e, ds), *round = round_of(ds);
	int rc;

	if (!dir || !round)
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	else if (!util_path_exists(dir))
		rc = AL_OK; /* no staging area yet: nothing was uploaded, nothing to seal */
	else
		rc = tus_seal(dir, round, username, NULL);
	free(dir);
	free(round);
	return rc;
}

int upload_embed_limits(const struct airlock_config *cfg, struct tus_limits *out, int *sweep_seconds)
{
	memset(out, 0, sizeof(*out));
	out->max_file_bytes = cfg->max_file_bytes;
	out->quota_bytes = cfg->max_total_bytes;
	out->max_files = cfg->max_files;
	out->expire_seconds = TUS_DEFAULT_EXPIRE_SECONDS;
	return tus_limits_from_env(out, sweep_seconds);
}

int upload_embed_open(struct upload_embed **out, const struct upload_embed_options *o)
{
	static const struct tus_host host = { .route = route, .completed = completed, .route_free = route_free };
	struct upload_embed *e;
	int rc;

	*out = NULL;
	if (!o->api || !o->api->store || !o->api->cfg || !o->staging_root)
		return al_error_set(AL_ERR_INVALID, "the embedded uploader needs the API and the staging root");
	if (!(e = calloc(1, sizeof(*e))) || !(e->staging_root = util_strdup(o->staging_root))) {
		free(e);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	e->api = o->api;
	e->authenticate = o->authenticate;
	e->authenticate_ud = o->authenticate_ud;
	if ((rc = tus_new(&e->tus, &o->limits, &host, e)) ||
	    (rc = tus_sweeper_start(&e->sweeper, e->tus, e->staging_root, 1, o->sweep_seconds > 0 ? o->sweep_seconds : 300))) {
		upload_embed_close(e);
		return rc;
	}
	*out = e;
	return AL_OK;
}

void upload_embed_close(struct upload_embed *e)
{
	if (!e)
		return;
	tus_sweeper_stop(e->sweeper);
	tus_free(e->tus);
	free(e->staging_root);
	free(e);
}

struct tus *upload_embed_tus(struct upload_embed *e)
{
	return e->tus;
}
