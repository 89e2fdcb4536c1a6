/*
 * job_shim.c - supervises one local job; see job_shim.h for the protocol.
 *
 * Process tree:  airlock (serve) --posix_spawn, new session--> launcher
 *                launcher --fork--> shim (launcher exits once shim.pid exists)
 *                shim --fork, own process group--> job
 * The launcher tells its parent, through its exit status, whether anything
 * was started; the shim tells the launcher through a pipe: 'R' (job running)
 * or 'N' (nothing started). Silence (the shim died) means "unknown".
 */
#include "runtime/job_shim.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAUNCHER_EXIT_UNKNOWN 4

/* ---- process identity ------------------------------------------------- */

static void read_boot_id(char out[40])
{
	char *s = NULL;
	size_t k = 0;

	if (util_read_file("/proc/sys/kernel/random/boot_id", 256, &s, NULL) == AL_OK) {
		for (size_t i = 0; s[i] && k < 39; i++) {
			char c = s[i];
			if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-')
				out[k++] = c;
		}
	}
	free(s);
	if (!k)
		out[k++] = '-';
	out[k] = '\0';
}

/* Reads state (field 3) and starttime (field 22) of /proc/<pid>/stat. The
 * command name (field 2) may hold spaces and parentheses, so parsing starts
 * after the last ')'. */
static int proc_stat(pid_t pid, unsigned long long *starttime, char *state)
{
	char path[64], *text = NULL, *p, *end;
	int rc;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((rc = util_read_file(path, 4096, &text, NULL)) < 0)
		return rc == AL_ERR_NOT_FOUND ? al_error_set(AL_ERR_NOT_FOUND, "no process %ld", (long)pid) : rc;
	p = strrchr(text, ')');
	if (!p || p[1] != ' ' || !p[2]) {
		free(text);
		return al_error_set(AL_ERR_IO, "%s: unexpected format", path);
	}
	p += 2;
	*state = *p;
	/* p is at field 3; advance to field 22. */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p) {
			free(text);
			return al_error_set(AL_ERR_IO, "%s: too few fields", path);
		}
		p++;
	}
	errno = 0;
	*starttime = strtoull(p, &end, 10);
	rc = (errno || end == p) ? al_error_set(AL_ERR_IO, "%s: bad start time", path) : AL_OK;
	free(text);
	return rc;
}

int job_shim_ident_of(pid_t pid, struct job_shim_ident *out)
{
	char state;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = proc_stat(pid, &out->starttime, &state)) < 0)
		return rc;
	out->pid = pid;
	read_boot_id(out->boot_id);
	return AL_OK;
}

int job_shim_ident_write(const char *path, pid_t pid)
{
	struct job_shim_ident id;
	char line[128];
	int rc, n;

	if ((rc = job_shim_ident_of(pid, &id)) < 0)
		return rc;
	n = snprintf(line, sizeof(line), "%ld %llu %s\n", (long)id.pid, id.starttime, id.boot_id);
	if (n < 0 || (size_t)n >= sizeof(line))
		return al_error_set(AL_ERR_INTERNAL, "pid line too long");
	return util_write_file_atomic(path, line, (size_t)n, 0600);
}

int job_shim_ident_read(const char *path, struct job_shim_ident *out)
{
	char *text = NULL;
	long pid;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = util_read_file(path, 256, &text, NULL)) < 0)
		return rc;
	if (sscanf(text, "%ld %llu %39s", &pid, &out->starttime, out->boot_id) != 3 || pid <= 0) {
		free(text);
		return al_error_set(AL_ERR_IO, "%s is malformed (expected '<pid> <starttime> <boot_id>')", path);
	}
	free(text);
	out->pid = (pid_t)pid;
	return AL_OK;
}

int job_shim_ident_alive(const struct job_shim_ident *id, int zombie_alive)
{
	unsigned long long start;
	char state, boot[40];

	if (id->pid <= 0)
		return 0;
	read_boot_id(boot);
	if (strcmp(id->boot_id, "-") && strcmp(boot, "-") && strcmp(id->boot_id, boot))
		return 0; /* recorded before a reboot */
	if (proc_stat(id->pid, &start, &state) < 0)
		return 0;
	if (start != id->starttime || state == 'X' || state == 'x')
		return 0;
	if (state == 'Z')
		return zombie_alive;
	return 1;
}

