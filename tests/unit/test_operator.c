/*
 * test_operator.c - the datasource reconciler and the controller, driven
 * against a real SQLite store and a real local runtime: jobs are real
 * `airlock run-job`, `airlock check-job` and `airlock publish-job` processes
 * (supervised by `airlock job-shim`), so the built airlock binary is needed:
 * $AIRLOCK_BIN, else the build's own bin/airlock beside this test, else
 * bin/airlock from the repository root. Failing jobs are simulated with a
 * wrapper script standing in for airlock (see use_fake_airlock).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "gates/gates.h"
#include "operator/operator.h"
#include "runtime/runtime.h"
#include "store/store.h"

#include <dirent.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NS "default"
#define KIND "AnalyticsWorkspaceDataSource"
#define WS_LABEL "xlscsde.nhs.uk/workspace"
#define TIMEOUT_MS 60000

static char airlock_bin[PATH_MAX];

struct fixture {
	char base[64];
	char *data, *db_path, *state_dir, *source_db;
	struct airlock_config cfg;
	struct store *store;
	struct runtime *rt;
	struct operator_ctx ctx;
};

/* ---- setup ------------------------------------------------------------------ */

static int find_airlock_bin(void)
{
	const char *env = getenv("AIRLOCK_BIN");
	char self[PATH_MAX], cand[PATH_MAX + 32];
	ssize_t n;

	if (env && *env) {
		if (!realpath(env, airlock_bin) || access(airlock_bin, X_OK) != 0) {
			fprintf(stderr, "test_operator: AIRLOCK_BIN=%s is not an executable airlock binary\n", env);
			return -1;
		}
		return 0;
	}
	/* build/<flavour>/tests/test_operator -> build/<flavour>/bin/airlock
	 * (the sanitizer build keeps its binary there). */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;
		self[n] = '\0';
		if ((slash = strrchr(self, '/'))) {
			*slash = '\0';
			snprintf(cand, sizeof(cand), "%s/../bin/airlock", self);
			if (access(cand, X_OK) == 0 && realpath(cand, airlock_bin))
				return 0;
		}
	}
	if (access("bin/airlock", X_OK) == 0 && realpath("bin/airlock", airlock_bin))
		return 0;
	fprintf(stderr,
		"test_operator: the airlock binary was not found: build it with `make`, run this test from the "
		"repository root, or set AIRLOCK_BIN to its path\n");
	return -1;
}

static void make_source_db(const char *path, int with_attendances)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	const char *sql_base =
		"CREATE TABLE patients(id INTEGER PRIMARY KEY, name TEXT, dob TEXT, weight REAL);"
		"INSERT INTO patients VALUES (1, 'Person 1', '1980-01-02', 1.5);"
		"INSERT INTO patients VALUES (2, 'Pat \"2\", Ñoño', NULL, 3.0);"
		"INSERT INTO patients VALUES (3, 'Person 3', '1990-05-06', 4.5);";
	const char *sql_att = "CREATE TABLE attendances(id INTEGER, patient_id INTEGER, attended TEXT);"
			      "INSERT INTO attendances VALUES (1, 1, '2024-03-01');"
			      "INSERT INTO attendances VALUES (2, 3, '2024-03-02');";
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql_base, NULL, NULL, &err), SQLITE_OK);
	if (with_attendances)
		assert_int_equal(sqlite3_exec(db, sql_att, NULL, NULL, &err), SQLITE_OK);
	sqlite3_close(db);
}

static int group_setup(void **state)
{
	(void)state;
	log_set_level(LOG_ERROR);
	return find_airlock_bin();
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->base, sizeof(f->base), "/tmp/test-operator-XXXXXX");
	if (!mkdtemp(f->base))
		return -1;
	f->data = util_path_join(f->base, "var");
	f->db_path = util_path_join(f->data, "airlock.db");
	f->state_dir = util_path_join(f->data, "state");
	f->source_db = util_path_join(f->base, "source.db");
	if (!f->data || !f->db_path || !f->state_dir || !f->source_db)
		return -1;
	make_source_db(f->source_db, 1);
	if (config_load(&f->cfg, NULL) || config_set_data_dir(&f->cfg, f->data) || util_mkdir_p(f->data, 0700) ||
	    store_sqlite_open(&f->store, f->db_path) ||
	    runtime_local_open(&f->rt, f->state_dir, f->cfg.staging_root, f->cfg.workspace_root, airlock_bin)) {
		fprintf(stderr, "setup: %s\n", al_error_message());
		return -1;
	}
	f->ctx.store = f->store;
	f->ctx.runtime = f->rt;
	f->ctx.cfg = &f->cfg;
	f->ctx.creds = NULL;
	f->ctx.self_exe = airlock_bin;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	runtime_close(f->rt);
	store_close(f->store);
	config_free(&f->cfg);
	util_remove_tree(f->base);
	free(f->data);
	free(f->db_path);
	free(f->state_dir);
	free(f->source_db);
	free(f);
	return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *md_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static const char *st_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "status"), key));
}

/* The seed's Import datasource (or an Uploaded one), in workspace ws1,
 * submitted by "eng" through the gates as the API does. Returns the stored object. */
