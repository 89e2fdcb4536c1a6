#include "gates/gates.h"
#include "audit/audit.h"
#include "common/error.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define REASON_MAX 4096

/* What a guard sees and may change. */
struct gate_ctx {
	const struct gates_config *cfg;
	json_t *obj;
	json_t *status;          /* obj.status, owned by obj */
	const struct gate_actor *actor;
	const struct gate_input *in;
	const char *to_stage;    /* the row's target; a guard may change it */
	const char *to_state;
	const char *digest;      /* digest for the audit record */
	const char *reason;      /* reason for the audit record */
	json_t *hold;            /* keeps a removed value (and strings in it) alive */
	const char *approval_type; /* the type a decision concerned, for the audit */
};

typedef int (*gate_guard_fn)(struct gate_ctx *c);

/*
 * One row: in `direction`, from `from_stage` (and, when set, `from_state`),
 * `event` moves to `to_stage` / `to_state` (NULL: unchanged). `system` says
 * whether only the system (1) or only a person (0) may fire it.
 */
struct gate_row {
	enum gate_direction direction;
	const char *from_stage;
	const char *from_state;
	enum gate_event event;
	const char *to_stage;
	const char *to_state;
	int system;
	gate_guard_fn guard;
};

static int guard_submit(struct gate_ctx *c);
static int guard_request_approve(struct gate_ctx *c);
static int guard_reject(struct gate_ctx *c);
static int guard_collect_start(struct gate_ctx *c);
static int guard_failure(struct gate_ctx *c);
static int guard_checks(struct gate_ctx *c);
static int guard_review_approve(struct gate_ctx *c);
static int guard_data_changed(struct gate_ctx *c);
static int guard_publish(struct gate_ctx *c);
static int guard_retry(struct gate_ctx *c);
static int guard_keep_message(struct gate_ctx *c);

/* The ingress gates of DESIGN.md, in order. Egress adds its own rows. */
static const struct gate_row gate_table[] = {
	/* 1. request */
	{ GATE_INGRESS, STAGE_NONE, "", GATE_EV_SUBMIT, NULL, NULL, 0, guard_submit },
	{ GATE_INGRESS, STAGE_AWAITING_REQUEST, NULL, GATE_EV_REQUEST_APPROVE, NULL, NULL, 0, guard_request_approve },
	{ GATE_INGRESS, STAGE_AWAITING_REQUEST, NULL, GATE_EV_REQUEST_REJECT, STAGE_REJECTED, NULL, 0, guard_reject },
	/* 2. collection */
	{ GATE_INGRESS, STAGE_NONE, DATASTATE_READY, GATE_EV_COLLECT_START, NULL, NULL, 1, guard_collect_start },
	{ GATE_INGRESS, STAGE_COLLECTING, NULL, GATE_EV_COLLECT_SUCCEEDED, STAGE_CHECKING, DATASTATE_COMPLETED, 1, NULL },
	{ GATE_INGRESS, STAGE_UPLOADING, NULL, GATE_EV_UPLOAD_COMPLETE, STAGE_CHECKING, DATASTATE_COMPLETED, 0, NULL },
	{ GATE_INGRESS, STAGE_COLLECTING, NULL, GATE_EV_COLLECT_FAILED, STAGE_FAILED, DATASTATE_FAILED, 1, guard_failure },
	{ GATE_INGRESS, STAGE_UPLOADING, NULL, GATE_EV_COLLECT_FAILED, STAGE_FAILED, DATASTATE_FAILED, 1, guard_failure },
	{ GATE_INGRESS, STAGE_NONE, DATASTATE_READY, GATE_EV_COLLECT_FAILED, STAGE_FAILED, DATASTATE_FAILED, 1, guard_failure },
	/* 3. automated checks */
	{ GATE_INGRESS, STAGE_CHECKING, NULL, GATE_EV_CHECKS_PASSED, STAGE_AWAITING_APPROVAL, NULL, 1, guard_checks },
	{ GATE_INGRESS, STAGE_CHECKING, NULL, GATE_EV_CHECKS_FAILED, STAGE_FAILED, NULL, 1, guard_checks },
	/* 4. human review */
	{ GATE_INGRESS, STAGE_AWAITING_APPROVAL, NULL, GATE_EV_REVIEW_APPROVE, NULL, NULL, 0, guard_review_approve },
	{ GATE_INGRESS, STAGE_AWAITING_APPROVAL, NULL, GATE_EV_REVIEW_REJECT, STAGE_REJECTED, NULL, 0, guard_reject },
	{ GATE_INGRESS, STAGE_AWAITING_APPROVAL, NULL, GATE_EV_DATA_CHANGED, STAGE_CHECKING, NULL, 1, guard_data_changed },
	{ GATE_INGRESS, STAGE_APPROVED, NULL, GATE_EV_DATA_CHANGED, STAGE_CHECKING, NULL, 1, guard_data_changed },
	/* 5. published, or purged after rejection */
	{ GATE_INGRESS, STAGE_APPROVED, NULL, GATE_EV_PUBLISH, STAGE_PUBLISHED, NULL, 1, guard_publish },
	/* the publish job failed (crashed: not a data change) */
	{ GATE_INGRESS, STAGE_APPROVED, NULL, GATE_EV_COLLECT_FAILED, STAGE_FAILED, DATASTATE_FAILED, 1, guard_failure },
	{ GATE_INGRESS, STAGE_REJECTED, NULL, GATE_EV_PURGE, STAGE_PURGED, NULL, 1, guard_keep_message },
	/* starting again after a failure */
	{ GATE_INGRESS, STAGE_FAILED, NULL, GATE_EV_RETRY, STAGE_NONE, DATASTATE_READY, 0, guard_retry },
};