/* ---- log tail --------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at s (n bytes available), else 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

int job_shim_last_line(const char *path, char **out)
{
	unsigned char tail[8192];
	struct stat st;
	struct buf b;
	size_t n = 0, start, end;
	off_t off;
	int fd, rc = AL_OK;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT)
		return al_error_set(AL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
	if (fd >= 0) {
		if (fstat(fd, &st) < 0) {
			rc = al_error_set(AL_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
			close(fd);
			return rc;
		}
		off = st.st_size > (off_t)sizeof(tail) ? st.st_size - (off_t)sizeof(tail) : 0;
		while (n < sizeof(tail)) {
			ssize_t r = pread(fd, tail + n, sizeof(tail) - n, off + (off_t)n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = al_error_set(AL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
				close(fd);
				return rc;
			}
			if (r == 0)
				break;
			n += (size_t)r;
		}
		close(fd);
	}
	end = n;
	while (end > 0 && (tail[end - 1] == '\n' || tail[end - 1] == '\r' || tail[end - 1] == ' ' ||
			   tail[end - 1] == '\t'))
		end--;
	/* A carriage return starts a new visible line too (progress output). */
	start = end;
	while (start > 0 && tail[start - 1] != '\n' && tail[start - 1] != '\r')
		start--;
	while (start < end && (tail[start] == ' ' || tail[start] == '\t'))
		start++;

	buf_init(&b, JOB_REASON_LINE_MAX);
	for (size_t i = start; i < end && b.len < JOB_REASON_LINE_MAX;) {
		unsigned char c = tail[i];
		size_t k;
		if (c >= 0x20 && c < 0x7f) {
			rc = buf_appendc(&b, (char)c);
			i++;
		} else if (c >= 0x80 && (k = utf8_seq(tail + i, end - i)) > 0) {
			if (b.len + k > JOB_REASON_LINE_MAX)
				break;
			rc = buf_append(&b, tail + i, k);
			i += k;
		} else {
			rc = buf_appendc(&b, c == '\t' ? ' ' : '?');
			i++;
		}
		if (rc < 0)
			break;
	}
	/* Stopping at the cap is not an error. */
	*out = buf_detach(&b);
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}

/* ---- the shim --------------------------------------------------------- */

struct shim_spec {
	json_t *root;
	const char *name;
	json_t *env;             /* {NAME: value}, borrowed from root; may be NULL */
	long long timeout;       /* seconds, 0 = none */
	char **argv;             /* pointers into root */
};

static void shim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void shim_say(const char *fmt, ...)
{
	char when[UTIL_TIME_LEN];
	va_list ap;

	util_now_rfc3339(when);
	dprintf(2, "%s airlock job-shim: ", when);
	va_start(ap, fmt);
	vdprintf(2, fmt, ap);
	va_end(ap);
	dprintf(2, "\n");
}

static void spec_free(struct shim_spec *sp)
{
	free(sp->argv);
	json_decref(sp->root);
	memset(sp, 0, sizeof(*sp));
}

static const char *opt_string(json_t *o, const char *key, int *bad)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v) || !json_string_length(v)) {
		*bad = 1;
		return NULL;
	}
	return json_string_value(v);
}

