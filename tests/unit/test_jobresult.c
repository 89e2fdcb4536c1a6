/*
 * test_jobresult.c - the AIRLOCK-RESULT line (operator/jobresult.h) and the
 * job subcommands that print it: `airlock check-job` and `airlock
 * publish-job` (cli/cmd_jobs.c), run in a child process with their stdout
 * captured, as the runtime captures a job's output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/commands.h"
#include "common/error.h"
#include "common/util.h"
#include "operator/jobresult.h"
#include "rocrate/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIGEST_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- the line ----------------------------------------------------------- */

static char *print_to_string(const json_t *result, int *rc)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	assert_non_null(fp);
	*rc = job_result_print(fp, result);
	fclose(fp);
	return text;
}

static void test_round_trip(void **state)
{
	(void)state;
	json_t *r = json_pack("{s:s, s:s}", "published", "/ws/a\nb", "digest", "abc"), *back = NULL;
	char *out, *logs;
	int rc;

	out = print_to_string(r, &rc);
	assert_int_equal(rc, AL_OK);
	/* one line, even with a newline in a value */
	assert_int_equal(strncmp(out, JOB_RESULT_PREFIX, strlen(JOB_RESULT_PREFIX)), 0);
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	/* after other output, with trailing blank lines and CRLF */
	assert_true(asprintf(&logs, "progress 1\nprogress 2\r\n%s\r\n\n  \n", out) > 0);
	assert_int_equal(job_result_parse(logs, &back), AL_OK);
	assert_true(json_equal(back, r));
	json_decref(back);
	free(logs);
	free(out);
	json_decref(r);

	/* not an object */
	r = json_pack("[i]", 1);
	out = print_to_string(r, &rc);
	assert_int_equal(rc, AL_ERR_INTERNAL);
	free(out);
	json_decref(r);
}

static void test_parse_refuses(void **state)
{
	(void)state;
	json_t *o = (json_t *)1;
	static const char *const bad[] = {
		NULL,
		"",
		"\n\n",
		"just some output\n",
		/* the result must be the last line */
		"AIRLOCK-RESULT {\"passed\":true}\nairlock check-job: something happened\n",
		"AIRLOCK-RESULT {\"passed\":tr\n",
		"AIRLOCK-RESULT [1,2]\n",
		"AIRLOCK-RESULT \"x\"\n",
		"AIRLOCK-RESULT{\"a\":1}\n",
		"airlock-result {\"a\":1}\n",
		"AIRLOCK-RESULT {\"a\":1,\"a\":2}\n",
		"AIRLOCK-RESULT {\"a\":1} trailing\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = (json_t *)1;
		assert_int_equal(job_result_parse(bad[i], &o), AL_ERR_INVALID);
		assert_null(o);
	}
	/* the last line is quoted, cleaned and cut */
	assert_int_equal(job_result_parse("ok\nboom: \x01\x7f disk full\n", &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "its last line was: boom: ?? disk full"));

	/* a line over the limit is refused before it is parsed */
	{
		size_t n = JOB_RESULT_MAX + 16;
		char *big = malloc(n + 1);
		assert_non_null(big);
		memcpy(big, JOB_RESULT_PREFIX "{\"x\":\"", strlen(JOB_RESULT_PREFIX) + 6);
		memset(big + strlen(JOB_RESULT_PREFIX) + 6, 'a', n - strlen(JOB_RESULT_PREFIX) - 8);
		memcpy(big + n - 2, "\"}", 2);
		big[n] = '\0';
		assert_int_equal(job_result_parse(big, &o), AL_ERR_TOO_LARGE);
		assert_null(o);
		/* and never printed */
		big[n - 2] = '\0';
		json_t *r = json_pack("{s:s}", "x", big + strlen(JOB_RESULT_PREFIX) + 6);
		int rc;
		char *out = print_to_string(r, &rc);
		assert_int_equal(rc, AL_ERR_TOO_LARGE);
		assert_string_equal(out, "");
		free(out);
		json_decref(r);
		free(big);
	}
}

