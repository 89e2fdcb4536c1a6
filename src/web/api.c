#include "web/api.h"
#include "audit/audit.h"
#include "auth/accounts.h"
#include "auth/credstore.h"
#include "auth/oidc.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/gates.h"
#include "resource/resource.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KIND_WS "AnalyticsWorkspace"
#define KIND_WSB "AnalyticsWorkspaceBinding"
#define KIND_DS "AnalyticsWorkspaceDataSource"
#define KIND_DSB "AnalyticsWorkspaceDataBinding"
#define WORKSPACE_LABEL "xlscsde.nhs.uk/workspace"
#define TYPE_LABEL "xlscsde.nhs.uk/type"
#define USERNAME_LABEL "xlscsde.nhs.uk/username"
#define MAX_SEGMENTS 8

/* One request being served. */
struct call {
	struct api_ctx *api;
	const struct http_request *req;
	struct http_response *resp;
	json_t *user;            /* {username, roles[]} once authenticated */
	const char *username;
	const char *seg[MAX_SEGMENTS];
	size_t nseg;
	char *path_copy;
};

static int reply_error(struct call *c, int code)
{
	const char *msg = al_error_message();
	if (!*msg)
		msg = al_error_name(code);
	http_response_error(c->resp, code, msg);
	return code;
}

static int reply_json(struct call *c, int status, json_t *body)
{
	if (!body)
		return reply_error(c, al_error_set(AL_ERR_NOMEM, "out of memory"));
	http_response_json(c->resp, status, body);
	return AL_OK;
}

static int has_role(const struct call *c, const char *role)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(c->user, "roles"), i, r)
		if (json_is_string(r) && !strcmp(json_string_value(r), role))
			return 1;
	return 0;
}

static int require_role(struct call *c, const char *role)
{
	if (has_role(c, role) || has_role(c, "admin"))
		return AL_OK;
	return al_error_set(AL_ERR_FORBIDDEN, "this needs the '%s' role, which %s does not have", role, c->username);
}

static const char *md_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static const char *label_of(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), key));
}

static const char *spec_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "spec"), key));
}

/* ---- membership ------------------------------------------------------- */

/* A binding counts until the end of its expiry (a date counts to its end). */
static int binding_current(const json_t *b)
{
	const char *exp = spec_str(b, "expires");
	int64_t when;
	if (!exp || !*exp)
		return 1;
	if (strlen(exp) == 10) {
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		if (!strptime(exp, "%Y-%m-%d", &tm))
			return 0;
		return (int64_t)timegm(&tm) + 86400 > (int64_t)time(NULL);
	}
	if (util_parse_rfc3339(exp, &when))
		return 0;
	return when > (int64_t)time(NULL);
}

/* AWMS labels a binding with its username, '@' written as "___" (label
 * values cannot hold '@'; usernames cannot hold '_', so this is one-to-one).
 * NULL when the result would not fit a label value (63 characters). */
static char *username_label(const char *username)
{
	struct buf b;
	buf_init(&b, 64);
	for (const char *p = username; *p; p++)
		if ((*p == '@' ? buf_appends(&b, "___") : buf_appendc(&b, *p)) || b.len > 63) {
			buf_free(&b);
			return NULL;
		}
	return buf_detach(&b);
}

/* Workspaces the caller belongs to, as a JSON array of names (new). */
static int my_workspaces(struct call *c, json_t **out)
{
	json_t *items = NULL, *names = json_array();
	char *label = username_label(c->username);
	struct buf sel;
	size_t i;
	json_t *b;
	int rc;

	*out = NULL;
	buf_init(&sel, 256);
	/* Bindings carry the username label (the API sets it), so list only the
	 * caller's; spec.username is still checked below. */
	if (label)
		buf_appendf(&sel, "%s=%s", USERNAME_LABEL, label);
	free(label);
	if (!names) {
		buf_free(&sel);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	rc = store_list(c->api->store, KIND_WSB, api_namespace(c->api), sel.len ? sel.ptr : NULL, &items, NULL);
	buf_free(&sel);
	if (rc) {
		json_decref(names);
		return rc;
	}
	json_array_foreach(items, i, b) {
		const char *u = spec_str(b, "username"), *w = spec_str(b, "workspace");
		if (u && w && !strcmp(u, c->username) && binding_current(b))
			json_array_append_new(names, json_string(w));
	}
	json_decref(items);
	/* An identity-provider user is also a member of the workspaces its
	 * groups claim names (src/auth/oidc); local users have none. */
	json_array_foreach(json_object_get(c->user, "workspaces"), i, b) {
		size_t j;
		json_t *have;
		int dup = 0;
		json_array_foreach(names, j, have)
			if (!strcmp(json_string_value(have), json_string_value(b)))
				dup = 1;
		if (!dup && json_is_string(b))
			json_array_append(names, b);
	}
	*out = names;
	return AL_OK;
}

static int is_member(struct call *c, const char *ws)
{
	json_t *mine = NULL;
	size_t i;
	json_t *w;
	int found = 0;
	if (!ws || my_workspaces(c, &mine))
		return 0;
	json_array_foreach(mine, i, w)
		if (!strcmp(json_string_value(w), ws))
			found = 1;
	json_decref(mine);
	return found;
}

/* Does the caller hold a role that decides at the gate this stage waits on? */
static int can_decide(struct call *c, const char *stage)
{
	const struct gates_config *g = &c->api->cfg->gates;
	if (!strcmp(stage, STAGE_AWAITING_REQUEST)) {
		for (size_t i = 0; i < g->n_request; i++)
			if (has_role(c, g->request[i].role))
				return 1;
	} else if (!strcmp(stage, STAGE_AWAITING_APPROVAL)) {
		for (size_t i = 0; i < g->n_review; i++)
			if (has_role(c, g->review[i].role))
				return 1;
	}
	return 0;
}

/* May the caller see this datasource? Admins see all; members see their
 * workspaces'; those who may decide see what awaits them, and what they decided. */
static int ds_visible(struct call *c, const json_t *ds)
{
	size_t i;
	json_t *a;
	if (has_role(c, "admin") || is_member(c, label_of(ds, WORKSPACE_LABEL)))
		return 1;
	if (can_decide(c, gates_stage(ds)))
		return 1;
	json_array_foreach(json_object_get(json_object_get(ds, "status"), "approvals"), i, a) {
		const char *u = json_string_value(json_object_get(a, "user"));
		if (u && !strcmp(u, c->username))
			return 1;
	}
	return 0;
}

static int get_visible_ds(struct call *c, const char *name, json_t **out)
{
	int rc = store_get(c->api->store, KIND_DS, api_namespace(c->api), name, out);
	if (rc == AL_ERR_NOT_FOUND || (!rc && !ds_visible(c, *out))) {
		if (!rc) {
			json_decref(*out);
			*out = NULL;
		}
		return al_error_set(AL_ERR_NOT_FOUND, "datasource '%s' not found", name);
	}
	return rc;
}

/* ---- bodies --------------------------------------------------------------- */

static int parse_body(struct call *c, json_t **out)
{
	int rc;
	if (c->req->body_len == 0)
		return al_error_set(AL_ERR_INVALID, "the request has no body: send JSON or YAML");
	if (memchr(c->req->body, '\0', c->req->body_len))
		return al_error_set(AL_ERR_INVALID, "the body contains a NUL byte");
	if ((rc = resource_parse(c->req->body, c->req->body_len, out)))
		return rc;
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return al_error_set(AL_ERR_INVALID, "the body must be a JSON object or YAML mapping");
	}
	return AL_OK;
}

