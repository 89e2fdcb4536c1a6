/*
 * runtime_local.c - the runtime on one machine: volumes are directories,
 * secrets are files of mode 0600, jobs are supervised child processes.
 *
 * Layout:
 *   <state_dir>/secrets/<name>.json      one secret (0600, dir 0700)
 *   <state_dir>/jobs/<name>/             one job, see job_shim.h
 *   <staging_root>/<name>/               staging volume (0700)
 *   <workspace_root>/<name>/             workspace volume (0755)
 *
 * A job runs at most once: job_start claims the name with mkdir(2) of its
 * directory, which succeeds for exactly one caller, before anything runs.
 * The directory stays until job_delete, so after a crash of the caller the
 * retry finds it and answers AL_ERR_EXISTS.
 *
 * Jobs are started through a double fork (see job_shim.c): the process we
 * spawn exits as soon as the supervisor has recorded its pid, so we reap it
 * at once and a long-lived `airlock serve` never accumulates zombies, and the
 * supervisor - adopted by init, in its own session - outlives us.
 */
#include "runtime/runtime.h"
#include "runtime/job_shim.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A job directory without shim.pid is "starting" for this long after its
 * spec was written; later, its supervisor is presumed lost. */
#define JOB_START_GRACE_SECONDS 10
/* job_logs returns at most the last this many bytes. */
#define JOB_LOGS_MAX RUNTIME_JOB_LOGS_MAX
#define JOB_SPEC_MAX ((size_t)1 << 20)

struct runtime_local {
	struct runtime base;
	char *state_dir;
	char *staging_root;
	char *workspace_root;
	char *self_exe;
	char *dlt_command;  /* runs JOB_IMAGE_DLT jobs; NULL = not set up */
	char *jobs_dir;
	char *secrets_dir;
};

static struct runtime_local *local_of(struct runtime *rt)
{
	return (struct runtime_local *)rt;
}

static int oom(void)
{
	return al_error_set(AL_ERR_NOMEM, "out of memory");
}

/* ---- paths ------------------------------------------------------------ */

/* Absolute, symlink-free form of `path`, which need not exist yet: the
 * longest existing prefix goes through realpath(3), the rest is appended. */
static int canonical_path(const char *path, char **out)
{
	char *copy = NULL, *slash, *base, *parent = NULL;
	const char *pdir;
	size_t len;
	int rc = AL_OK;

	*out = realpath(path, NULL);
	if (*out)
		return AL_OK;
	if (errno != ENOENT)
		return al_error_set(AL_ERR_IO, "cannot resolve %s: %s", path, strerror(errno));
	if (!(copy = util_strdup(path)))
		return oom();
	len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	slash = strrchr(copy, '/');
	if (!slash) {
		pdir = ".";
		base = copy;
	} else if (slash == copy) {
		pdir = "/";
		base = copy + 1;
	} else {
		*slash = '\0';
		pdir = copy;
		base = slash + 1;
	}
	if (!strcmp(base, "..")) {
		rc = al_error_set(AL_ERR_INVALID, "%s: '..' after a directory that does not exist", path);
		goto out;
	}
	if ((rc = canonical_path(pdir, &parent)) < 0)
		goto out;
	if (!strcmp(base, ".") || !*base) {
		*out = parent;
		parent = NULL;
	} else if (!(*out = util_path_join(parent, base))) {
		rc = oom();
	}
out:
	free(parent);
	free(copy);
	return rc;
}

/* 1 when `inner` is `outer` or lies below it (both canonical). */
static int path_within(const char *inner, const char *outer)
{
	size_t lo = strlen(outer);
	if (!strcmp(outer, "/"))
		return 1;
	return !strncmp(inner, outer, lo) && (inner[lo] == '/' || inner[lo] == '\0');
}

static int volume_path(struct runtime_local *rl, enum volume_class cls, const char *name, char **out)
{
	const char *root;
	int rc;

	*out = NULL;
	if (cls == VOLUME_STAGING)
		root = rl->staging_root;
	else if (cls == VOLUME_WORKSPACE)
		root = rl->workspace_root;
	else
		return al_error_set(AL_ERR_INVALID, "volume class %d is neither staging nor workspace", (int)cls);
	if ((rc = runtime_check_name("volume", name)) < 0)
		return rc;
	return (*out = util_path_join(root, name)) ? AL_OK : oom();
}

