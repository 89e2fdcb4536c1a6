/*
 * test_runtime_local.c - the local runtime: volumes, secrets and supervised
 * jobs, with real processes. This binary stands in for airlock: the runtime
 * re-executes it as `<this test> job-shim <jobdir>`, and the shim runs the
 * job as `<this test> <args...>`, where the test's only "subcommand" is
 * `sh -c SCRIPT`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "runtime/job_shim.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char self_exe[PATH_MAX];

struct fixture {
	char base[64];
	char *state, *staging, *workspace;
	struct runtime *rt;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->base, sizeof(f->base), "/tmp/rtlocal-XXXXXX");
	if (!mkdtemp(f->base))
		return -1;
	f->state = util_path_join(f->base, "state");
	f->staging = util_path_join(f->base, "staging");
	f->workspace = util_path_join(f->base, "workspace");
	if (runtime_local_open(&f->rt, f->state, f->staging, f->workspace, self_exe) != AL_OK) {
		fprintf(stderr, "open: %s\n", al_error_message());
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	runtime_close(f->rt);
	util_remove_tree(f->base);
	free(f->state);
	free(f->staging);
	free(f->workspace);
	free(f);
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Polls job_get until the job is no longer running. */
static void wait_done(struct runtime *rt, const char *name, int64_t timeout_ms, struct job_status *st)
{
	int64_t until = util_monotonic_ms() + timeout_ms;
	for (;;) {
		assert_int_equal(runtime_job_get(rt, name, st), AL_OK);
		if (st->phase != JOB_RUNNING)
			return;
		job_status_free(st);
		if (util_monotonic_ms() > until)
			fail_msg("job %s still running after %lld ms", name, (long long)timeout_ms);
		sleep_ms(25);
	}
}

static char *job_file(struct fixture *f, const char *job, const char *file)
{
	char *jobs = util_path_join(f->state, "jobs");
	char *dir = util_path_join(jobs, job);
	char *p = util_path_join(dir, file);
	free(jobs);
	free(dir);
	return p;
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static int count_lines(const char *path)
{
	char *text = NULL;
	int n = 0;
	if (util_read_file(path, 1 << 20, &text, NULL) != AL_OK)
		return -1;
	for (char *p = text; *p; p++)
		n += *p == '\n';
	free(text);
	return n;
}

/* ---- volumes ---------------------------------------------------------- */

static void test_volumes(void **state)
{
	struct fixture *f = *state;
	char *p1 = NULL, *p2 = NULL, *w = NULL;

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "ds-1", &p1), AL_OK);
	assert_non_null(p1);
	assert_true(strstr(p1, "/staging/ds-1") != NULL);
	assert_int_equal(mode_of(p1), 0700);
	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "ds-1", &p2), AL_OK);
	assert_string_equal(p1, p2);

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_WORKSPACE, "ws.a-1", &w), AL_OK);
	assert_true(strstr(w, "/workspace/ws.a-1") != NULL);
	assert_int_equal(mode_of(w), 0755);

	/* a file inside goes with the volume */
	char *inner = util_path_join(p1, "data.csv");
	assert_int_equal(util_write_file_atomic(inner, "a,b\n", 4, 0600), AL_OK);
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_STAGING, "ds-1"), AL_OK);
	assert_false(util_path_exists(p1));
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_STAGING, "ds-1"), AL_OK);
	assert_int_equal(runtime_volume_delete(f->rt, VOLUME_WORKSPACE, "ws.a-1"), AL_OK);
	assert_false(util_path_exists(w));
	/* out_path may be NULL */
	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "x", NULL), AL_OK);
	free(inner);
	free(p1);
	free(p2);
	free(w);
}

static void test_bad_names(void **state)
{
	struct fixture *f = *state;
	static const char *bad[] = { "", "A", "a/b", "..", ".", "a..b", "-a", "a-", ".a", "a.", "a_b", "a b",
				     "../etc", "a\n" };
	char longest[254], too_long[255];
	char *p = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, bad[i], &p), AL_ERR_INVALID);
		assert_null(p);
		assert_int_equal(runtime_secret_delete(f->rt, bad[i]), AL_ERR_INVALID);
		assert_int_equal(runtime_check_name("job", bad[i]), AL_ERR_INVALID);
	}
	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, NULL, &p), AL_ERR_INVALID);
	memset(longest, 'a', 253);
	longest[253] = '\0';
	memset(too_long, 'a', 254);
	too_long[254] = '\0';
	assert_int_equal(runtime_check_name("volume", longest), AL_OK);
	assert_int_equal(runtime_check_name("volume", too_long), AL_ERR_INVALID);
	assert_int_equal(runtime_check_name("volume", "0"), AL_OK);
	assert_int_equal(runtime_check_name("volume", "a.b-c.d9"), AL_OK);
	assert_int_equal(runtime_volume_ensure(f->rt, (enum volume_class)7, "ok", &p), AL_ERR_INVALID);
	assert_true(strstr(al_error_message(), "class") != NULL);
}