/* Parses and validates a resource of `kind`, defaulting namespace; status is
 * ignored on input (it belongs to the system, as with a status subresource). */
static int parse_resource(struct call *c, const char *kind, json_t **out)
{
	json_t *obj = NULL, *md;
	const char *k;
	int rc;

	*out = NULL;
	if ((rc = parse_body(c, &obj)))
		return rc;
	k = json_string_value(json_object_get(obj, "kind"));
	if (!k || strcmp(k, kind)) {
		rc = al_error_set(AL_ERR_INVALID, "kind must be %s here (got %s)", kind, k ? k : "nothing");
		goto fail;
	}
	md = json_object_get(obj, "metadata");
	if (json_is_object(md) && !json_object_get(md, "namespace"))
		json_object_set_new(md, "namespace", json_string(api_namespace(c->api)));
	if (json_is_object(md) && strcmp(json_string_value(json_object_get(md, "namespace")) ? json_string_value(json_object_get(md, "namespace")) : "", api_namespace(c->api))) {
		rc = al_error_set(AL_ERR_INVALID, "metadata.namespace: this airlock keeps its objects in the namespace '%s'", api_namespace(c->api));
		goto fail;
	}
	if ((rc = resource_validate(obj)))
		goto fail;
	json_object_del(obj, "status");
	*out = obj;
	return AL_OK;
fail:
	json_decref(obj);
	return rc;
}

static json_t *user_audit(struct call *c, const char *action, const json_t *obj, const char *reason)
{
	json_t *ref = json_pack("{s:s, s:s, s:s, s:s?}", "kind", json_string_value(json_object_get(obj, "kind")) ? json_string_value(json_object_get(obj, "kind")) : "",
				"namespace", md_str(obj, "namespace") ? md_str(obj, "namespace") : api_namespace(c->api), "name",
				md_str(obj, "name") ? md_str(obj, "name") : "", "uid", md_str(obj, "uid"));
	json_t *a = audit_entry_new("user", c->username, action, ref, NULL, NULL, NULL, NULL, NULL, reason);
	json_decref(ref);
	if (a && !md_str(obj, "uid"))
		json_object_del(a, "object"); /* the store fills it in, uid included */
	return a;
}

/* Appends an audit record about something that is not a resource (a user, a
 * secret key, a session). Failures are logged: the action itself is done. */