static json_t *create_ds(struct fixture *f, const char *name, const char *type, const char *tables_csv)
{
	char url[PATH_MAX + 16];
	struct gate_actor eng = { 0, "eng", NULL };
	json_t *roles = json_pack("[s]", "data-engineer");
	json_t *objects = json_array(), *obj, *audit = NULL, *out = NULL;
	char *tables = util_strdup(tables_csv), *t, *comma;

	assert_non_null(roles);
	assert_non_null(tables);
	eng.roles = roles;
	for (t = tables; *t; t = comma + 1) {
		comma = strchr(t, ',');
		if (comma)
			*comma = '\0';
		json_array_append_new(objects, json_pack("{s:{s:s, s:s}}", "table", "name", t, "connection", "source"));
		if (!comma)
			break;
	}
	free(tables);
	snprintf(url, sizeof(url), "sqlite://%s", f->source_db);
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}},"
			" s:{s:s, s:{s:s, s:{s:s, s:s}}, s:{s:s}, s:s, s:s, s:s, s:[{s:s, s:s, s:s}], s:o}}",
			"apiVersion", "xlscsde.nhs.uk/v1", "kind", KIND, "metadata", "name", name, "namespace", NS,
			"labels", WS_LABEL, "ws1", "xlscsde.nhs.uk/type", "import", "spec", "type", type, "publisher",
			"organisation", "NHS Greater Manchester ICB", "contact", "name", "Shaun Turner", "role",
			"AWMS Developer", "project", "id", "d4e6", "displayName", "Sample Dataset - GM Attendances",
			"description", "Contains sample tables.\nAll data is synthetic.\n", "license",
			"This sample data may ONLY be used for testing.\n", "connections", "type", "sqlite", "name",
			"source", "url", url, "objects", objects);
	assert_non_null(obj);
	assert_int_equal(gates_apply(&f->cfg.gates, obj, GATE_EV_SUBMIT, &eng, NULL, &audit), AL_OK);
	json_object_del(audit, "object"); /* the store fills it in with the new uid */
	if (store_create(f->store, obj, audit, &out) != AL_OK)
		fail_msg("store_create: %s", al_error_message());
	assert_string_equal(st_str(out, "dataState"), DATASTATE_READY);
	assert_non_null(md_str(out, "uid"));
	json_decref(audit);
	json_decref(obj);
	json_decref(roles);
	return out;
}

static json_t *get_ds(struct fixture *f, const char *name)
{
	json_t *ds = NULL;
	assert_int_equal(store_get(f->store, KIND, NS, name, &ds), AL_OK);
	return ds;
}

/* Reconciles `name` as the controller would (honouring requeue) until its
 * stage is `want`; fails on timeout or an unexpected Failed. Returns the
 * object; *calls counts reconciles. */
static json_t *reconcile_until(struct fixture *f, const char *name, const char *want, int *calls)
{
	int64_t deadline = util_monotonic_ms() + TIMEOUT_MS;
	int n = 0;
	for (;;) {
		int requeue = -1, rc;
		json_t *ds;
		rc = operator_reconcile_datasource(&f->ctx, NS, name, &requeue);
		n++;
		if (rc != AL_OK && rc != AL_ERR_CONFLICT)
			fail_msg("reconcile %s: %s (%d)", name, al_error_message(), rc);
		assert_true(requeue >= 0);
		ds = get_ds(f, name);
		if (!strcmp(gates_stage(ds), want)) {
			if (calls)
				*calls = n;
			return ds;
		}
		if (!strcmp(gates_stage(ds), STAGE_FAILED) && strcmp(want, STAGE_FAILED))
			fail_msg("%s failed: %s", name, st_str(ds, "message"));
		json_decref(ds);
		if (util_monotonic_ms() > deadline)
			fail_msg("%s did not reach stage %s in time", name, want);
		if (requeue > 0)
			sleep_ms(requeue);
		else if (rc == AL_ERR_CONFLICT)
			continue;
	}
}

/* Audit actions recorded for `name`, comma-separated, into out. */
static void audit_actions(struct fixture *f, const char *name, char *out, size_t cap)
{
	json_t *all = NULL, *a;
	size_t i, off = 0;
	out[0] = '\0';
	assert_int_equal(store_audit_list(f->store, 0, 0, &all), AL_OK);
	json_array_foreach(all, i, a) {
		const char *obj_name = json_string_value(json_object_get(json_object_get(a, "object"), "name"));
		const char *kind = json_string_value(json_object_get(json_object_get(a, "object"), "kind"));
		if (!obj_name || !kind || strcmp(obj_name, name) || strcmp(kind, KIND))
			continue;
		int n = snprintf(out + off, cap - off, "%s%s", off ? "," : "",
				 json_string_value(json_object_get(a, "action")));
		assert_true(n > 0 && (size_t)n < cap - off);
		off += (size_t)n;
	}
	json_decref(all);
}

/* Entries of `dir` whose name starts with `prefix`. */
static int count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !strncmp(e->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}

static char *staging_dir(struct fixture *f, const json_t *ds)
{
	char *vol = operator_volume_name(ds), *p;
	assert_non_null(vol);
	p = util_path_join(f->cfg.staging_root, vol);
	free(vol);
	assert_non_null(p);
	return p;
}

static const json_t *manifest_file(const json_t *ds, const char *path)
{
	size_t i;
	json_t *file;
	json_array_foreach(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "files"), i, file)
		if (!strcmp(json_string_value(json_object_get(file, "path")), path))
			return file;
	return NULL;
}