static int spec_load(const char *jobdir, struct shim_spec *sp)
{
	json_error_t jerr;
	json_t *args, *t;
	char *path;
	size_t n;
	int bad = 0;

	memset(sp, 0, sizeof(*sp));
	if (!(path = util_path_join(jobdir, JOB_SPEC_FILE)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	sp->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!sp->root) {
		al_error_set(AL_ERR_IO, "cannot read job spec %s: %s", path, jerr.text);
		free(path);
		return AL_ERR_IO;
	}
	args = json_object_get(sp->root, "argv");
	t = json_object_get(sp->root, "timeoutSeconds");
	sp->name = opt_string(sp->root, "name", &bad);
	sp->env = json_object_get(sp->root, "env");
	if (sp->env) {
		const char *k;
		json_t *v;
		if (!json_is_object(sp->env))
			bad = 1;
		json_object_foreach(sp->env, k, v)
			if (!*k || strchr(k, '=') || !json_is_string(v))
				bad = 1;
	}
	if (bad || !sp->name || !json_is_array(args) || !(n = json_array_size(args)) ||
	    (t && !json_is_integer(t)) || (t && json_integer_value(t) < 0)) {
		al_error_set(AL_ERR_INVALID, "job spec %s is malformed: it needs name, a non-empty argv "
			     "array, an optional env object of NAME -> string and timeoutSeconds >= 0", path);
		free(path);
		spec_free(sp);
		return AL_ERR_INVALID;
	}
	sp->timeout = t ? json_integer_value(t) : 0;
	sp->argv = calloc(n + 1, sizeof(*sp->argv));
	if (!sp->argv) {
		free(path);
		spec_free(sp);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		json_t *a = json_array_get(args, i);
		if (!json_is_string(a)) {
			al_error_set(AL_ERR_INVALID, "job spec %s: argv[%zu] is not a string", path, i);
			free(path);
			spec_free(sp);
			return AL_ERR_INVALID;
		}
		sp->argv[i] = (char *)json_string_value(a);
	}
	free(path);
	return AL_OK;
}

/* Closes every descriptor above stderr: the spawner (a server) may have left
 * sockets or database files open without O_CLOEXEC. */
static void close_inherited_fds(void)
{
	long max;
	if (close_range(3, ~0U, 0) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 3; fd < max; fd++)
		close(fd);
}

/* stdin from /dev/null, stdout and stderr appended to the job's log. */
static int setup_stdio(const char *jobdir)
{
	char *log_path = util_path_join(jobdir, JOB_LOG_FILE);
	int fd, nullfd;

	if (!log_path)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		al_error_set(AL_ERR_IO, "cannot open job log %s: %s", log_path, strerror(errno));
		free(log_path);
		return AL_ERR_IO;
	}
	free(log_path);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nullfd < 0 || dup2(nullfd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
		int e = errno;
		if (nullfd > 2)
			close(nullfd);
		if (fd > 2)
			close(fd);
		return al_error_set(AL_ERR_IO, "cannot redirect standard streams: %s", strerror(e));
	}
	if (nullfd > 2)
		close(nullfd);
	if (fd > 2)
		close(fd);
	/* dup2(fd, fd) keeps O_CLOEXEC: clear it so the job inherits 0-2. */
	for (int i = 0; i <= 2; i++)
		fcntl(i, F_SETFD, 0);
	return AL_OK;
}

static int write_status(const char *jobdir, int succeeded, int exit_code, const char *reason,
			const char *started_at, const char *finished_at)
{
	json_t *st = json_object();
	char *text = NULL, *path = util_path_join(jobdir, JOB_STATUS_FILE);
	int rc;

	if (!st || !path ||
	    json_object_set_new(st, "phase", json_string(succeeded ? "Succeeded" : "Failed")) ||
	    json_object_set_new(st, "exitCode", json_integer(exit_code)) ||
	    (reason && json_object_set_new(st, "reason", json_string(reason))) ||
	    (started_at && json_object_set_new(st, "startedAt", json_string(started_at))) ||
	    json_object_set_new(st, "finishedAt", json_string(finished_at)) ||
	    !(text = json_dumps(st, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory building status.json");
		goto out;
	}
	rc = util_write_file_atomic(path, text, strlen(text), 0600);
out:
	free(text);
	free(path);
	json_decref(st);
	return rc;
}

static void tell_launcher(int *fd, char what)
{
	if (*fd < 0)
		return;
	while (write(*fd, &what, 1) < 0 && errno == EINTR)
		;
	close(*fd);
	*fd = -1;
}

static void kill_group(pid_t pgid, int sig)
{
	if (kill(-pgid, sig) < 0 && errno == ESRCH)
		kill(pgid, sig); /* setpgid may not have happened yet */
}

enum end_cause { END_EXITED = 0, END_DEADLINE, END_STOPPED };

/* Waits for the job's leader to exit, enforcing the deadline and forwarding
 * stop signals. Returns how it ended; *wstatus is the leader's wait status. */
static enum end_cause supervise(pid_t child, long long timeout_s, const sigset_t *sigs, int *wstatus)
{
	int64_t start = util_monotonic_ms();
	int64_t deadline = timeout_s > 0 ? start + timeout_s * 1000 : -1;
	int64_t kill_at = -1;
	int killed = 0;
	enum end_cause cause = END_EXITED;

	for (;;) {
		siginfo_t si;
		struct timespec ts;
		int64_t now, wake;
		int sig, w;

		/* WNOWAIT: the leader stays a zombie, so its pid - and so the group
		 * id - cannot be reused while we kill what is left of the group. */
		memset(&si, 0, sizeof(si));
		w = waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT);
		if ((w == 0 && si.si_pid == child) || (w < 0 && errno == ECHILD))
			break;
		now = util_monotonic_ms();
		if (cause == END_EXITED && deadline >= 0 && now >= deadline) {
			cause = END_DEADLINE;
			kill_group(child, SIGTERM);
			kill_at = now + JOB_KILL_GRACE_SECONDS * 1000;
		}
		if (kill_at >= 0 && now >= kill_at && !killed) {
			kill_group(child, SIGKILL);
			killed = 1;
		}
		wake = now + 1000; /* wake up every second regardless */
		if (cause == END_EXITED && deadline >= 0 && deadline < wake)
			wake = deadline;
		if (kill_at >= 0 && !killed && kill_at < wake)
			wake = kill_at;
		if (wake < now)
			wake = now;
		ts.tv_sec = (time_t)((wake - now) / 1000);
		ts.tv_nsec = (long)((wake - now) % 1000) * 1000000L;
		sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
			if (cause == END_EXITED)
				cause = END_STOPPED;
			kill_group(child, SIGTERM);
			if (kill_at < 0)
				kill_at = util_monotonic_ms() + JOB_KILL_GRACE_SECONDS * 1000;
		}
	}
	/* Whatever the leader left behind in its group goes with it. */
	kill(-child, SIGKILL);
	*wstatus = 0;
	while (waitpid(child, wstatus, 0) < 0 && errno == EINTR)
		;
	return cause;
}

