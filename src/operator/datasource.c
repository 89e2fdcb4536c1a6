/*
 * The AnalyticsWorkspaceDataSource reconciler: the seed's operator steps for
 * Import (volume, credentials, job, wait, Completed/Failed) and Uploaded
 * (staging volume), followed by the automated checks, publishing after
 * approval and purging after rejection.
 *
 * Every step that touches data runs as a job through the runtime, because in
 * Kubernetes the operator cannot read volumes: the import job (run-job), the
 * check job (check-job) and the publish job (publish-job). Jobs are described
 * by subcommand and mounts only (runtime.h); the check and publish jobs hand
 * their result back as an AIRLOCK-RESULT line (jobresult.h).
 *
 * Job names are deterministic: import-<uid>-<attempt>, and
 * check-/publish-<uid>-<attempt>-<n>, where n is status.dataChanges (each
 * data-changed sends the data back to Checking under new job names, so a
 * finished job of an earlier round is never mistaken for the current one).
 * A check or publish job is deleted, with its secret, once its result is
 * recorded; should we die in between, the next stage deletes it.
 *
 * Everything made for a datasource is made with the datasource as its owner
 * (struct runtime_owner: a Kubernetes runtime gives it owner references),
 * except the workspace's volume. An Uploaded datasource also gets an
 * uploader (runtime_uploader_ensure), named upload-<uid>.
 */
#include "operator/operator.h"
#include "auth/credstore.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "gates/gates.h"
#include "operator/jobresult.h"
#include "runner/source.h"

#include <stdlib.h>
#include <string.h>

#define WORKSPACE_LABEL "xlscsde.nhs.uk/workspace"

/* What the dlt runner (runners/dlt) collects from; keep in step with it. The
 * native runner's are its sources' (runner/source.h). */
static const char *const dlt_runner_types[] = { "sqlite", "postgresql", "postgres", "mysql", "mariadb",
						"mssql", "sqlserver", "databricks", "https", NULL };

/* The runner and the output format of an Import: spec.runner (else the
 * deployment's default) and spec.format (else csv). */
static int uses_dlt(const struct operator_ctx *ctx, const json_t *ds)
{
	const char *r = json_string_value(json_object_get(json_object_get(ds, "spec"), "runner"));
	return r ? !strcmp(r, "dlt") : ctx->cfg->default_runner_dlt;
}

static const char *output_format(const json_t *ds)
{
	const char *f = json_string_value(json_object_get(json_object_get(ds, "spec"), "format"));
	return f ? f : "csv";
}

static int runner_supports(const struct operator_ctx *ctx, const json_t *ds, const char *type)
{
	if (!type)
		return 0;
	if (!uses_dlt(ctx, ds))
		return source_find(type) != NULL;
	for (size_t k = 0; dlt_runner_types[k]; k++)
		if (!strcmp(type, dlt_runner_types[k]))
			return 1;
	return 0;
}

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

