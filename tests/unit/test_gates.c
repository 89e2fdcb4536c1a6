/*
 * test_gates.c - the datasource state machine: every row of the transition
 * table, every illegal (stage, event) pair, who may fire what, the approval
 * guards, retry, conditions and the gates configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "gates/gates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIGEST_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DIGEST_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* ---- fixtures ------------------------------------------------------------- */

static json_t *roles_eng, *roles_appr, *roles_both, *roles_none;
static struct gate_actor SYS, ENG, ENG2, APPR, APPR2, BOTH, NOBODY;

static int group_setup(void **state)
{
	(void)state;
	roles_eng = json_pack("[s]", "data-engineer");
	roles_appr = json_pack("[s]", "approver");
	roles_both = json_pack("[s, s]", "approver", "data-engineer");
	roles_none = json_array();
	SYS = (struct gate_actor){ 1, "airlock-operator", NULL };
	ENG = (struct gate_actor){ 0, "eng", roles_eng };
	ENG2 = (struct gate_actor){ 0, "eng2", roles_eng };
	APPR = (struct gate_actor){ 0, "appr", roles_appr };
	APPR2 = (struct gate_actor){ 0, "appr2", roles_appr };
	BOTH = (struct gate_actor){ 0, "both", roles_both };
	NOBODY = (struct gate_actor){ 0, "nobody", roles_none };
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	json_decref(roles_eng);
	json_decref(roles_appr);
	json_decref(roles_both);
	json_decref(roles_none);
	return 0;
}

/* The e2e tests' TWO_REVIEWS configuration. */
static void two_gate_config(struct gates_config *cfg)
{
	json_t *j = json_loads("{\"request\": [{\"type\": \"information-governance\", \"role\": \"approver\"},"
			       "{\"type\": \"data-engineer\", \"role\": \"data-engineer\"}],"
			       "\"review\": [{\"type\": \"data-approver\", \"role\": \"approver\"},"
			       "{\"type\": \"information-governance\", \"role\": \"approver\"}]}",
			       0, NULL);
	assert_non_null(j);
	assert_int_equal(gates_config_from_json(cfg, j), AL_OK);
	json_decref(j);
}

static json_t *manifest_with(const char *digest)
{
	return json_pack("{s:s, s:i, s:[{s:s, s:i, s:s}]}", "digest", digest, "fileCount", 1, "files", "path",
			 "a.csv", "size", 3, "sha256", digest);
}

/* A datasource in `stage` / `state` ("" leaves the field out), requested by eng. */
static json_t *make_ds(const char *type, const char *stage, const char *state)
{
	json_t *ds = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:i}, s:{s:s}, s:{s:s}}", "apiVersion",
			       "xlscsde.nhs.uk/v1", "kind", "AnalyticsWorkspaceDataSource", "metadata", "name", "ds1",
			       "namespace", "default", "uid", "uid-1", "generation", 3, "spec", "type", type, "status",
			       "requestedBy", "eng");
	json_t *st = json_object_get(ds, "status");
	assert_non_null(ds);
	if (*stage)
		json_object_set_new(st, "stage", json_string(stage));
	if (*state)
		json_object_set_new(st, "dataState", json_string(state));
	return ds;
}

/* Adds a manifest with `digest` to the status. */
static void give_manifest(json_t *ds, const char *digest)
{
	json_object_set_new(json_object_get(ds, "status"), "manifest", manifest_with(digest));
}

static const char *status_str(const json_t *ds, const char *key)
{
	return json_string_value(json_object_get(json_object_get(ds, "status"), key));
}

static void expect_str_or_null(const json_t *v, const char *want)
{
	if (!want) {
		assert_true(json_is_null(v));
		return;
	}
	assert_true(json_is_string(v));
	assert_string_equal(json_string_value(v), want);
}

static void expect_audit(const json_t *a, const char *actor_type, const char *actor_name, const char *action,
			 const char *sb, const char *sa, const char *db, const char *da, const char *digest)
{
	assert_non_null(a);
	expect_str_or_null(json_object_get(json_object_get(a, "actor"), "type"), actor_type);
	expect_str_or_null(json_object_get(json_object_get(a, "actor"), "name"), actor_name);
	expect_str_or_null(json_object_get(a, "action"), action);
	expect_str_or_null(json_object_get(a, "stageBefore"), sb);
	expect_str_or_null(json_object_get(a, "stageAfter"), sa);
	expect_str_or_null(json_object_get(a, "dataStateBefore"), db);
	expect_str_or_null(json_object_get(a, "dataStateAfter"), da);
	expect_str_or_null(json_object_get(a, "digest"), digest);
	expect_str_or_null(json_object_get(json_object_get(a, "object"), "kind"), "AnalyticsWorkspaceDataSource");
	expect_str_or_null(json_object_get(json_object_get(a, "object"), "namespace"), "default");
	expect_str_or_null(json_object_get(json_object_get(a, "object"), "name"), "ds1");
	expect_str_or_null(json_object_get(json_object_get(a, "object"), "uid"), "uid-1");
}

static char *dump(const json_t *j)
{
	char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	assert_non_null(s);
	return s;
}

/* Applies an event that must be refused with `want`, and checks that the
 * object is byte-for-byte unchanged and no audit entry came out. */
static void expect_refused(const struct gates_config *cfg, json_t *ds, enum gate_event ev,
			   const struct gate_actor *actor, const struct gate_input *in, int want)
{
	char *before = dump(ds), *after;
	json_t *audit = (json_t *)0x1;
	int rc = gates_apply(cfg, ds, ev, actor, in, &audit);
	if (rc != want)
		fprintf(stderr, "event %s by %s in stage '%s': got %d (%s), want %d\n", gate_event_name(ev),
			actor->name, gates_stage(ds), rc, al_error_message(), want);
	assert_int_equal(rc, want);
	assert_null(audit);
	assert_true(strlen(al_error_message()) > 0);
	after = dump(ds);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

/* Applies an event that must succeed; returns the audit entry (decref it). */
static json_t *apply_ok(const struct gates_config *cfg, json_t *ds, enum gate_event ev,
			const struct gate_actor *actor, const struct gate_input *in)
{
	json_t *audit = NULL;
	int rc = gates_apply(cfg, ds, ev, actor, in, &audit);
	if (rc)
		fprintf(stderr, "event %s by %s: %s\n", gate_event_name(ev), actor->name, al_error_message());
	assert_int_equal(rc, AL_OK);
	assert_non_null(audit);
	return audit;
}

static const json_t *condition(const json_t *ds, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(ds, "status"), "conditions"), i, c)
		if (!strcmp(json_string_value(json_object_get(c, "type")), type))
			return c;
	return NULL;
}