static int secret_path(struct runtime_local *rl, const char *name, char **out)
{
	struct buf b;
	int rc;

	*out = NULL;
	if ((rc = runtime_check_name("secret", name)) < 0)
		return rc;
	buf_init(&b, PATH_MAX);
	if ((rc = buf_appendf(&b, "%s/%s.json", rl->secrets_dir, name)) < 0) {
		buf_free(&b);
		return rc;
	}
	return (*out = buf_detach(&b)) ? AL_OK : oom();
}

static int job_dir(struct runtime_local *rl, const char *name, char **out)
{
	int rc;
	*out = NULL;
	if ((rc = runtime_check_name("job", name)) < 0)
		return rc;
	return (*out = util_path_join(rl->jobs_dir, name)) ? AL_OK : oom();
}

/* mkdir -p, then force `mode` on the last component (umask and older
 * installs may have left it more open than we want). */
static int make_private_dir(const char *path, mode_t mode, int force_mode)
{
	int rc;
	if ((rc = util_mkdir_p(path, mode)) < 0)
		return rc;
	if (force_mode && chmod(path, mode) < 0)
		log_warn("cannot set mode %o on %s: %s", (unsigned)mode, path, strerror(errno));
	return AL_OK;
}

/* ---- volumes ---------------------------------------------------------- */

static int local_volume_ensure(struct runtime *rt, enum volume_class cls, const char *name,
			       const struct runtime_owner *owner, char **out_path)
{
	struct runtime_local *rl = local_of(rt);
	mode_t mode = cls == VOLUME_STAGING ? 0700 : 0755;
	struct stat st;
	char *path;
	int rc;

	if (out_path)
		*out_path = NULL;
	if ((rc = volume_path(rl, cls, name, &path)) < 0)
		return rc;
	if (mkdir(path, mode) == 0) {
		/* umask must not decide who can read a volume */
		if (chmod(path, mode) < 0) {
			rc = al_error_set(AL_ERR_IO, "cannot set mode of volume %s: %s", path, strerror(errno));
			goto out;
		}
	} else if (errno != EEXIST) {
		rc = al_error_set(AL_ERR_IO, "cannot create volume %s: %s", path, strerror(errno));
		goto out;
	} else if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = al_error_set(AL_ERR_CONFLICT, "volume path %s exists but is not a directory; remove it", path);
		goto out;
	}
	if (out_path) {
		*out_path = path;
		path = NULL;
	}
out:
	free(path);
	return rc;
}

static int local_volume_delete(struct runtime *rt, enum volume_class cls, const char *name)
{
	char *path;
	int rc;

	if ((rc = volume_path(local_of(rt), cls, name, &path)) < 0)
		return rc;
	if ((rc = util_remove_tree(path)) < 0)
		al_error_wrap(rc, "cannot delete volume '%s'", name);
	free(path);
	return rc;
}

/* ---- secrets ---------------------------------------------------------- */

static int local_secret_ensure(struct runtime *rt, const char *name, const json_t *data,
			       const struct runtime_owner *owner)
{
	char *path = NULL, *text = NULL;
	size_t len = 0;
	int rc;

	if ((rc = secret_path(local_of(rt), name, &path)) < 0)
		return rc;
	/* Usually key -> string, but any object is stored as given: the
	 * operator also hands a job its (nested) definition this way. */
	if (!json_is_object(data)) {
		rc = al_error_set(AL_ERR_INVALID, "secret '%s': data must be a JSON object", name);
		goto out;
	}
	if (!(text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS))) {
		rc = oom();
		goto out;
	}
	len = strlen(text);
	if ((rc = util_write_file_atomic(path, text, len, 0600)) < 0) {
		al_error_wrap(rc, "cannot store secret '%s'", name);
		goto out;
	}
out:
	if (text) {
		explicit_bzero(text, len);
		free(text);
	}
	free(path);
	return rc;
}

static int local_secret_delete(struct runtime *rt, const char *name)
{
	char *path;
	int rc;

	if ((rc = secret_path(local_of(rt), name, &path)) < 0)
		return rc;
	if (unlink(path) < 0 && errno != ENOENT)
		rc = al_error_set(AL_ERR_IO, "cannot delete secret file %s: %s", path, strerror(errno));
	free(path);
	return rc;
}