/* The job sees its name and its mounts' variables, and no other AIRLOCK_*
 * variable of the server that started it (a login token, a config path). */
static int job_environment(const struct shim_spec *sp)
{
	const char *key;
	json_t *v;

	for (;;) {
		char name[256];
		int found = 0;
		for (char **e = environ; *e; e++) {
			const char *eq = strchr(*e, '=');
			size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
			if (!strncmp(*e, "AIRLOCK_", 8) && len < sizeof(name)) {
				memcpy(name, *e, len);
				name[len] = '\0';
				found = 1;
				break;
			}
		}
		if (!found)
			break;
		/* environ changes under unsetenv: look again from the start. */
		if (unsetenv(name) < 0)
			return -1;
	}
	if (setenv("AIRLOCK_JOB_NAME", sp->name, 1) < 0)
		return -1;
	json_object_foreach(sp->env, key, v)
		if (setenv(key, json_string_value(v), 1) < 0)
			return -1;
	return 0;
}

static int run_shim(const char *jobdir, struct shim_spec *sp, int notify_fd)
{
	char started_at[UTIL_TIME_LEN], finished_at[UTIL_TIME_LEN];
	char *shim_pid_path = util_path_join(jobdir, JOB_SHIM_PID_FILE);
	char *job_pid_path = util_path_join(jobdir, JOB_PID_FILE);
	char *log_path = util_path_join(jobdir, JOB_LOG_FILE);
	struct buf reason;
	sigset_t sigs, oldmask;
	const char *cwd = jobdir;
	enum end_cause cause;
	int wstatus = 0, rc = 1, exit_code = 0, ok = 0;
	pid_t child;

	buf_init(&reason, 4096);
	if (!shim_pid_path || !job_pid_path || !log_path) {
		shim_say("out of memory");
		tell_launcher(&notify_fd, 'N');
		goto out;
	}
	if (setsid() < 0)
		shim_say("setsid: %s (continuing)", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGCHLD);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, &oldmask);

	if (job_shim_ident_write(shim_pid_path, getpid()) < 0) {
		shim_say("cannot record the supervisor pid: %s", al_error_message());
		tell_launcher(&notify_fd, 'N');
		goto out;
	}
	if (job_environment(sp) < 0) {
		shim_say("cannot set the job's environment: %s", strerror(errno));
		unlink(shim_pid_path);
		tell_launcher(&notify_fd, 'N');
		goto out;
	}

	util_now_rfc3339(started_at);
	child = fork();
	if (child < 0) {
		shim_say("cannot start the job process: %s", strerror(errno));
		unlink(shim_pid_path);
		tell_launcher(&notify_fd, 'N');
		goto out;
	}
	if (child == 0) {
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		if (chdir(cwd) < 0) {
			shim_say("cannot enter the job's directory %s: %s", cwd, strerror(errno));
			_exit(127);
		}
		execvp(sp->argv[0], sp->argv);
		shim_say("cannot run %s: %s", sp->argv[0], strerror(errno));
		_exit(127);
	}
	if (setpgid(child, child) < 0 && errno != EACCES)
		shim_say("setpgid: %s", strerror(errno));
	if (job_shim_ident_write(job_pid_path, child) < 0)
		shim_say("cannot record the job pid: %s", al_error_message());
	tell_launcher(&notify_fd, 'R');

	cause = supervise(child, sp->timeout, &sigs, &wstatus);
	util_now_rfc3339(finished_at);

	if (WIFEXITED(wstatus))
		exit_code = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		exit_code = 128 + WTERMSIG(wstatus);
	if (cause == END_DEADLINE) {
		buf_appendf(&reason, "deadline exceeded after %lld s", sp->timeout);
	} else if (cause == END_STOPPED) {
		buf_appends(&reason, "job was stopped");
	} else if (WIFEXITED(wstatus) && exit_code == 0) {
		ok = 1;
	} else if (WIFEXITED(wstatus)) {
		char *line = NULL;
		if (job_shim_last_line(log_path, &line) == AL_OK && line && *line)
			buf_appendf(&reason, "exit status %d: %s", exit_code, line);
		else
			buf_appendf(&reason, "exit status %d", exit_code);
		free(line);
	} else {
		buf_appendf(&reason, "killed by signal %d", WTERMSIG(wstatus));
	}
	if (write_status(jobdir, ok, exit_code, ok ? NULL : buf_cstr(&reason), started_at, finished_at) < 0) {
		shim_say("cannot record how the job ended: %s", al_error_message());
		goto out;
	}
	rc = 0;
