/*
 * The AnalyticsWorkspaceDataSource reconciler: the seed's operator steps for
 * Import (volume, credentials, job, wait, Completed/Failed) and Uploaded
 * (staging volume), followed by the automated checks, publishing after
 * approval and purging after rejection.
 */
#include "operator/operator.h"
#include "auth/credstore.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/checks.h"
#include "gates/gates.h"
#include "operator/publish.h"
#include "rocrate/manifest.h"

#include <stdlib.h>
#include <string.h>

#define WORKSPACE_LABEL "xlscsde.nhs.uk/workspace"

static const char *supported_runner_types[] = { "sqlite", NULL };

static const char *uid_of(const json_t *ds)
{
	const char *uid = json_string_value(json_object_get(json_object_get(ds, "metadata"), "uid"));
	return uid ? uid : "";
}

static long attempt_of(const json_t *ds)
{
	json_int_t a = json_integer_value(json_object_get(json_object_get(ds, "status"), "attempt"));
	return a < 1 ? 1 : (long)a;
}

char *operator_volume_name(const json_t *ds)
{
	struct buf b;
	buf_init(&b, 256);
	if (buf_appendf(&b, "ds-%s", uid_of(ds))) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

char *operator_job_name(const json_t *ds)
{
	struct buf b;
	buf_init(&b, 256);
	if (buf_appendf(&b, "import-%s-%ld", uid_of(ds), attempt_of(ds))) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

static char *suffixed(const char *base, const char *suffix)
{
	struct buf b;
	buf_init(&b, 512);
	if (buf_appendf(&b, "%s%s", base, suffix)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* Fires a system event and writes the status with its audit record. */
static int transition(struct operator_ctx *ctx, json_t *ds, enum gate_event ev, const struct gate_input *in)
{
	struct gate_actor actor = { .system = 1, .name = OPERATOR_ACTOR, .roles = NULL };
	json_t *audit = NULL, *out = NULL;
	int rc;

	if ((rc = gates_apply(&ctx->cfg->gates, ds, ev, &actor, in, &audit)))
		return rc;
	rc = store_update_status(ctx->store, ds, audit, &out);
	if (!rc)
		log_info("datasource %s: %s -> stage %s, dataState %s", json_string_value(json_object_get(json_object_get(ds, "metadata"), "name")),
			 gate_event_name(ev), *gates_stage(ds) ? gates_stage(ds) : "<unset>", gates_data_state(ds));
	json_decref(audit);
	json_decref(out);
	return rc;
}

static int fail(struct operator_ctx *ctx, json_t *ds, const char *reason)
{
	struct gate_input in = { .reason = reason };
	return transition(ctx, ds, GATE_EV_COLLECT_FAILED, &in);
}

static const json_t *find_connection(const json_t *ds, const char *name)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(ds, "spec"), "connections"), i, c) {
		const char *n = json_string_value(json_object_get(c, "name"));
		if (n && name && !strcmp(n, name))
			return c;
	}
	return NULL;
}

/* Checks that an Import datasource can work before anything is started; on a
 * problem writes a reason a data engineer can act on into *why. */
static int import_preflight(struct operator_ctx *ctx, const json_t *ds, struct buf *why)
{
	const json_t *objects = json_object_get(json_object_get(ds, "spec"), "objects");
	size_t i;
	json_t *o;

	if (json_array_size(objects) == 0)
		return buf_appends(why, "spec.objects is empty: list the tables to collect");
	json_array_foreach(objects, i, o) {
		const char *table = json_string_value(json_object_get(json_object_get(o, "table"), "name"));
		const char *conn_name = json_string_value(json_object_get(json_object_get(o, "table"), "connection"));
		const json_t *conn = find_connection(ds, conn_name);
		const char *type;
		int ok = 0;
		if (!conn)
			return buf_appendf(why, "spec.objects[%zu]: table %s names connection '%s', which is not in spec.connections",
					   i, table ? table : "?", conn_name ? conn_name : "");
		type = json_string_value(json_object_get(conn, "type"));
		for (size_t k = 0; supported_runner_types[k]; k++)
			if (type && !strcmp(type, supported_runner_types[k]))
				ok = 1;
		if (!ok)
			return buf_appendf(why, "connection '%s' has type '%s', which this airlock cannot collect from yet (supported: sqlite)",
					   conn_name, type ? type : "");
	}
	(void)ctx;
	return AL_OK;
}

/* The job's credentials: every userKey/passwordKey the connections name,
 * looked up in the credential store. Missing ones are named in *why. */
static int gather_credentials(struct operator_ctx *ctx, const json_t *ds, json_t **out, struct buf *why)
{
	json_t *creds = json_object();
	size_t i;
	json_t *c;
	int rc = AL_OK;

	*out = NULL;
	if (!creds)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	json_array_foreach(json_object_get(json_object_get(ds, "spec"), "connections"), i, c) {
		const json_t *cr = json_object_get(c, "credentials");
		const char *keys[2] = { json_string_value(json_object_get(cr, "userKey")),
					json_string_value(json_object_get(cr, "passwordKey")) };
		for (int k = 0; k < 2; k++) {
			char *value = NULL;
			if (!keys[k] || json_object_get(creds, keys[k]))
				continue;
			rc = ctx->creds ? credstore_get(ctx->creds, keys[k], &value) : AL_ERR_NOT_FOUND;
			if (rc == AL_ERR_NOT_FOUND) {
				rc = buf_appendf(why, "credential '%s' (connection '%s') is not set: an admin or data engineer can set it with 'airlock secret set %s'",
						 keys[k], json_string_value(json_object_get(c, "name")), keys[k]);
				json_decref(creds);
				return rc;
			}
			if (rc) {
				json_decref(creds);
				return rc;
			}
			json_object_set_new(creds, keys[k], json_string(value));
			credstore_value_free(value);
		}
	}
	*out = creds;
	return AL_OK;
}

static int start_import(struct operator_ctx *ctx, json_t *ds)
{
	struct buf why;
	char *volume = NULL, *job = NULL, *path = NULL;
	int rc;

	buf_init(&why, 4096);
	if ((rc = import_preflight(ctx, ds, &why)))
		goto out;
	if (why.len) {
		rc = fail(ctx, ds, why.ptr);
		goto out;
	}
	volume = operator_volume_name(ds);
	job = operator_job_name(ds);
	if (!volume || !job) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = runtime_volume_ensure(ctx->runtime, VOLUME_STAGING, volume, &path)))
		goto out;
	{
		struct gate_input in = { .job_name = job };
		rc = transition(ctx, ds, GATE_EV_COLLECT_START, &in);
	}