/* ---- jobs ------------------------------------------------------------- */

/* Where a mount is, checked to exist: a volume's directory or a secret's file. */
static int mount_path(struct runtime_local *rl, const struct job_spec *spec, const struct job_mount *m, char **out)
{
	struct stat st;
	int rc;

	if (m->kind == JOB_MOUNT_VOLUME) {
		if ((rc = volume_path(rl, m->cls, m->name, out)) < 0)
			return rc;
		if (stat(*out, &st) < 0 || !S_ISDIR(st.st_mode))
			rc = al_error_set(AL_ERR_NOT_FOUND,
					  "job '%s': %s volume '%s' does not exist; ensure the volume before starting "
					  "the job", spec->name, m->cls == VOLUME_STAGING ? "staging" : "workspace", m->name);
	} else {
		if ((rc = secret_path(rl, m->name, out)) < 0)
			return rc;
		if (stat(*out, &st) < 0 || !S_ISREG(st.st_mode))
			rc = al_error_set(AL_ERR_NOT_FOUND,
					  "job '%s': secret '%s' does not exist; ensure the secret before starting the job",
					  spec->name, m->name);
	}
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* spec.json for the shim (see job_shim.h): the full argv (this airlock, then
 * the subcommand) and the environment the mounts give. Read-only is recorded
 * for the record; a local job runs as our user, so it is not enforced. */
static int build_spec(struct runtime_local *rl, const struct job_spec *spec, char **out)
{
	char when[UTIL_TIME_LEN];
	json_t *o = NULL, *argv = NULL, *env = NULL, *mounts = NULL;
	int rc = AL_OK;

	*out = NULL;
	if (spec->image == JOB_IMAGE_DLT && !rl->dlt_command) {
		rc = al_error_set(AL_ERR_INVALID, "job '%s' needs the dlt runner, which this airlock has not set up: "
						  "run scripts/dlt-venv.sh and set runners.dltCommand in the configuration "
						  "(docs/runner.md, \"dlt runner\")", spec->name);
		goto out;
	}
	if (!(argv = json_array()) || !(env = json_object()) || !(mounts = json_array()) ||
	    json_array_append_new(argv, json_string(spec->image == JOB_IMAGE_DLT ? rl->dlt_command : rl->self_exe)) ||
	    json_object_set_new(env, "AIRLOCK_BIN", json_string(rl->self_exe))) {
		rc = oom();
		goto out;
	}
	for (size_t i = 0; i < JOB_ENV_MAX; i++)
		if (spec->env[i].name && json_object_set_new(env, spec->env[i].name, json_string(spec->env[i].value))) {
			rc = al_error_set(AL_ERR_INVALID, "job '%s': env %s is not valid UTF-8", spec->name,
					  spec->env[i].name);
			goto out;
		}
	for (size_t i = 0; spec->args[i]; i++) {
		json_t *s = json_string(spec->args[i]);
		if (!s) {
			rc = al_error_set(AL_ERR_INVALID, "job '%s': args[%zu] is not valid UTF-8", spec->name, i);
			goto out;
		}
		if (json_array_append_new(argv, s)) {
			rc = oom();
			goto out;
		}
	}
	for (size_t i = 0; i < JOB_MOUNTS_MAX; i++) {
		const struct job_mount *m = &spec->mounts[i];
		char *path = NULL;
		json_t *rec;
		if (!m->env)
			continue;
		if ((rc = mount_path(rl, spec, m, &path)) < 0)
			goto out;
		rec = json_pack("{s:s, s:s, s:s, s:s, s:b}", "kind", m->kind == JOB_MOUNT_VOLUME ? "volume" : "secret",
				"name", m->name, "env", m->env, "path", path, "readOnly", m->kind == JOB_MOUNT_SECRET || m->read_only);
		if (!rec || json_array_append_new(mounts, rec) || json_object_set_new(env, m->env, json_string(path))) {
			free(path);
			rc = oom();
			goto out;
		}
		free(path);
	}
	util_now_rfc3339(when);
	o = json_pack("{s:s, s:O, s:O, s:O, s:i, s:s}", "name", spec->name, "argv", argv, "env", env, "mounts", mounts,
		      "timeoutSeconds", spec->timeout_seconds, "createdAt", when);
	if (!o || !(*out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER)))
		rc = oom();
out:
	json_decref(o);
	json_decref(argv);
	json_decref(env);
	json_decref(mounts);
	return rc;
}