static void expect_condition(const json_t *ds, const char *type, const char *status)
{
	const json_t *c = condition(ds, type);
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "status")), status);
	assert_non_null(json_string_value(json_object_get(c, "lastTransitionTime")));
	assert_non_null(json_string_value(json_object_get(c, "reason")));
}

static void expect_missing(const struct gates_config *cfg, const json_t *ds, const char *csv)
{
	json_t *m = gates_missing_approvals(cfg, ds);
	char got[256] = "";
	size_t i, off = 0;
	json_t *v;
	assert_non_null(m);
	json_array_foreach(m, i, v) {
		int n = snprintf(got + off, sizeof(got) - off, "%s%s", i ? "," : "", json_string_value(v));
		assert_true(n > 0 && (size_t)n < sizeof(got) - off);
		off += (size_t)n;
	}
	assert_string_equal(got, csv);
	json_decref(m);
}

/* ---- names -------------------------------------------------------------- */

static void test_event_names(void **state)
{
	(void)state;
	for (int i = 0; i < GATE_EV_COUNT; i++) {
		enum gate_event ev;
		assert_int_equal(gate_event_parse(gate_event_name((enum gate_event)i), &ev), AL_OK);
		assert_int_equal(ev, i);
	}
	enum gate_event ev;
	assert_int_equal(gate_event_parse("teleport", &ev), AL_ERR_INVALID);
	assert_int_equal(gate_event_parse(NULL, &ev), AL_ERR_INVALID);
	assert_string_equal(gate_event_name(GATE_EV_COUNT), "unknown");
	assert_string_equal(gate_event_name(GATE_EV_REVIEW_APPROVE), "approve");
}

static void test_helpers(void **state)
{
	(void)state;
	json_t *ds = make_ds("Import", STAGE_PUBLISHED, DATASTATE_COMPLETED);
	assert_string_equal(gates_stage(ds), STAGE_PUBLISHED);
	assert_string_equal(gates_data_state(ds), DATASTATE_COMPLETED);
	assert_int_equal(gates_direction(ds), GATE_INGRESS);
	assert_true(gates_stage_is_terminal(STAGE_PUBLISHED));
	assert_true(gates_stage_is_terminal(STAGE_PURGED));
	assert_false(gates_stage_is_terminal(STAGE_FAILED));
	assert_false(gates_stage_is_terminal(STAGE_REJECTED));
	assert_false(gates_stage_is_terminal(NULL));
	assert_true(gates_actor_has_role(&APPR, "approver"));
	assert_false(gates_actor_has_role(&APPR, "data-engineer"));
	assert_false(gates_actor_has_role(&SYS, "approver"));
	assert_false(gates_actor_has_role(NULL, "approver"));
	json_decref(ds);
	ds = json_pack("{s:s}", "kind", "AnalyticsWorkspaceDataSource");
	assert_string_equal(gates_stage(ds), "");
	assert_string_equal(gates_data_state(ds), "");
	json_decref(ds);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", "", "");
	struct gate_actor anon = { 0, NULL, roles_eng };
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	expect_refused(&cfg, ds, GATE_EV_COUNT, &ENG, NULL, AL_ERR_INTERNAL);
	expect_refused(&cfg, ds, GATE_EV_SUBMIT, &anon, NULL, AL_ERR_INTERNAL);
	gates_config_free(&cfg);
	json_decref(ds);
}

/* ---- every row -------------------------------------------------------------- */