/* A person's decision through the gates, written as the API writes it. */
static int decide(struct fixture *f, const char *name, enum gate_event ev, const char *user, const char *digest,
		  const char *reason)
{
	json_t *roles = json_pack("[s]", "approver"), *ds = get_ds(f, name), *audit = NULL, *out = NULL;
	struct gate_actor who = { 0, user, roles };
	struct gate_input in = { .digest = digest, .reason = reason };
	int rc = gates_apply(&f->cfg.gates, ds, ev, &who, &in, &audit);
	if (!rc)
		rc = store_update_status(f->store, ds, audit, &out);
	json_decref(out);
	json_decref(audit);
	json_decref(ds);
	json_decref(roles);
	return rc;
}

/* Runs an Import datasource to AwaitingApproval and checks what it left. */
static json_t *import_to_review(struct fixture *f, const char *name)
{
	json_t *ds = create_ds(f, name, "Import", "patients,attendances"), *got;
	char *jobs = util_path_join(f->state_dir, "jobs"), *secrets = util_path_join(f->state_dir, "secrets");
	char *job = operator_job_name(ds), *stage, actions[512];
	const json_t *checks, *c;
	size_t i;
	int calls = 0;

	json_decref(ds);
	got = reconcile_until(f, name, STAGE_AWAITING_APPROVAL, &calls);
	assert_true(calls >= 3);
	assert_string_equal(gates_data_state(got), DATASTATE_COMPLETED);
	assert_string_equal(st_str(got, "requestedBy"), "eng");
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(got, "status"), "job"), "name")),
			    job);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "status"), "observedGeneration")),
			 json_integer_value(json_object_get(json_object_get(got, "metadata"), "generation")));

	/* The manifest: both tables and the RO-Crate metadata. */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(got, "status"), "manifest"), "fileCount")), 3);
	assert_non_null(manifest_file(got, "patients.csv"));
	assert_non_null(manifest_file(got, "attendances.csv"));
	assert_non_null(manifest_file(got, "ro-crate-metadata.json"));
	assert_int_equal(strlen(json_string_value(json_object_get(json_object_get(json_object_get(got, "status"), "manifest"), "digest"))), 64);
	checks = json_object_get(json_object_get(got, "status"), "checks");
	assert_true(json_array_size(checks) >= 2);
	json_array_foreach(checks, i, c) {
		const char *r = json_string_value(json_object_get(c, "result"));
		if (!strcmp(json_string_value(json_object_get(c, "name")), "malware"))
			assert_string_equal(r, "not-scanned");
		else
			assert_string_equal(r, "passed");
	}
	/* The data is in the staging volume. */
	stage = staging_dir(f, got);
	{
		char *p = util_path_join(stage, "patients.csv"), *text = NULL;
		size_t len;
		assert_int_equal(util_read_file(p, 1 << 20, &text, &len), AL_OK);
		assert_non_null(strstr(text, "Person 3"));
		assert_true((uint64_t)len == (uint64_t)json_integer_value(json_object_get(manifest_file(got, "patients.csv"), "size")));
		free(text);
		free(p);
	}

	/* The job ran exactly once, and its secrets (credentials, definition) are gone. */
	assert_int_equal(count_entries(jobs, "import-"), 1);
	assert_int_equal(count_entries(jobs, job), 1);
	assert_int_equal(count_entries(secrets, job), 0);
	/* The check job, its result recorded, is gone too. */
	assert_int_equal(count_entries(jobs, "check-"), 0);
	assert_int_equal(count_entries(jobs, ""), 1);
	audit_actions(f, name, actions, sizeof(actions));
	assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed");
	{
		struct job_status st = { 0 };
		assert_int_equal(runtime_job_get(f->rt, job, &st), AL_OK);
		assert_int_equal(st.phase, JOB_SUCCEEDED);
		job_status_free(&st);
	}
	/* Reconciling again while awaiting a person changes nothing. */
	for (int k = 0; k < 3; k++) {
		int requeue = -1;
		json_t *again;
		assert_int_equal(operator_reconcile_datasource(&f->ctx, NS, name, &requeue), AL_OK);
		assert_int_equal(requeue, 0);
		again = get_ds(f, name);
		assert_true(json_equal(again, got));
		json_decref(again);
	}
	audit_actions(f, name, actions, sizeof(actions));
	assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed");
	assert_int_equal(count_entries(jobs, "import-"), 1);

	free(stage);
	free(job);
	free(jobs);
	free(secrets);
	return got;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_child_names(void **state)
{
	(void)state;
	json_t *ds = json_pack("{s:{s:s}}", "metadata", "uid", "0f3c-11");
	char *v = operator_volume_name(ds), *j = operator_job_name(ds);
	assert_string_equal(v, "ds-0f3c-11");
	assert_string_equal(j, "import-0f3c-11-1");
	free(j);
	json_object_set_new(ds, "status", json_pack("{s:i}", "attempt", 3));
	j = operator_job_name(ds);
	assert_string_equal(j, "import-0f3c-11-3");
	assert_int_equal(runtime_check_name("volume", v), AL_OK);
	assert_int_equal(runtime_check_name("job", j), AL_OK);
	free(v);
	free(j);
	/* check and publish jobs: one round per data change */
	j = operator_check_job_name(ds);
	assert_string_equal(j, "check-0f3c-11-3-0");
	free(j);
	json_object_set_new(json_object_get(ds, "status"), "dataChanges", json_integer(2));
	j = operator_check_job_name(ds);
	assert_string_equal(j, "check-0f3c-11-3-2");
	assert_int_equal(runtime_check_name("job", j), AL_OK);
	free(j);
	j = operator_publish_job_name(ds);
	assert_string_equal(j, "publish-0f3c-11-3-2");
	free(j);
	json_decref(ds);
}