static void audit_other(struct call *c, const char *actor, const char *action, const char *kind, const char *name)
{
	json_t *a = audit_entry_new("user", actor, action, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	json_t *ref = json_pack("{s:s, s:s, s:s}", "kind", kind, "namespace", "", "name", name);
	if (a && ref && json_object_set_new(a, "object", ref) == 0) {
		ref = NULL;
		if (store_audit_append(c->api->store, a))
			log_warn("cannot audit %s of %s %s: %s", action, kind, name, al_error_message());
	}
	json_decref(ref);
	json_decref(a);
}

static json_t *list_body(json_t *items)
{
	return json_pack("{s:s, s:o}", "kind", "List", "items", items);
}

/* ---- login ------------------------------------------------------------- */

static int route_login(struct call *c)
{
	json_t *body = NULL, *user = NULL;
	char *token = NULL;
	const char *u, *p;
	int rc;

	if ((rc = parse_body(c, &body)))
		return reply_error(c, rc);
	u = json_string_value(json_object_get(body, "username"));
	p = json_string_value(json_object_get(body, "password"));
	if (!u || !p) {
		json_decref(body);
		return reply_error(c, al_error_set(AL_ERR_INVALID, "send {\"username\": ..., \"password\": ...}"));
	}
	rc = accounts_login(c->api->accounts, u, p, c->api->cfg->token_ttl_seconds, "cli", &token);
	if (!rc)
		rc = accounts_authenticate(c->api->accounts, token, &user);
	if (rc) {
		json_decref(body);
		free(token);
		return reply_error(c, rc);
	}
	audit_other(c, u, "login", "User", u);
	reply_json(c, 200, json_pack("{s:s, s:i, s:O}", "token", token, "expiresIn",
				     c->api->cfg->token_ttl_seconds, "user", user));
	/* The token lives on only in the response and, hashed, in the database. */
	memset(token, 0, strlen(token));
	free(token);
	json_decref(user);
	json_decref(body);
	return AL_OK;
}

static int route_logout(struct call *c)
{
	const char *auth = http_request_header(c->req, "Authorization");
	int rc = accounts_logout(c->api->accounts, auth + 7);
	if (rc)
		return reply_error(c, rc);
	audit_other(c, c->username, "logout", "User", c->username);
	return reply_json(c, 200, json_pack("{s:b}", "loggedOut", 1));
}

/* ---- users ----------------------------------------------------------- */

static int route_users(struct call *c)
{
	const char *m = c->req->method;
	json_t *body = NULL, *out = NULL;
	int rc;

	if ((rc = require_role(c, "admin")))
		return reply_error(c, rc);
	if (c->nseg == 3 && !strcmp(m, "GET")) {
		if ((rc = accounts_user_list(c->api->accounts, &out)))
			return reply_error(c, rc);
		return reply_json(c, 200, list_body(out));
	}
	if (c->nseg == 3 && !strcmp(m, "POST")) {
		const char *u, *p;
		json_t *roles;
		if ((rc = parse_body(c, &body)))
			return reply_error(c, rc);
		u = json_string_value(json_object_get(body, "username"));
		p = json_string_value(json_object_get(body, "password"));
		roles = json_object_get(body, "roles");
		if (!u || !p || !json_is_array(roles)) {
			json_decref(body);
			return reply_error(c, al_error_set(AL_ERR_INVALID,
							   "send {\"username\", \"password\", \"roles\": [...]}"));
		}
		rc = accounts_user_create(c->api->accounts, u, p, roles);
		if (!rc)
			rc = accounts_user_get(c->api->accounts, u, &out);
		if (!rc)
			audit_other(c, c->username, "create-user", "User", u);
		json_decref(body);
		if (rc)
			return reply_error(c, rc);
		return reply_json(c, 201, out);
	}
	if (c->nseg == 4 && !strcmp(m, "GET")) {
		if ((rc = accounts_user_get(c->api->accounts, c->seg[3], &out)))
			return reply_error(c, rc);
		return reply_json(c, 200, out);
	}
	if (c->nseg == 4 && !strcmp(m, "PUT")) {
		/* {password?, roles?, disabled?}: each changes that, and revokes the user's tokens
		 * where accounts say so (password, disabling). */
		const char *key, *pw;
		json_t *v, *roles, *dis;
		if ((rc = parse_body(c, &body)))
			return reply_error(c, rc);
		json_object_foreach(body, key, v)
			if (strcmp(key, "password") && strcmp(key, "roles") && strcmp(key, "disabled")) {
				/* The message copies the key before the body that holds it is freed. */
				rc = al_error_set(AL_ERR_INVALID, "%s: unknown field (expected password, roles, disabled)", key);
				json_decref(body);
				return reply_error(c, rc);
			}
		pw = json_string_value(json_object_get(body, "password"));
		roles = json_object_get(body, "roles");
		dis = json_object_get(body, "disabled");
		if ((json_object_get(body, "password") && !pw) || (roles && !json_is_array(roles)) ||
		    (dis && !json_is_boolean(dis)) || json_object_size(body) == 0) {
			json_decref(body);
			return reply_error(c, al_error_set(AL_ERR_INVALID, "send one or more of {\"password\": string, \"roles\": [...], \"disabled\": true|false}"));
		}
		if (!strcmp(c->seg[3], c->username) && ((dis && json_is_true(dis)) || roles)) {
			json_decref(body);
			return reply_error(c, al_error_set(AL_ERR_CONFLICT, "you cannot disable yourself or change your own roles"));
		}
		rc = accounts_user_get(c->api->accounts, c->seg[3], &out);
		json_decref(out);
		out = NULL;
		if (!rc && roles)
			rc = accounts_user_set_roles(c->api->accounts, c->seg[3], roles);
		if (!rc && pw)
			rc = accounts_user_set_password(c->api->accounts, c->seg[3], pw);
		if (!rc && dis)
			rc = accounts_user_set_disabled(c->api->accounts, c->seg[3], json_is_true(dis));
		if (!rc)
			audit_other(c, c->username, pw ? "set-password" : (roles ? "set-roles" : "set-disabled"), "User", c->seg[3]);
		json_decref(body);
		if (!rc)
			rc = accounts_user_get(c->api->accounts, c->seg[3], &out);
		if (rc)
			return reply_error(c, rc);
		return reply_json(c, 200, out);
	}
	if (c->nseg == 4 && !strcmp(m, "DELETE")) {
		if (!strcmp(c->seg[3], c->username))
			return reply_error(c, al_error_set(AL_ERR_CONFLICT, "you cannot delete your own account"));
		if ((rc = accounts_user_delete(c->api->accounts, c->seg[3])))
			return reply_error(c, rc);
		audit_other(c, c->username, "delete-user", "User", c->seg[3]);
		return reply_json(c, 200, json_pack("{s:s}", "deleted", c->seg[3]));
	}
	return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", m, c->req->path));
}

/* ---- generic resources (workspaces, bindings) -------------------------- */

static int ws_visible(struct call *c, const json_t *obj, const char *kind)
{
	if (has_role(c, "admin"))
		return 1;
	if (!strcmp(kind, KIND_WS))
		return is_member(c, md_str(obj, "name"));
	if (!strcmp(kind, KIND_WSB)) {
		const char *u = spec_str(obj, "username");
		return u && !strcmp(u, c->username);
	}
	if (!strcmp(kind, KIND_DSB))
		return is_member(c, spec_str(obj, "workspace"));
	return 0;
}

static int route_admin_kind(struct call *c, const char *kind)
{
	const char *m = c->req->method;
	json_t *obj = NULL, *out = NULL, *items = NULL, *vis;
	int rc;

	if (c->nseg == 3 && !strcmp(m, "GET")) {
		size_t i;
		json_t *it;
		if ((rc = store_list(c->api->store, kind, api_namespace(c->api), http_request_query(c->req, "labelSelector"), &items, NULL)))
			return reply_error(c, rc);
		vis = json_array();
		json_array_foreach(items, i, it)
			if (ws_visible(c, it, kind))
				json_array_append(vis, it);
		json_decref(items);
		return reply_json(c, 200, list_body(vis));
	}
	if (c->nseg == 4 && !strcmp(m, "GET")) {
		rc = store_get(c->api->store, kind, api_namespace(c->api), c->seg[3], &out);
		if (rc == AL_ERR_NOT_FOUND || (!rc && !ws_visible(c, out, kind))) {
			json_decref(out);
			return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "%s '%s' not found", kind, c->seg[3]));
		}
		if (rc)
			return reply_error(c, rc);
		return reply_json(c, 200, out);
	}
	if ((rc = require_role(c, "admin")))
		return reply_error(c, rc);
	if ((c->nseg == 3 && !strcmp(m, "POST")) || (c->nseg == 4 && !strcmp(m, "PUT"))) {
		json_t *audit;
		int create = !strcmp(m, "POST");
		if ((rc = parse_resource(c, kind, &obj)))
			return reply_error(c, rc);
		if (!create && strcmp(md_str(obj, "name"), c->seg[3])) {
			json_decref(obj);
			return reply_error(c, al_error_set(AL_ERR_INVALID, "metadata.name '%s' does not match the URL '%s'",
							   md_str(obj, "name"), c->seg[3]));
		}
		if (!strcmp(kind, KIND_WSB)) {
			json_t *ws = NULL;
			rc = store_get(c->api->store, KIND_WS, api_namespace(c->api), spec_str(obj, "workspace"), &ws);
			json_decref(ws);
			if (rc == AL_ERR_NOT_FOUND)
				rc = al_error_set(AL_ERR_INVALID, "spec.workspace: workspace '%s' does not exist",
						  spec_str(obj, "workspace"));
			if (!rc) {
				json_t *u = NULL;
				rc = accounts_user_get(c->api->accounts, spec_str(obj, "username"), &u);
				json_decref(u);
				/* With an identity provider, people may exist only there (and
				 * AWMS binds them by their Keycloak username). */
				if (rc == AL_ERR_NOT_FOUND && c->api->oidc &&
				    accounts_check_username(spec_str(obj, "username")) == AL_OK)
					rc = AL_OK;
				if (rc == AL_ERR_NOT_FOUND)
					rc = al_error_set(AL_ERR_INVALID, "spec.username: user '%s' does not exist",
							  spec_str(obj, "username"));
			}
			if (!rc) {
				/* Label it with its user (AWMS does too): membership checks list by it. */
				char *label = username_label(spec_str(obj, "username"));
				json_t *md = json_object_get(obj, "metadata"), *labels = json_object_get(md, "labels");
				if (!json_is_object(labels)) {
					labels = json_object();
					json_object_set_new(md, "labels", labels);
				}
				if (label)
					json_object_set_new(labels, USERNAME_LABEL, json_string(label));
				else
					json_object_del(labels, USERNAME_LABEL);
				free(label);
			}
			if (rc) {
				json_decref(obj);
				return reply_error(c, rc);
			}
		}
		audit = user_audit(c, create ? "create" : "update", obj, NULL);
		rc = create ? store_create(c->api->store, obj, audit, &out) : store_update(c->api->store, obj, audit, &out);
		json_decref(audit);
		json_decref(obj);
		if (rc)
			return reply_error(c, rc);
		return reply_json(c, create ? 201 : 200, out);
	}
	if (c->nseg == 4 && !strcmp(m, "DELETE")) {
		rc = store_get(c->api->store, kind, api_namespace(c->api), c->seg[3], &obj);
		if (!rc) {
			json_t *audit = user_audit(c, "delete", obj, NULL);
			rc = store_delete(c->api->store, kind, api_namespace(c->api), c->seg[3], NULL, audit);
			json_decref(audit);
		}
		json_decref(obj);
		if (rc)
			return reply_error(c, rc);
		return reply_json(c, 200, json_pack("{s:s}", "deleted", c->seg[3]));
	}
	return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", m, c->req->path));
}