static json_t *manifest_of(const char *sha, const char *path, long size)
{
	json_t *files = json_pack("[{s:s, s:i, s:s}]", "path", path, "size", size, "sha256", sha);
	char digest[65];
	assert_int_equal(manifest_digest(files, digest), AL_OK);
	return json_pack("{s:o, s:i, s:i, s:s}", "files", files, "fileCount", 1, "totalBytes", size, "digest", digest);
}

static char *line_of(json_t *r)
{
	int rc;
	char *out = print_to_string(r, &rc);
	assert_int_equal(rc, AL_OK);
	json_decref(r);
	return out;
}

static void test_parse_check(void **state)
{
	(void)state;
	struct check_result res;
	json_t *m = manifest_of(DIGEST_EMPTY, "a.csv", 0), *checks = json_pack("[{s:s}]", "name", "not-empty");
	char *line;

	line = line_of(json_pack("{s:O, s:O, s:b}", "manifest", m, "checks", checks, "passed", 1));
	assert_int_equal(job_result_parse_check(line, &res), AL_OK);
	assert_int_equal(res.passed, 1);
	assert_true(json_equal(res.manifest, m));
	assert_true(json_equal(res.checks, checks));
	assert_null(res.reason);
	check_result_free(&res);
	free(line);

	line = line_of(json_pack("{s:O, s:O, s:b, s:s}", "manifest", m, "checks", checks, "passed", 0, "reason",
				 "file type not allowed: a.exe"));
	assert_int_equal(job_result_parse_check(line, &res), AL_OK);
	assert_int_equal(res.passed, 0);
	assert_string_equal(res.reason, "file type not allowed: a.exe");
	check_result_free(&res);
	free(line);

	/* unsafe data: a failure without a manifest */
	line = line_of(json_pack("{s:b, s:s}", "passed", 0, "reason", "evil.csv is a symbolic link"));
	assert_int_equal(job_result_parse_check(line, &res), AL_OK);
	assert_null(res.manifest);
	assert_null(res.checks);
	check_result_free(&res);
	free(line);

	/* refused: no passed, passing without a manifest or checks, failing
	 * without a reason, a digest that does not match the files, bad types */
	{
		json_t *tampered = json_deep_copy(m);
		json_object_set_new(json_array_get(json_object_get(tampered, "files"), 0), "size", json_integer(5));
		json_t *cases[] = {
			json_pack("{s:O, s:O}", "manifest", m, "checks", checks),
			json_pack("{s:O, s:s}", "manifest", m, "passed", "yes"),
			json_pack("{s:O, s:b}", "checks", checks, "passed", 1),
			json_pack("{s:O, s:b}", "manifest", m, "passed", 1),
			json_pack("{s:O, s:O, s:b}", "manifest", m, "checks", checks, "passed", 0),
			json_pack("{s:O, s:O, s:b}", "manifest", tampered, "checks", checks, "passed", 1),
			json_pack("{s:{s:s}, s:O, s:b}", "manifest", "digest", DIGEST_EMPTY, "checks", checks, "passed", 1),
			json_pack("{s:O, s:{}, s:b}", "manifest", m, "checks", "passed", 1),
			json_pack("{s:b, s:i}", "passed", 0, "reason", 3),
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			line = line_of(cases[i]);
			if (job_result_parse_check(line, &res) != AL_ERR_INVALID)
				fail_msg("case %zu was accepted: %s", i, line);
			assert_null(res.manifest);
			assert_null(res.reason);
			free(line);
		}
		json_decref(tampered);
	}
	json_decref(m);
	json_decref(checks);
}