out:
	free(volume);
	free(job);
	free(path);
	buf_free(&why);
	return rc;
}

static int start_upload(struct operator_ctx *ctx, json_t *ds)
{
	char *volume = operator_volume_name(ds), *path = NULL;
	int rc;
	if (!volume)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = runtime_volume_ensure(ctx->runtime, VOLUME_STAGING, volume, &path);
	if (!rc)
		rc = transition(ctx, ds, GATE_EV_COLLECT_START, NULL);
	free(volume);
	free(path);
	return rc;
}

static void delete_job_secrets(struct operator_ctx *ctx, const char *job)
{
	char *creds = suffixed(job, "-credentials");
	char *def = suffixed(job, "-definition");
	if (creds && runtime_secret_delete(ctx->runtime, creds))
		log_warn("job %s: cannot remove its credentials: %s", job, al_error_message());
	if (def && runtime_secret_delete(ctx->runtime, def))
		log_warn("job %s: cannot remove its definition: %s", job, al_error_message());
	free(creds);
	free(def);
}

/* The datasource as the runner reads it: apiVersion, kind, metadata, spec;
 * never status. */
static json_t *runner_definition(const json_t *ds)
{
	json_t *def = json_pack("{s:O, s:O, s:{s:O, s:O?}, s:O}", "apiVersion", json_object_get(ds, "apiVersion"),
				"kind", json_object_get(ds, "kind"), "metadata", "name",
				json_object_get(json_object_get(ds, "metadata"), "name"), "namespace",
				json_object_get(json_object_get(ds, "metadata"), "namespace"), "spec",
				json_object_get(ds, "spec"));
	return def;
}