/* ---- datasources --------------------------------------------------------- */

static char *binding_name(const char *ds)
{
	struct buf b;
	buf_init(&b, 512);
	if (buf_appendf(&b, "dsb-%.249s", strncmp(ds, "ds-", 3) ? ds : ds + 3)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}


static int create_datasource(struct call *c)
{
	json_t *obj = NULL, *md, *labels, *audit = NULL, *out = NULL, *binding = NULL, *ws = NULL, *bout = NULL;
	const char *ws_name, *type;
	struct gate_actor actor;
	char *bname = NULL;
	int rc;

	if ((rc = parse_body(c, &obj)))
		return reply_error(c, rc);
	/* A datasource may arrive without a name, as from the upload form. */
	md = json_object_get(obj, "metadata");
	if (json_is_object(md) && !json_object_get(md, "name")) {
		char *hex = util_random_hex(16), *n = NULL;
		if (hex && (n = malloc(strlen(hex) + 4))) {
			memcpy(n, "ds-", 3);
			memcpy(n + 3, hex, strlen(hex) + 1);
			json_object_set_new(md, "name", json_string(n));
		}
		free(hex);
		free(n);
	}
	if (json_is_object(md) && !json_object_get(md, "namespace"))
		json_object_set_new(md, "namespace", json_string(api_namespace(c->api)));
	{
		const char *k = json_string_value(json_object_get(obj, "kind"));
		if (!k || strcmp(k, KIND_DS)) {
			rc = al_error_set(AL_ERR_INVALID, "kind must be %s here (got %s)", KIND_DS, k ? k : "nothing");
			goto out;
		}
	}
	if ((rc = resource_validate(obj)))
		goto out;
	if (strcmp(md_str(obj, "namespace"), api_namespace(c->api))) {
		rc = al_error_set(AL_ERR_INVALID, "metadata.namespace: this airlock keeps its objects in the namespace '%s'", api_namespace(c->api));
		goto out;
	}
	json_object_del(obj, "status");
	md = json_object_get(obj, "metadata");
	ws_name = http_request_query(c->req, "workspace");
	if (!ws_name || !*ws_name)
		ws_name = label_of(obj, WORKSPACE_LABEL);
	if (!ws_name || !*ws_name) {
		rc = al_error_set(AL_ERR_INVALID, "which workspace is this for? Pass ?workspace=NAME (the CLI's --workspace) or set the label " WORKSPACE_LABEL);
		goto out;
	}
	if (label_of(obj, WORKSPACE_LABEL) && strcmp(label_of(obj, WORKSPACE_LABEL), ws_name)) {
		rc = al_error_set(AL_ERR_INVALID, "the label " WORKSPACE_LABEL " says '%s' but the request says '%s'",
				  label_of(obj, WORKSPACE_LABEL), ws_name);
		goto out;
	}
	rc = store_get(c->api->store, KIND_WS, api_namespace(c->api), ws_name, &ws);
	if (rc == AL_ERR_NOT_FOUND || (!rc && !has_role(c, "admin") && !is_member(c, ws_name))) {
		rc = al_error_set(AL_ERR_NOT_FOUND, "workspace '%s' not found", ws_name);
		goto out;
	}
	if (rc)
		goto out;
	type = spec_str(obj, "type");
	if (!strcmp(type, "Import") && !has_role(c, "data-engineer") && !has_role(c, "admin")) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "creating an Import datasource needs the 'data-engineer' role");
		goto out;
	}
	if (!strcmp(type, "Uploaded") && !has_role(c, "researcher") && !has_role(c, "data-engineer") &&
	    !has_role(c, "admin")) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "uploading data needs the 'researcher' or 'data-engineer' role");
		goto out;
	}
	labels = json_object_get(md, "labels");
	if (!json_is_object(labels)) {
		labels = json_object();
		json_object_set_new(md, "labels", labels);
	}
	json_object_set_new(labels, WORKSPACE_LABEL, json_string(ws_name));
	if (!json_object_get(labels, TYPE_LABEL))
		json_object_set_new(labels, TYPE_LABEL, json_string(!strcmp(type, "Import") ? "import" : "uploaded"));
	actor.system = 0;
	actor.name = c->username;
	actor.roles = json_object_get(c->user, "roles");
	if ((rc = gates_apply(&c->api->cfg->gates, obj, GATE_EV_SUBMIT, &actor, NULL, &audit)))
		goto out;
	json_object_del(audit, "object"); /* filled in by the store, with the new uid */
	/* The seed: the datasource is bound to its workspace. Both are created
	 * together, so neither exists without the other. */
	bname = binding_name(md_str(obj, "name"));
	binding = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s}}", "apiVersion", RESOURCE_API_VERSION,
			    "kind", KIND_DSB, "metadata", "name", bname ? bname : "", "namespace", api_namespace(c->api), "labels",
			    WORKSPACE_LABEL, ws_name, "spec", "workspace", ws_name, "datasource", md_str(obj, "name"));
	if (!bname || !binding) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	{
		json_t *ba = user_audit(c, "bind", binding, NULL);
		const json_t *objs[2] = { obj, binding }, *audits[2] = { audit, ba };
		json_t *outs[2] = { NULL, NULL };
		rc = ba ? store_create_many(c->api->store, 2, objs, audits, outs) : al_error_set(AL_ERR_NOMEM, "out of memory");
		json_decref(ba);
		out = outs[0];
		bout = outs[1];
		if (rc)
			goto out;
	}
	reply_json(c, 201, out);
	out = NULL;
	rc = AL_OK;