out:
	tell_launcher(&notify_fd, 'N');
	buf_free(&reason);
	free(shim_pid_path);
	free(job_pid_path);
	free(log_path);
	return rc;
}

int job_shim_main(int argc, char **argv)
{
	struct shim_spec sp;
	const char *jobdir;
	int pfd[2];
	pid_t pid;

	if (argc != 2 || !argv[1][0] || argv[1][0] == '-') {
		fprintf(argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
			"usage: airlock job-shim <job-dir>\n\n"
			"Internal: supervises the job described by <job-dir>/spec.json. Started by the\n"
			"local runtime of 'airlock serve'; not meant to be run by hand.\n");
		return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
	}
	jobdir = argv[1];
	close_inherited_fds();
	if (setup_stdio(jobdir) < 0) {
		fprintf(stderr, "airlock job-shim: %s\n", al_error_message());
		return JOB_SHIM_EXIT_NOT_STARTED;
	}
	if (spec_load(jobdir, &sp) < 0) {
		shim_say("%s", al_error_message());
		return JOB_SHIM_EXIT_NOT_STARTED;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		shim_say("cannot create a pipe: %s", strerror(errno));
		spec_free(&sp);
		return JOB_SHIM_EXIT_NOT_STARTED;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		shim_say("cannot start the supervisor: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		spec_free(&sp);
		return JOB_SHIM_EXIT_NOT_STARTED;
	}
	if (pid > 0) {
		/* Launcher: wait until the shim has recorded itself, then leave
		 * so that init adopts the shim. */
		char c = 0;
		ssize_t n;
		close(pfd[1]);
		while ((n = read(pfd[0], &c, 1)) < 0 && errno == EINTR)
			;
		close(pfd[0]);
		spec_free(&sp);
		if (n == 1 && c == 'R')
			_exit(0);
		if (n == 1 && c == 'N')
			_exit(JOB_SHIM_EXIT_NOT_STARTED);
		_exit(LAUNCHER_EXIT_UNKNOWN);
	}
	close(pfd[0]);
	{
		int rc = run_shim(jobdir, &sp, pfd[1]);
		spec_free(&sp);
		return rc;
	}
}