static void test_roots_kept_apart(void **state)
{
	struct fixture *f = *state;
	struct runtime *rt = NULL;
	char *a = util_path_join(f->base, "x/state");
	char *s = util_path_join(f->base, "x/data");
	char *inner = util_path_join(f->base, "x/data/ws");
	char *xdir = util_path_join(f->base, "x");
	char *dotted = util_path_join(f->base, "x/data/sub/..");

	assert_int_equal(runtime_local_open(&rt, a, s, s, self_exe), AL_ERR_INVALID);
	assert_null(rt);
	assert_true(strstr(al_error_message(), "staging") != NULL);
	assert_int_equal(runtime_local_open(&rt, a, s, inner, self_exe), AL_ERR_INVALID);
	assert_int_equal(runtime_local_open(&rt, a, inner, s, self_exe), AL_ERR_INVALID);
	/* state inside a volume root would expose jobs and secrets */
	assert_int_equal(runtime_local_open(&rt, inner, s, a, self_exe), AL_ERR_INVALID);
	/* refused before creating anything */
	assert_false(util_path_exists(xdir));
	/* same directory spelled differently is still the same */
	assert_int_equal(util_mkdir_p(s, 0700), AL_OK);
	assert_int_equal(runtime_local_open(&rt, a, s, dotted, self_exe), AL_ERR_INVALID);
	assert_int_equal(runtime_local_open(&rt, a, "/tmp/nonexistent-rtlocal/../x", s, "/nonexistent/exe"),
			 AL_ERR_INVALID);
	free(a);
	free(s);
	free(inner);
	free(xdir);
	free(dotted);
}

/* ---- secrets ---------------------------------------------------------- */

static void test_secrets(void **state)
{
	struct fixture *f = *state;
	json_t *data = json_pack("{s:s, s:s}", "user", "alice", "password", "s3cret!");
	json_t *bad = json_pack("{s:i, s:{s:[s]}}", "port", 5432, "spec", "objects", "t1");
	json_t *arr = json_array();
	char *path, *dir, *text = NULL;
	json_t *back;

	dir = util_path_join(f->state, "secrets");
	path = util_path_join(dir, "db-creds.json");
	assert_int_equal(runtime_secret_ensure(f->rt, "db-creds", data), AL_OK);
	assert_int_equal(mode_of(path), 0600);
	assert_int_equal(mode_of(dir), 0700);
	assert_int_equal(util_read_file(path, 4096, &text, NULL), AL_OK);
	back = json_loads(text, 0, NULL);
	assert_true(json_equal(back, data));
	json_decref(back);
	free(text);

	/* update in place */
	json_object_set_new(data, "password", json_string("changed"));
	assert_int_equal(runtime_secret_ensure(f->rt, "db-creds", data), AL_OK);
	assert_int_equal(util_read_file(path, 4096, &text, NULL), AL_OK);
	assert_true(strstr(text, "changed") != NULL);
	assert_int_equal(mode_of(path), 0600);
	free(text);

	/* nested objects are stored as given (the operator passes job definitions) */
	assert_int_equal(runtime_secret_ensure(f->rt, "nested", bad), AL_OK);
	assert_int_equal(runtime_secret_ensure(f->rt, "x", arr), AL_ERR_INVALID);
	assert_int_equal(runtime_secret_ensure(f->rt, "x", NULL), AL_ERR_INVALID);
	assert_int_equal(runtime_secret_ensure(f->rt, "Bad", data), AL_ERR_INVALID);

	assert_int_equal(runtime_secret_delete(f->rt, "db-creds"), AL_OK);
	assert_false(util_path_exists(path));
	assert_int_equal(runtime_secret_delete(f->rt, "db-creds"), AL_OK);
	free(dir);
	free(path);
	json_decref(data);
	json_decref(bad);
	json_decref(arr);
}

/* ---- jobs ------------------------------------------------------------- */

static void start_spec(struct runtime *rt, const struct job_spec *spec, int expect)
{
	int rc = runtime_job_start(rt, spec);
	if (rc != expect)
		fail_msg("job_start(%s) = %d, want %d: %s", spec->name, rc, expect, al_error_message());
}

/* `<this test> sh -c SCRIPT`, with an optional staging volume as
 * $AIRLOCK_OUTPUT_DIR and an optional secret as $AIRLOCK_CREDENTIALS_FILE. */