out:
	if (rc)
		reply_error(c, rc);
	free(bname);
	json_decref(binding);
	json_decref(bout);
	json_decref(ws);
	json_decref(audit);
	json_decref(out);
	json_decref(obj);
	return rc;
}

static int list_datasources(struct call *c)
{
	const char *ws = http_request_query(c->req, "workspace");
	const char *stage = http_request_query(c->req, "stage");
	json_t *items = NULL, *vis = json_array();
	struct buf sel;
	size_t i;
	json_t *it;
	int rc;

	buf_init(&sel, 4096);
	if (ws && *ws)
		buf_appendf(&sel, "%s=%s", WORKSPACE_LABEL, ws);
	{
		const char *extra = http_request_query(c->req, "labelSelector");
		if (extra && *extra)
			buf_appendf(&sel, "%s%s", sel.len ? "," : "", extra);
	}
	rc = store_list(c->api->store, KIND_DS, api_namespace(c->api), sel.len ? sel.ptr : NULL, &items, NULL);
	buf_free(&sel);
	if (rc) {
		json_decref(vis);
		return reply_error(c, rc);
	}
	json_array_foreach(items, i, it) {
		if (stage && *stage && strcmp(gates_stage(it), stage))
			continue;
		if (ds_visible(c, it))
			json_array_append(vis, it);
	}
	json_decref(items);
	return reply_json(c, 200, list_body(vis));
}

/* Applies a person's gate event, re-reading on a concurrent change. */
static int ds_event(struct call *c, const char *name, enum gate_event ev, const struct gate_input *in)
{
	struct gate_actor actor = { .system = 0, .name = c->username, .roles = json_object_get(c->user, "roles") };
	int rc = AL_OK;

	for (int attempt = 0; attempt < 5; attempt++) {
		json_t *ds = NULL, *audit = NULL, *out = NULL;
		if ((rc = get_visible_ds(c, name, &ds)))
			return reply_error(c, rc);
		rc = gates_apply(&c->api->cfg->gates, ds, ev, &actor, in, &audit);
		if (!rc)
			rc = store_update_status(c->api->store, ds, audit, &out);
		json_decref(ds);
		json_decref(audit);
		if (!rc)
			return reply_json(c, 200, out);
		json_decref(out);
		/* A stale resourceVersion from the store: someone wrote first. */
		if (rc != AL_ERR_CONFLICT || strstr(al_error_message(), "modified") == NULL)
			break;
	}
	return reply_error(c, rc);
}