static const char *const event_names[GATE_EV_COUNT] = {
	[GATE_EV_SUBMIT] = "submit",
	[GATE_EV_REQUEST_APPROVE] = "request-approve",
	[GATE_EV_REQUEST_REJECT] = "request-reject",
	[GATE_EV_COLLECT_START] = "collect-start",
	[GATE_EV_COLLECT_SUCCEEDED] = "collect-succeeded",
	[GATE_EV_UPLOAD_COMPLETE] = "upload-complete",
	[GATE_EV_COLLECT_FAILED] = "collect-failed",
	[GATE_EV_CHECKS_PASSED] = "checks-passed",
	[GATE_EV_CHECKS_FAILED] = "checks-failed",
	[GATE_EV_REVIEW_APPROVE] = "approve",
	[GATE_EV_REVIEW_REJECT] = "reject",
	[GATE_EV_DATA_CHANGED] = "data-changed",
	[GATE_EV_PUBLISH] = "publish",
	[GATE_EV_PURGE] = "purge",
	[GATE_EV_RETRY] = "retry",
};

const char *gate_event_name(enum gate_event ev)
{
	return (unsigned)ev < GATE_EV_COUNT ? event_names[ev] : "unknown";
}

int gate_event_parse(const char *name, enum gate_event *out)
{
	for (int i = 0; i < GATE_EV_COUNT; i++)
		if (name && !strcmp(name, event_names[i])) {
			*out = (enum gate_event)i;
			return AL_OK;
		}
	return al_error_set(AL_ERR_INVALID, "unknown event '%s'", name ? name : "");
}

/* ---- configuration ---------------------------------------------------- */

static int approval_list_add(struct gate_approval_type **list, size_t *n, const char *type, const char *role)
{
	struct gate_approval_type *p = realloc(*list, (*n + 1) * sizeof(**list));
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	*list = p;
	p[*n].type = util_strdup(type);
	p[*n].role = util_strdup(role);
	if (!p[*n].type || !p[*n].role) {
		free(p[*n].type);
		free(p[*n].role);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	(*n)++;
	return AL_OK;
}

int gates_config_init_default(struct gates_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	return approval_list_add(&cfg->review, &cfg->n_review, "data-approver", "approver");
}

void gates_config_free(struct gates_config *cfg)
{
	for (size_t i = 0; i < cfg->n_request; i++) {
		free(cfg->request[i].type);
		free(cfg->request[i].role);
	}
	for (size_t i = 0; i < cfg->n_review; i++) {
		free(cfg->review[i].type);
		free(cfg->review[i].role);
	}
	free(cfg->request);
	free(cfg->review);
	memset(cfg, 0, sizeof(*cfg));
}

static int valid_token(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return 0;
	}
	return 1;
}