static void test_submit_without_request_gate(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = json_pack("{s:s, s:{s:s, s:s, s:s}, s:{s:s}}", "kind", "AnalyticsWorkspaceDataSource",
			       "metadata", "name", "ds1", "namespace", "default", "uid", "uid-1", "spec", "type",
			       "Import");
	json_t *a;
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	a = apply_ok(&cfg, ds, GATE_EV_SUBMIT, &ENG, NULL);
	expect_audit(a, "user", "eng", "submit", "", "", "", "READY", NULL);
	assert_string_equal(gates_stage(ds), "");
	assert_null(status_str(ds, "stage"));
	assert_string_equal(gates_data_state(ds), DATASTATE_READY);
	assert_string_equal(status_str(ds, "requestedBy"), "eng");
	expect_condition(ds, "Collected", "False");
	expect_condition(ds, "Approved", "False");
	expect_condition(ds, "Ready", "False");
	/* Only people submit; a second submit is illegal. */
	expect_refused(&cfg, ds, GATE_EV_SUBMIT, &ENG, NULL, AL_ERR_CONFLICT);
	expect_missing(&cfg, ds, "");
	json_decref(a);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_submit_with_request_gate(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", "", ""), *a;
	json_object_del(json_object_get(ds, "status"), "requestedBy");
	two_gate_config(&cfg);
	expect_refused(&cfg, ds, GATE_EV_SUBMIT, &SYS, NULL, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_SUBMIT, &ENG, NULL);
	expect_audit(a, "user", "eng", "submit", "", STAGE_AWAITING_REQUEST, "", DATASTATE_PENDING, NULL);
	assert_string_equal(gates_stage(ds), STAGE_AWAITING_REQUEST);
	assert_string_equal(gates_data_state(ds), DATASTATE_PENDING);
	assert_string_equal(status_str(ds, "requestedBy"), "eng");
	expect_missing(&cfg, ds, "information-governance,data-engineer");
	json_decref(a);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_request_approvals(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_AWAITING_REQUEST, DATASTATE_PENDING), *a;
	struct gate_input ig = { .approval_type = "information-governance" };
	struct gate_input de = { .approval_type = "data-engineer" };
	struct gate_input bogus = { .approval_type = "astrologer" };
	two_gate_config(&cfg);

	/* The requester may not sign off, even with the right role. */
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &ENG, &de, AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "requested this datasource"));
	/* The role must match the type. */
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &APPR, &de, AL_ERR_FORBIDDEN);
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &NOBODY, NULL, AL_ERR_FORBIDDEN);
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &APPR, &bogus, AL_ERR_INVALID);
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &SYS, &ig, AL_ERR_FORBIDDEN);

	a = apply_ok(&cfg, ds, GATE_EV_REQUEST_APPROVE, &BOTH, &ig);
	expect_audit(a, "user", "both", "request-approve", STAGE_AWAITING_REQUEST, STAGE_AWAITING_REQUEST,
		     DATASTATE_PENDING, DATASTATE_PENDING, NULL);
	json_decref(a);
	expect_missing(&cfg, ds, "data-engineer");
	/* The same type twice. */
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &APPR2, &ig, AL_ERR_CONFLICT);
	/* The same person cannot give a second type. */
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &BOTH, &de, AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "different person"));
	/* Without a named type: the missing one the actor's roles allow. */
	a = apply_ok(&cfg, ds, GATE_EV_REQUEST_APPROVE, &ENG2, NULL);
	expect_audit(a, "user", "eng2", "request-approve", STAGE_AWAITING_REQUEST, "", DATASTATE_PENDING,
		     DATASTATE_READY, NULL);
	json_decref(a);
	assert_string_equal(gates_stage(ds), "");
	assert_string_equal(gates_data_state(ds), DATASTATE_READY);
	expect_missing(&cfg, ds, "");
	{
		json_t *list = json_object_get(json_object_get(ds, "status"), "approvals");
		assert_int_equal(json_array_size(list), 2);
		assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "type")),
				    "data-engineer");
		assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "user")), "eng2");
		assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "gate")), "request");
	}
	/* Once READY the request gate is closed. */
	expect_refused(&cfg, ds, GATE_EV_REQUEST_APPROVE, &APPR2, &ig, AL_ERR_CONFLICT);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_request_reject_and_purge(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_AWAITING_REQUEST, DATASTATE_PENDING), *a;
	struct gate_input none = { 0 };
	struct gate_input why = { .reason = "no ethics approval" };
	two_gate_config(&cfg);
	expect_refused(&cfg, ds, GATE_EV_REQUEST_REJECT, &APPR, &none, AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "reason"));
	expect_refused(&cfg, ds, GATE_EV_REQUEST_REJECT, &APPR, NULL, AL_ERR_INVALID);
	expect_refused(&cfg, ds, GATE_EV_REQUEST_REJECT, &ENG, &why, AL_ERR_FORBIDDEN);
	expect_refused(&cfg, ds, GATE_EV_REQUEST_REJECT, &SYS, &why, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_REQUEST_REJECT, &APPR, &why);
	expect_audit(a, "user", "appr", "request-reject", STAGE_AWAITING_REQUEST, STAGE_REJECTED, DATASTATE_PENDING,
		     DATASTATE_PENDING, NULL);
	assert_string_equal(json_string_value(json_object_get(a, "reason")), "no ethics approval");
	json_decref(a);
	assert_string_equal(gates_stage(ds), STAGE_REJECTED);
	assert_string_equal(status_str(ds, "message"), "no ethics approval");

	/* Purging keeps the reason in view and in the audit record. */
	expect_refused(&cfg, ds, GATE_EV_PURGE, &APPR, NULL, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_PURGE, &SYS, NULL);
	expect_audit(a, "system", "airlock-operator", "purge", STAGE_REJECTED, STAGE_PURGED, DATASTATE_PENDING,
		     DATASTATE_PENDING, NULL);
	assert_string_equal(json_string_value(json_object_get(a, "reason")), "no ethics approval");
	assert_string_equal(status_str(ds, "message"), "no ethics approval");
	assert_string_equal(gates_stage(ds), STAGE_PURGED);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ds, "status"), "observedGeneration")), 3);
	json_decref(a);
	/* Purged is terminal: nothing more happens. */
	for (int ev = 0; ev < GATE_EV_COUNT; ev++) {
		expect_refused(&cfg, ds, (enum gate_event)ev, &SYS, &why, AL_ERR_CONFLICT);
		expect_refused(&cfg, ds, (enum gate_event)ev, &APPR, &why, AL_ERR_CONFLICT);
	}
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_collect_start(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", "", DATASTATE_READY), *a;
	struct gate_input job = { .job_name = "import-uid-1-1" };
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	expect_refused(&cfg, ds, GATE_EV_COLLECT_START, &ENG, &job, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_COLLECT_START, &SYS, &job);
	expect_audit(a, "system", "airlock-operator", "collect-start", "", STAGE_COLLECTING, DATASTATE_READY,
		     DATASTATE_READY, NULL);
	json_decref(a);
	assert_string_equal(gates_stage(ds), STAGE_COLLECTING);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(ds, "status"), "job"), "name")),
			    "import-uid-1-1");
	assert_non_null(json_object_get(json_object_get(json_object_get(ds, "status"), "job"), "startedAt"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ds, "status"), "observedGeneration")), 3);
	json_decref(ds);

	/* An upload opens the staging area instead. */
	ds = make_ds("Uploaded", "", DATASTATE_READY);
	a = apply_ok(&cfg, ds, GATE_EV_COLLECT_START, &SYS, NULL);
	expect_audit(a, "system", "airlock-operator", "collect-start", "", STAGE_UPLOADING, DATASTATE_READY,
		     DATASTATE_READY, NULL);
	assert_null(json_object_get(json_object_get(ds, "status"), "job"));
	json_decref(a);
	json_decref(ds);

	/* Not before the request is READY. */
	ds = make_ds("Import", "", DATASTATE_PENDING);
	expect_refused(&cfg, ds, GATE_EV_COLLECT_START, &SYS, &job, AL_ERR_CONFLICT);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_collect_succeeded_and_upload_complete(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_COLLECTING, DATASTATE_READY), *a;
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	expect_refused(&cfg, ds, GATE_EV_COLLECT_SUCCEEDED, &ENG, NULL, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_COLLECT_SUCCEEDED, &SYS, NULL);
	expect_audit(a, "system", "airlock-operator", "collect-succeeded", STAGE_COLLECTING, STAGE_CHECKING,
		     DATASTATE_READY, DATASTATE_COMPLETED, NULL);
	expect_condition(ds, "Collected", "True");
	json_decref(a);
	json_decref(ds);

	ds = make_ds("Uploaded", STAGE_UPLOADING, DATASTATE_READY);
	expect_refused(&cfg, ds, GATE_EV_UPLOAD_COMPLETE, &SYS, NULL, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_UPLOAD_COMPLETE, &ENG, NULL);
	expect_audit(a, "user", "eng", "upload-complete", STAGE_UPLOADING, STAGE_CHECKING, DATASTATE_READY,
		     DATASTATE_COMPLETED, NULL);
	/* People's events do not claim to have observed the generation. */
	assert_null(json_object_get(json_object_get(ds, "status"), "observedGeneration"));
	json_decref(a);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_collect_failed(void **state)
{
	(void)state;
	struct gates_config cfg;
	const char *from[][2] = { { STAGE_COLLECTING, DATASTATE_READY },
				  { STAGE_UPLOADING, DATASTATE_READY },
				  { "", DATASTATE_READY } };
	struct gate_input why = { .reason = "table visits does not exist" };
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	for (size_t i = 0; i < 3; i++) {
		json_t *ds = make_ds("Import", from[i][0], from[i][1]), *a;
		expect_refused(&cfg, ds, GATE_EV_COLLECT_FAILED, &ENG, &why, AL_ERR_FORBIDDEN);
		a = apply_ok(&cfg, ds, GATE_EV_COLLECT_FAILED, &SYS, i == 2 ? NULL : &why);
		expect_audit(a, "system", "airlock-operator", "collect-failed", from[i][0], STAGE_FAILED, from[i][1],
			     DATASTATE_FAILED, NULL);
		assert_string_equal(json_string_value(json_object_get(a, "reason")),
				    i == 2 ? "unknown failure" : "table visits does not exist");
		assert_string_equal(status_str(ds, "message"), i == 2 ? "unknown failure" : "table visits does not exist");
		assert_string_equal(gates_data_state(ds), DATASTATE_FAILED);
		json_decref(a);
		json_decref(ds);
	}
	gates_config_free(&cfg);
}