static int route_decision(struct call *c, const char *name)
{
	json_t *body = NULL, *ds = NULL;
	struct gate_input in;
	const char *decision, *stage;
	enum gate_event ev;
	int rc, request_gate;

	if ((rc = parse_body(c, &body)))
		return reply_error(c, rc);
	if ((rc = get_visible_ds(c, name, &ds)))
		goto out;
	memset(&in, 0, sizeof(in));
	decision = json_string_value(json_object_get(body, "decision"));
	in.approval_type = json_string_value(json_object_get(body, "type"));
	in.digest = json_string_value(json_object_get(body, "digest"));
	in.reason = json_string_value(json_object_get(body, "reason"));
	{
		const char *key;
		json_t *v;
		json_object_foreach(body, key, v) {
			if (strcmp(key, "decision") && strcmp(key, "type") && strcmp(key, "digest") && strcmp(key, "reason")) {
				rc = al_error_set(AL_ERR_INVALID, "%s: unknown field (expected decision, type, digest, reason)", key);
				goto out;
			}
			if (!json_is_string(v)) {
				rc = al_error_set(AL_ERR_INVALID, "%s: must be a string", key);
				goto out;
			}
		}
	}
	if (!decision || (strcmp(decision, "approve") && strcmp(decision, "reject"))) {
		rc = al_error_set(AL_ERR_INVALID, "decision must be \"approve\" or \"reject\"");
		goto out;
	}
	stage = gates_stage(ds);
	request_gate = !strcmp(stage, STAGE_AWAITING_REQUEST);
	if (!request_gate && strcmp(stage, STAGE_AWAITING_APPROVAL)) {
		rc = al_error_set(AL_ERR_CONFLICT, "datasource '%s' is in stage %s: there is nothing to decide", name,
				  *stage ? stage : "<unset>");
		goto out;
	}
	if (!strcmp(decision, "approve"))
		ev = request_gate ? GATE_EV_REQUEST_APPROVE : GATE_EV_REVIEW_APPROVE;
	else
		ev = request_gate ? GATE_EV_REQUEST_REJECT : GATE_EV_REVIEW_REJECT;
	json_decref(ds);
	ds = NULL;
	rc = ds_event(c, name, ev, &in);
	json_decref(body);
	return rc;
out:
	json_decref(ds);
	json_decref(body);
	return reply_error(c, rc);
}

static int update_datasource(struct call *c, const char *name)
{
	json_t *obj = NULL, *cur = NULL, *audit = NULL, *out = NULL;
	int rc;

	if ((rc = get_visible_ds(c, name, &cur)))
		return reply_error(c, rc);
	if ((rc = parse_resource(c, KIND_DS, &obj)))
		goto out;
	if (strcmp(md_str(obj, "name"), name)) {
		rc = al_error_set(AL_ERR_INVALID, "metadata.name '%s' does not match the URL '%s'", md_str(obj, "name"), name);
		goto out;
	}
	/* An approval is about exactly what was asked: the spec cannot change. */
	if (!json_equal(json_object_get(obj, "spec"), json_object_get(cur, "spec"))) {
		rc = al_error_set(AL_ERR_CONFLICT, "the spec of a submitted datasource cannot change; delete it and create a new one");
		goto out;
	}
	{
		const char *old_ws = label_of(cur, WORKSPACE_LABEL), *new_ws = label_of(obj, WORKSPACE_LABEL);
		if (!new_ws || !old_ws || strcmp(old_ws, new_ws)) {
			rc = al_error_set(AL_ERR_CONFLICT, "the label " WORKSPACE_LABEL " cannot change");
			goto out;
		}
	}
	/* Finalizers and owner references belong to the system, not to callers. */
	{
		json_t *md = json_object_get(obj, "metadata"), *cmd = json_object_get(cur, "metadata");
		const char *keys[] = { "finalizers", "ownerReferences" };
		for (size_t i = 0; i < 2; i++) {
			json_t *v = json_object_get(cmd, keys[i]);
			if (v)
				json_object_set(md, keys[i], v);
			else
				json_object_del(md, keys[i]);
		}
	}
	audit = user_audit(c, "update", cur, NULL);
	rc = store_update(c->api->store, obj, audit, &out);
out:
	if (!rc)
		reply_json(c, 200, out);
	else {
		json_decref(out);
		reply_error(c, rc);
	}
	json_decref(obj);
	json_decref(cur);
	json_decref(audit);
	return rc;
}

static int delete_datasource(struct call *c, const char *name)
{
	json_t *ds = NULL, *audit = NULL;
	const char *requester;
	char *bname = NULL;
	int rc;

	if ((rc = get_visible_ds(c, name, &ds)))
		return reply_error(c, rc);
	requester = json_string_value(json_object_get(json_object_get(ds, "status"), "requestedBy"));
	if (!has_role(c, "admin") && (!requester || strcmp(requester, c->username))) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "only the requester (%s) or an admin can delete this datasource",
				  requester ? requester : "unknown");
		goto out;
	}
	audit = user_audit(c, "delete", ds, NULL);
	if ((rc = store_delete(c->api->store, KIND_DS, api_namespace(c->api), name, NULL, audit)))
		goto out;
	bname = binding_name(name);
	if (bname) {
		json_t *b = NULL;
		if (!store_get(c->api->store, KIND_DSB, api_namespace(c->api), bname, &b)) {
			json_t *ba = user_audit(c, "unbind", b, NULL);
			store_delete(c->api->store, KIND_DSB, api_namespace(c->api), bname, NULL, ba);
			json_decref(ba);
		}
		json_decref(b);
	}
out:
	if (rc)
		reply_error(c, rc);
	else
		reply_json(c, 200, json_pack("{s:s}", "deleted", name));
	free(bname);
	json_decref(ds);
	json_decref(audit);
	return rc;
}