static void test_parse_publish(void **state)
{
	(void)state;
	struct publish_result res;
	char *line;

	line = line_of(json_pack("{s:s, s:s}", "published", "/mnt/ws/ds1", "digest", DIGEST_EMPTY));
	assert_int_equal(job_result_parse_publish(line, &res), AL_OK);
	assert_int_equal(res.data_changed, 0);
	assert_string_equal(res.published, "/mnt/ws/ds1");
	assert_string_equal(res.digest, DIGEST_EMPTY);
	publish_result_free(&res);
	free(line);

	line = line_of(json_pack("{s:b, s:s}", "dataChanged", 1, "reason", "a.csv changed"));
	assert_int_equal(job_result_parse_publish(line, &res), AL_OK);
	assert_int_equal(res.data_changed, 1);
	assert_string_equal(res.reason, "a.csv changed");
	assert_null(res.published);
	publish_result_free(&res);
	free(line);

	/* a reason is supplied when the job gives none */
	line = line_of(json_pack("{s:b}", "dataChanged", 1));
	assert_int_equal(job_result_parse_publish(line, &res), AL_OK);
	assert_non_null(strstr(res.reason, "no longer matches"));
	publish_result_free(&res);
	free(line);

	{
		json_t *cases[] = {
			json_pack("{}"),
			json_pack("{s:s}", "published", "/x"),
			json_pack("{s:s}", "digest", DIGEST_EMPTY),
			json_pack("{s:s, s:s}", "published", "", "digest", DIGEST_EMPTY),
			json_pack("{s:i, s:s}", "published", 1, "digest", DIGEST_EMPTY),
			json_pack("{s:s}", "dataChanged", "yes"),
			json_pack("{s:b}", "dataChanged", 0),
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			line = line_of(cases[i]);
			if (job_result_parse_publish(line, &res) != AL_ERR_INVALID)
				fail_msg("case %zu was accepted: %s", i, line);
			assert_null(res.published);
			free(line);
		}
	}
}

/* ---- the subcommands ---------------------------------------------------- */

struct ran {
	int status;
	char *out; /* stdout */
	char *err; /* stderr */
};

static char *read_all(int fd)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	char chunk[65536];
	ssize_t n;
	assert_non_null(mem);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		fwrite(chunk, 1, (size_t)n, mem);
	fclose(mem);
	close(fd);
	return text;
}

/* Runs fn(argc, argv) in a child, as a job runs, capturing its output. */
static struct ran run_cmd(int (*fn)(int, char **), char **argv)
{
	struct ran r = { 0 };
	char out_path[] = "/tmp/test-jobresult-out-XXXXXX", err_path[] = "/tmp/test-jobresult-err-XXXXXX";
	int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path), wst, argc = 0;
	pid_t pid;

	assert_true(out_fd >= 0 && err_fd >= 0);
	while (argv[argc])
		argc++;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out_fd, 1);
		dup2(err_fd, 2);
		int status = fn(argc, argv);
		fflush(NULL); /* as main()'s return would */
		_exit(status);
	}
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	r.status = WEXITSTATUS(wst);
	lseek(out_fd, 0, SEEK_SET);
	lseek(err_fd, 0, SEEK_SET);
	r.out = read_all(out_fd);
	r.err = read_all(err_fd);
	unlink(out_path);
	unlink(err_path);
	return r;
}

static void ran_free(struct ran *r)
{
	free(r->out);
	free(r->err);
}

struct dirs {
	char base[64];
	char *data, *target;
};

static int setup(void **state)
{
	struct dirs *d = calloc(1, sizeof(*d));
	if (!d)
		return -1;
	snprintf(d->base, sizeof(d->base), "/tmp/test-jobresult-XXXXXX");
	if (!mkdtemp(d->base))
		return -1;
	d->data = util_path_join(d->base, "staging");
	d->target = util_path_join(d->base, "ws");
	if (util_mkdir_p(d->data, 0700) || util_mkdir_p(d->target, 0755))
		return -1;
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dirs *d = *state;
	char *cmd = NULL;
	/* published data is read-only */
	if (asprintf(&cmd, "chmod -R u+w '%s' 2>/dev/null", d->base) > 0 && system(cmd) < 0)
		fprintf(stderr, "chmod failed\n");
	free(cmd);
	util_remove_tree(d->base);
	free(d->data);
	free(d->target);
	free(d);
	return 0;
}