static int parse_approval_list(const json_t *arr, const char *where, struct gate_approval_type **list,
			       size_t *n)
{
	size_t i;
	json_t *it;
	int rc;

	if (!json_is_array(arr))
		return al_error_set(AL_ERR_INVALID, "%s: must be a list of {type, role}", where);
	json_array_foreach(arr, i, it) {
		const char *type = json_string_value(json_object_get(it, "type"));
		const char *role = json_string_value(json_object_get(it, "role"));
		if (!json_is_object(it) || json_object_size(it) != 2 || !valid_token(type) || !valid_token(role))
			return al_error_set(AL_ERR_INVALID,
					    "%s[%zu]: needs exactly 'type' and 'role', each lower-case letters, digits and '-'",
					    where, i);
		if (strcmp(role, "researcher") && strcmp(role, "data-engineer") && strcmp(role, "approver") &&
		    strcmp(role, "admin"))
			return al_error_set(AL_ERR_INVALID,
					    "%s[%zu]: role '%s' is not one of researcher, data-engineer, approver, admin",
					    where, i, role);
		for (size_t j = 0; j < *n; j++)
			if (!strcmp((*list)[j].type, type))
				return al_error_set(AL_ERR_INVALID, "%s[%zu]: approval type '%s' is listed twice",
						    where, i, type);
		if ((rc = approval_list_add(list, n, type, role)))
			return rc;
	}
	return AL_OK;
}

int gates_config_from_json(struct gates_config *cfg, const json_t *json)
{
	const char *key;
	json_t *val;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (!json_is_object(json))
		return al_error_set(AL_ERR_INVALID, "gates: must be a mapping with 'request' and 'review'");
	json_object_foreach((json_t *)json, key, val) {
		if (strcmp(key, "request") && strcmp(key, "review"))
			return al_error_set(AL_ERR_INVALID, "gates.%s: unknown setting (expected request, review)", key);
	}
	if ((val = json_object_get(json, "request")) &&
	    (rc = parse_approval_list(val, "gates.request", &cfg->request, &cfg->n_request)))
		goto fail;
	if ((val = json_object_get(json, "review"))) {
		if ((rc = parse_approval_list(val, "gates.review", &cfg->review, &cfg->n_review)))
			goto fail;
		if (cfg->n_review == 0) {
			rc = al_error_set(AL_ERR_INVALID, "gates.review: at least one approval type is required: "
							  "nothing may pass without a human review");
			goto fail;
		}
	} else if ((rc = approval_list_add(&cfg->review, &cfg->n_review, "data-approver", "approver"))) {
		goto fail;
	}
	return AL_OK;
fail:
	gates_config_free(cfg);
	return rc;
}

/* ---- helpers ------------------------------------------------------------ */

static const char *status_string(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(json_object_get(obj, "status"), key));
	return s ? s : "";
}

const char *gates_stage(const json_t *obj)
{
	return status_string(obj, "stage");
}

const char *gates_data_state(const json_t *obj)
{
	return status_string(obj, "dataState");
}

enum gate_direction gates_direction(const json_t *obj)
{
	(void)obj; /* Import and Uploaded are both ingress; egress types come later. */
	return GATE_INGRESS;
}

int gates_stage_is_terminal(const char *stage)
{
	return stage && (!strcmp(stage, STAGE_PUBLISHED) || !strcmp(stage, STAGE_PURGED));
}

int gates_actor_has_role(const struct gate_actor *actor, const char *role)
{
	size_t i;
	json_t *r;
	if (!actor || actor->system)
		return 0;
	json_array_foreach((json_t *)actor->roles, i, r)
		if (json_is_string(r) && !strcmp(json_string_value(r), role))
			return 1;
	return 0;
}