static int route_datasources(struct call *c)
{
	const char *m = c->req->method;
	const char *name = c->nseg >= 4 ? c->seg[3] : NULL;
	json_t *ds = NULL;
	int rc;

	if (c->nseg == 3 && !strcmp(m, "GET"))
		return list_datasources(c);
	if (c->nseg == 3 && !strcmp(m, "POST"))
		return create_datasource(c);
	if (c->nseg == 4 && !strcmp(m, "GET")) {
		if ((rc = get_visible_ds(c, name, &ds)))
			return reply_error(c, rc);
		return reply_json(c, 200, ds);
	}
	if (c->nseg == 4 && !strcmp(m, "PUT"))
		return update_datasource(c, name);
	if (c->nseg == 4 && !strcmp(m, "DELETE"))
		return delete_datasource(c, name);
	if (c->nseg == 5 && !strcmp(c->seg[4], "approvals") && !strcmp(m, "POST"))
		return route_decision(c, name);
	if (c->nseg == 5 && (!strcmp(c->seg[4], "retry") || !strcmp(c->seg[4], "uploaded")) && !strcmp(m, "POST")) {
		/* Starting again, or saying the upload is complete, is the requester's call. */
		const char *requester;
		if ((rc = get_visible_ds(c, name, &ds)))
			return reply_error(c, rc);
		requester = json_string_value(json_object_get(json_object_get(ds, "status"), "requestedBy"));
		if (!has_role(c, "admin") && (!requester || strcmp(requester, c->username))) {
			rc = al_error_set(AL_ERR_FORBIDDEN, "only the requester (%s) or an admin can do this",
					  requester ? requester : "unknown");
			json_decref(ds);
			return reply_error(c, rc);
		}
		if (!strcmp(c->seg[4], "uploaded") && c->api->seal_uploads && !strcmp(gates_stage(ds), STAGE_UPLOADING) &&
		    (rc = c->api->seal_uploads(c->api->seal_uploads_ud, ds, c->username))) {
			json_decref(ds);
			return reply_error(c, rc);
		}
		json_decref(ds);
		return ds_event(c, name, !strcmp(c->seg[4], "retry") ? GATE_EV_RETRY : GATE_EV_UPLOAD_COMPLETE, NULL);
	}
	if (c->nseg == 5 && !strcmp(c->seg[4], "manifest") && !strcmp(m, "GET")) {
		json_t *man;
		if ((rc = get_visible_ds(c, name, &ds)))
			return reply_error(c, rc);
		man = json_object_get(json_object_get(ds, "status"), "manifest");
		if (!man) {
			json_decref(ds);
			return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "datasource '%s' has no manifest yet (stage %s)",
							   name, *gates_stage(ds) ? gates_stage(ds) : "<unset>"));
		}
		json_incref(man);
		json_decref(ds);
		return reply_json(c, 200, man);
	}
	return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", m, c->req->path));
}

/* ---- audit --------------------------------------------------------------- */

static int route_audit(struct call *c)
{
	json_t *records = NULL;
	int rc;

	if (!has_role(c, "admin") && !has_role(c, "approver"))
		return reply_error(c, al_error_set(AL_ERR_FORBIDDEN, "reading the audit log needs the 'admin' or 'approver' role"));
	if (c->nseg == 3 && !strcmp(c->req->method, "GET")) {
		const char *after = http_request_query(c->req, "after");
		const char *limit = http_request_query(c->req, "limit");
		uint64_t a = after ? strtoull(after, NULL, 10) : 0;
		size_t l = limit ? (size_t)strtoull(limit, NULL, 10) : 1000;
		if (l == 0 || l > 10000)
			l = 10000;
		if ((rc = store_audit_list(c->api->store, a, l, &records)))
			return reply_error(c, rc);
		return reply_json(c, 200, list_body(records));
	}
	if (c->nseg == 4 && !strcmp(c->seg[3], "verify") && !strcmp(c->req->method, "GET")) {
		uint64_t count = 0;
		if ((rc = store_audit_list(c->api->store, 0, 0, &records)))
			return reply_error(c, rc);
		rc = audit_verify_records(records, &count);
		json_decref(records);
		if (rc)
			return reply_json(c, 200, json_pack("{s:b, s:I, s:s}", "ok", 0, "verified", (json_int_t)count,
							    "error", al_error_message()));
		return reply_json(c, 200, json_pack("{s:b, s:I}", "ok", 1, "verified", (json_int_t)count));
	}
	return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", c->req->method, c->req->path));
}

/* ---- credentials for import jobs -------------------------------------- */