static void put(const char *dir, const char *name, const char *text)
{
	char *p = util_path_join(dir, name);
	assert_int_equal(util_write_file_atomic(p, text, strlen(text), 0600), AL_OK);
	free(p);
}

static void test_check_job(void **state)
{
	struct dirs *d = *state;
	struct check_result res;
	struct ran r;

	put(d->data, "patients.csv", "id,name\r\n1,a\r\n");
	put(d->data, "notes.txt", "hello\n");
	/* from the environment, with the defaults */
	setenv("AIRLOCK_DATA_DIR", d->data, 1);
	{
		char *argv[] = { "check-job", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(job_result_parse_check(r.out, &res), AL_OK);
	assert_int_equal(res.passed, 1);
	assert_int_equal(json_integer_value(json_object_get(res.manifest, "fileCount")), 2);
	assert_true(json_array_size(res.checks) >= 6);
	check_result_free(&res);
	ran_free(&r);

	/* the limits come from the arguments; a flag wins over the environment */
	{
		char *argv[] = { "check-job", "--data", d->data, "--max-files", "1", "--allowed-extensions=csv,json", NULL };
		setenv("AIRLOCK_DATA_DIR", "/nonexistent", 1);
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(job_result_parse_check(r.out, &res), AL_OK);
	assert_int_equal(res.passed, 0);
	assert_string_equal(res.reason, "2 files (limit 1)");
	check_result_free(&res);
	ran_free(&r);
	{
		char *argv[] = { "check-job", "--data", d->data, "--allowed-extension", "csv", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(job_result_parse_check(r.out, &res), AL_OK);
	assert_int_equal(res.passed, 0);
	assert_string_equal(res.reason, "file type not allowed: notes.txt");
	check_result_free(&res);
	ran_free(&r);
	/* an empty list allows nothing */
	{
		char *argv[] = { "check-job", "--data", d->data, "--allowed-extensions=", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(job_result_parse_check(r.out, &res), AL_OK);
	assert_int_equal(res.passed, 0);
	check_result_free(&res);
	ran_free(&r);
	{
		char *argv[] = { "check-job", "--data", d->data, "--max-file-bytes", "5", "--max-total-bytes=1000", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(job_result_parse_check(r.out, &res), AL_OK);
	assert_non_null(strstr(res.reason, "largest file patients.csv is 14 bytes (limit 5)"));
	check_result_free(&res);
	ran_free(&r);

	/* a symbolic link: a failed check without a manifest */
	{
		char *link = util_path_join(d->data, "evil.csv");
		char *argv[] = { "check-job", "--data", d->data, NULL };
		assert_int_equal(symlink("/etc/passwd", link), 0);
		r = run_cmd(cmd_check_job, argv);
		unlink(link);
		free(link);
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(job_result_parse_check(r.out, &res), AL_OK);
	assert_int_equal(res.passed, 0);
	assert_null(res.manifest);
	assert_non_null(strstr(res.reason, "symbolic link"));
	check_result_free(&res);
	ran_free(&r);

	/* failures: no result line, a last line on stderr, non-zero */
	{
		char *argv[] = { "check-job", "--data", "/nonexistent/dir", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "airlock check-job: "));
	ran_free(&r);
	unsetenv("AIRLOCK_DATA_DIR");
	{
		char *argv[] = { "check-job", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "AIRLOCK_DATA_DIR"));
	ran_free(&r);
	{
		char *argv[] = { "check-job", "--data", d->data, "--max-files", "-1", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 2);
	ran_free(&r);
	{
		char *argv[] = { "check-job", "--max-files", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 2);
	ran_free(&r);
	{
		char *argv[] = { "check-job", "--bogus", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 2);
	ran_free(&r);
	{
		char *argv[] = { "check-job", "--help", NULL };
		r = run_cmd(cmd_check_job, argv);
	}
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "usage: airlock check-job"));
	ran_free(&r);
}

static void test_publish_job(void **state)
{
	struct dirs *d = *state;
	struct publish_result res;
	json_t *manifest = NULL;
	char *mfile = util_path_join(d->base, "manifest.json"), *text, *dest = util_path_join(d->target, "ds-one");
	struct ran r;
	struct stat st;

	put(d->data, "patients.csv", "id,name\r\n1,a\r\n");
	assert_int_equal(manifest_build(d->data, &manifest), AL_OK);
	text = json_dumps(manifest, JSON_COMPACT);
	assert_int_equal(util_write_file_atomic(mfile, text, strlen(text), 0600), AL_OK);
	free(text);

	setenv("AIRLOCK_SOURCE_DIR", d->data, 1);
	setenv("AIRLOCK_TARGET_DIR", d->target, 1);
	setenv("AIRLOCK_MANIFEST_FILE", mfile, 1);
	{
		char *argv[] = { "publish-job", "--name", "ds-one", NULL };
		r = run_cmd(cmd_publish_job, argv);
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(job_result_parse_publish(r.out, &res), AL_OK);
	assert_int_equal(res.data_changed, 0);
	assert_string_equal(res.published, dest);
	assert_string_equal(res.digest, json_string_value(json_object_get(manifest, "digest")));
	publish_result_free(&res);
	ran_free(&r);
	{
		char *p = util_path_join(dest, "patients.csv");
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0444);
		free(p);
	}
	/* the source is untouched */
	assert_int_equal(stat(d->data, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	/* the data changed: nothing published, and that is a result, not a failure */
	put(d->data, "patients.csv", "id,name\r\n1,b\r\n");
	{
		char *argv[] = { "publish-job", "--name=ds-two", NULL };
		r = run_cmd(cmd_publish_job, argv);
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(job_result_parse_publish(r.out, &res), AL_OK);
	assert_int_equal(res.data_changed, 1);
	assert_non_null(strstr(res.reason, "no longer matches"));
	publish_result_free(&res);
	ran_free(&r);
	{
		char *two = util_path_join(d->target, "ds-two");
		assert_false(util_path_exists(two));
		free(two);
	}

	/* flags win over the environment */
	{
		char *argv[] = { "publish-job", "--name", "ds-three", "--manifest", "/nonexistent/m.json", NULL };
		r = run_cmd(cmd_publish_job, argv);
	}
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "airlock publish-job: the approved manifest /nonexistent/m.json"));
	ran_free(&r);
	/* a name that is not one path component */
	{
		char *argv[] = { "publish-job", "--name", "../escape", NULL };
		r = run_cmd(cmd_publish_job, argv);
	}
	assert_int_equal(r.status, 2);
	ran_free(&r);
	/* a manifest that is not one */
	put(d->base, "bad.json", "{\"files\":[]}");
	{
		char *bad = util_path_join(d->base, "bad.json");
		char *argv[] = { "publish-job", "--name", "ds-four", "--manifest", bad, NULL };
		r = run_cmd(cmd_publish_job, argv);
		free(bad);
	}
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "needs files and a digest"));
	ran_free(&r);
	unsetenv("AIRLOCK_TARGET_DIR");
	{
		char *argv[] = { "publish-job", "--name", "ds-five", NULL };
		r = run_cmd(cmd_publish_job, argv);
	}
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "AIRLOCK_TARGET_DIR"));
	ran_free(&r);
	{
		char *argv[] = { "publish-job", "--help", NULL };
		r = run_cmd(cmd_publish_job, argv);
	}
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "usage: airlock publish-job"));
	ran_free(&r);
	unsetenv("AIRLOCK_SOURCE_DIR");
	unsetenv("AIRLOCK_MANIFEST_FILE");
	json_decref(manifest);
	free(mfile);
	free(dest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_parse_check),
		cmocka_unit_test(test_parse_publish),
		cmocka_unit_test_setup_teardown(test_check_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_job, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