static int set_str(json_t *o, const char *key, const char *val)
{
	if (!val || !*val) {
		json_object_del(o, key);
		return AL_OK;
	}
	if (json_object_set_new(o, key, json_string(val)) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

static const char *status_manifest_digest(const json_t *status)
{
	return json_string_value(json_object_get(json_object_get(status, "manifest"), "digest"));
}

static const struct gate_approval_type *gate_types(const struct gates_config *cfg, const char *gate, size_t *n)
{
	if (!strcmp(gate, "request")) {
		*n = cfg->n_request;
		return cfg->request;
	}
	*n = cfg->n_review;
	return cfg->review;
}

/* Does an approval of `type` at `gate` exist that still counts? Review
 * approvals count only for the current manifest digest. */
static const json_t *find_approval(const json_t *status, const char *gate, const char *type)
{
	const char *digest = status_manifest_digest(status);
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(status, "approvals"), i, a) {
		const char *g = json_string_value(json_object_get(a, "gate"));
		const char *t = json_string_value(json_object_get(a, "type"));
		const char *d = json_string_value(json_object_get(a, "decision"));
		const char *ad = json_string_value(json_object_get(a, "digest"));
		if (!g || !t || !d || strcmp(g, gate) || strcmp(t, type) || strcmp(d, "approve"))
			continue;
		if (!strcmp(gate, "review") && (!digest || !ad || strcmp(digest, ad)))
			continue;
		return a;
	}
	return NULL;
}

/* Has `user` already given a counting approval of another type at `gate`? */
static const char *user_approved_type(const json_t *status, const char *gate, const char *user)
{
	const char *digest = status_manifest_digest(status);
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(status, "approvals"), i, a) {
		const char *g = json_string_value(json_object_get(a, "gate"));
		const char *u = json_string_value(json_object_get(a, "user"));
		const char *d = json_string_value(json_object_get(a, "decision"));
		const char *ad = json_string_value(json_object_get(a, "digest"));
		if (!g || !u || !d || strcmp(g, gate) || strcmp(u, user) || strcmp(d, "approve"))
			continue;
		if (!strcmp(gate, "review") && (!digest || !ad || strcmp(digest, ad)))
			continue;
		return json_string_value(json_object_get(a, "type"));
	}
	return NULL;
}

json_t *gates_missing_approvals(const struct gates_config *cfg, const json_t *obj)
{
	const json_t *status = json_object_get(obj, "status");
	const char *stage = gates_stage(obj);
	const char *gate;
	const struct gate_approval_type *types;
	size_t n;
	json_t *out = json_array();

	if (!out)
		return NULL;
	if (!strcmp(stage, STAGE_AWAITING_REQUEST))
		gate = "request";
	else if (!strcmp(stage, STAGE_AWAITING_APPROVAL))
		gate = "review";
	else
		return out;
	types = gate_types(cfg, gate, &n);
	for (size_t i = 0; i < n; i++)
		if (!find_approval(status, gate, types[i].type))
			json_array_append_new(out, json_string(types[i].type));
	return out;
}

const char *gates_user_approved(const json_t *obj, const char *user)
{
	const char *stage = gates_stage(obj);
	const char *gate = !strcmp(stage, STAGE_AWAITING_REQUEST)    ? "request"
			   : !strcmp(stage, STAGE_AWAITING_APPROVAL) ? "review"
								     : NULL;
	/* The same test approve_common applies: what the page offers is what
	 * the gate would accept. */
	return gate && user ? user_approved_type(json_object_get(obj, "status"), gate, user) : NULL;
}

/* Which approval type does this decision concern? The named one, or the first
 * still-missing type the actor's roles allow. */
static int pick_type(struct gate_ctx *c, const char *gate, const struct gate_approval_type **out)
{
	size_t n;
	const struct gate_approval_type *types = gate_types(c->cfg, gate, &n);
	const char *want = c->in ? c->in->approval_type : NULL;

	if (want && *want) {
		for (size_t i = 0; i < n; i++)
			if (!strcmp(types[i].type, want)) {
				if (!gates_actor_has_role(c->actor, types[i].role))
					return al_error_set(AL_ERR_FORBIDDEN,
							    "a '%s' decision needs the role '%s', which %s does not have",
							    want, types[i].role, c->actor->name);
				*out = &types[i];
				return AL_OK;
			}
		return al_error_set(AL_ERR_INVALID, "'%s' is not an approval type of the %s gate", want, gate);
	}
	for (size_t i = 0; i < n; i++)
		if (gates_actor_has_role(c->actor, types[i].role) && !find_approval(c->status, gate, types[i].type)) {
			*out = &types[i];
			return AL_OK;
		}
	for (size_t i = 0; i < n; i++)
		if (gates_actor_has_role(c->actor, types[i].role)) {
			*out = &types[i];
			return AL_OK;
		}
	return al_error_set(AL_ERR_FORBIDDEN, "%s has none of the roles that may decide at the %s gate",
			    c->actor->name, gate);
}