static int route_secrets(struct call *c)
{
	const char *m = c->req->method;
	json_t *body = NULL, *keys = NULL;
	int rc;

	if (!has_role(c, "admin") && !has_role(c, "data-engineer"))
		return reply_error(c, al_error_set(AL_ERR_FORBIDDEN, "source credentials need the 'data-engineer' or 'admin' role"));
	if (!c->api->creds)
		return reply_error(c, al_error_set(AL_ERR_UNAVAILABLE,
						   "source credentials are not kept here: in Kubernetes they are the operator's "
						   "Secret (docs/operator.md)"));
	if (c->nseg == 3 && !strcmp(m, "GET")) {
		if ((rc = credstore_list_keys(c->api->creds, &keys)))
			return reply_error(c, rc);
		return reply_json(c, 200, list_body(keys));
	}
	if (c->nseg == 4 && !strcmp(m, "PUT")) {
		const char *value;
		if ((rc = parse_body(c, &body)))
			return reply_error(c, rc);
		value = json_string_value(json_object_get(body, "value"));
		if (!value) {
			json_decref(body);
			return reply_error(c, al_error_set(AL_ERR_INVALID, "send {\"value\": \"...\"}"));
		}
		rc = credstore_set(c->api->creds, c->seg[3], value);
		json_decref(body);
		/* The audit names the key and who set it, never the value. */
		if (!rc)
			audit_other(c, c->username, "set-secret", "Secret", c->seg[3]);
		if (rc)
			return reply_error(c, rc);
		return reply_json(c, 200, json_pack("{s:s}", "set", c->seg[3]));
	}
	if (c->nseg == 4 && !strcmp(m, "DELETE")) {
		if ((rc = credstore_delete(c->api->creds, c->seg[3])))
			return reply_error(c, rc);
		audit_other(c, c->username, "delete-secret", "Secret", c->seg[3]);
		return reply_json(c, 200, json_pack("{s:s}", "deleted", c->seg[3]));
	}
	return reply_error(c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", m, c->req->path));
}

/* ---- dispatch ------------------------------------------------------------ */

static int split_path(struct call *c)
{
	char *p, *save = NULL;
	c->path_copy = util_strdup(c->req->path);
	if (!c->path_copy)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	c->nseg = 0;
	p = c->path_copy;
	while (*p) {
		char *slash;
		while (*p == '/')
			p++;
		if (!*p)
			break;
		if (c->nseg == MAX_SEGMENTS)
			return al_error_set(AL_ERR_NOT_FOUND, "no such route: %s", c->req->path);
		c->seg[c->nseg++] = p;
		slash = strchr(p, '/');
		if (!slash)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	(void)save;
	return AL_OK;
}

static int authenticate(struct call *c)
{
	const char *auth = http_request_header(c->req, "Authorization");
	int rc;
	if (!auth || strncasecmp(auth, "Bearer ", 7) || !auth[7])
		return al_error_set(AL_ERR_UNAUTHORIZED, "log in first: send 'Authorization: Bearer <token>' (airlock login)");
	/* Local tokens are "alk_" + hex; a JWT can only come from the identity provider. */
	if (oidc_is_jwt(auth + 7)) {
		if (!c->api->oidc)
			return al_error_set(AL_ERR_UNAUTHORIZED, "this airlock accepts no identity-provider tokens "
								 "(it has no oidc: settings); log in with airlock login");
		if ((rc = oidc_authenticate(c->api->oidc, auth + 7, &c->user))) {
			log_info("oidc: refused a bearer token: %s", al_error_message());
			return rc;
		}
	} else if ((rc = accounts_authenticate(c->api->accounts, auth + 7, &c->user))) {
		return rc;
	}
	c->username = json_string_value(json_object_get(c->user, "username"));
	return c->username ? AL_OK : al_error_set(AL_ERR_INTERNAL, "account without a name");
}

/* as_user: the caller, already authenticated by the web frontend's session
 * (api_handle_as), or NULL to authenticate the bearer token. */
static void dispatch(void *userdata, const json_t *as_user, const struct http_request *req,
		     struct http_response *resp)
{
	struct call c;
	const char *m = req->method;
	int rc;

	memset(&c, 0, sizeof(c));
	c.api = userdata;
	c.req = req;
	c.resp = resp;
	al_error_clear();
	if ((rc = split_path(&c))) {
		reply_error(&c, rc);
		goto out;
	}
	if (c.nseg == 1 && !strcmp(c.seg[0], "healthz")) {
		reply_json(&c, 200, json_pack("{s:s}", "status", "ok"));
		goto out;
	}
	if (c.nseg == 1 && !strcmp(c.seg[0], "readyz")) {
		if (c.api->ready && !c.api->ready(c.api->ready_ud))
			reply_error(&c, al_error_set(AL_ERR_UNAVAILABLE, "starting up"));
		else
			reply_json(&c, 200, json_pack("{s:s}", "status", "ready"));
		goto out;
	}
	if (c.nseg < 3 || strcmp(c.seg[0], "api") || strcmp(c.seg[1], "v1")) {
		reply_error(&c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s (the API lives under /api/v1)", m, req->path));
		goto out;
	}
	if (as_user) {
		/* Sessions log in and out through the frontend, not the token routes. */
		if (c.nseg == 3 && (!strcmp(c.seg[2], "login") || !strcmp(c.seg[2], "logout"))) {
			reply_error(&c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", m, req->path));
			goto out;
		}
		c.user = json_deep_copy(as_user);
		c.username = json_string_value(json_object_get(c.user, "username"));
		if (!c.username) {
			reply_error(&c, al_error_set(AL_ERR_UNAUTHORIZED, "log in first"));
			goto out;
		}
	} else if (c.nseg == 3 && !strcmp(c.seg[2], "login") && !strcmp(m, "POST")) {
		route_login(&c);
		goto out;
	} else if ((rc = authenticate(&c))) {
		reply_error(&c, rc);
		goto out;
	}
	if (c.nseg == 3 && !strcmp(c.seg[2], "logout") && !strcmp(m, "POST"))
		route_logout(&c);
	else if (c.nseg == 3 && !strcmp(c.seg[2], "whoami") && !strcmp(m, "GET")) {
		json_t *ws = NULL;
		if ((rc = my_workspaces(&c, &ws)))
			reply_error(&c, rc);
		else
			reply_json(&c, 200, json_pack("{s:O, s:O, s:o}", "username", json_object_get(c.user, "username"),
						      "roles", json_object_get(c.user, "roles"), "workspaces", ws));
	} else if (!strcmp(c.seg[2], "users"))
		route_users(&c);
	else if (!strcmp(c.seg[2], "workspaces"))
		route_admin_kind(&c, KIND_WS);
	else if (!strcmp(c.seg[2], "workspacebindings"))
		route_admin_kind(&c, KIND_WSB);
	else if (!strcmp(c.seg[2], "databindings"))
		route_admin_kind(&c, KIND_DSB);
	else if (!strcmp(c.seg[2], "datasources"))
		route_datasources(&c);
	else if (!strcmp(c.seg[2], "audit"))
		route_audit(&c);
	else if (!strcmp(c.seg[2], "secrets"))
		route_secrets(&c);
	else
		reply_error(&c, al_error_set(AL_ERR_NOT_FOUND, "no such route: %s %s", m, req->path));
out:
	json_decref(c.user);
	free(c.path_copy);
}

int api_authenticate_request(struct api_ctx *api, const struct http_request *req, json_t **out_user)
{
	struct call c;
	int rc;

	memset(&c, 0, sizeof(c));
	c.api = api;
	c.req = req;
	*out_user = NULL;
	if ((rc = authenticate(&c))) {
		json_decref(c.user);
		return rc;
	}
	*out_user = c.user;
	return AL_OK;
}

const char *api_namespace(const struct api_ctx *api)
{
	return api && api->namespace && *api->namespace ? api->namespace : API_DEFAULT_NAMESPACE;
}

int api_user_in_workspace(struct api_ctx *api, const json_t *user, const char *ws)
{
	struct call c;

	memset(&c, 0, sizeof(c));
	c.api = api;
	c.user = (json_t *)user;
	c.username = json_string_value(json_object_get(user, "username"));
	return c.username && is_member(&c, ws);
}

void api_handle(void *userdata, const struct http_request *req, struct http_response *resp)
{
	dispatch(userdata, NULL, req, resp);
}

void api_handle_as(void *userdata, const json_t *user, const struct http_request *req, struct http_response *resp)
{
	if (!user) {
		http_response_error(resp, AL_ERR_UNAUTHORIZED, "log in first");
		return;
	}
	dispatch(userdata, user, req, resp);
}