static void test_import_approve_publish(void **state)
{
	struct fixture *f = *state;
	json_t *ds = import_to_review(f, "example-data-source-1");
	const char *digest = json_string_value(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "digest"));
	char *stage = staging_dir(f, ds), *dest, actions[512], *ws;
	json_t *pub;
	struct stat st;

	/* The requester cannot approve, a stale digest is refused, the approver can. */
	{
		json_t *roles = json_pack("[s]", "approver"), *copy = json_deep_copy(ds), *audit = NULL;
		struct gate_actor eng = { 0, "eng", roles };
		struct gate_input in = { .digest = digest };
		assert_int_equal(gates_apply(&f->cfg.gates, copy, GATE_EV_REVIEW_APPROVE, &eng, &in, &audit),
				 AL_ERR_FORBIDDEN);
		json_decref(copy);
		json_decref(roles);
	}
	assert_int_equal(decide(f, "example-data-source-1", GATE_EV_REVIEW_APPROVE, "appr",
				"0000000000000000000000000000000000000000000000000000000000000000", NULL),
			 AL_ERR_CONFLICT);
	assert_int_equal(decide(f, "example-data-source-1", GATE_EV_REVIEW_APPROVE, "appr", digest, NULL), AL_OK);
	pub = reconcile_until(f, "example-data-source-1", STAGE_PUBLISHED, NULL);

	ws = util_path_join(f->cfg.workspace_root, "ws1");
	dest = util_path_join(ws, "example-data-source-1");
	assert_string_equal(st_str(pub, "publishedPath"), dest);
	{
		const char *names[] = { "patients.csv", "attendances.csv", "ro-crate-metadata.json" };
		for (size_t i = 0; i < 3; i++) {
			char *p = util_path_join(dest, names[i]);
			assert_int_equal(stat(p, &st), 0);
			assert_int_equal(st.st_mode & 07777, 0444);
			assert_int_equal((json_int_t)st.st_size,
					 json_integer_value(json_object_get(manifest_file(ds, names[i]), "size")));
			free(p);
		}
		assert_int_equal(stat(dest, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0555);
	}
	/* The staging copy has done its job, and so have the publish job and
	 * its manifest secret: only the import job is left. */
	assert_false(util_path_exists(stage));
	assert_int_equal(count_entries(ws, "."), 0);
	{
		char *jobs = util_path_join(f->state_dir, "jobs"), *secrets = util_path_join(f->state_dir, "secrets");
		assert_int_equal(count_entries(jobs, "publish-"), 0);
		assert_int_equal(count_entries(jobs, "check-"), 0);
		assert_int_equal(count_entries(jobs, "import-"), 1);
		assert_int_equal(count_entries(secrets, ""), 0);
		free(jobs);
		free(secrets);
	}
	audit_actions(f, "example-data-source-1", actions, sizeof(actions));
	assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed,approve,publish");
	{
		const json_t *c;
		size_t i;
		int ready = 0;
		json_array_foreach(json_object_get(json_object_get(pub, "status"), "conditions"), i, c)
			if (!strcmp(json_string_value(json_object_get(c, "type")), "Ready"))
				ready = !strcmp(json_string_value(json_object_get(c, "status")), "True");
		assert_true(ready);
	}
	/* Published is terminal: reconciling does nothing more. */
	{
		int requeue = -1;
		json_t *again;
		assert_int_equal(operator_reconcile_datasource(&f->ctx, NS, "example-data-source-1", &requeue), AL_OK);
		assert_int_equal(requeue, 0);
		again = get_ds(f, "example-data-source-1");
		assert_true(json_equal(again, pub));
		json_decref(again);
	}
	json_decref(pub);
	json_decref(ds);
	free(stage);
	free(dest);
	free(ws);
}

/* Data changed after approval: publishing finds it, nothing is published,
 * the checks run again on the new data, and the approval no longer counts. */
static void test_changed_data_is_not_published(void **state)
{
	struct fixture *f = *state;
	json_t *ds = import_to_review(f, "changing");
	char *digest = util_strdup(json_string_value(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "digest")));
	char *stage = staging_dir(f, ds), *csv = util_path_join(stage, "attendances.csv"), *ws, *dest, actions[512];
	json_t *again;
	const char *extra = "3,2,2024-12-31\r\n";
	FILE *fp;

	assert_int_equal(decide(f, "changing", GATE_EV_REVIEW_APPROVE, "appr", digest, NULL), AL_OK);
	fp = fopen(csv, "a");
	assert_non_null(fp);
	assert_int_equal(fwrite(extra, 1, strlen(extra), fp), strlen(extra));
	fclose(fp);
	again = reconcile_until(f, "changing", STAGE_AWAITING_APPROVAL, NULL);
	assert_string_not_equal(json_string_value(json_object_get(json_object_get(json_object_get(again, "status"), "manifest"), "digest")),
				digest);
	ws = util_path_join(f->cfg.workspace_root, "ws1");
	dest = util_path_join(ws, "changing");
	assert_false(util_path_exists(dest));
	assert_int_equal(count_entries(ws, "."), 0);
	audit_actions(f, "changing", actions, sizeof(actions));
	assert_string_equal(actions,
			    "submit,collect-start,collect-succeeded,checks-passed,approve,data-changed,checks-passed");
	/* The second round of checks ran under new job names; both rounds' jobs are gone. */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(again, "status"), "dataChanges")), 1);
	{
		char *jobs = util_path_join(f->state_dir, "jobs"), *secrets = util_path_join(f->state_dir, "secrets");
		assert_int_equal(count_entries(jobs, "check-"), 0);
		assert_int_equal(count_entries(jobs, "publish-"), 0);
		assert_int_equal(count_entries(secrets, ""), 0);
		free(jobs);
		free(secrets);
	}
	/* Approved again, it publishes the new data (round 1's publish job). */
	{
		const char *d2 = json_string_value(json_object_get(json_object_get(json_object_get(again, "status"), "manifest"), "digest"));
		json_t *pub;
		assert_int_equal(decide(f, "changing", GATE_EV_REVIEW_APPROVE, "appr", d2, NULL), AL_OK);
		pub = reconcile_until(f, "changing", STAGE_PUBLISHED, NULL);
		assert_string_equal(st_str(pub, "publishedPath"), dest);
		json_decref(pub);
	}
	{
		json_t *missing = gates_missing_approvals(&f->cfg.gates, again);
		assert_int_equal(json_array_size(missing), 1);
		json_decref(missing);
	}
	assert_int_equal(decide(f, "changing", GATE_EV_REVIEW_APPROVE, "appr", digest, NULL), AL_ERR_CONFLICT);
	json_decref(again);
	json_decref(ds);
	free(digest);
	free(stage);
	free(csv);
	free(ws);
	free(dest);
}