static char *import_job_name(const json_t *ds, long attempt)
{
	struct buf b;
	buf_init(&b, 256);
	if (buf_appendf(&b, "import-%s-%ld", uid_of(ds), attempt)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

char *operator_job_name(const json_t *ds)
{
	return import_job_name(ds, attempt_of(ds));
}

static long data_changes_of(const json_t *ds)
{
	json_int_t n = json_integer_value(json_object_get(json_object_get(ds, "status"), "dataChanges"));
	return n < 0 ? 0 : (long)n;
}

static char *round_job_name(const char *kind, const json_t *ds, long attempt, long round)
{
	struct buf b;
	buf_init(&b, 256);
	if (buf_appendf(&b, "%s-%s-%ld-%ld", kind, uid_of(ds), attempt, round)) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

char *operator_check_job_name(const json_t *ds)
{
	return round_job_name("check", ds, attempt_of(ds), data_changes_of(ds));
}

char *operator_publish_job_name(const json_t *ds)
{
	return round_job_name("publish", ds, attempt_of(ds), data_changes_of(ds));
}

/* The uploader of an Uploaded datasource: upload-<uid> (a DNS label, as it
 * names a Kubernetes Service). */
static char *uploader_name(const json_t *ds)
{
	struct buf b;
	buf_init(&b, 256);
	if (buf_appendf(&b, "upload-%s", uid_of(ds))) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* The datasource as the owner of what the runtime makes for it (a
 * Kubernetes runtime gives those children owner references); NULL when it
 * cannot be one. Points into ds. */
static const struct runtime_owner *owner_of(const json_t *ds, struct runtime_owner *o)
{
	return runtime_owner_from_object(o, ds) == AL_OK ? o : NULL;
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
	/* The caller goes on from what was written (its new resourceVersion). */
	if (!rc && out && json_object_update(ds, out))
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	if (!rc) {
		log_info("datasource %s: %s -> stage %s, dataState %s", json_string_value(json_object_get(json_object_get(ds, "metadata"), "name")),
			 gate_event_name(ev), *gates_stage(ds) ? gates_stage(ds) : "<unset>", gates_data_state(ds));
		if (ctx->on_transition)
			ctx->on_transition(ctx->on_transition_ud, out ? out : ds, gate_event_name(ev),
					   ev == GATE_EV_COLLECT_FAILED || ev == GATE_EV_CHECKS_FAILED ||
						   ev == GATE_EV_DATA_CHANGED);
	}
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
	if (!strcmp(output_format(ds), "parquet") && !uses_dlt(ctx, ds))
		return buf_appends(why, "spec.format parquet is written by the dlt runner only: set spec.runner: dlt, "
					"or spec.format csv or csv.gz");
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
		ok = runner_supports(ctx, ds, type);
		if (!ok && uses_dlt(ctx, ds))
			return buf_appendf(why, "connection '%s' has type '%s', which the dlt runner cannot collect from "
						"(supported: sqlite, postgresql, mysql, mariadb, mssql, databricks, https)",
					   conn_name, type ? type : "");
		if (!ok)
			return buf_appendf(why, "connection '%s' has type '%s', which this airlock cannot collect from "
						"(supported: %s)", conn_name, type ? type : "", source_types());
	}
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
			if (ctx->cred_lookup)
				rc = ctx->cred_lookup(ctx->cred_lookup_ud, keys[k], &value);
			else
				rc = ctx->creds ? credstore_get(ctx->creds, keys[k], &value) : AL_ERR_NOT_FOUND;
			if (rc == AL_ERR_NOT_FOUND && ctx->cred_lookup) {
				/* The lookup's message says where it looked and what to do. */
				rc = buf_appendf(why, "credential '%s' (connection '%s') is not set: %s", keys[k],
						 json_string_value(json_object_get(c, "name")), al_error_message());
				json_decref(creds);
				return rc;
			}
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
	{
		struct runtime_owner o;
		if ((rc = runtime_volume_ensure_owned(ctx->runtime, VOLUME_STAGING, volume, owner_of(ds, &o), &path)))
			goto out;
	}
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
	char *volume = operator_volume_name(ds), *uploader = uploader_name(ds), *path = NULL;
	struct runtime_owner o;
	const struct runtime_owner *owner = owner_of(ds, &o);
	int rc;
	if (!volume || !uploader) {
		free(volume);
		free(uploader);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	/* The uploader first: in Kubernetes it creates the staging claim of
	 * the upload storage class, which volume_ensure then finds. */
	rc = runtime_uploader_ensure(ctx->runtime, uploader, volume, owner);
	if (!rc)
		rc = runtime_volume_ensure_owned(ctx->runtime, VOLUME_STAGING, volume, owner, &path);
	if (!rc)
		rc = transition(ctx, ds, GATE_EV_COLLECT_START, NULL);
	free(volume);
	free(uploader);
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

/* How soon to look again at a job that is running, or was just started.
 * The embedded airlock polls its child processes; the Kubernetes operator
 * is woken by its Job watch and polls only as a safety net (job_poll_ms). */
static int poll_running_ms(const struct operator_ctx *ctx)
{
	return ctx->job_poll_ms > 0 ? ctx->job_poll_ms : 500;
}

static int poll_started_ms(const struct operator_ctx *ctx)
{
	return ctx->job_poll_ms > 0 ? ctx->job_poll_ms : 200;
}

/* `entered`: this very call recorded Collecting a moment ago, so the job
 * (named after this attempt, started only in Collecting) cannot exist yet. */
static int run_import_job(struct operator_ctx *ctx, json_t *ds, const char *job, int entered, int *requeue_ms)
{
	struct job_status st = { 0 };
	struct runtime_owner owner;
	struct buf why;
	char *volume = NULL, *cred_name = NULL, *def_name = NULL;
	json_t *creds = NULL, *def = NULL;
	int rc;

	buf_init(&why, 4096);
	if (entered)
		st.phase = JOB_NOT_FOUND;
	else if ((rc = runtime_job_get(ctx->runtime, job, &st)))
		goto out;
	switch (st.phase) {
	case JOB_RUNNING:
		*requeue_ms = poll_running_ms(ctx);
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
	if ((rc = runtime_volume_ensure_owned(ctx->runtime, VOLUME_STAGING, volume, owner_of(ds, &owner), NULL)) ||
	    (rc = runtime_secret_ensure_owned(ctx->runtime, cred_name, creds, owner_of(ds, &owner))) ||
	    (rc = runtime_secret_ensure_owned(ctx->runtime, def_name, def, owner_of(ds, &owner))))
		goto out;
	{
		static const char *const args[] = { "run-job", NULL };
		static const char *const no_args[] = { NULL };
		int dlt = uses_dlt(ctx, ds);
		struct job_spec spec = {
			.owner = owner_of(ds, &owner),
			.name = job,
			.args = dlt ? no_args : args,
			.image = dlt ? JOB_IMAGE_DLT : JOB_IMAGE_AIRLOCK,
			.env = { { .name = "AIRLOCK_OUTPUT_FORMAT", .value = output_format(ds) } },
			.mounts = { { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_STAGING, .name = volume, .env = "AIRLOCK_OUTPUT_DIR" },
				    { .kind = JOB_MOUNT_SECRET, .name = def_name, .env = "AIRLOCK_DATASOURCE_FILE" },
				    { .kind = JOB_MOUNT_SECRET, .name = cred_name, .env = "AIRLOCK_CREDENTIALS_FILE" } },
			.timeout_seconds = ctx->cfg->job_timeout_seconds,
		};
		rc = runtime_job_start(ctx->runtime, &spec);
		if (rc == AL_ERR_EXISTS)
			rc = AL_OK; /* started by an earlier attempt of this reconcile */
		else if (rc == AL_ERR_INVALID) {
			/* A job this runtime refuses (say, the dlt runner is not set
			 * up here) will never start: fail with why, do not retry. */
			char *why_not = util_strdup(al_error_message());
			delete_job_secrets(ctx, job);
			rc = fail(ctx, ds, why_not ? why_not : "the runtime refused the import job");
			free(why_not);
			goto out;
		}
	}
	*requeue_ms = poll_started_ms(ctx);
out:
	job_status_free(&st);
	json_decref(creds);
	json_decref(def);
	free(volume);
	free(cred_name);
	free(def_name);
	buf_free(&why);
	return rc;
}

/* Deletes a finished check or publish job and its secret (if any); a
 * failure only leaves garbage behind, so it is logged, not returned. */
static void remove_job(struct operator_ctx *ctx, const char *job, const char *secret)
{
	if (secret && runtime_secret_delete(ctx->runtime, secret))
		log_warn("job %s: cannot remove secret %s: %s", job, secret, al_error_message());
	if (runtime_job_delete(ctx->runtime, job))
		log_warn("cannot remove job %s: %s", job, al_error_message());
}

static void remove_publish_job(struct operator_ctx *ctx, const char *job)
{
	char *secret = suffixed(job, "-manifest");
	remove_job(ctx, job, secret);
	free(secret);
}

/* Fires `ev` with reason "<what> <job> <how>: <detail>". */
static int transition_why(struct operator_ctx *ctx, json_t *ds, enum gate_event ev, const char *what,
			  const char *job, const char *how, const char *detail)
{
	struct buf why;
	int rc;

	buf_init(&why, 4096);
	/* Bounded: a job name is at most 253 bytes, the detail is cut. */
	if ((rc = buf_appendf(&why, "%s %s %s: %.2048s", what, job, how,
			      detail && *detail ? detail : "no reason given"))) {
		buf_free(&why);
		return rc;
	}
	{
		struct gate_input in = { .reason = buf_cstr(&why) };
		rc = transition(ctx, ds, ev, &in);
	}
	buf_free(&why);
	return rc;
}

static int start_check_job(struct operator_ctx *ctx, const json_t *ds, const char *job, const char *volume)
{
	struct runtime_owner owner;
	const json_t *exts = ctx->cfg->allowed_extensions;
	size_t n_ext = json_array_size(exts), k = 0, i;
	char max_file[24], max_total[24], max_files[24];
	const char **args;
	json_t *e;
	int rc;

	snprintf(max_file, sizeof(max_file), "%llu", (unsigned long long)ctx->cfg->max_file_bytes);
	snprintf(max_total, sizeof(max_total), "%llu", (unsigned long long)ctx->cfg->max_total_bytes);
	snprintf(max_files, sizeof(max_files), "%llu", (unsigned long long)ctx->cfg->max_files);
	if (!(args = calloc(9 + 2 * n_ext, sizeof(*args))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	args[k++] = "check-job";
	args[k++] = "--max-file-bytes";
	args[k++] = max_file;
	args[k++] = "--max-total-bytes";
	args[k++] = max_total;
	args[k++] = "--max-files";
	args[k++] = max_files;
	if (n_ext == 0) {
		args[k++] = "--allowed-extensions="; /* none */
	} else {
		/* One exact extension per flag: a list could not carry a comma. */
		json_array_foreach(exts, i, e) {
			args[k++] = "--allowed-extension";
			args[k++] = json_string_value(e);
		}
	}
	args[k] = NULL;
	{
		struct job_spec spec = {
			.name = job,
			.args = args,
			.mounts = { { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_STAGING, .name = volume,
				      .env = "AIRLOCK_DATA_DIR", .read_only = 1 } },
			.timeout_seconds = ctx->cfg->job_timeout_seconds,
			.owner = owner_of(ds, &owner),
		};
		if ((rc = runtime_volume_ensure_owned(ctx->runtime, VOLUME_STAGING, volume, spec.owner, NULL)) == AL_OK) {
			rc = runtime_job_start(ctx->runtime, &spec);
			if (rc == AL_ERR_EXISTS)
				rc = AL_OK; /* started by an earlier attempt of this reconcile */
		}
	}
	free(args);
	return rc;
}

/* Checking: the check job builds the manifest of the staging volume and runs
 * the checks where the data is; we record what it found. */
static int run_checks(struct operator_ctx *ctx, json_t *ds, int *requeue_ms)
{
	struct job_status st = { 0 };
	struct check_result res = { 0 };
	char *volume = operator_volume_name(ds), *job = operator_check_job_name(ds), *logs = NULL;
	int rc;

	if (!volume || !job) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = runtime_job_get(ctx->runtime, job, &st)))
		goto out;
	switch (st.phase) {
	case JOB_RUNNING:
		*requeue_ms = poll_running_ms(ctx);
		goto out;
	case JOB_NOT_FOUND: {
		/* Back here after data-changed: the publish job that found the
		 * change may still be there if we died before deleting it. */
		long n = data_changes_of(ds);
		if (n > 0) {
			char *prev = round_job_name("publish", ds, attempt_of(ds), n - 1);
			if (!prev) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				goto out;
			}
			remove_publish_job(ctx, prev);
			free(prev);
		}
		rc = start_check_job(ctx, ds, job, volume);
		*requeue_ms = poll_started_ms(ctx);
		goto out;
	}
	case JOB_FAILED:
		/* The job crashed (not a failed check): the data cannot go on. */
		rc = transition_why(ctx, ds, GATE_EV_CHECKS_FAILED, "the check job", job, "failed", st.reason);
		break;
	case JOB_SUCCEEDED:
		if ((rc = runtime_job_logs(ctx->runtime, job, &logs)))
			goto out;
		if (job_result_parse_check(logs, &res) < 0) {
			char *detail = util_strdup(al_error_message());
			rc = transition_why(ctx, ds, GATE_EV_CHECKS_FAILED, "the check job", job, "gave no usable result",
					    detail ? detail : "out of memory");
			free(detail);
		} else {
			struct gate_input in = { .manifest = res.manifest, .checks = res.checks, .reason = res.reason };
			rc = transition(ctx, ds, res.passed ? GATE_EV_CHECKS_PASSED : GATE_EV_CHECKS_FAILED, &in);
		}
		break;
	}
	/* Recorded: the job has done its work. */
	if (!rc)
		remove_job(ctx, job, NULL);
out:
	check_result_free(&res);
	job_status_free(&st);
	free(logs);
	free(volume);
	free(job);
	return rc;
}

static int start_publish_job(struct operator_ctx *ctx, json_t *ds, const char *job, const char *ws, int *failed)
{
	const char *name = json_string_value(json_object_get(json_object_get(ds, "metadata"), "name"));
	const json_t *manifest = json_object_get(json_object_get(ds, "status"), "manifest");
	char *volume = operator_volume_name(ds), *secret = suffixed(job, "-manifest");
	char *check = round_job_name("check", ds, attempt_of(ds), data_changes_of(ds));
	struct runtime_owner owner;
	int rc;

	*failed = 0;
	if (!volume || !secret || !check) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!json_is_object(manifest) || !name) {
		*failed = 1;
		rc = fail(ctx, ds, "approved, but there is no manifest to publish: retry to collect and check the data again");
		goto out;
	}
	/* The check job of this round is done with (we may have died before
	 * deleting it). */
	remove_job(ctx, check, NULL);
	/* The workspace's volume is never owned by a datasource. */
	if ((rc = runtime_volume_ensure_owned(ctx->runtime, VOLUME_STAGING, volume, owner_of(ds, &owner), NULL)) ||
	    (rc = runtime_volume_ensure(ctx->runtime, VOLUME_WORKSPACE, ws, NULL)) ||
	    (rc = runtime_secret_ensure_owned(ctx->runtime, secret, manifest, owner_of(ds, &owner))))
		goto out;
	{
		const char *args[] = { "publish-job", "--name", name, NULL };
		struct job_spec spec = {
			.name = job,
			.args = args,
			.owner = owner_of(ds, &owner),
			.mounts = { { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_STAGING, .name = volume,
				      .env = "AIRLOCK_SOURCE_DIR", .read_only = 1 },
				    { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_WORKSPACE, .name = ws, .env = "AIRLOCK_TARGET_DIR" },
				    { .kind = JOB_MOUNT_SECRET, .name = secret, .env = "AIRLOCK_MANIFEST_FILE" } },
			.timeout_seconds = ctx->cfg->job_timeout_seconds,
		};
		rc = runtime_job_start(ctx->runtime, &spec);
		if (rc == AL_ERR_EXISTS)
			rc = AL_OK; /* started by an earlier attempt of this reconcile */
	}
out:
	free(volume);
	free(secret);
	free(check);
	return rc;
}

/* Approved: the publish job copies the approved files into the workspace
 * and verifies them; we record where they went, or that the data changed. */
static int publish(struct operator_ctx *ctx, json_t *ds, int *requeue_ms)
{
	const char *ws = json_string_value(json_object_get(json_object_get(json_object_get(ds, "metadata"), "labels"), WORKSPACE_LABEL));
	const char *approved = json_string_value(json_object_get(json_object_get(json_object_get(ds, "status"), "manifest"), "digest"));
	struct job_status st = { 0 };
	struct publish_result res = { 0 };
	char *volume = NULL, *job = NULL, *logs = NULL;
	int rc, failed = 0;

	if (!ws || !*ws) {
		struct gate_input in = { .reason = "no workspace: the datasource has no " WORKSPACE_LABEL " label" };
		return transition(ctx, ds, GATE_EV_DATA_CHANGED, &in);
	}
	volume = operator_volume_name(ds);
	job = operator_publish_job_name(ds);
	if (!volume || !job) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = runtime_job_get(ctx->runtime, job, &st)))
		goto out;
	switch (st.phase) {
	case JOB_RUNNING:
		*requeue_ms = poll_running_ms(ctx);
		goto out;
	case JOB_NOT_FOUND:
		rc = start_publish_job(ctx, ds, job, ws, &failed);
		if (!failed)
			*requeue_ms = poll_started_ms(ctx);
		goto out;
	case JOB_FAILED:
		rc = transition_why(ctx, ds, GATE_EV_COLLECT_FAILED, "the publish job", job, "failed", st.reason);
		break;
	case JOB_SUCCEEDED:
		if ((rc = runtime_job_logs(ctx->runtime, job, &logs)))
			goto out;
		if (job_result_parse_publish(logs, &res) < 0) {
			char *detail = util_strdup(al_error_message());
			rc = transition_why(ctx, ds, GATE_EV_COLLECT_FAILED, "the publish job", job,
					    "gave no usable result", detail ? detail : "out of memory");
			free(detail);
		} else if (res.data_changed) {
			struct gate_input in = { .reason = res.reason };
			rc = transition(ctx, ds, GATE_EV_DATA_CHANGED, &in);
		} else if (!approved || strcmp(res.digest, approved)) {
			rc = transition_why(ctx, ds, GATE_EV_COLLECT_FAILED, "the publish job", job,
					    "published other data than was approved", res.digest);
		} else {
			struct gate_input in = { .published_path = res.published };
			/* The data now lives, verified, in the workspace: the staging
			 * copy has done its job. It goes before Published is recorded
			 * so that whoever sees Published never finds it, and a crash
			 * between the two cannot leave it behind (this branch runs
			 * again from the finished job; deleting twice is AL_OK). */
			if ((rc = runtime_volume_delete(ctx->runtime, VOLUME_STAGING, volume)))
				goto out;
			rc = transition(ctx, ds, GATE_EV_PUBLISH, &in);
		}
		break;
	}
	if (rc)
		goto out;
	remove_publish_job(ctx, job);
out:
	publish_result_free(&res);
	job_status_free(&st);
	free(logs);
	free(volume);
	free(job);
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
	int rc;

	*requeue_ms = 0;
	rc = store_get(ctx->store, "AnalyticsWorkspaceDataSource", ns, name, &ds);
	if (rc == AL_ERR_NOT_FOUND)
		return AL_OK;
	if (rc)
		return rc;
	rc = operator_reconcile_datasource_object(ctx, ds, requeue_ms);
	json_decref(ds);
	return rc;
}

/* One step: what the datasource's state calls for. `entered`: the step
 * before, in this same call, recorded the stage it is in. */
static int reconcile_step(struct operator_ctx *ctx, json_t *ds, int entered, int *requeue_ms)
{
	const char *stage, *state, *type, *job;
	int rc = AL_OK;

	*requeue_ms = 0;
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
			rc = run_import_job(ctx, ds, job, entered, requeue_ms);
	} else if (!strcmp(stage, STAGE_CHECKING)) {
		rc = run_checks(ctx, ds, requeue_ms);
	} else if (!strcmp(stage, STAGE_APPROVED)) {
		rc = publish(ctx, ds, requeue_ms);
	} else if (!strcmp(stage, STAGE_REJECTED)) {
		rc = purge(ctx, ds);
	}
	return rc;
}

int operator_reconcile_datasource_object(struct operator_ctx *ctx, json_t *ds, int *requeue_ms)
{
	int rc = AL_OK;

	/* A step that records a transition goes straight on to the next one
	 * (Collecting: start the job) instead of waiting to be woken by its
	 * own write: fewer reconciles, and the job starts sooner. */
	for (int step = 0;; step++) {
		const char *v = json_string_value(json_object_get(json_object_get(ds, "metadata"), "resourceVersion"));
		char *before = util_strdup(v ? v : "");
		if (!before)
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		rc = reconcile_step(ctx, ds, step > 0, requeue_ms);
		v = json_string_value(json_object_get(json_object_get(ds, "metadata"), "resourceVersion"));
		if (rc || *requeue_ms || !v || !strcmp(before, v) || !operator_has_work(ds)) {
			free(before);
			break;
		}
		free(before);
		if (step + 1 >= OPERATOR_STEPS_MAX) {
			*requeue_ms = 1; /* more to do: soon, after the other keys' turn */
			break;
		}
	}
	return rc;
}

/* Most attempts and rounds whose jobs cleanup looks for. */
#define CLEANUP_MAX_JOBS 4096

int operator_cleanup_datasource(struct operator_ctx *ctx, const json_t *deleted)
{
	char *volume = operator_volume_name(deleted);
	const char *job = json_string_value(json_object_get(json_object_get(json_object_get(deleted, "status"), "job"), "name"));
	long attempts = attempt_of(deleted), rounds = data_changes_of(deleted) + 1, looked = 0;
	int rc = AL_OK;

	if (!volume)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (job) {
		delete_job_secrets(ctx, job);
		if ((rc = runtime_job_delete(ctx->runtime, job)))
			log_warn("cannot remove job %s: %s", job, al_error_message());
	}
	/* Every job it may have had: import jobs of earlier attempts, and check
	 * or publish jobs left by a crash between recording and deleting (or a
	 * deletion while one ran). Newest first, within a bound. */
	for (long a = attempts; a >= 1 && looked < CLEANUP_MAX_JOBS; a--) {
		char *imp = import_job_name(deleted, a);
		if (imp) {
			if (!job || strcmp(imp, job)) {
				delete_job_secrets(ctx, imp);
				if (runtime_job_delete(ctx->runtime, imp))
					log_warn("cannot remove job %s: %s", imp, al_error_message());
			}
			free(imp);
		}
		for (long r = rounds - 1; r >= 0 && looked < CLEANUP_MAX_JOBS; r--, looked++) {
			char *check = round_job_name("check", deleted, a, r);
			char *pub = round_job_name("publish", deleted, a, r);
			if (check)
				remove_job(ctx, check, NULL);
			if (pub)
				remove_publish_job(ctx, pub);
			free(check);
			free(pub);
		}
	}
	{
		const char *type = json_string_value(json_object_get(json_object_get(deleted, "spec"), "type"));
		char *uploader = type && !strcmp(type, "Uploaded") ? uploader_name(deleted) : NULL;
		if (uploader && runtime_uploader_delete(ctx->runtime, uploader))
			log_warn("cannot remove uploader %s: %s", uploader, al_error_message());
		free(uploader);
	}
	if ((rc = runtime_volume_delete(ctx->runtime, VOLUME_STAGING, volume)))
		log_warn("cannot remove staging volume %s: %s", volume, al_error_message());
	free(volume);
	return rc;
}