static void test_checks_passed_and_failed(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_CHECKING, DATASTATE_COMPLETED), *a;
	json_t *m = manifest_with(DIGEST_A);
	json_t *checks = json_pack("[{s:s, s:s}]", "name", "not-empty", "result", "passed");
	struct gate_input in = { .manifest = m, .checks = checks };
	struct gate_input no_manifest = { .checks = checks };
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);

	expect_refused(&cfg, ds, GATE_EV_CHECKS_PASSED, &ENG, &in, AL_ERR_FORBIDDEN);
	/* Checks cannot pass without a manifest to approve. */
	expect_refused(&cfg, ds, GATE_EV_CHECKS_PASSED, &SYS, &no_manifest, AL_ERR_CONFLICT);
	expect_refused(&cfg, ds, GATE_EV_CHECKS_PASSED, &SYS, NULL, AL_ERR_CONFLICT);
	a = apply_ok(&cfg, ds, GATE_EV_CHECKS_PASSED, &SYS, &in);
	expect_audit(a, "system", "airlock-operator", "checks-passed", STAGE_CHECKING, STAGE_AWAITING_APPROVAL,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_A);
	json_decref(a);
	assert_true(json_equal(json_object_get(json_object_get(ds, "status"), "manifest"), m));
	assert_true(json_equal(json_object_get(json_object_get(ds, "status"), "checks"), checks));
	expect_missing(&cfg, ds, "data-approver");
	json_decref(ds);

	ds = make_ds("Import", STAGE_CHECKING, DATASTATE_COMPLETED);
	{
		struct gate_input bad = { .manifest = m, .checks = checks, .reason = "file type not allowed: x.exe" };
		expect_refused(&cfg, ds, GATE_EV_CHECKS_FAILED, &ENG, &bad, AL_ERR_FORBIDDEN);
		a = apply_ok(&cfg, ds, GATE_EV_CHECKS_FAILED, &SYS, &bad);
	}
	expect_audit(a, "system", "airlock-operator", "checks-failed", STAGE_CHECKING, STAGE_FAILED,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_A);
	assert_string_equal(json_string_value(json_object_get(a, "reason")), "file type not allowed: x.exe");
	assert_string_equal(status_str(ds, "message"), "file type not allowed: x.exe");
	json_decref(a);
	json_decref(ds);
	json_decref(m);
	json_decref(checks);
	gates_config_free(&cfg);
}

static void test_review_approve(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_AWAITING_APPROVAL, DATASTATE_COMPLETED), *a;
	struct gate_input no_digest = { 0 };
	struct gate_input stale = { .digest = DIGEST_B };
	struct gate_input ok = { .digest = DIGEST_A };
	give_manifest(ds, DIGEST_A);
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);

	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &no_digest, AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "digest"));
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, NULL, AL_ERR_INVALID);
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &stale, AL_ERR_CONFLICT);
	assert_non_null(strstr(al_error_message(), "changed"));
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &ENG2, &ok, AL_ERR_FORBIDDEN);
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &SYS, &ok, AL_ERR_FORBIDDEN);
	{
		/* The requester, even an approver, cannot approve. */
		struct gate_actor req = { 0, "eng", roles_appr };
		expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &req, &ok, AL_ERR_FORBIDDEN);
	}
	a = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &ok);
	expect_audit(a, "user", "appr", "approve", STAGE_AWAITING_APPROVAL, STAGE_APPROVED, DATASTATE_COMPLETED,
		     DATASTATE_COMPLETED, DIGEST_A);
	json_decref(a);
	expect_condition(ds, "Approved", "True");
	expect_condition(ds, "Ready", "False");
	{
		json_t *ap = json_array_get(json_object_get(json_object_get(ds, "status"), "approvals"), 0);
		assert_string_equal(json_string_value(json_object_get(ap, "digest")), DIGEST_A);
		assert_string_equal(json_string_value(json_object_get(ap, "gate")), "review");
		assert_string_equal(json_string_value(json_object_get(ap, "decision")), "approve");
	}
	/* Approved: no more decisions. */
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &ok, AL_ERR_CONFLICT);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_review_two_types(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_AWAITING_APPROVAL, DATASTATE_COMPLETED), *a;
	struct gate_input da = { .digest = DIGEST_A, .approval_type = "data-approver" };
	struct gate_input ig = { .digest = DIGEST_A, .approval_type = "information-governance" };
	give_manifest(ds, DIGEST_A);
	two_gate_config(&cfg);

	assert_null(gates_user_approved(ds, "appr"));
	a = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &da);
	expect_audit(a, "user", "appr", "approve", STAGE_AWAITING_APPROVAL, STAGE_AWAITING_APPROVAL,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_A);
	json_decref(a);
	expect_missing(&cfg, ds, "information-governance");
	/* What the review page asks before it offers an Approve form. */
	assert_string_equal(gates_user_approved(ds, "appr"), "data-approver");
	assert_null(gates_user_approved(ds, "appr2"));
	assert_null(gates_user_approved(ds, NULL));
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &da, AL_ERR_CONFLICT);
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &ig, AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "different person"));
	a = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &ig);
	expect_audit(a, "user", "appr2", "approve", STAGE_AWAITING_APPROVAL, STAGE_APPROVED, DATASTATE_COMPLETED,
		     DATASTATE_COMPLETED, DIGEST_A);
	json_decref(a);
	expect_missing(&cfg, ds, "");
	json_decref(ds);
	gates_config_free(&cfg);
}