/* Spawns `<self_exe> job-shim <dir>` in a new session and waits for that
 * launcher, which exits as soon as the supervisor is running. */
static int spawn_shim(struct runtime_local *rl, const char *name, const char *dir, int *not_started)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char shim_cmd[] = "job-shim";
	char *args[4];
	pid_t pid;
	int err, wst = 0, rc = AL_OK;

	*not_started = 0;
	args[0] = rl->self_exe;
	args[1] = shim_cmd;
	args[2] = (char *)dir;
	args[3] = NULL;
	if ((err = posix_spawn_file_actions_init(&fa)) != 0)
		return al_error_set(AL_ERR_NOMEM, "posix_spawn_file_actions_init: %s", strerror(err));
	if ((err = posix_spawnattr_init(&attr)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return al_error_set(AL_ERR_NOMEM, "posix_spawnattr_init: %s", strerror(err));
	}
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if ((err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
	    (err = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0)) ||
	    (err = posix_spawn_file_actions_adddup2(&fa, 1, 2)) ||
	    (err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
							  POSIX_SPAWN_SETSIGDEF)) ||
	    (err = posix_spawnattr_setsigmask(&attr, &none)) || (err = posix_spawnattr_setsigdefault(&attr, &all)) ||
	    (err = posix_spawn(&pid, rl->self_exe, &fa, &attr, args, environ))) {
		*not_started = 1;
		rc = al_error_set(AL_ERR_IO, "job '%s': cannot start the job supervisor %s: %s", name, rl->self_exe,
				  strerror(err));
		goto out;
	}
	while ((err = waitpid(pid, &wst, 0)) < 0 && errno == EINTR)
		;
	if (err < 0) {
		/* Someone else reaped it; job_get will tell how it went. */
		log_warn("job %s: cannot wait for the job launcher (pid %ld): %s", name, (long)pid, strerror(errno));
	} else if (WIFEXITED(wst) && WEXITSTATUS(wst) == JOB_SHIM_EXIT_NOT_STARTED) {
		*not_started = 1;
		rc = al_error_set(AL_ERR_IO, "job '%s': the job supervisor could not start", name);
	} else if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
		log_warn("job %s: the job launcher ended with status %d; job_get will report the outcome", name, wst);
	}
out:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