static int not_requester(struct gate_ctx *c)
{
	const char *requester = json_string_value(json_object_get(c->status, "requestedBy"));
	if (requester && !strcmp(requester, c->actor->name))
		return al_error_set(AL_ERR_FORBIDDEN,
				    "%s requested this datasource and cannot decide on it: another person must",
				    c->actor->name);
	return AL_OK;
}

static int add_approval(struct gate_ctx *c, const char *gate, const char *type, const char *decision,
			const char *digest, const char *reason)
{
	char now[UTIL_TIME_LEN];
	json_t *list = json_object_get(c->status, "approvals");
	json_t *a;

	if (!json_is_array(list)) {
		list = json_array();
		if (!list || json_object_set_new(c->status, "approvals", list) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	if (json_array_size(list) >= 256)
		return al_error_set(AL_ERR_CONFLICT, "too many decisions recorded on this datasource");
	c->approval_type = type; /* points into the configuration, which outlives the call */
	util_now_rfc3339(now);
	a = json_pack("{s:s, s:s, s:s, s:s, s:s}", "gate", gate, "type", type, "user", c->actor->name,
		      "decision", decision, "time", now);
	if (!a)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((digest && set_str(a, "digest", digest)) || (reason && set_str(a, "reason", reason)) ||
	    json_array_append_new(list, a) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

static int all_approved(struct gate_ctx *c, const char *gate)
{
	size_t n;
	const struct gate_approval_type *types = gate_types(c->cfg, gate, &n);
	for (size_t i = 0; i < n; i++)
		if (!find_approval(c->status, gate, types[i].type))
			return 0;
	return 1;
}

static int approve_common(struct gate_ctx *c, const char *gate)
{
	const struct gate_approval_type *t;
	const char *prior;
	int rc;

	if ((rc = not_requester(c)) || (rc = pick_type(c, gate, &t)))
		return rc;
	if (find_approval(c->status, gate, t->type))
		return al_error_set(AL_ERR_CONFLICT, "the '%s' approval has already been given", t->type);
	prior = user_approved_type(c->status, gate, c->actor->name);
	if (prior)
		return al_error_set(AL_ERR_FORBIDDEN,
				    "%s already gave the '%s' approval; each required approval must come from a different person",
				    c->actor->name, prior);
	return add_approval(c, gate, t->type, "approve", c->digest, NULL);
}

/* ---- guards ------------------------------------------------------------- */

static int guard_submit(struct gate_ctx *c)
{
	int rc;
	if ((rc = set_str(c->status, "requestedBy", c->actor->name)))
		return rc;
	if (c->cfg->n_request) {
		c->to_stage = STAGE_AWAITING_REQUEST;
		c->to_state = DATASTATE_PENDING;
	} else {
		c->to_stage = STAGE_NONE;
		c->to_state = DATASTATE_READY;
	}
	return AL_OK;
}

static int guard_request_approve(struct gate_ctx *c)
{
	int rc = approve_common(c, "request");
	if (rc)
		return rc;
	if (all_approved(c, "request")) {
		c->to_stage = STAGE_NONE;
		c->to_state = DATASTATE_READY;
	}
	return AL_OK;
}

static int guard_reject(struct gate_ctx *c)
{
	const char *gate = !strcmp(gates_stage(c->obj), STAGE_AWAITING_REQUEST) ? "request" : "review";
	const struct gate_approval_type *t;
	const char *reason = c->in ? c->in->reason : NULL;
	int rc;

	if (!reason || !*reason)
		return al_error_set(AL_ERR_INVALID, "a rejection needs a reason, so the requester knows what to change");
	if (strlen(reason) > REASON_MAX)
		return al_error_set(AL_ERR_INVALID, "the reason is longer than %d characters", REASON_MAX);
	if ((rc = not_requester(c)) || (rc = pick_type(c, gate, &t)))
		return rc;
	c->reason = reason;
	return add_approval(c, gate, t->type, "reject", c->digest, reason);
}

static int guard_collect_start(struct gate_ctx *c)
{
	const char *type = json_string_value(json_object_get(json_object_get(c->obj, "spec"), "type"));
	json_t *job;
	if (type && !strcmp(type, "Uploaded"))
		c->to_stage = STAGE_UPLOADING;
	else
		c->to_stage = STAGE_COLLECTING;
	if (c->in && c->in->job_name) {
		char now[UTIL_TIME_LEN];
		util_now_rfc3339(now);
		job = json_pack("{s:s, s:s}", "name", c->in->job_name, "startedAt", now);
		if (!job || json_object_set_new(c->status, "job", job) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	return AL_OK;
}

static int guard_failure(struct gate_ctx *c)
{
	const char *reason = c->in ? c->in->reason : NULL;
	c->reason = reason && *reason ? reason : "unknown failure";
	return AL_OK;
}

static int guard_checks(struct gate_ctx *c)
{
	if (c->in && c->in->manifest) {
		if (json_object_set(c->status, "manifest", (json_t *)c->in->manifest) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		c->digest = status_manifest_digest(c->status);
	}
	if (c->in && c->in->checks && json_object_set(c->status, "checks", (json_t *)c->in->checks) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (c->in && c->in->reason)
		c->reason = c->in->reason;
	if (c->to_stage && !strcmp(c->to_stage, STAGE_AWAITING_APPROVAL) && !status_manifest_digest(c->status))
		return al_error_set(AL_ERR_CONFLICT, "checks cannot pass without a manifest of the data");
	return AL_OK;
}

static int guard_review_approve(struct gate_ctx *c)
{
	const char *current = status_manifest_digest(c->status);
	const char *seen = c->in ? c->in->digest : NULL;
	int rc;

	if (!seen || !*seen)
		return al_error_set(AL_ERR_INVALID,
				    "an approval must name the manifest digest that was reviewed (current: %s)",
				    current ? current : "none");
	if (!current || strcmp(current, seen))
		return al_error_set(AL_ERR_CONFLICT,
				    "the data changed since it was reviewed (reviewed %.12s, now %.12s): review it again",
				    seen, current ? current : "none");
	c->digest = current;
	if ((rc = approve_common(c, "review")))
		return rc;
	if (all_approved(c, "review"))
		c->to_stage = STAGE_APPROVED;
	return AL_OK;
}

static int guard_data_changed(struct gate_ctx *c)
{
	c->reason = c->in && c->in->reason ? c->in->reason : "the data no longer matches the approved manifest";
	/* Counts the rounds of checking: the operator names each round's check
	 * and publish jobs by it, so a finished job of an earlier round is never
	 * taken for the new round's. */
	{
		json_int_t n = json_integer_value(json_object_get(c->status, "dataChanges"));
		if (json_object_set_new(c->status, "dataChanges", json_integer(n < 0 ? 1 : n + 1)) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	/* The audit records the digest that no longer holds: keep it alive. */
	c->hold = json_incref(json_object_get(c->status, "manifest"));
	c->digest = status_manifest_digest(c->status);
	json_object_del(c->status, "manifest");
	json_object_del(c->status, "checks");
	return AL_OK;
}

static int guard_publish(struct gate_ctx *c)
{
	c->digest = status_manifest_digest(c->status);
	if (c->in && c->in->published_path)
		return set_str(c->status, "publishedPath", c->in->published_path);
	return AL_OK;
}

/* Purging keeps the rejection's reason in view of the requester. */
static int guard_keep_message(struct gate_ctx *c)
{
	/* gates_apply rewrites status.message from this reason, which frees the
	 * old string: keep it alive for the audit record. */
	c->hold = json_incref(json_object_get(c->status, "message"));
	c->reason = json_string_value(c->hold);
	return AL_OK;
}

static int guard_retry(struct gate_ctx *c)
{
	json_int_t attempt = json_integer_value(json_object_get(c->status, "attempt"));
	size_t i;
	json_t *a, *kept;

	if (json_object_set_new(c->status, "attempt", json_integer(attempt < 1 ? 2 : attempt + 1)) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	/* The audit records the failed attempt's digest, which lives in the
	 * manifest removed below: keep it alive. */
	c->hold = json_incref(json_object_get(c->status, "manifest"));
	c->digest = status_manifest_digest(c->status);
	json_object_del(c->status, "job");
	json_object_del(c->status, "manifest");
	json_object_del(c->status, "checks");
	/* Request sign-off still stands; review decisions were about other data. */
	kept = json_array();
	if (!kept)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	json_array_foreach(json_object_get(c->status, "approvals"), i, a) {
		const char *g = json_string_value(json_object_get(a, "gate"));
		if (g && !strcmp(g, "request"))
			json_array_append(kept, a);
	}
	json_object_set_new(c->status, "approvals", kept);
	return AL_OK;
}

/* ---- conditions ----------------------------------------------------------- */

static int set_condition(json_t *status, const char *type, int value, const char *reason, const char *message,
			 json_int_t generation)
{
	json_t *list = json_object_get(status, "conditions");
	json_t *cond = NULL, *it;
	const char *sval = value ? "True" : "False";
	char now[UTIL_TIME_LEN];
	size_t i;

	if (!json_is_array(list)) {
		list = json_array();
		if (!list || json_object_set_new(status, "conditions", list) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	json_array_foreach(list, i, it) {
		const char *t = json_string_value(json_object_get(it, "type"));
		if (t && !strcmp(t, type)) {
			cond = it;
			break;
		}
	}
	util_now_rfc3339_seconds(now);
	if (!cond) {
		cond = json_object();
		if (!cond || json_array_append_new(list, cond) < 0)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	{
		const char *old = json_string_value(json_object_get(cond, "status"));
		if (!old || strcmp(old, sval))
			json_object_set_new(cond, "lastTransitionTime", json_string(now));
	}
	json_object_set_new(cond, "type", json_string(type));
	json_object_set_new(cond, "status", json_string(sval));
	json_object_set_new(cond, "reason", json_string(reason));
	json_object_set_new(cond, "message", json_string(message ? message : ""));
	json_object_set_new(cond, "observedGeneration", json_integer(generation));
	return AL_OK;
}

/* Conditions summarise the stage for tools that read standard conditions. */
static int update_conditions(json_t *obj, json_t *status)
{
	const char *stage = gates_stage(obj);
	const char *state = gates_data_state(obj);
	const char *msg = json_string_value(json_object_get(status, "message"));
	json_int_t gen = json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
	int collected = !strcmp(state, DATASTATE_COMPLETED);
	int approved = !strcmp(stage, STAGE_APPROVED) || !strcmp(stage, STAGE_PUBLISHED);
	int ready = !strcmp(stage, STAGE_PUBLISHED);
	const char *why = *stage ? stage : (*state ? state : "Pending");
	int rc;

	/* Condition reasons are CamelCase words. */
	if ((rc = set_condition(status, "Collected", collected, collected ? "Completed" : why, msg, gen)) ||
	    (rc = set_condition(status, "Approved", approved, approved ? "Approved" : why, msg, gen)) ||
	    (rc = set_condition(status, "Ready", ready, ready ? "Published" : why, msg, gen)))
		return rc;
	return AL_OK;
}

/* ---- the engine ------------------------------------------------------------ */

static const char *str_or(const json_t *v, const char *dflt)
{
	const char *s = json_string_value(v);
	return s ? s : dflt;
}

/* {kind, namespace, name, uid} of an object, for the audit record. */
static json_t *object_ref(const json_t *obj)
{
	const json_t *md = json_object_get(obj, "metadata");
	return json_pack("{s:s, s:s, s:s, s:s?}", "kind", str_or(json_object_get(obj, "kind"), ""),
			 "namespace", str_or(json_object_get(md, "namespace"), "default"), "name",
			 str_or(json_object_get(md, "name"), ""), "uid",
			 json_string_value(json_object_get(md, "uid")));
}

static const struct gate_row *find_row(enum gate_direction dir, const char *stage, const char *state,
				       enum gate_event ev)
{
	for (size_t i = 0; i < sizeof(gate_table) / sizeof(gate_table[0]); i++) {
		const struct gate_row *r = &gate_table[i];
		if (r->direction != dir || r->event != ev || strcmp(r->from_stage, stage))
			continue;
		if (r->from_state && strcmp(r->from_state, state))
			continue;
		return r;
	}
	return NULL;
}

int gates_apply(const struct gates_config *cfg, json_t *obj, enum gate_event ev,
		const struct gate_actor *actor, const struct gate_input *in, json_t **out_audit)
{
	struct gate_ctx c;
	const struct gate_row *row;
	json_t *saved_status = NULL, *status, *objref, *audit;
	char *stage_before = NULL, *state_before = NULL;
	const char *msg;
	int rc;

	*out_audit = NULL;
	memset(&c, 0, sizeof(c));
	if ((unsigned)ev >= GATE_EV_COUNT || !actor || !actor->name)
		return al_error_set(AL_ERR_INTERNAL, "gates_apply: bad arguments");
	stage_before = util_strdup(gates_stage(obj));
	state_before = util_strdup(gates_data_state(obj));
	if (!stage_before || !state_before) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	row = find_row(gates_direction(obj), stage_before, state_before, ev);
	if (!row) {
		rc = al_error_set(AL_ERR_CONFLICT, "cannot %s a datasource in stage %s (dataState %s)",
				  gate_event_name(ev), *stage_before ? stage_before : "<unset>",
				  *state_before ? state_before : "<unset>");
		goto out;
	}
	if (row->system != (actor->system != 0)) {
		rc = al_error_set(AL_ERR_FORBIDDEN, "'%s' can only be done by %s", gate_event_name(ev),
				  row->system ? "the airlock itself" : "a person");
		goto out;
	}
	/* Guards edit status in place; keep a copy of what was there (if
	 * anything) to restore on refusal, so a refused event changes nothing. */
	status = json_object_get(obj, "status");
	if (status && !(saved_status = json_deep_copy(status))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!json_is_object(status)) {
		status = json_object();
		if (!status || json_object_set_new(obj, "status", status) < 0) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto restore;
		}
	}
	c.cfg = cfg;
	c.obj = obj;
	c.status = status;
	c.actor = actor;
	c.in = in;
	c.to_stage = row->to_stage;
	c.to_state = row->to_state;
	c.digest = status_manifest_digest(status);
	if (row->guard && (rc = row->guard(&c)))
		goto restore;
	if (c.to_stage && (rc = set_str(status, "stage", c.to_stage)))
		goto restore;
	if (c.to_state && (rc = set_str(status, "dataState", c.to_state)))
		goto restore;
	msg = in && in->message ? in->message : c.reason;
	if (msg)
		set_str(status, "message", msg);
	else if (c.to_stage || c.to_state)
		json_object_del(status, "message");
	if (actor->system) {
		json_t *gen = json_object_get(json_object_get(obj, "metadata"), "generation");
		if (json_is_integer(gen))
			json_object_set(status, "observedGeneration", gen);
	}
	if ((rc = update_conditions(obj, status)))
		goto restore;
	objref = object_ref(obj);
	if (!objref) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto restore;
	}
	audit = audit_entry_new(actor->system ? "system" : "user", actor->name, gate_event_name(ev), objref,
				stage_before, gates_stage(obj), state_before, gates_data_state(obj), c.digest,
				c.reason);
	json_decref(objref);
	if (!audit) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto restore;
	}
	if (c.approval_type && json_object_set_new(audit, "approvalType", json_string(c.approval_type)) < 0) {
		json_decref(audit);
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto restore;
	}
	*out_audit = audit;
	rc = AL_OK;
	goto out;
restore:
	if (saved_status)
		json_object_set(obj, "status", saved_status);
	else
		json_object_del(obj, "status");
out:
	json_decref(c.hold);
	json_decref(saved_status);
	free(stage_before);
	free(state_before);
	return rc;
}