/* An approval counts only for the manifest it was given for. */
static void test_approval_stops_counting_when_data_changes(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_AWAITING_APPROVAL, DATASTATE_COMPLETED), *a;
	json_t *mb = manifest_with(DIGEST_B);
	struct gate_input da_a = { .digest = DIGEST_A, .approval_type = "data-approver" };
	struct gate_input da_b = { .digest = DIGEST_B, .approval_type = "data-approver" };
	struct gate_input ig_b = { .digest = DIGEST_B, .approval_type = "information-governance" };
	struct gate_input changed = { .reason = "attendances.csv changed" };
	struct gate_input recheck = { .manifest = mb };
	give_manifest(ds, DIGEST_A);
	two_gate_config(&cfg);

	json_decref(apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &da_a));
	expect_missing(&cfg, ds, "information-governance");

	expect_refused(&cfg, ds, GATE_EV_DATA_CHANGED, &APPR, &changed, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_DATA_CHANGED, &SYS, &changed);
	/* The audit names the digest that no longer holds. */
	expect_audit(a, "system", "airlock-operator", "data-changed", STAGE_AWAITING_APPROVAL, STAGE_CHECKING,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_A);
	assert_string_equal(json_string_value(json_object_get(a, "reason")), "attendances.csv changed");
	json_decref(a);
	/* Each data change starts a new round of checking (names the jobs). */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ds, "status"), "dataChanges")), 1);
	assert_null(json_object_get(json_object_get(ds, "status"), "manifest"));
	assert_null(json_object_get(json_object_get(ds, "status"), "checks"));
	/* A stale approval cannot be given while checking. */
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &da_a, AL_ERR_CONFLICT);

	a = apply_ok(&cfg, ds, GATE_EV_CHECKS_PASSED, &SYS, &recheck);
	expect_audit(a, "system", "airlock-operator", "checks-passed", STAGE_CHECKING, STAGE_AWAITING_APPROVAL,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_B);
	json_decref(a);
	/* appr's approval was for A: both types are missing again. */
	expect_missing(&cfg, ds, "data-approver,information-governance");
	assert_null(gates_user_approved(ds, "appr"));
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &da_a, AL_ERR_CONFLICT);
	/* appr may approve again, for B; the old record does not make it "already given". */
	a = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &da_b);
	assert_string_equal(gates_stage(ds), STAGE_AWAITING_APPROVAL);
	json_decref(a);
	/* ... and is still only one person. */
	expect_refused(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &ig_b, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &ig_b);
	assert_string_equal(gates_stage(ds), STAGE_APPROVED);
	json_decref(a);

	/* From Approved too: the data changed before publishing. */
	a = apply_ok(&cfg, ds, GATE_EV_DATA_CHANGED, &SYS, NULL);
	expect_audit(a, "system", "airlock-operator", "data-changed", STAGE_APPROVED, STAGE_CHECKING,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_B);
	assert_non_null(status_str(ds, "message"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ds, "status"), "dataChanges")), 2);
	expect_condition(ds, "Approved", "False");
	json_decref(a);
	json_decref(mb);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_review_reject(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_AWAITING_APPROVAL, DATASTATE_COMPLETED), *a;
	char *longer = malloc(4098), *limit = malloc(4097);
	struct gate_input none = { .digest = DIGEST_A };
	struct gate_input too_long = { .reason = longer };
	struct gate_input at_limit = { .reason = limit };
	assert_non_null(longer);
	assert_non_null(limit);
	memset(longer, 'x', 4097);
	longer[4097] = '\0';
	memset(limit, 'y', 4096);
	limit[4096] = '\0';
	give_manifest(ds, DIGEST_A);
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);

	expect_refused(&cfg, ds, GATE_EV_REVIEW_REJECT, &APPR, &none, AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "reason"));
	expect_refused(&cfg, ds, GATE_EV_REVIEW_REJECT, &APPR, &too_long, AL_ERR_INVALID);
	expect_refused(&cfg, ds, GATE_EV_REVIEW_REJECT, &ENG2, &at_limit, AL_ERR_FORBIDDEN);
	expect_refused(&cfg, ds, GATE_EV_REVIEW_REJECT, &SYS, &at_limit, AL_ERR_FORBIDDEN);
	{
		struct gate_actor req = { 0, "eng", roles_appr };
		expect_refused(&cfg, ds, GATE_EV_REVIEW_REJECT, &req, &at_limit, AL_ERR_FORBIDDEN);
	}
	a = apply_ok(&cfg, ds, GATE_EV_REVIEW_REJECT, &APPR, &at_limit);
	expect_audit(a, "user", "appr", "reject", STAGE_AWAITING_APPROVAL, STAGE_REJECTED, DATASTATE_COMPLETED,
		     DATASTATE_COMPLETED, DIGEST_A);
	assert_string_equal(json_string_value(json_object_get(a, "reason")), limit);
	assert_string_equal(status_str(ds, "message"), limit);
	{
		json_t *ap = json_array_get(json_object_get(json_object_get(ds, "status"), "approvals"), 0);
		assert_string_equal(json_string_value(json_object_get(ap, "decision")), "reject");
		assert_string_equal(json_string_value(json_object_get(ap, "type")), "data-approver");
	}
	json_decref(a);
	free(longer);
	free(limit);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_publish(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_APPROVED, DATASTATE_COMPLETED), *a;
	struct gate_input in = { .published_path = "/ws/advanced/ds1" };
	give_manifest(ds, DIGEST_A);
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	expect_refused(&cfg, ds, GATE_EV_PUBLISH, &APPR, &in, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_PUBLISH, &SYS, &in);
	expect_audit(a, "system", "airlock-operator", "publish", STAGE_APPROVED, STAGE_PUBLISHED,
		     DATASTATE_COMPLETED, DATASTATE_COMPLETED, DIGEST_A);
	json_decref(a);
	assert_string_equal(status_str(ds, "publishedPath"), "/ws/advanced/ds1");
	expect_condition(ds, "Collected", "True");
	expect_condition(ds, "Approved", "True");
	expect_condition(ds, "Ready", "True");
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Ready"), "reason")), "Published");
	json_decref(ds);
	gates_config_free(&cfg);
}

/* A publish job that crashed (not a data change) ends the datasource Failed. */
static void test_publish_failure(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_APPROVED, DATASTATE_COMPLETED), *a;
	struct gate_input in = { .reason = "the publish job publish-1 failed: exit status 1: disk full" };
	give_manifest(ds, DIGEST_A);
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	expect_refused(&cfg, ds, GATE_EV_COLLECT_FAILED, &APPR, &in, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_COLLECT_FAILED, &SYS, &in);
	expect_audit(a, "system", "airlock-operator", "collect-failed", STAGE_APPROVED, STAGE_FAILED,
		     DATASTATE_COMPLETED, DATASTATE_FAILED, DIGEST_A);
	json_decref(a);
	assert_string_equal(status_str(ds, "message"), in.reason);
	json_decref(ds);
	gates_config_free(&cfg);
}