static void start_sh(struct runtime *rt, const char *name, const char *script, const char *volume,
		     const char *secret, int timeout, int expect)
{
	const char *args[] = { "sh", "-c", script, NULL };
	struct job_spec spec = { .name = name, .args = args, .timeout_seconds = timeout };
	size_t k = 0;
	if (volume)
		spec.mounts[k++] = (struct job_mount){ .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_STAGING, .name = volume,
							.env = "AIRLOCK_OUTPUT_DIR" };
	if (secret)
		spec.mounts[k++] = (struct job_mount){ .kind = JOB_MOUNT_SECRET, .name = secret,
							.env = "AIRLOCK_CREDENTIALS_FILE" };
	start_spec(rt, &spec, expect);
}

static void test_job_succeeds(void **state)
{
	struct fixture *f = *state;
	struct job_status st;
	char *logs = NULL, *status_path = job_file(f, "ok", JOB_STATUS_FILE);
	int64_t t0;

	t0 = util_monotonic_ms();
	start_sh(f->rt, "ok", "echo hi; exit 0", NULL, NULL, 0, AL_OK);
	wait_done(f->rt, "ok", 10000, &st);
	print_message("  successful job finished in %lld ms\n", (long long)(util_monotonic_ms() - t0));
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	assert_int_equal(st.exit_code, 0);
	assert_null(st.reason);
	assert_non_null(st.started_at);
	assert_non_null(st.finished_at);
	assert_true(strcmp(st.started_at, st.finished_at) <= 0);
	job_status_free(&st);
	assert_int_equal(mode_of(status_path), 0600);

	assert_int_equal(runtime_job_logs(f->rt, "ok", &logs), AL_OK);
	assert_string_equal(logs, "hi\n");
	free(logs);

	assert_int_equal(runtime_job_delete(f->rt, "ok"), AL_OK);
	assert_int_equal(runtime_job_get(f->rt, "ok", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	assert_int_equal(runtime_job_delete(f->rt, "ok"), AL_OK);
	assert_int_equal(runtime_job_logs(f->rt, "ok", &logs), AL_ERR_NOT_FOUND);
	assert_null(logs);
	free(status_path);
}

static void test_job_fails(void **state)
{
	struct fixture *f = *state;
	struct job_status st;

	start_sh(f->rt, "bad", "echo starting; echo 'connection refused by db' >&2; echo; exit 3", NULL, NULL, 0,
		 AL_OK);
	wait_done(f->rt, "bad", 10000, &st);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_int_equal(st.exit_code, 3);
	assert_string_equal(st.reason, "exit status 3: connection refused by db");
	job_status_free(&st);

	/* no output: the reason is just the status */
	start_sh(f->rt, "quiet", "exit 4", NULL, NULL, 0, AL_OK);
	wait_done(f->rt, "quiet", 10000, &st);
	assert_string_equal(st.reason, "exit status 4");
	job_status_free(&st);

	/* a very long, non-UTF-8 last line is cut and cleaned */
	start_sh(f->rt, "long", "printf 'x%.0s' $(seq 1 2000); printf '\\377\\n'; exit 1", NULL, NULL, 0, AL_OK);
	wait_done(f->rt, "long", 10000, &st);
	assert_non_null(st.reason);
	assert_true(strlen(st.reason) <= strlen("exit status 1: ") + JOB_REASON_LINE_MAX);
	assert_null(strchr(st.reason, '\377'));
	job_status_free(&st);

	/* killed by a signal */
	start_sh(f->rt, "sig", "kill -9 $$", NULL, NULL, 0, AL_OK);
	wait_done(f->rt, "sig", 10000, &st);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_string_equal(st.reason, "killed by signal 9");
	assert_int_equal(st.exit_code, 137);
	job_status_free(&st);

	/* a subcommand the executable does not have */
	const char *args[] = { "no-such-subcommand", NULL };
	struct job_spec spec = { .name = "nocmd", .args = args };
	assert_int_equal(runtime_job_start(f->rt, &spec), AL_OK);
	wait_done(f->rt, "nocmd", 10000, &st);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_int_equal(st.exit_code, 2);
	assert_string_equal(st.reason, "exit status 2: 'no-such-subcommand' is not a command");
	job_status_free(&st);
}

static void test_job_timeout(void **state)
{
	struct fixture *f = *state;
	struct job_status st;
	int64_t t0 = util_monotonic_ms(), took;

	start_sh(f->rt, "slow", "sleep 30", NULL, NULL, 1, AL_OK);
	wait_done(f->rt, "slow", 15000, &st);
	took = util_monotonic_ms() - t0;
	print_message("  1 s deadline: job ended after %lld ms\n", (long long)took);
	assert_true(took < 4000);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_string_equal(st.reason, "deadline exceeded after 1 s");
	job_status_free(&st);

	/* a job that ignores SIGTERM is killed after the grace period */
	t0 = util_monotonic_ms();
	start_sh(f->rt, "stubborn", "trap '' TERM; while :; do sleep 0.1; done", NULL, NULL, 1, AL_OK);
	wait_done(f->rt, "stubborn", 20000, &st);
	took = util_monotonic_ms() - t0;
	print_message("  SIGTERM ignored: job killed after %lld ms\n", (long long)took);
	assert_true(took >= (1 + JOB_KILL_GRACE_SECONDS) * 1000 - 200);
	assert_string_equal(st.reason, "deadline exceeded after 1 s");
	job_status_free(&st);
}

static void test_job_runs_once(void **state)
{
	struct fixture *f = *state;
	struct job_status st;
	char *vol = NULL, *count;

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "once", &vol), AL_OK);
	count = util_path_join(vol, "count");
	start_sh(f->rt, "once", "echo ran >> \"$AIRLOCK_OUTPUT_DIR/count\"; sleep 0.3", "once", NULL, 0, AL_OK);
	start_sh(f->rt, "once", "echo ran >> \"$AIRLOCK_OUTPUT_DIR/count\"", "once", NULL, 0, AL_ERR_EXISTS);
	assert_true(strstr(al_error_message(), "already exists") != NULL);
	wait_done(f->rt, "once", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	start_sh(f->rt, "once", "echo ran >> \"$AIRLOCK_OUTPUT_DIR/count\"", "once", NULL, 0, AL_ERR_EXISTS);
	sleep_ms(200);
	assert_int_equal(count_lines(count), 1);

	/* a missing volume or secret is refused and claims nothing */
	start_sh(f->rt, "novol", "true", "missing", NULL, 0, AL_ERR_NOT_FOUND);
	start_sh(f->rt, "nosec", "true", NULL, "missing", 0, AL_ERR_NOT_FOUND);
	assert_int_equal(runtime_job_get(f->rt, "novol", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	start_sh(f->rt, "novol", "true", NULL, NULL, 0, AL_OK);
	start_sh(f->rt, "BAD", "true", NULL, NULL, 0, AL_ERR_INVALID);
	start_sh(f->rt, "neg", "true", NULL, NULL, -1, AL_ERR_INVALID);
	{
		/* a workspace volume that does not exist is refused too */
		const char *args[] = { "sh", "-c", "true", NULL };
		struct job_spec spec = { .name = "nows", .args = args,
					 .mounts = { { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_WORKSPACE, .name = "ws-x",
						       .env = "TARGET" } } };
		start_spec(f->rt, &spec, AL_ERR_NOT_FOUND);
		assert_true(strstr(al_error_message(), "workspace volume 'ws-x'") != NULL);
	}
	free(count);
	free(vol);
}

/* Malformed specs are refused before anything is claimed. */
static void test_job_spec_checked(void **state)
{
	struct fixture *f = *state;
	const char *args[] = { "sh", "-c", "true", NULL };
	const char *empty[] = { NULL };
	const char *flag[] = { "--help", NULL };
	const char *blank[] = { "", NULL };
	static const char *bad_env[] = { "", "lower", "9LIVES", "A-B", "A=B", "AIRLOCK_JOB_NAME" };
	struct job_spec spec = { .name = "spec", .args = args };
	struct job_status st;

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "v", NULL), AL_OK);
	assert_int_equal(runtime_job_start(f->rt, NULL), AL_ERR_INVALID);
	spec.args = NULL;
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.args = empty;
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.args = flag;
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	assert_true(strstr(al_error_message(), "subcommand") != NULL);
	spec.args = blank;
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.args = args;
	for (size_t i = 0; i < sizeof(bad_env) / sizeof(bad_env[0]); i++) {
		spec.mounts[0] = (struct job_mount){ .kind = JOB_MOUNT_VOLUME, .name = "v", .env = bad_env[i] };
		start_spec(f->rt, &spec, AL_ERR_INVALID);
		assert_true(strstr(al_error_message(), "env") != NULL);
	}
	/* the same variable twice */
	spec.mounts[0] = (struct job_mount){ .kind = JOB_MOUNT_VOLUME, .name = "v", .env = "DIR" };
	spec.mounts[1] = (struct job_mount){ .kind = JOB_MOUNT_VOLUME, .name = "v", .env = "DIR" };
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	assert_true(strstr(al_error_message(), "both set DIR") != NULL);
	/* bad kind, class, name */
	spec.mounts[1] = (struct job_mount){ .kind = (enum job_mount_kind)9, .name = "v", .env = "OTHER" };
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.mounts[1] = (struct job_mount){ .kind = JOB_MOUNT_VOLUME, .cls = (enum volume_class)9, .name = "v",
					     .env = "OTHER" };
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.mounts[1] = (struct job_mount){ .kind = JOB_MOUNT_SECRET, .name = "../x", .env = "OTHER" };
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.mounts[1] = (struct job_mount){ .kind = JOB_MOUNT_SECRET, .name = NULL, .env = "OTHER" };
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	/* nothing was claimed */
	assert_int_equal(runtime_job_get(f->rt, "spec", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	/* the same volume under two names is fine */
	spec.mounts[1] = (struct job_mount){ .kind = JOB_MOUNT_VOLUME, .name = "v", .env = "AGAIN", .read_only = 1 };
	start_spec(f->rt, &spec, AL_OK);
	wait_done(f->rt, "spec", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
}

static void test_job_env(void **state)
{
	struct fixture *f = *state;
	json_t *data = json_pack("{s:s}", "token", "abc"), *spec_json;
	struct job_status st;
	char *vol = NULL, *ws = NULL, *sec, *text = NULL, *want, *jobdir, *spec_path;
	const char *script = "echo \"$AIRLOCK_JOB_NAME\"; echo \"$AIRLOCK_OUTPUT_DIR\"; echo \"$TARGET_DIR\"; "
			     "echo \"$AIRLOCK_CREDENTIALS_FILE\"; pwd; cat \"$AIRLOCK_CREDENTIALS_FILE\"; echo; "
			     "echo \"[${AIRLOCK_TOKEN-unset}]\"";
	const char *args[] = { "sh", "-c", script, NULL };
	struct job_spec spec = {
		.name = "env-job",
		.args = args,
		.mounts = { { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_STAGING, .name = "envvol",
			      .env = "AIRLOCK_OUTPUT_DIR", .read_only = 1 },
			    { .kind = JOB_MOUNT_SECRET, .name = "envsec", .env = "AIRLOCK_CREDENTIALS_FILE" },
			    { .kind = JOB_MOUNT_VOLUME, .cls = VOLUME_WORKSPACE, .name = "envws", .env = "TARGET_DIR" } },
	};

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "envvol", &vol), AL_OK);
	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_WORKSPACE, "envws", &ws), AL_OK);
	assert_int_equal(runtime_secret_ensure(f->rt, "envsec", data), AL_OK);
	sec = util_path_join(f->state, "secrets/envsec.json");
	/* the server's own AIRLOCK_* variables do not reach the job */
	setenv("AIRLOCK_TOKEN", "leaked-token", 1);
	start_spec(f->rt, &spec, AL_OK);
	unsetenv("AIRLOCK_TOKEN");
	wait_done(f->rt, "env-job", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	jobdir = job_file(f, "env-job", "");
	jobdir[strlen(jobdir) - 1] = '\0';
	assert_int_equal(runtime_job_logs(f->rt, "env-job", &text), AL_OK);
	assert_int_equal(asprintf(&want, "env-job\n%s\n%s\n%s\n%s\n{\"token\":\"abc\"}\n[unset]\n", vol, ws, sec,
				  jobdir) > 0, 1);
	assert_string_equal(text, want);
	free(want);
	free(text);

	/* spec.json: this executable, the subcommand, the mounts as the job sees them */
	spec_path = job_file(f, "env-job", JOB_SPEC_FILE);
	spec_json = json_load_file(spec_path, 0, NULL);
	assert_non_null(spec_json);
	assert_string_equal(json_string_value(json_array_get(json_object_get(spec_json, "argv"), 0)), self_exe);
	assert_string_equal(json_string_value(json_array_get(json_object_get(spec_json, "argv"), 1)), "sh");
	assert_string_equal(json_string_value(json_object_get(json_object_get(spec_json, "env"), "TARGET_DIR")), ws);
	assert_int_equal(json_array_size(json_object_get(spec_json, "mounts")), 3);
	assert_true(json_is_true(json_object_get(json_array_get(json_object_get(spec_json, "mounts"), 0), "readOnly")));
	assert_true(json_is_false(json_object_get(json_array_get(json_object_get(spec_json, "mounts"), 2), "readOnly")));
	json_decref(spec_json);
	free(spec_path);
	free(jobdir);

	/* without mounts: cwd is the job directory, no stray variables */
	setenv("AIRLOCK_CREDENTIALS_FILE", "/leaked/from/parent", 1);
	start_sh(f->rt, "env-bare", "echo \"[${AIRLOCK_OUTPUT_DIR-unset}] [${AIRLOCK_CREDENTIALS_FILE-unset}]\"; pwd",
		 NULL, NULL, 0, AL_OK);
	unsetenv("AIRLOCK_CREDENTIALS_FILE");
	wait_done(f->rt, "env-bare", 10000, &st);
	job_status_free(&st);
	assert_int_equal(runtime_job_logs(f->rt, "env-bare", &text), AL_OK);
	jobdir = job_file(f, "env-bare", "");
	jobdir[strlen(jobdir) - 1] = '\0';
	assert_int_equal(asprintf(&want, "[unset] [unset]\n%s\n", jobdir) > 0, 1);
	assert_string_equal(text, want);
	free(want);
	free(jobdir);
	free(text);
	free(vol);
	free(ws);
	free(sec);
	json_decref(data);
}

/* JOB_IMAGE_DLT runs the configured dlt command (refused until there is one),
 * with the spec's plain variables and AIRLOCK_BIN. */
static void test_job_dlt_image(void **state)
{
	struct fixture *f = *state;
	static const char *const no_args[] = { NULL };
	struct job_spec spec = {
		.name = "dlt-job",
		.args = no_args,
		.image = JOB_IMAGE_DLT,
		.env = { { .name = "AIRLOCK_OUTPUT_FORMAT", .value = "parquet" } },
	};
	struct job_status st;
	char *script = util_path_join(f->base, "fake-dlt-runner"), *text = NULL, *want = NULL;
	FILE *fp;

	start_spec(f->rt, &spec, AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "scripts/dlt-venv.sh"));
	assert_int_equal(runtime_local_set_dlt_command(f->rt, "/no/such/runner"), AL_ERR_INVALID);
	fp = fopen(script, "w");
	assert_non_null(fp);
	fputs("#!/bin/sh\necho \"dlt $# $AIRLOCK_OUTPUT_FORMAT $AIRLOCK_BIN\"\n", fp);
	fclose(fp);
	assert_int_equal(chmod(script, 0700), 0);
	assert_int_equal(runtime_local_set_dlt_command(f->rt, script), AL_OK);
	start_spec(f->rt, &spec, AL_OK);
	wait_done(f->rt, "dlt-job", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	assert_int_equal(runtime_job_logs(f->rt, "dlt-job", &text), AL_OK);
	assert_int_equal(asprintf(&want, "dlt 0 parquet %s\n", self_exe) > 0, 1);
	assert_string_equal(text, want);
	free(want);
	free(text);

	/* plain variables are checked like mounts' */
	spec.name = "dlt-bad";
	spec.env[0].name = "lower";
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	spec.env[0].name = "AIRLOCK_JOB_NAME";
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	/* an airlock-image job still needs a subcommand */
	spec.env[0].name = "AIRLOCK_OUTPUT_FORMAT";
	spec.image = JOB_IMAGE_AIRLOCK;
	start_spec(f->rt, &spec, AL_ERR_INVALID);
	free(script);
}

static void test_job_survives_restart(void **state)
{
	struct fixture *f = *state;
	struct runtime *rt2 = NULL;
	struct job_status st;
	char *vol = NULL, *done;

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "surv", &vol), AL_OK);
	done = util_path_join(vol, "done");
	start_sh(f->rt, "surv", "sleep 2; echo done > \"$AIRLOCK_OUTPUT_DIR/done\"", "surv", NULL, 0, AL_OK);
	runtime_close(f->rt);
	f->rt = NULL;

	assert_int_equal(runtime_local_open(&rt2, f->state, f->staging, f->workspace, self_exe), AL_OK);
	f->rt = rt2;
	assert_int_equal(runtime_job_get(rt2, "surv", &st), AL_OK);
	assert_int_equal(st.phase, JOB_RUNNING);
	assert_non_null(st.started_at);
	job_status_free(&st);
	assert_false(util_path_exists(done));
	wait_done(rt2, "surv", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	assert_true(util_path_exists(done));
	free(done);
	free(vol);
}