static void test_reject_purges_staging(void **state)
{
	struct fixture *f = *state;
	json_t *ds = import_to_review(f, "to-reject"), *got;
	char *stage = staging_dir(f, ds), actions[512];

	assert_true(util_path_exists(stage));
	assert_int_equal(decide(f, "to-reject", GATE_EV_REVIEW_REJECT, "appr", NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(decide(f, "to-reject", GATE_EV_REVIEW_REJECT, "appr", NULL, "contains identifiable columns"),
			 AL_OK);
	got = reconcile_until(f, "to-reject", STAGE_PURGED, NULL);
	assert_string_equal(st_str(got, "message"), "contains identifiable columns");
	assert_false(util_path_exists(stage));
	audit_actions(f, "to-reject", actions, sizeof(actions));
	assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed,reject,purge");
	json_decref(got);
	json_decref(ds);
	free(stage);
}

/* A table that is not in the source: Failed, with a reason naming it, no
 * partial files; retry after the fix collects it as attempt 2. */
static void test_missing_table_fails_and_retry(void **state)
{
	struct fixture *f = *state;
	json_t *ds = create_ds(f, "needs-fix", "Import", "patients,visits"), *got, *audit = NULL, *out = NULL;
	char *stage = staging_dir(f, ds), *secrets = util_path_join(f->state_dir, "secrets"), *job = NULL;
	json_t *roles = json_pack("[s]", "data-engineer");
	struct gate_actor eng = { 0, "eng", roles };

	json_decref(ds);
	got = reconcile_until(f, "needs-fix", STAGE_FAILED, NULL);
	assert_string_equal(gates_data_state(got), DATASTATE_FAILED);
	if (!strstr(st_str(got, "message"), "visits"))
		fail_msg("the reason does not name the missing table: %s", st_str(got, "message"));
	assert_int_equal(count_entries(stage, "visits"), 0);
	assert_int_equal(count_entries(stage, ".visits"), 0);
	job = operator_job_name(got);
	assert_int_equal(count_entries(secrets, job), 0);
	free(job);

	/* The data engineer fixes the source and retries. */
	{
		sqlite3 *db = NULL;
		assert_int_equal(sqlite3_open(f->source_db, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "CREATE TABLE visits(id INTEGER); INSERT INTO visits VALUES (1);", NULL,
					      NULL, NULL),
				 SQLITE_OK);
		sqlite3_close(db);
	}
	assert_int_equal(gates_apply(&f->cfg.gates, got, GATE_EV_RETRY, &eng, NULL, &audit), AL_OK);
	assert_int_equal(store_update_status(f->store, got, audit, &out), AL_OK);
	json_decref(audit);
	json_decref(out);
	json_decref(got);
	got = reconcile_until(f, "needs-fix", STAGE_AWAITING_APPROVAL, NULL);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "status"), "attempt")), 2);
	{
		const char *name = json_string_value(json_object_get(json_object_get(json_object_get(got, "status"), "job"), "name"));
		assert_non_null(name);
		assert_true(strlen(name) > 2 && !strcmp(name + strlen(name) - 2, "-2"));
	}
	assert_non_null(manifest_file(got, "visits.csv"));
	json_decref(got);
	json_decref(roles);
	free(stage);
	free(secrets);
}