static void test_retry(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", STAGE_FAILED, DATASTATE_FAILED), *a, *st;
	json_t *approvals = json_pack("[{s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}]", "gate", "request",
				      "type", "information-governance", "user", "appr", "decision", "approve",
				      "gate", "review", "type", "data-approver", "user", "appr", "decision",
				      "approve", "digest", DIGEST_A);
	two_gate_config(&cfg);
	st = json_object_get(ds, "status");
	json_object_set_new(st, "approvals", approvals);
	json_object_set_new(st, "job", json_pack("{s:s}", "name", "import-uid-1-1"));
	json_object_set_new(st, "checks", json_array());
	give_manifest(ds, DIGEST_A);
	json_object_set_new(st, "message", json_string("table visits does not exist"));

	expect_refused(&cfg, ds, GATE_EV_RETRY, &SYS, NULL, AL_ERR_FORBIDDEN);
	a = apply_ok(&cfg, ds, GATE_EV_RETRY, &ENG, NULL);
	expect_audit(a, "user", "eng", "retry", STAGE_FAILED, "", DATASTATE_FAILED, DATASTATE_READY, DIGEST_A);
	json_decref(a);
	st = json_object_get(ds, "status");
	assert_string_equal(gates_stage(ds), "");
	assert_string_equal(gates_data_state(ds), DATASTATE_READY);
	assert_int_equal(json_integer_value(json_object_get(st, "attempt")), 2);
	assert_null(json_object_get(st, "job"));
	assert_null(json_object_get(st, "manifest"));
	assert_null(json_object_get(st, "checks"));
	assert_null(json_object_get(st, "message"));
	assert_int_equal(json_array_size(json_object_get(st, "approvals")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(st, "approvals"), 0), "gate")),
			    "request");

	/* Fail again, retry again: attempt 3. */
	json_decref(apply_ok(&cfg, ds, GATE_EV_COLLECT_FAILED, &SYS, NULL));
	a = apply_ok(&cfg, ds, GATE_EV_RETRY, &ENG2, NULL);
	expect_audit(a, "user", "eng2", "retry", STAGE_FAILED, "", DATASTATE_FAILED, DATASTATE_READY, NULL);
	json_decref(a);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ds, "status"), "attempt")), 3);
	/* Checks failing leaves dataState Completed; retry from there too. */
	json_decref(apply_ok(&cfg, ds, GATE_EV_COLLECT_START, &SYS, NULL));
	json_decref(apply_ok(&cfg, ds, GATE_EV_COLLECT_SUCCEEDED, &SYS, NULL));
	json_decref(apply_ok(&cfg, ds, GATE_EV_CHECKS_FAILED, &SYS, NULL));
	assert_string_equal(gates_stage(ds), STAGE_FAILED);
	a = apply_ok(&cfg, ds, GATE_EV_RETRY, &ENG, NULL);
	expect_audit(a, "user", "eng", "retry", STAGE_FAILED, "", DATASTATE_COMPLETED, DATASTATE_READY, NULL);
	json_decref(a);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ds, "status"), "attempt")), 4);
	json_decref(ds);
	gates_config_free(&cfg);
}

/* lastTransitionTime moves only when a condition's status changes. */
static void test_conditions(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = make_ds("Import", "", DATASTATE_READY), *st, *m = manifest_with(DIGEST_A);
	struct gate_input checks = { .manifest = m };
	struct gate_input ok = { .digest = DIGEST_A };
	const char *old = "2000-01-01T00:00:00Z";
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);

	json_decref(apply_ok(&cfg, ds, GATE_EV_COLLECT_START, &SYS, NULL));
	expect_condition(ds, "Collected", "False");
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Collected"), "reason")), STAGE_COLLECTING);
	assert_int_equal(json_integer_value(json_object_get(condition(ds, "Collected"), "observedGeneration")), 3);
	assert_int_equal(json_array_size(json_object_get(json_object_get(ds, "status"), "conditions")), 3);
	/* Pretend the conditions were set long ago. */
	st = json_object_get(ds, "status");
	{
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(st, "conditions"), i, c)
			json_object_set_new(c, "lastTransitionTime", json_string(old));
	}
	json_decref(apply_ok(&cfg, ds, GATE_EV_COLLECT_SUCCEEDED, &SYS, NULL));
	/* Collected flipped; Approved and Ready did not. */
	expect_condition(ds, "Collected", "True");
	assert_string_not_equal(json_string_value(json_object_get(condition(ds, "Collected"), "lastTransitionTime")), old);
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Approved"), "lastTransitionTime")), old);
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Ready"), "lastTransitionTime")), old);
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Approved"), "reason")), STAGE_CHECKING);

	json_object_set_new((json_t *)condition(ds, "Collected"), "lastTransitionTime", json_string(old));
	json_decref(apply_ok(&cfg, ds, GATE_EV_CHECKS_PASSED, &SYS, &checks));
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Collected"), "lastTransitionTime")), old);
	json_decref(apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &ok));
	expect_condition(ds, "Approved", "True");
	assert_string_not_equal(json_string_value(json_object_get(condition(ds, "Approved"), "lastTransitionTime")), old);
	assert_string_equal(json_string_value(json_object_get(condition(ds, "Ready"), "lastTransitionTime")), old);
	assert_int_equal(json_array_size(json_object_get(json_object_get(ds, "status"), "conditions")), 3);
	json_decref(m);
	json_decref(ds);
	gates_config_free(&cfg);
}

/* ---- the whole table ---------------------------------------------------------- */

struct legal {
	const char *stage;
	const char *state; /* NULL: any */
	enum gate_event ev;
	int system;
};

static const struct legal legal_rows[] = {
	{ "", "", GATE_EV_SUBMIT, 0 },
	{ STAGE_AWAITING_REQUEST, NULL, GATE_EV_REQUEST_APPROVE, 0 },
	{ STAGE_AWAITING_REQUEST, NULL, GATE_EV_REQUEST_REJECT, 0 },
	{ "", DATASTATE_READY, GATE_EV_COLLECT_START, 1 },
	{ "", DATASTATE_READY, GATE_EV_COLLECT_FAILED, 1 },
	{ STAGE_COLLECTING, NULL, GATE_EV_COLLECT_SUCCEEDED, 1 },
	{ STAGE_COLLECTING, NULL, GATE_EV_COLLECT_FAILED, 1 },
	{ STAGE_UPLOADING, NULL, GATE_EV_UPLOAD_COMPLETE, 0 },
	{ STAGE_UPLOADING, NULL, GATE_EV_COLLECT_FAILED, 1 },
	{ STAGE_CHECKING, NULL, GATE_EV_CHECKS_PASSED, 1 },
	{ STAGE_CHECKING, NULL, GATE_EV_CHECKS_FAILED, 1 },
	{ STAGE_AWAITING_APPROVAL, NULL, GATE_EV_REVIEW_APPROVE, 0 },
	{ STAGE_AWAITING_APPROVAL, NULL, GATE_EV_REVIEW_REJECT, 0 },
	{ STAGE_AWAITING_APPROVAL, NULL, GATE_EV_DATA_CHANGED, 1 },
	{ STAGE_APPROVED, NULL, GATE_EV_DATA_CHANGED, 1 },
	{ STAGE_APPROVED, NULL, GATE_EV_PUBLISH, 1 },
	{ STAGE_APPROVED, NULL, GATE_EV_COLLECT_FAILED, 1 },
	{ STAGE_REJECTED, NULL, GATE_EV_PURGE, 1 },
	{ STAGE_FAILED, NULL, GATE_EV_RETRY, 0 },
};