/* The process that started the job is killed with SIGKILL (as `kill -9` of
 * `airlock serve`); the job carries on and a new process sees it finish. */
static void test_job_survives_kill9(void **state)
{
	struct fixture *f = *state;
	struct job_status st;
	char *vol = NULL, *done;
	int wst;
	pid_t pid;

	assert_int_equal(runtime_volume_ensure(f->rt, VOLUME_STAGING, "k9", &vol), AL_OK);
	done = util_path_join(vol, "done");
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct runtime *rt = NULL;
		if (runtime_local_open(&rt, f->state, f->staging, f->workspace, self_exe) != AL_OK)
			_exit(1);
		start_sh(rt, "k9", "sleep 1.5; echo done > \"$AIRLOCK_OUTPUT_DIR/done\"", "k9", NULL, 0, AL_OK);
		raise(SIGKILL);
		_exit(2);
	}
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
	assert_int_equal(runtime_job_get(f->rt, "k9", &st), AL_OK);
	assert_int_equal(st.phase, JOB_RUNNING);
	job_status_free(&st);
	wait_done(f->rt, "k9", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	assert_true(util_path_exists(done));
	free(done);
	free(vol);
}

static void test_job_stop_and_delete(void **state)
{
	struct fixture *f = *state;
	struct job_shim_ident shim, job;
	struct job_status st;
	char *shim_pid = job_file(f, "stopme", JOB_SHIM_PID_FILE);
	char *job_pid = job_file(f, "delme", JOB_PID_FILE);
	int64_t t0;

	/* SIGTERM to the supervisor stops the job and is recorded */
	start_sh(f->rt, "stopme", "sleep 30", NULL, NULL, 0, AL_OK);
	assert_int_equal(job_shim_ident_read(shim_pid, &shim), AL_OK);
	assert_true(job_shim_ident_alive(&shim, 0));
	assert_int_equal(kill(shim.pid, SIGTERM), 0);
	wait_done(f->rt, "stopme", 10000, &st);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_string_equal(st.reason, "job was stopped");
	job_status_free(&st);

	/* delete of a running job kills it and removes everything */
	start_sh(f->rt, "delme", "sleep 30 & sleep 30; wait", NULL, NULL, 0, AL_OK);
	for (int i = 0; i < 100 && !util_path_exists(job_pid); i++)
		sleep_ms(10);
	assert_int_equal(job_shim_ident_read(job_pid, &job), AL_OK);
	assert_true(job_shim_ident_alive(&job, 0));
	t0 = util_monotonic_ms();
	assert_int_equal(runtime_job_delete(f->rt, "delme"), AL_OK);
	print_message("  delete of a running job took %lld ms\n", (long long)(util_monotonic_ms() - t0));
	assert_false(job_shim_ident_alive(&job, 0));
	/* the whole group is gone (its last zombies are reaped by init) */
	for (int i = 0; i < 200 && kill(-job.pid, 0) == 0; i++)
		sleep_ms(10);
	assert_int_equal(kill(-job.pid, 0), -1);
	assert_int_equal(runtime_job_get(f->rt, "delme", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	/* and the name can be used again */
	start_sh(f->rt, "delme", "true", NULL, NULL, 0, AL_OK);
	wait_done(f->rt, "delme", 10000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	free(shim_pid);
	free(job_pid);
}

/* A job directory whose supervisor is gone without a status (the machine
 * restarted, or it was killed). */
static void test_job_supervisor_lost(void **state)
{
	struct fixture *f = *state;
	struct job_status st;
	char *jobs = util_path_join(f->state, "jobs");
	char *dir = util_path_join(jobs, "lost");
	char *spec = util_path_join(dir, JOB_SPEC_FILE);
	char *pidf = util_path_join(dir, JOB_SHIM_PID_FILE);
	const char *spec_text = "{\"name\":\"lost\",\"argv\":[\"true\"]}";
	struct timeval old[2] = { { time(NULL) - 60, 0 }, { time(NULL) - 60, 0 } };

	/* claimed just now, supervisor not yet recorded: starting */
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(util_write_file_atomic(spec, spec_text, strlen(spec_text), 0600), AL_OK);
	assert_int_equal(runtime_job_get(f->rt, "lost", &st), AL_OK);
	assert_int_equal(st.phase, JOB_RUNNING);
	job_status_free(&st);

	/* a minute later still no supervisor ever recorded: it never started
	 * (its launcher died first), so the claim goes and it can start */
	assert_int_equal(utimes(spec, old), 0);
	assert_int_equal(runtime_job_get(f->rt, "lost", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	assert_false(util_path_exists(dir));
	job_status_free(&st);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(util_write_file_atomic(spec, spec_text, strlen(spec_text), 0600), AL_OK);

	/* a pid file whose process is gone (or reused: wrong start time) */
	char line[128];
	snprintf(line, sizeof(line), "%ld 1 -\n", (long)getpid());
	assert_int_equal(util_write_file_atomic(pidf, line, strlen(line), 0600), AL_OK);
	assert_int_equal(utimes(spec, NULL), 0);
	assert_int_equal(runtime_job_get(f->rt, "lost", &st), AL_OK);
	assert_int_equal(st.phase, JOB_FAILED);
	assert_string_equal(st.reason, "job supervisor disappeared (machine restart?)");
	job_status_free(&st);
	/* our own identity, correctly recorded, is alive */
	assert_int_equal(job_shim_ident_write(pidf, getpid()), AL_OK);
	assert_int_equal(runtime_job_get(f->rt, "lost", &st), AL_OK);
	assert_int_equal(st.phase, JOB_RUNNING);
	job_status_free(&st);
	/* a pid file from before a reboot */
	struct job_shim_ident me;
	assert_int_equal(job_shim_ident_of(getpid(), &me), AL_OK);
	snprintf(line, sizeof(line), "%ld %llu 00000000-0000-0000-0000-000000000000\n", (long)getpid(),
		 me.starttime);
	assert_int_equal(util_write_file_atomic(pidf, line, strlen(line), 0600), AL_OK);
	assert_int_equal(runtime_job_get(f->rt, "lost", &st), AL_OK);
	assert_int_equal(st.phase, JOB_FAILED);
	job_status_free(&st);
	/* and it is never started again */
	start_sh(f->rt, "lost", "true", NULL, NULL, 0, AL_ERR_EXISTS);
	assert_int_equal(runtime_job_delete(f->rt, "lost"), AL_OK);
	assert_false(util_path_exists(dir));
	free(jobs);
	free(dir);
	free(spec);
	free(pidf);
}

static void test_job_logs_capped(void **state)
{
	struct fixture *f = *state;
	struct job_status st;
	char *logs = NULL;
	size_t len;

	/* more than the cap, which holds the largest result line a job may print */
	assert_true(RUNTIME_JOB_LOGS_MAX > ((size_t)32 << 20));
	start_sh(f->rt, "big", "head -c 35000000 /dev/zero | tr '\\0' x; echo; echo the-end", NULL, NULL, 0, AL_OK);
	wait_done(f->rt, "big", 60000, &st);
	assert_int_equal(st.phase, JOB_SUCCEEDED);
	job_status_free(&st);
	assert_int_equal(runtime_job_logs(f->rt, "big", &logs), AL_OK);
	len = strlen(logs);
	assert_int_equal(len, RUNTIME_JOB_LOGS_MAX);
	assert_string_equal(logs + len - 8, "the-end\n");
	free(logs);
}

static void test_shim_usage(void **state)
{
	char *argv1[] = { "job-shim", NULL };
	char *argv2[] = { "job-shim", "/nonexistent/job/dir", NULL };
	(void)state;
	assert_int_equal(job_shim_main(1, argv1), 2);
	/* can't even open the log: nothing started. Run it in a child, since
	 * the shim closes every inherited descriptor. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(job_shim_main(2, argv2));
	int wst;
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), JOB_SHIM_EXIT_NOT_STARTED);
}

static void test_shim_bad_spec_rolls_back(void **state)
{
	struct fixture *f = *state;
	struct runtime *rt = NULL;
	/* A "shim" that fails before starting anything: job_start must report
	 * it and leave no claim behind. /bin/false exits 1, which is "unknown"
	 * (claim kept); a script exiting 3 means "nothing started". */
	char *script = util_path_join(f->base, "fake-shim.sh");
	const char *text = "#!/bin/sh\necho \"fake shim: cannot parse $2/spec.json\" >> \"$2/log\"\nexit 3\n";
	struct job_status st;

	assert_int_equal(util_write_file_atomic(script, text, strlen(text), 0700), AL_OK);
	assert_int_equal(runtime_local_open(&rt, f->state, f->staging, f->workspace, script), AL_OK);
	start_sh(rt, "rollback", "true", NULL, NULL, 0, AL_ERR_IO);
	assert_true(strstr(al_error_message(), "fake shim: cannot parse") != NULL);
	assert_int_equal(runtime_job_get(rt, "rollback", &st), AL_OK);
	assert_int_equal(st.phase, JOB_NOT_FOUND);
	runtime_close(rt);
	free(script);
}

int main(int argc, char **argv)
{
	/* The runtime re-executes this binary as its job shim, and the shim
	 * runs it as the job: `sh -c SCRIPT` is our one subcommand. */
	if (argc >= 2 && !strcmp(argv[1], "job-shim"))
		return job_shim_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "sh")) {
		execv("/bin/sh", argv + 1);
		perror("/bin/sh");
		return 127;
	}
	if (argc >= 2) {
		fprintf(stderr, "'%s' is not a command\n", argv[1]);
		return 2;
	}

	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self_exe[n] = '\0';
	json_object_seed(0);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roots_kept_apart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_succeeds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_runs_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_spec_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_survives_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_stop_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_supervisor_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_logs_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_dlt_image, setup, teardown),
		cmocka_unit_test(test_shim_usage),
		cmocka_unit_test_setup_teardown(test_shim_bad_spec_rolls_back, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