/* Preflight problems fail at once, without a job, naming what to fix. */
static void test_preflight_failures(void **state)
{
	struct fixture *f = *state;
	json_t *ds = create_ds(f, "no-objects", "Import", ""), *got;
	char *jobs = util_path_join(f->state_dir, "jobs");
	json_decref(ds);
	got = reconcile_until(f, "no-objects", STAGE_FAILED, NULL);
	assert_non_null(strstr(st_str(got, "message"), "spec.objects"));
	json_decref(got);

	/* A connection type this airlock cannot collect from. */
	ds = create_ds(f, "wrong-conn", "Import", "patients");
	json_object_set_new(json_array_get(json_object_get(json_object_get(ds, "spec"), "connections"), 0), "type",
			    json_string("oracle"));
	{
		json_t *out = NULL;
		assert_int_equal(store_update(f->store, ds, NULL, &out), AL_OK);
		json_decref(out);
	}
	json_decref(ds);
	got = reconcile_until(f, "wrong-conn", STAGE_FAILED, NULL);
	assert_non_null(strstr(st_str(got, "message"), "oracle"));
	json_decref(got);
	/* A connection credential that is not set (no credential store at all here). */
	ds = create_ds(f, "with-creds", "Import", "patients");
	json_object_set_new(json_array_get(json_object_get(json_object_get(ds, "spec"), "connections"), 0),
			    "credentials", json_pack("{s:s, s:s}", "userKey", "SourceUser", "passwordKey", "SourcePassword"));
	{
		json_t *out = NULL;
		assert_int_equal(store_update(f->store, ds, NULL, &out), AL_OK);
		json_decref(out);
	}
	json_decref(ds);
	got = reconcile_until(f, "with-creds", STAGE_FAILED, NULL);
	assert_non_null(strstr(st_str(got, "message"), "airlock secret set SourceUser"));
	json_decref(got);
	/* parquet is the dlt runner's only. */
	ds = create_ds(f, "parquet-native", "Import", "patients");
	json_object_set_new(json_object_get(ds, "spec"), "format", json_string("parquet"));
	{
		json_t *out = NULL;
		assert_int_equal(store_update(f->store, ds, NULL, &out), AL_OK);
		json_decref(out);
	}
	json_decref(ds);
	got = reconcile_until(f, "parquet-native", STAGE_FAILED, NULL);
	assert_non_null(strstr(st_str(got, "message"), "spec.runner: dlt"));
	json_decref(got);
	assert_int_equal(count_entries(jobs, "import-"), 0);
	/* The dlt runner on an airlock that has not set it up: Failed, saying
	 * how to set it up, once (not retried). */
	ds = create_ds(f, "dlt-missing", "Import", "patients");
	json_object_set_new(json_object_get(ds, "spec"), "runner", json_string("dlt"));
	{
		json_t *out = NULL;
		assert_int_equal(store_update(f->store, ds, NULL, &out), AL_OK);
		json_decref(out);
	}
	json_decref(ds);
	got = reconcile_until(f, "dlt-missing", STAGE_FAILED, NULL);
	assert_non_null(strstr(st_str(got, "message"), "scripts/dlt-venv.sh"));
	json_decref(got);
	assert_int_equal(count_entries(jobs, "import-"), 0);
	free(jobs);
}

/* An Uploaded datasource: stage Uploading with a staging volume; cleanup
 * after deletion removes the volume. */