static const struct legal *legal_row(const char *stage, const char *state, enum gate_event ev)
{
	for (size_t i = 0; i < sizeof(legal_rows) / sizeof(legal_rows[0]); i++)
		if (!strcmp(legal_rows[i].stage, stage) && legal_rows[i].ev == ev &&
		    (!legal_rows[i].state || !strcmp(legal_rows[i].state, state)))
			return &legal_rows[i];
	return NULL;
}

static const char *const all_stages[] = { STAGE_NONE, STAGE_AWAITING_REQUEST, STAGE_COLLECTING,
					  STAGE_UPLOADING, STAGE_CHECKING, STAGE_AWAITING_APPROVAL,
					  STAGE_APPROVED, STAGE_PUBLISHED, STAGE_REJECTED,
					  STAGE_PURGED, STAGE_FAILED, "Bogus" };
static const char *const all_states[] = { "", DATASTATE_PENDING, DATASTATE_READY, DATASTATE_COMPLETED,
					  DATASTATE_FAILED };

/* Every (stage, dataState, event) without a row is refused, from anyone,
 * with nothing changed; every row refuses the wrong kind of actor. */
static void test_every_pair(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *m = manifest_with(DIGEST_A), *checks = json_array();
	struct gate_input in = { .approval_type = NULL, .digest = DIGEST_A, .reason = "because", .manifest = m,
				 .checks = checks, .message = "msg", .published_path = "/p", .job_name = "job-1" };
	int illegal = 0, wrong_actor = 0;
	two_gate_config(&cfg);
	for (size_t s = 0; s < sizeof(all_stages) / sizeof(all_stages[0]); s++)
		for (size_t d = 0; d < sizeof(all_states) / sizeof(all_states[0]); d++)
			for (int ev = 0; ev < GATE_EV_COUNT; ev++) {
				json_t *ds = make_ds("Import", all_stages[s], all_states[d]);
				const struct legal *row = legal_row(all_stages[s], all_states[d], (enum gate_event)ev);
				give_manifest(ds, DIGEST_A);
				json_object_set_new(json_object_get(ds, "status"), "attempt", json_integer(2));
				if (!row) {
					expect_refused(&cfg, ds, (enum gate_event)ev, &SYS, &in, AL_ERR_CONFLICT);
					expect_refused(&cfg, ds, (enum gate_event)ev, &APPR, &in, AL_ERR_CONFLICT);
					expect_refused(&cfg, ds, (enum gate_event)ev, &ENG2, NULL, AL_ERR_CONFLICT);
					illegal++;
				} else {
					/* System events refused from people, people's events from the system. */
					expect_refused(&cfg, ds, (enum gate_event)ev, row->system ? &APPR : &SYS, &in,
						       AL_ERR_FORBIDDEN);
					expect_refused(&cfg, ds, (enum gate_event)ev, row->system ? &BOTH : &SYS, NULL,
						       AL_ERR_FORBIDDEN);
					wrong_actor++;
				}
				json_decref(ds);
			}
	/* 12 stages x 5 states x 15 events, of which the rows above are legal. */
	assert_int_equal(illegal + wrong_actor, 12 * 5 * GATE_EV_COUNT);
	assert_true(wrong_actor >= (int)(sizeof(legal_rows) / sizeof(legal_rows[0])));
	json_decref(m);
	json_decref(checks);
	gates_config_free(&cfg);
}

/* A datasource without any status: only submit. */
static void test_no_status(void **state)
{
	(void)state;
	struct gates_config cfg;
	struct gate_input in = { .reason = "x", .digest = DIGEST_A };
	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	for (int ev = 0; ev < GATE_EV_COUNT; ev++) {
		json_t *ds = json_pack("{s:s, s:{s:s}, s:{s:s}}", "kind", "AnalyticsWorkspaceDataSource", "metadata",
				       "name", "ds1", "spec", "type", "Import");
		if (ev == GATE_EV_SUBMIT) {
			json_t *a = apply_ok(&cfg, ds, GATE_EV_SUBMIT, &ENG, NULL);
			json_decref(a);
		} else {
			expect_refused(&cfg, ds, (enum gate_event)ev, &SYS, &in, AL_ERR_CONFLICT);
			expect_refused(&cfg, ds, (enum gate_event)ev, &APPR, &in, AL_ERR_CONFLICT);
			assert_null(json_object_get(ds, "status"));
		}
		json_decref(ds);
	}
	gates_config_free(&cfg);
}

/* A full ingress run through the table, as the operator and people do it. */
static void test_happy_path_audit_sequence(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *ds = json_pack("{s:s, s:{s:s, s:s, s:i}, s:{s:s}}", "kind", "AnalyticsWorkspaceDataSource",
			       "metadata", "name", "ds1", "uid", "uid-1", "generation", 1, "spec", "type", "Import");
	json_t *m = manifest_with(DIGEST_A);
	struct gate_input ig = { .approval_type = "information-governance" };
	struct gate_input job = { .job_name = "import-uid-1-1" };
	struct gate_input checks = { .manifest = m };
	struct gate_input da = { .digest = DIGEST_A, .approval_type = "data-approver" };
	struct gate_input ig2 = { .digest = DIGEST_A, .approval_type = "information-governance" };
	struct gate_input pub = { .published_path = "/ws/ds1" };
	const char *want[] = { "submit", "request-approve", "request-approve", "collect-start", "collect-succeeded",
			       "checks-passed", "approve", "approve", "publish" };
	json_t *audits[9];
	two_gate_config(&cfg);
	audits[0] = apply_ok(&cfg, ds, GATE_EV_SUBMIT, &ENG, NULL);
	audits[1] = apply_ok(&cfg, ds, GATE_EV_REQUEST_APPROVE, &APPR, &ig);
	audits[2] = apply_ok(&cfg, ds, GATE_EV_REQUEST_APPROVE, &ENG2, NULL);
	audits[3] = apply_ok(&cfg, ds, GATE_EV_COLLECT_START, &SYS, &job);
	audits[4] = apply_ok(&cfg, ds, GATE_EV_COLLECT_SUCCEEDED, &SYS, NULL);
	audits[5] = apply_ok(&cfg, ds, GATE_EV_CHECKS_PASSED, &SYS, &checks);
	audits[6] = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR, &da);
	audits[7] = apply_ok(&cfg, ds, GATE_EV_REVIEW_APPROVE, &APPR2, &ig2);
	audits[8] = apply_ok(&cfg, ds, GATE_EV_PUBLISH, &SYS, &pub);
	for (size_t i = 0; i < 9; i++) {
		assert_string_equal(json_string_value(json_object_get(audits[i], "action")), want[i]);
		if (i)
			assert_string_equal(json_string_value(json_object_get(audits[i], "stageBefore")),
					    json_string_value(json_object_get(audits[i - 1], "stageAfter")));
	}
	for (size_t i = 0; i < 9; i++)
		json_decref(audits[i]);
	assert_string_equal(gates_stage(ds), STAGE_PUBLISHED);
	assert_int_equal(json_array_size(json_object_get(json_object_get(ds, "status"), "approvals")), 4);
	json_decref(m);
	json_decref(ds);
	gates_config_free(&cfg);
}