static int run_import_job(struct operator_ctx *ctx, json_t *ds, const char *job, int *requeue_ms)
{
	struct job_status st = { 0 };
	struct buf why;
	char *volume = NULL, *vol_path = NULL, *cred_name = NULL, *def_name = NULL;
	char *cred_path = NULL, *def_path = NULL;
	json_t *creds = NULL, *def = NULL;
	int rc;

	buf_init(&why, 4096);
	if ((rc = runtime_job_get(ctx->runtime, job, &st)))
		goto out;
	switch (st.phase) {
	case JOB_RUNNING:
		*requeue_ms = 500;
		goto out;
	case JOB_SUCCEEDED:
		delete_job_secrets(ctx, job);
		rc = transition(ctx, ds, GATE_EV_COLLECT_SUCCEEDED, NULL);
		goto out;
	case JOB_FAILED: {
		struct gate_input in = { .reason = st.reason ? st.reason : "the import job failed" };
		delete_job_secrets(ctx, job);
		rc = transition(ctx, ds, GATE_EV_COLLECT_FAILED, &in);
		goto out;
	}
	case JOB_NOT_FOUND:
		break;
	}
	/* Not started yet (or we died before starting it): start it now. */
	volume = operator_volume_name(ds);
	cred_name = suffixed(job, "-credentials");
	def_name = suffixed(job, "-definition");
	def = runner_definition(ds);
	if (!volume || !cred_name || !def_name || !def) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = gather_credentials(ctx, ds, &creds, &why)))
		goto out;
	if (why.len) {
		rc = fail(ctx, ds, why.ptr);
		goto out;
	}
	if ((rc = runtime_volume_ensure(ctx->runtime, VOLUME_STAGING, volume, &vol_path)) ||
	    (rc = runtime_secret_ensure(ctx->runtime, cred_name, creds, &cred_path)) ||
	    (rc = runtime_secret_ensure(ctx->runtime, def_name, def, &def_path)))
		goto out;
	{
		char *argv[] = { (char *)ctx->self_exe, "run-job", "--datasource", def_path, "--output", vol_path,
				 "--credentials", cred_path, NULL };
		struct job_spec spec = { .name = job, .argv = argv, .volume = volume, .secret = cred_name,
					 .timeout_seconds = ctx->cfg->job_timeout_seconds };
		rc = runtime_job_start(ctx->runtime, &spec);
		if (rc == AL_ERR_EXISTS)
			rc = AL_OK; /* started by an earlier attempt of this reconcile */
	}
	*requeue_ms = 200;
out:
	job_status_free(&st);
	json_decref(creds);
	json_decref(def);
	free(volume);
	free(vol_path);
	free(cred_name);
	free(def_name);
	free(cred_path);
	free(def_path);
	buf_free(&why);
	return rc;
}

static int run_checks(struct operator_ctx *ctx, json_t *ds)
{
	char *volume = operator_volume_name(ds), *path = NULL, *reason = NULL;
	json_t *manifest = NULL, *checks = NULL;
	int rc, passed = 0;

	if (!volume)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((rc = runtime_volume_ensure(ctx->runtime, VOLUME_STAGING, volume, &path)))
		goto out;
	rc = manifest_build(path, &manifest);
	if (rc == AL_ERR_INVALID || rc == AL_ERR_TOO_LARGE) {
		/* Unsafe or oversized content (a symlink, a device, too many files):
		 * a check failure, not a crash loop. */
		char *why = util_strdup(al_error_message());
		struct gate_input in = { .reason = why ? why : "the data failed the checks" };
		rc = transition(ctx, ds, GATE_EV_CHECKS_FAILED, &in);
		free(why);
		goto out;
	}
	if (rc || (rc = checks_run(ctx->cfg, manifest, &checks, &passed, &reason)))
		goto out;
	{
		struct gate_input in = { .manifest = manifest, .checks = checks, .reason = reason };
		rc = transition(ctx, ds, passed ? GATE_EV_CHECKS_PASSED : GATE_EV_CHECKS_FAILED, &in);
	}
out:
	json_decref(manifest);
	json_decref(checks);
	free(reason);
	free(volume);
	free(path);
	return rc;
}

