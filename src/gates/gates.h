/*
 * gates.h - the lifecycle of a datasource as one table-driven state machine.
 *
 * A datasource's status carries dataState (Pending, READY, Completed, Failed:
 * the seed's words) and stage (unset until the operator starts). Every change
 * of either happens here, through gates_apply(), which:
 *   - finds the row (direction, stage, event) in the transition table;
 *     no row means the transition is illegal: AL_ERR_CONFLICT, nothing changed;
 *   - checks who may fire it: system events only from the system (operator),
 *     user events only from people, never the other way round;
 *   - runs the row's guard (approvals: a required type, a distinct person,
 *     never the requester, bound to the manifest digest the approver saw);
 *   - writes the new status into the object and builds the audit entry that
 *     the caller hands to the store, which appends it in the same transaction.
 *
 * Adding the egress direction means adding rows to the table, not code paths.
 *
 * Ownership: gates_apply modifies `obj` (a resource) in place; *out_audit is
 * a new reference. Configuration is borrowed and must outlive the call.
 */
#ifndef AL_GATES_GATES_H
#define AL_GATES_GATES_H

#include <jansson.h>
#include <stddef.h>

/* dataState values (the seed's). */
#define DATASTATE_PENDING "Pending"
#define DATASTATE_READY "READY"
#define DATASTATE_COMPLETED "Completed"
#define DATASTATE_FAILED "Failed"

/* stage values; "" (absent) means the operator has not started. */
#define STAGE_NONE ""
#define STAGE_AWAITING_REQUEST "AwaitingRequestApproval"
#define STAGE_COLLECTING "Collecting"
#define STAGE_UPLOADING "Uploading"
#define STAGE_CHECKING "Checking"
#define STAGE_AWAITING_APPROVAL "AwaitingApproval"
#define STAGE_APPROVED "Approved"
#define STAGE_PUBLISHED "Published"
#define STAGE_REJECTED "Rejected"
#define STAGE_PURGED "Purged"
#define STAGE_FAILED "Failed"

enum gate_direction { GATE_INGRESS = 0, GATE_EGRESS };

enum gate_event {
	GATE_EV_SUBMIT = 0,       /* user: a new request enters the gates */
	GATE_EV_REQUEST_APPROVE,  /* user: sign-off before collection */
	GATE_EV_REQUEST_REJECT,   /* user */
	GATE_EV_COLLECT_START,    /* system: operator starts the import / opens the upload */
	GATE_EV_COLLECT_SUCCEEDED,/* system: job finished, manifest taken */
	GATE_EV_UPLOAD_COMPLETE,  /* user: "all files uploaded" */
	GATE_EV_COLLECT_FAILED,   /* system */
	GATE_EV_CHECKS_PASSED,    /* system */
	GATE_EV_CHECKS_FAILED,    /* system */
	GATE_EV_REVIEW_APPROVE,   /* user: human review */
	GATE_EV_REVIEW_REJECT,    /* user */
	GATE_EV_DATA_CHANGED,     /* system: the manifest no longer matches */
	GATE_EV_PUBLISH,          /* system: bound to the workspace */
	GATE_EV_PURGE,            /* system: staging data removed after rejection */
	GATE_EV_RETRY,            /* user: start again after a failure */
	GATE_EV_COUNT
};

/* One approval type: who signs off (a role) under which name. */
struct gate_approval_type {
	char *type;  /* e.g. "information-governance" */
	char *role;  /* role required to give it, e.g. "approver" */
};

struct gates_config {
	struct gate_approval_type *request;   /* before collection; may be empty */
	size_t n_request;
	struct gate_approval_type *review;    /* human review; at least one */
	size_t n_review;
};

/* Defaults: no request gate; review needs one "data-approver" (role approver). */
int gates_config_init_default(struct gates_config *cfg);
/* Reads {request: [{type, role}], review: [{type, role}]} (either may be absent). */
int gates_config_from_json(struct gates_config *cfg, const json_t *json);
void gates_config_free(struct gates_config *cfg);

struct gate_actor {
	int system;              /* 1 for the operator/reconcilers */
	const char *name;        /* username, or the system component's name */
	const json_t *roles;     /* array of role strings (people only) */
};

/* Inputs an event may need; unused fields NULL. */
struct gate_input {
	const char *approval_type; /* approve/reject: which type; NULL = the one the actor can give */
	const char *digest;        /* approve: the manifest digest the approver saw */
	const char *reason;        /* reject/fail: why */
	const json_t *manifest;    /* collect succeeded / data changed: the new manifest */
	const json_t *checks;      /* checks: results array */
	const char *message;       /* human-readable status message */
	const char *published_path;/* publish */
	const char *job_name;      /* collect start */
};

const char *gate_event_name(enum gate_event ev);
int gate_event_parse(const char *name, enum gate_event *out);

/* Applies `ev` to the datasource `obj` (status updated in place). */
int gates_apply(const struct gates_config *cfg, json_t *obj, enum gate_event ev,
		const struct gate_actor *actor, const struct gate_input *in, json_t **out_audit);

/* Current stage / dataState of an object ("" when unset). Borrowed. */
const char *gates_stage(const json_t *obj);
const char *gates_data_state(const json_t *obj);
/* Direction of a datasource from spec.type. */
enum gate_direction gates_direction(const json_t *obj);
/* 1 if the actor has `role` in its roles array. */
int gates_actor_has_role(const struct gate_actor *actor, const char *role);
/* The approval types still missing at the current gate (new array of strings). */
json_t *gates_missing_approvals(const struct gates_config *cfg, const json_t *obj);

/* The approval type `user` has given at the datasource's current gate that
 * still counts (at review: for the current manifest digest), or NULL. While
 * it is set the gates refuse that person any other approval type there (each
 * required approval must come from a different person). The string lives
 * as long as obj. */
const char *gates_user_approved(const json_t *obj, const char *user);
/* 1 when the stage is terminal (Published, Purged). */
int gates_stage_is_terminal(const char *stage);

#endif