/* ---- configuration ------------------------------------------------------------ */

static int config_rc(const char *text)
{
	struct gates_config cfg;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	int rc;
	assert_non_null(j);
	rc = gates_config_from_json(&cfg, j);
	json_decref(j);
	if (rc == AL_OK)
		gates_config_free(&cfg);
	else {
		assert_null(cfg.request);
		assert_null(cfg.review);
		assert_int_equal(cfg.n_request + cfg.n_review, 0);
	}
	return rc;
}

static void test_config(void **state)
{
	(void)state;
	struct gates_config cfg;
	json_t *j;

	assert_int_equal(gates_config_init_default(&cfg), AL_OK);
	assert_int_equal(cfg.n_request, 0);
	assert_int_equal(cfg.n_review, 1);
	assert_string_equal(cfg.review[0].type, "data-approver");
	assert_string_equal(cfg.review[0].role, "approver");
	gates_config_free(&cfg);
	gates_config_free(&cfg); /* twice is harmless */

	two_gate_config(&cfg);
	assert_int_equal(cfg.n_request, 2);
	assert_int_equal(cfg.n_review, 2);
	assert_string_equal(cfg.request[1].type, "data-engineer");
	assert_string_equal(cfg.request[1].role, "data-engineer");
	assert_string_equal(cfg.review[1].type, "information-governance");
	gates_config_free(&cfg);

	/* Either list may be absent; an absent review means the default. */
	j = json_pack("{s:[{s:s, s:s}]}", "request", "type", "ig", "role", "approver");
	assert_int_equal(gates_config_from_json(&cfg, j), AL_OK);
	assert_int_equal(cfg.n_request, 1);
	assert_int_equal(cfg.n_review, 1);
	assert_string_equal(cfg.review[0].type, "data-approver");
	gates_config_free(&cfg);
	json_decref(j);
	assert_int_equal(config_rc("{}"), AL_OK);
	assert_int_equal(config_rc("{\"request\": []}"), AL_OK);

	assert_int_equal(config_rc("[]"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"reviews\": []}"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "gates.reviews"));
	assert_int_equal(config_rc("{\"review\": []}"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "at least one"));
	assert_int_equal(config_rc("{\"review\": {}}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"request\": \"x\"}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [\"data-approver\"]}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"a\"}]}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"a\", \"role\": \"approver\", \"x\": 1}]}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"a\", \"roles\": \"b\"}]}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"Data Approver\", \"role\": \"approver\"}]}"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "gates.review[0]"));
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"a\", \"role\": \"\"}]}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [{\"type\": 1, \"role\": \"approver\"}]}"), AL_ERR_INVALID);
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"role\": \"approver\"}]}"),
			 AL_ERR_INVALID);
	/* Roles must be ones an account can have. */
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"a\", \"role\": \"aprover\"}]}"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "not one of"));
	/* Duplicates within one list. */
	assert_int_equal(config_rc("{\"review\": [{\"type\": \"a\", \"role\": \"approver\"}, {\"type\": \"a\", \"role\": \"data-engineer\"}]}"),
			 AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "listed twice"));
	assert_int_equal(config_rc("{\"request\": [{\"type\": \"a\", \"role\": \"approver\"}, {\"type\": \"a\", \"role\": \"approver\"}],"
				   "\"review\": [{\"type\": \"a\", \"role\": \"approver\"}]}"),
			 AL_ERR_INVALID);
	/* An error in the review list after a good request list frees both. */
	assert_int_equal(config_rc("{\"request\": [{\"type\": \"a\", \"role\": \"approver\"}], \"review\": [{\"type\": \"A\", \"role\": \"approver\"}]}"),
			 AL_ERR_INVALID);
	/* The same type at both gates is fine: they are different gates. */
	assert_int_equal(config_rc("{\"request\": [{\"type\": \"a\", \"role\": \"approver\"}], \"review\": [{\"type\": \"a\", \"role\": \"approver\"}]}"),
			 AL_OK);
	assert_int_equal(gates_config_from_json(&cfg, NULL), AL_ERR_INVALID);
}

/* missing approvals outside a gate is empty. */
static void test_missing_outside_gates(void **state)
{
	(void)state;
	struct gates_config cfg;
	two_gate_config(&cfg);
	for (size_t s = 0; s < sizeof(all_stages) / sizeof(all_stages[0]); s++) {
		json_t *ds = make_ds("Import", all_stages[s], DATASTATE_COMPLETED);
		give_manifest(ds, DIGEST_A);
		if (!strcmp(all_stages[s], STAGE_AWAITING_REQUEST))
			expect_missing(&cfg, ds, "information-governance,data-engineer");
		else if (!strcmp(all_stages[s], STAGE_AWAITING_APPROVAL))
			expect_missing(&cfg, ds, "data-approver,information-governance");
		else
			expect_missing(&cfg, ds, "");
		json_decref(ds);
	}
	gates_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_names),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_submit_without_request_gate),
		cmocka_unit_test(test_submit_with_request_gate),
		cmocka_unit_test(test_request_approvals),
		cmocka_unit_test(test_request_reject_and_purge),
		cmocka_unit_test(test_collect_start),
		cmocka_unit_test(test_collect_succeeded_and_upload_complete),
		cmocka_unit_test(test_collect_failed),
		cmocka_unit_test(test_checks_passed_and_failed),
		cmocka_unit_test(test_review_approve),
		cmocka_unit_test(test_review_two_types),
		cmocka_unit_test(test_approval_stops_counting_when_data_changes),
		cmocka_unit_test(test_review_reject),
		cmocka_unit_test(test_publish),
		cmocka_unit_test(test_publish_failure),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_every_pair),
		cmocka_unit_test(test_no_status),
		cmocka_unit_test(test_happy_path_audit_sequence),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_missing_outside_gates),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