static int publish(struct operator_ctx *ctx, json_t *ds)
{
	const char *ws = json_string_value(json_object_get(json_object_get(json_object_get(ds, "metadata"), "labels"), WORKSPACE_LABEL));
	const char *name = json_string_value(json_object_get(json_object_get(ds, "metadata"), "name"));
	const json_t *manifest = json_object_get(json_object_get(ds, "status"), "manifest");
	char *volume = operator_volume_name(ds), *src = NULL, *ws_path = NULL, *dest = NULL;
	int rc;

	if (!volume)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (!ws || !*ws) {
		struct gate_input in = { .reason = "no workspace: the datasource has no " WORKSPACE_LABEL " label" };
		free(volume);
		return transition(ctx, ds, GATE_EV_DATA_CHANGED, &in);
	}
	if ((rc = runtime_volume_ensure(ctx->runtime, VOLUME_STAGING, volume, &src)) ||
	    (rc = runtime_volume_ensure(ctx->runtime, VOLUME_WORKSPACE, ws, &ws_path)))
		goto out;
	dest = util_path_join(ws_path, name);
	if (!dest) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = publish_copy_verified(src, manifest, dest);
	if (rc == AL_ERR_CONFLICT) {
		/* Copy the message: the thread's error buffer is reused below. */
		char *why = util_strdup(al_error_message());
		struct gate_input in = { .reason = why ? why : "the data changed" };
		rc = transition(ctx, ds, GATE_EV_DATA_CHANGED, &in);
		free(why);
		goto out;
	}
	if (rc)
		goto out;
	{
		struct gate_input in = { .published_path = dest };
		if ((rc = transition(ctx, ds, GATE_EV_PUBLISH, &in)))
			goto out;
	}
	/* The data now lives in the workspace; the staging copy has done its job. */
	if (runtime_volume_delete(ctx->runtime, VOLUME_STAGING, volume))
		log_warn("cannot remove staging volume %s: %s", volume, al_error_message());
out:
	free(volume);
	free(src);
	free(ws_path);
	free(dest);
	return rc;
}

static int purge(struct operator_ctx *ctx, json_t *ds)
{
	char *volume = operator_volume_name(ds);
	int rc;
	if (!volume)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = runtime_volume_delete(ctx->runtime, VOLUME_STAGING, volume);
	if (!rc)
		rc = transition(ctx, ds, GATE_EV_PURGE, NULL);
	free(volume);
	return rc;
}

int operator_has_work(const json_t *ds)
{
	const char *stage = gates_stage(ds);
	return (!strcmp(stage, STAGE_NONE) && !strcmp(gates_data_state(ds), DATASTATE_READY)) ||
	       !strcmp(stage, STAGE_COLLECTING) || !strcmp(stage, STAGE_CHECKING) ||
	       !strcmp(stage, STAGE_APPROVED) || !strcmp(stage, STAGE_REJECTED);
}

int operator_reconcile_datasource(struct operator_ctx *ctx, const char *ns, const char *name, int *requeue_ms)
{
	json_t *ds = NULL;
	const char *stage, *state, *type, *job;
	int rc;

	*requeue_ms = 0;
	rc = store_get(ctx->store, "AnalyticsWorkspaceDataSource", ns, name, &ds);
	if (rc == AL_ERR_NOT_FOUND)
		return AL_OK;
	if (rc)
		return rc;
	stage = gates_stage(ds);
	state = gates_data_state(ds);
	type = json_string_value(json_object_get(json_object_get(ds, "spec"), "type"));
	if (!type)
		type = "";

	if (!strcmp(stage, STAGE_NONE) && !strcmp(state, DATASTATE_READY)) {
		if (!strcmp(type, "Import"))
			rc = start_import(ctx, ds);
		else if (!strcmp(type, "Uploaded"))
			rc = start_upload(ctx, ds);
		else
			rc = fail(ctx, ds, "spec.type is not one this airlock collects (Import, Uploaded)");
	} else if (!strcmp(stage, STAGE_COLLECTING)) {
		job = json_string_value(json_object_get(json_object_get(json_object_get(ds, "status"), "job"), "name"));
		if (!job)
			rc = fail(ctx, ds, "collection started without a job name");
		else
			rc = run_import_job(ctx, ds, job, requeue_ms);
	} else if (!strcmp(stage, STAGE_CHECKING)) {
		rc = run_checks(ctx, ds);
	} else if (!strcmp(stage, STAGE_APPROVED)) {
		rc = publish(ctx, ds);
	} else if (!strcmp(stage, STAGE_REJECTED)) {
		rc = purge(ctx, ds);
	}
	json_decref(ds);
	return rc;
}

int operator_cleanup_datasource(struct operator_ctx *ctx, const json_t *deleted)
{
	char *volume = operator_volume_name(deleted);
	const char *job = json_string_value(json_object_get(json_object_get(json_object_get(deleted, "status"), "job"), "name"));
	int rc = AL_OK;

	if (!volume)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (job) {
		delete_job_secrets(ctx, job);
		if ((rc = runtime_job_delete(ctx->runtime, job)))
			log_warn("cannot remove job %s: %s", job, al_error_message());
	}
	if ((rc = runtime_volume_delete(ctx->runtime, VOLUME_STAGING, volume)))
		log_warn("cannot remove staging volume %s: %s", volume, al_error_message());
	free(volume);
	return rc;
}