static void test_uploaded_and_cleanup(void **state)
{
	struct fixture *f = *state;
	json_t *ds = create_ds(f, "upload-1", "Uploaded", "patients"), *got;
	char *stage = staging_dir(f, ds), *jobs = util_path_join(f->state_dir, "jobs");
	struct stat st;

	json_decref(ds);
	got = reconcile_until(f, "upload-1", STAGE_UPLOADING, NULL);
	assert_string_equal(gates_data_state(got), DATASTATE_READY);
	assert_int_equal(stat(stage, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 077, 0); /* private to the airlock */
	assert_null(json_object_get(json_object_get(got, "status"), "job"));
	assert_int_equal(count_entries(jobs, "import-"), 0);
	/* Uploading waits for the person: reconciling again changes nothing. */
	{
		int requeue = -1;
		json_t *again;
		assert_int_equal(operator_reconcile_datasource(&f->ctx, NS, "upload-1", &requeue), AL_OK);
		assert_int_equal(requeue, 0);
		again = get_ds(f, "upload-1");
		assert_true(json_equal(again, got));
		json_decref(again);
	}
	/* The datasource is deleted: cleanup removes its staging volume (twice is fine). */
	assert_int_equal(store_delete(f->store, KIND, NS, "upload-1", NULL, NULL), AL_OK);
	assert_int_equal(operator_cleanup_datasource(&f->ctx, got), AL_OK);
	assert_false(util_path_exists(stage));
	assert_int_equal(operator_cleanup_datasource(&f->ctx, got), AL_OK);
	/* A deleted datasource reconciles to nothing. */
	{
		int requeue = -1;
		assert_int_equal(operator_reconcile_datasource(&f->ctx, NS, "upload-1", &requeue), AL_OK);
		assert_int_equal(requeue, 0);
	}
	json_decref(got);
	free(stage);
	free(jobs);
}

/* Cleanup of an imported datasource removes its job and staging volume. */
static void test_cleanup_import(void **state)
{
	struct fixture *f = *state;
	json_t *ds = import_to_review(f, "to-delete");
	char *stage = staging_dir(f, ds), *jobs = util_path_join(f->state_dir, "jobs");
	assert_true(util_path_exists(stage));
	assert_int_equal(count_entries(jobs, "import-"), 1);
	assert_int_equal(operator_cleanup_datasource(&f->ctx, ds), AL_OK);
	assert_false(util_path_exists(stage));
	assert_int_equal(count_entries(jobs, "import-"), 0);
	json_decref(ds);
	free(stage);
	free(jobs);
}

/* Runs jobs through a wrapper standing in for airlock: the subcommand named
 * by $TEST_CRASH_JOB crashes (exit 3, a last line on stderr), the one named
 * by $TEST_NO_RESULT_JOB exits 0 without a result line; everything else
 * (the shim included) is the real airlock. */
static void use_fake_airlock(struct fixture *f)
{
	char *script = util_path_join(f->base, "fake-airlock.sh"), *text = NULL;
	assert_non_null(script);
	assert_true(asprintf(&text,
			     "#!/bin/sh\n"
			     "if [ -n \"$TEST_CRASH_JOB\" ] && [ \"$1\" = \"$TEST_CRASH_JOB\" ]; then\n"
			     "  echo \"simulated crash in $1\" >&2; exit 3\n"
			     "fi\n"
			     "if [ -n \"$TEST_NO_RESULT_JOB\" ] && [ \"$1\" = \"$TEST_NO_RESULT_JOB\" ]; then\n"
			     "  echo 'AIRLOCK-RESULT {\"passed\": tr'; echo 'all done'; exit 0\n"
			     "fi\n"
			     "exec '%s' \"$@\"\n",
			     airlock_bin) > 0);
	assert_int_equal(util_write_file_atomic(script, text, strlen(text), 0700), AL_OK);
	runtime_close(f->rt);
	f->rt = NULL;
	assert_int_equal(runtime_local_open(&f->rt, f->state_dir, f->cfg.staging_root, f->cfg.workspace_root, script),
			 AL_OK);
	f->ctx.runtime = f->rt;
	free(text);
	free(script);
}

/* A check job that crashes is not a failed check, but the data cannot go on:
 * Failed, with the job's reason; the job is gone. */
static void test_check_job_crash(void **state)
{
	struct fixture *f = *state;
	json_t *ds, *got;
	char *jobs = util_path_join(f->state_dir, "jobs"), *job, want[512], actions[512];

	use_fake_airlock(f);
	setenv("TEST_CRASH_JOB", "check-job", 1);
	ds = create_ds(f, "check-crash", "Import", "patients");
	job = operator_check_job_name(ds);
	got = reconcile_until(f, "check-crash", STAGE_FAILED, NULL);
	unsetenv("TEST_CRASH_JOB");
	snprintf(want, sizeof(want), "the check job %s failed: exit status 3: simulated crash in check-job", job);
	assert_string_equal(st_str(got, "message"), want);
	audit_actions(f, "check-crash", actions, sizeof(actions));
	assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-failed");
	assert_int_equal(count_entries(jobs, "check-"), 0);
	assert_int_equal(count_entries(jobs, "import-"), 1);
	json_decref(got);
	json_decref(ds);

	/* A job that ends well but says nothing usable is treated the same. */
	setenv("TEST_NO_RESULT_JOB", "check-job", 1);
	ds = create_ds(f, "check-mute", "Import", "patients");
	got = reconcile_until(f, "check-mute", STAGE_FAILED, NULL);
	unsetenv("TEST_NO_RESULT_JOB");
	if (!strstr(st_str(got, "message"), "gave no usable result: the job ended without a result line; its last "
					     "line was: all done"))
		fail_msg("unexpected reason: %s", st_str(got, "message"));
	assert_int_equal(count_entries(jobs, "check-"), 0);
	json_decref(got);
	json_decref(ds);
	free(job);
	free(jobs);
}

/* A publish job that crashes ends the datasource Failed (nothing published,
 * the staging data kept for a retry); its job and manifest secret are gone. */
static void test_publish_job_crash(void **state)
{
	struct fixture *f = *state;
	json_t *ds, *got;
	char *jobs = util_path_join(f->state_dir, "jobs"), *secrets = util_path_join(f->state_dir, "secrets");
	char *ws = util_path_join(f->cfg.workspace_root, "ws1"), *dest = util_path_join(ws, "pub-crash");
	char *job, *stage, want[512], actions[512];

	use_fake_airlock(f);
	ds = import_to_review(f, "pub-crash");
	stage = staging_dir(f, ds);
	assert_int_equal(decide(f, "pub-crash", GATE_EV_REVIEW_APPROVE, "appr",
				json_string_value(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "digest")),
				NULL),
			 AL_OK);
	json_decref(ds);
	ds = get_ds(f, "pub-crash");
	job = operator_publish_job_name(ds);
	setenv("TEST_CRASH_JOB", "publish-job", 1);
	got = reconcile_until(f, "pub-crash", STAGE_FAILED, NULL);
	unsetenv("TEST_CRASH_JOB");
	snprintf(want, sizeof(want), "the publish job %s failed: exit status 3: simulated crash in publish-job", job);
	assert_string_equal(st_str(got, "message"), want);
	assert_string_equal(gates_data_state(got), DATASTATE_FAILED);
	audit_actions(f, "pub-crash", actions, sizeof(actions));
	assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed,approve,collect-failed");
	assert_false(util_path_exists(dest));
	assert_true(util_path_exists(stage));
	assert_int_equal(count_entries(jobs, "publish-"), 0);
	assert_int_equal(count_entries(secrets, ""), 0);
	json_decref(got);
	json_decref(ds);
	free(job);
	free(stage);
	free(jobs);
	free(secrets);
	free(ws);
	free(dest);
}