static int local_job_start(struct runtime *rt, const struct job_spec *spec)
{
	struct runtime_local *rl = local_of(rt);
	char *dir = NULL, *spec_text = NULL, *spec_file = NULL, *log_file = NULL;
	int rc, claimed = 0, not_started;

	if ((rc = runtime_check_job_spec(spec)) < 0)
		return rc;
	if ((rc = job_dir(rl, spec->name, &dir)) < 0)
		return rc;
	if ((rc = build_spec(rl, spec, &spec_text)) < 0)
		goto out;
	if (!(spec_file = util_path_join(dir, JOB_SPEC_FILE)) || !(log_file = util_path_join(dir, JOB_LOG_FILE))) {
		rc = oom();
		goto out;
	}

	/* The claim: exactly one caller ever creates this directory. */
	if (mkdir(dir, 0700) < 0) {
		if (errno == EEXIST)
			rc = al_error_set(AL_ERR_EXISTS, "job '%s' already exists (running or finished); delete it "
						  "before starting it again", spec->name);
		else
			rc = al_error_set(AL_ERR_IO, "cannot create job directory %s: %s", dir, strerror(errno));
		goto out;
	}
	claimed = 1;
	if ((rc = util_fsync_dir(rl->jobs_dir)) < 0 ||
	    (rc = util_write_file_atomic(spec_file, spec_text, strlen(spec_text), 0600)) < 0) {
		al_error_wrap(rc, "job '%s'", spec->name);
		goto out;
	}
	if ((rc = spawn_shim(rl, spec->name, dir, &not_started)) < 0) {
		char *line = NULL;
		if (not_started && job_shim_last_line(log_file, &line) == AL_OK && line && *line)
			al_error_set(rc, "job '%s': the job supervisor could not start: %s", spec->name, line);
		free(line);
		goto out;
	}
	log_info("job %s: started", spec->name);
out:
	/* Every failure after the claim happens before anything ran (a
	 * launcher in an unknown state is not a failure): undo the claim so
	 * that a retry can start the job. */
	if (rc < 0 && claimed) {
		char msg[AL_ERROR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", al_error_message());
		if (util_remove_tree(dir) < 0)
			log_warn("job %s: cannot remove the job directory after a failed start: %s", spec->name,
				 al_error_message());
		al_error_set(rc, "%s", msg);
	}
	free(log_file);
	free(spec_file);
	free(spec_text);
	free(dir);
	return rc;
}

/* Reads status.json: 1 when present (out filled), 0 when absent. */
static int read_status(const char *dir, struct job_status *out)
{
	char *path = util_path_join(dir, JOB_STATUS_FILE);
	json_error_t jerr;
	json_t *o = NULL, *v;
	const char *phase;
	int rc = 1;

	if (!path)
		return oom();
	if (!util_path_exists(path)) {
		rc = 0;
		goto out;
	}
	if (!(o = json_load_file(path, 0, &jerr))) {
		rc = al_error_set(AL_ERR_IO, "cannot read job status %s: %s", path, jerr.text);
		goto out;
	}
	phase = json_string_value(json_object_get(o, "phase"));
	if (phase && !strcmp(phase, "Succeeded")) {
		out->phase = JOB_SUCCEEDED;
	} else if (phase && !strcmp(phase, "Failed")) {
		out->phase = JOB_FAILED;
	} else {
		rc = al_error_set(AL_ERR_IO, "job status %s: phase must be Succeeded or Failed", path);
		goto out;
	}
	v = json_object_get(o, "exitCode");
	out->exit_code = json_is_integer(v) ? (int)json_integer_value(v) : -1;
	if (((v = json_object_get(o, "reason")) && json_is_string(v) &&
	     !(out->reason = util_strdup(json_string_value(v)))) ||
	    ((v = json_object_get(o, "startedAt")) && json_is_string(v) &&
	     !(out->started_at = util_strdup(json_string_value(v)))) ||
	    ((v = json_object_get(o, "finishedAt")) && json_is_string(v) &&
	     !(out->finished_at = util_strdup(json_string_value(v)))))
		rc = oom();
out:
	if (rc < 0)
		job_status_free(out);
	json_decref(o);
	free(path);
	return rc;
}

/* createdAt of spec.json (a running job's start), or NULL. */
static char *spec_created_at(const char *dir)
{
	char *path = util_path_join(dir, JOB_SPEC_FILE), *text = NULL, *res = NULL;
	json_t *o;

	if (path && util_read_file(path, JOB_SPEC_MAX, &text, NULL) == AL_OK &&
	    (o = json_loads(text, 0, NULL))) {
		res = util_strdup(json_string_value(json_object_get(o, "createdAt")));
		json_decref(o);
	}
	free(text);
	free(path);
	return res;
}

/* 1 when the job was claimed so recently that its supervisor may still be
 * on its way to writing shim.pid. */
static int recently_claimed(const char *dir)
{
	char *path = util_path_join(dir, JOB_SPEC_FILE);
	struct stat st;
	double age;
	int ok;

	if (!path)
		return 1;
	ok = stat(path, &st) == 0 || stat(dir, &st) == 0;
	free(path);
	if (!ok)
		return 0;
	age = difftime(time(NULL), st.st_mtime);
	return age < JOB_START_GRACE_SECONDS && age > -60;
}

/* The supervisor is gone without a word: make sure its job is gone too, so
 * that "Failed" means nothing is still writing into the volume. */
static void kill_orphaned_job(const char *dir)
{
	char *path = util_path_join(dir, JOB_PID_FILE);
	struct job_shim_ident id;

	if (path && job_shim_ident_read(path, &id) == AL_OK && job_shim_ident_alive(&id, 1)) {
		log_warn("killing process group %ld left behind by a lost job supervisor (%s)", (long)id.pid, dir);
		kill(-id.pid, SIGKILL);
	}
	free(path);
}

static int local_job_get(struct runtime *rt, const char *name, struct job_status *out)
{
	struct runtime_local *rl = local_of(rt);
	struct job_shim_ident shim;
	char *dir = NULL, *pid_path = NULL;
	int rc, have_pid;

	memset(out, 0, sizeof(*out));
	if ((rc = job_dir(rl, name, &dir)) < 0)
		return rc;
	if (!util_path_exists(dir))
		goto out; /* JOB_NOT_FOUND */
	if ((rc = read_status(dir, out)) != 0)
		goto out;
	if (!(pid_path = util_path_join(dir, JOB_SHIM_PID_FILE))) {
		rc = oom();
		goto out;
	}
	have_pid = job_shim_ident_read(pid_path, &shim) == AL_OK;
	if ((have_pid && job_shim_ident_alive(&shim, 0)) || (!have_pid && recently_claimed(dir))) {
		out->phase = JOB_RUNNING;
		out->started_at = spec_created_at(dir);
		goto out;
	}
	/* The supervisor may have finished between the two looks. */
	if ((rc = read_status(dir, out)) != 0)
		goto out;
	if (!have_pid && !util_path_exists(pid_path)) {
		/* Claimed, but no supervisor ever started (whoever claimed it died
		 * before spawning one, long enough ago): the job never ran, so it
		 * is not a failure. Drop the claim; the caller starts it. */
		log_warn("job %s: claimed but never started (its launcher stopped first); starting it again", name);
		if ((rc = util_remove_tree(dir)) < 0)
			goto out;
		memset(out, 0, sizeof(*out)); /* JOB_NOT_FOUND */
		goto out;
	}
	kill_orphaned_job(dir);
	out->phase = JOB_FAILED;
	out->exit_code = -1;
	out->started_at = spec_created_at(dir);
	if (!(out->reason = util_strdup("job supervisor disappeared (machine restart?)")))
		rc = oom();
out:
	if (rc < 0)
		job_status_free(out);
	free(pid_path);
	free(dir);
	return rc < 0 ? rc : AL_OK;
}

static int local_job_logs(struct runtime *rt, const char *name, char **out)
{
	char *dir = NULL, *path = NULL, chunk[8192];
	struct stat st;
	struct buf b;
	off_t off, pos;
	int fd = -1, rc;

	*out = NULL;
	buf_init(&b, JOB_LOGS_MAX);
	if ((rc = job_dir(local_of(rt), name, &dir)) < 0)
		return rc;
	if (!util_path_exists(dir)) {
		rc = al_error_set(AL_ERR_NOT_FOUND, "job '%s' does not exist", name);
		goto out;
	}
	if (!(path = util_path_join(dir, JOB_LOG_FILE))) {
		rc = oom();
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		rc = al_error_set(AL_ERR_IO, "cannot open job log %s: %s", path, strerror(errno));
		goto out;
	}
	if (fd >= 0) {
		if (fstat(fd, &st) < 0) {
			rc = al_error_set(AL_ERR_IO, "cannot stat job log %s: %s", path, strerror(errno));
			goto out;
		}
		off = st.st_size > (off_t)JOB_LOGS_MAX ? st.st_size - (off_t)JOB_LOGS_MAX : 0;
		/* Read what existed at fstat time: the job may still be writing. */
		for (pos = off; pos < st.st_size;) {
			size_t want = sizeof(chunk);
			ssize_t n;
			if ((off_t)want > st.st_size - pos)
				want = (size_t)(st.st_size - pos);
			n = pread(fd, chunk, want, pos);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = al_error_set(AL_ERR_IO, "cannot read job log %s: %s", path, strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			if ((rc = buf_append(&b, chunk, (size_t)n)) < 0)
				goto out;
			pos += n;
		}
	}
	if (!(*out = buf_detach(&b)))
		rc = oom();
out:
	if (fd >= 0)
		close(fd);
	buf_free(&b);
	free(path);
	free(dir);
	return rc;
}

/* Polls until neither process is alive or `ms` have passed; 1 if all gone. */
static int wait_gone(const struct job_shim_ident *shim, const struct job_shim_ident *job, int64_t ms)
{
	int64_t until = util_monotonic_ms() + ms;
	for (;;) {
		int alive = (shim && job_shim_ident_alive(shim, 0)) || (job && job_shim_ident_alive(job, 0));
		if (!alive)
			return 1;
		if (util_monotonic_ms() >= until)
			return 0;
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static int local_job_delete(struct runtime *rt, const char *name)
{
	struct job_shim_ident shim, job;
	char *dir = NULL, *shim_path = NULL, *job_path = NULL;
	int rc, have_shim, have_job;

	if ((rc = job_dir(local_of(rt), name, &dir)) < 0)
		return rc;
	if (!util_path_exists(dir))
		goto out;
	if (!(shim_path = util_path_join(dir, JOB_SHIM_PID_FILE)) || !(job_path = util_path_join(dir, JOB_PID_FILE))) {
		rc = oom();
		goto out;
	}
	have_shim = job_shim_ident_read(shim_path, &shim) == AL_OK && job_shim_ident_alive(&shim, 0);
	have_job = job_shim_ident_read(job_path, &job) == AL_OK && job_shim_ident_alive(&job, 1);
	if (have_shim || have_job) {
		/* The shim forwards SIGTERM to the job's group and records
		 * "job was stopped"; the group gets it directly as well in case
		 * the shim is wedged. */
		if (have_shim)
			kill(shim.pid, SIGTERM);
		if (have_job)
			kill(-job.pid, SIGTERM);
		if (!wait_gone(have_shim ? &shim : NULL, have_job ? &job : NULL,
			       (JOB_KILL_GRACE_SECONDS + 1) * 1000)) {
			if (have_job && job_shim_ident_alive(&job, 1))
				kill(-job.pid, SIGKILL);
			if (have_shim && job_shim_ident_alive(&shim, 0))
				kill(shim.pid, SIGKILL);
			if (!wait_gone(have_shim ? &shim : NULL, have_job ? &job : NULL, 2000)) {
				rc = al_error_set(AL_ERR_UNAVAILABLE, "job '%s' did not stop after SIGKILL; try again",
						  name);
				goto out;
			}
		}
		/* What is left of the job's group (children that ignored
		 * SIGTERM) goes too. The shim does this when it sees the leader
		 * exit, but the shim may be gone. The group id cannot have been
		 * reused while any member is left. */
		if (have_job)
			kill(-job.pid, SIGKILL);
		log_info("job %s: stopped", name);
	}
	if ((rc = util_remove_tree(dir)) < 0) {
		/* A file may have appeared while removing: one more pass. */
		struct timespec ts = { 0, 100 * 1000000L };
		nanosleep(&ts, NULL);
		if ((rc = util_remove_tree(dir)) < 0)
			al_error_wrap(rc, "cannot delete job '%s'", name);
	}
out:
	free(shim_path);
	free(job_path);
	free(dir);
	return rc;
}

/* ---- open / close ----------------------------------------------------- */

static void local_close(struct runtime *rt)
{
	struct runtime_local *rl = local_of(rt);
	if (!rl)
		return;
	free(rl->state_dir);
	free(rl->staging_root);
	free(rl->workspace_root);
	free(rl->self_exe);
	free(rl->dlt_command);
	free(rl->jobs_dir);
	free(rl->secrets_dir);
	free(rl);
}

/* Owners (struct runtime_owner) mean nothing on one machine: the
 * operator's cleanup removes a deleted datasource's children itself. */

/* The embedded uploader comes with a later issue: until then an Uploaded
 * datasource's staging volume is all the local runtime provides, so there
 * is nothing to ensure or delete. */
static int local_uploader_ensure(struct runtime *rt, const char *name, const char *volume,
				 const struct runtime_owner *owner)
{
	return AL_OK;
}

static int local_uploader_delete(struct runtime *rt, const char *name)
{
	return AL_OK;
}

static const struct runtime_ops local_ops = {
	.volume_ensure = local_volume_ensure,
	.volume_delete = local_volume_delete,
	.secret_ensure = local_secret_ensure,
	.secret_delete = local_secret_delete,
	.job_start = local_job_start,
	.job_get = local_job_get,
	.job_logs = local_job_logs,
	.job_delete = local_job_delete,
	.uploader_ensure = local_uploader_ensure,
	.uploader_delete = local_uploader_delete,
	.close = local_close,
};

static int check_layout(const struct runtime_local *rl)
{
	const char *roots[2] = { rl->staging_root, rl->workspace_root };
	const char *labels[2] = { "staging_root", "workspace_root" };

	if (path_within(rl->staging_root, rl->workspace_root) || path_within(rl->workspace_root, rl->staging_root))
		return al_error_set(AL_ERR_INVALID,
				    "staging_root (%s) and workspace_root (%s) must be separate directories, "
				    "neither inside the other: staging storage is kept apart from workspace storage",
				    rl->staging_root, rl->workspace_root);
	for (int i = 0; i < 2; i++) {
		if (path_within(rl->state_dir, roots[i]))
			return al_error_set(AL_ERR_INVALID,
					    "state_dir (%s) must not be %s (%s) or inside it: volumes would be able to "
					    "reach the runtime's jobs and secrets", rl->state_dir, labels[i], roots[i]);
		if (path_within(roots[i], rl->jobs_dir) || path_within(roots[i], rl->secrets_dir))
			return al_error_set(AL_ERR_INVALID, "%s (%s) must not lie inside %s or %s", labels[i], roots[i],
					    rl->jobs_dir, rl->secrets_dir);
	}
	return AL_OK;
}

int runtime_local_open(struct runtime **out, const char *state_dir, const char *staging_root,
		       const char *workspace_root, const char *self_exe)
{
	struct runtime_local *rl;
	int rc;

	*out = NULL;
	if (!state_dir || !*state_dir)
		return al_error_set(AL_ERR_INVALID, "local runtime: state_dir is empty");
	if (!staging_root || !*staging_root)
		return al_error_set(AL_ERR_INVALID, "local runtime: staging_root is empty");
	if (!workspace_root || !*workspace_root)
		return al_error_set(AL_ERR_INVALID, "local runtime: workspace_root is empty");
	if (!(rl = calloc(1, sizeof(*rl))))
		return oom();
	rl->base.ops = &local_ops;
	if ((rc = canonical_path(state_dir, &rl->state_dir)) < 0 ||
	    (rc = canonical_path(staging_root, &rl->staging_root)) < 0 ||
	    (rc = canonical_path(workspace_root, &rl->workspace_root)) < 0)
		goto fail;
	if (!(rl->jobs_dir = util_path_join(rl->state_dir, "jobs")) ||
	    !(rl->secrets_dir = util_path_join(rl->state_dir, "secrets"))) {
		rc = oom();
		goto fail;
	}
	if ((rc = check_layout(rl)) < 0)
		goto fail;
	/* The shim is this very program unless told otherwise. */
	if (!(rl->self_exe = realpath(self_exe && *self_exe ? self_exe : "/proc/self/exe", NULL))) {
		rc = al_error_set(AL_ERR_INVALID, "local runtime: cannot find the job shim executable %s: %s",
				  self_exe && *self_exe ? self_exe : "/proc/self/exe", strerror(errno));
		goto fail;
	}
	if (access(rl->self_exe, X_OK) < 0) {
		rc = al_error_set(AL_ERR_INVALID, "local runtime: job shim %s is not executable: %s", rl->self_exe,
				  strerror(errno));
		goto fail;
	}
	if ((rc = make_private_dir(rl->state_dir, 0700, 0)) < 0 || (rc = make_private_dir(rl->jobs_dir, 0700, 1)) < 0 ||
	    (rc = make_private_dir(rl->secrets_dir, 0700, 1)) < 0 ||
	    (rc = make_private_dir(rl->staging_root, 0700, 1)) < 0 ||
	    (rc = make_private_dir(rl->workspace_root, 0755, 0)) < 0) {
		al_error_wrap(rc, "local runtime");
		goto fail;
	}
	*out = &rl->base;
	return AL_OK;
fail:
	local_close(&rl->base);
	return rc;
}

int runtime_local_set_dlt_command(struct runtime *rt, const char *command)
{
	struct runtime_local *rl;
	char *copy = NULL;

	if (!rt || rt->ops != &local_ops)
		return al_error_set(AL_ERR_INVALID, "not a local runtime");
	rl = local_of(rt);
	if (command && *command) {
		if (access(command, X_OK) < 0)
			return al_error_set(AL_ERR_INVALID, "runners.dltCommand %s: %s (run scripts/dlt-venv.sh; the "
							    "command is runners/dlt/airlock-dlt-runner)",
					    command, strerror(errno));
		if (!(copy = util_strdup(command)))
			return oom();
	}
	free(rl->dlt_command);
	rl->dlt_command = copy;
	return AL_OK;
}