/* Unsafe content (a symbolic link) fails the checks, without a manifest. */
static void test_unsafe_content_fails_checks(void **state)
{
	struct fixture *f = *state;
	json_t *ds = create_ds(f, "uploaded-link", "Uploaded", "patients"), *got, *audit = NULL, *out = NULL;
	json_t *roles = json_pack("[s]", "researcher");
	struct gate_actor eng = { 0, "eng", roles };
	char *stage = staging_dir(f, ds), *link;

	json_decref(ds);
	got = reconcile_until(f, "uploaded-link", STAGE_UPLOADING, NULL);
	link = util_path_join(stage, "passwd.csv");
	assert_int_equal(symlink("/etc/passwd", link), 0);
	assert_int_equal(gates_apply(&f->cfg.gates, got, GATE_EV_UPLOAD_COMPLETE, &eng, NULL, &audit), AL_OK);
	assert_int_equal(store_update_status(f->store, got, audit, &out), AL_OK);
	json_decref(audit);
	json_decref(out);
	json_decref(got);
	got = reconcile_until(f, "uploaded-link", STAGE_FAILED, NULL);
	if (!strstr(st_str(got, "message"), "symbolic link"))
		fail_msg("the reason does not name the symbolic link: %s", st_str(got, "message"));
	assert_null(json_object_get(json_object_get(got, "status"), "manifest"));
	json_decref(got);
	json_decref(roles);
	free(link);
	free(stage);
}

/* A check job started by a reconcile that then died is found, not started
 * again: job_start's AL_ERR_EXISTS is "already started". */
static void test_check_job_started_once(void **state)
{
	struct fixture *f = *state;
	json_t *ds = create_ds(f, "once", "Import", "patients"), *got;
	char *jobs = util_path_join(f->state_dir, "jobs");
	int64_t deadline = util_monotonic_ms() + TIMEOUT_MS;
	int requeue = 0, calls = 0;

	json_decref(ds);
	/* to Checking, and the check job started */
	for (;;) {
		assert_int_equal(operator_reconcile_datasource(&f->ctx, NS, "once", &requeue), AL_OK);
		got = get_ds(f, "once");
		if (!strcmp(gates_stage(got), STAGE_CHECKING) && count_entries(jobs, "check-") == 1) {
			json_decref(got);
			break;
		}
		json_decref(got);
		assert_true(util_monotonic_ms() < deadline);
		sleep_ms(requeue > 0 ? requeue : 10);
	}
	/* Reconciles while it runs (or after it finished) never start a second one. */
	got = reconcile_until(f, "once", STAGE_AWAITING_APPROVAL, &calls);
	assert_int_equal(count_entries(jobs, "check-"), 0);
	{
		char actions[512];
		audit_actions(f, "once", actions, sizeof(actions));
		assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed");
	}
	json_decref(got);
	free(jobs);
}

/* Cleanup after deletion also removes check and publish jobs still there
 * (a crash between recording a result and deleting the job). */
static void test_cleanup_leftover_jobs(void **state)
{
	struct fixture *f = *state;
	json_t *ds = import_to_review(f, "leftovers");
	char *jobs = util_path_join(f->state_dir, "jobs"), *check = operator_check_job_name(ds);
	char *pub = operator_publish_job_name(ds), *secret = NULL;
	json_t *m = json_pack("{s:s}", "digest", "x");
	const char *args[] = { "check-job", "--help", NULL };
	struct job_spec spec = { .name = check, .args = args };
	struct job_status st;

	assert_int_equal(runtime_job_start(f->rt, &spec), AL_OK);
	spec.name = pub;
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_OK);
	assert_true(asprintf(&secret, "%s-manifest", pub) > 0);
	assert_int_equal(runtime_secret_ensure(f->rt, secret, m), AL_OK);
	assert_int_equal(count_entries(jobs, ""), 3);
	assert_int_equal(operator_cleanup_datasource(&f->ctx, ds), AL_OK);
	assert_int_equal(count_entries(jobs, ""), 0);
	{
		char *secrets = util_path_join(f->state_dir, "secrets");
		assert_int_equal(count_entries(secrets, ""), 0);
		free(secrets);
	}
	assert_int_equal(runtime_job_get(f->rt, check, &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	json_decref(m);
	json_decref(ds);
	free(secret);
	free(check);
	free(pub);
	free(jobs);
}

/* The controller drives a new datasource to AwaitingApproval by itself. */
static void test_controller(void **state)
{
	struct fixture *f = *state;
	struct controller *c = NULL;
	int64_t deadline;
	json_t *ds;
	int reached = 0;

	assert_int_equal(controller_start(&c, &f->ctx, 30), AL_OK);
	deadline = util_monotonic_ms() + 10000;
	while (!controller_synced(c) && util_monotonic_ms() < deadline)
		sleep_ms(10);
	assert_true(controller_synced(c));
	ds = create_ds(f, "by-controller", "Import", "patients,attendances");
	json_decref(ds);
	deadline = util_monotonic_ms() + TIMEOUT_MS;
	while (util_monotonic_ms() < deadline) {
		ds = get_ds(f, "by-controller");
		reached = !strcmp(gates_stage(ds), STAGE_AWAITING_APPROVAL);
		if (!strcmp(gates_stage(ds), STAGE_FAILED))
			fail_msg("by-controller failed: %s", st_str(ds, "message"));
		json_decref(ds);
		if (reached)
			break;
		sleep_ms(50);
	}
	controller_stop(c);
	assert_true(reached);
	{
		char actions[512];
		audit_actions(f, "by-controller", actions, sizeof(actions));
		assert_string_equal(actions, "submit,collect-start,collect-succeeded,checks-passed");
	}
	controller_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_names),
		cmocka_unit_test_setup_teardown(test_import_approve_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_data_is_not_published, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reject_purges_staging, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_table_fails_and_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preflight_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uploaded_and_cleanup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_import, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_job_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_job_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_content_fails_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_job_started_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_leftover_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_controller, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
