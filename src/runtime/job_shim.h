/*
 * job_shim.h - the supervisor of one local job (`airlock job-shim <jobdir>`).
 *
 * The local runtime starts `<self> job-shim <jobdir>` in a new session. That
 * process forks the real supervisor (the shim) and exits as soon as the shim
 * has recorded itself in shim.pid, so init adopts the shim and `airlock serve`
 * never accumulates zombies (double fork). The shim forks the job in its own
 * process group, enforces the deadline, and when the job ends writes
 * status.json - the only file that says how the job finished. Because the
 * shim and the job live in their own session, killing the process that
 * started them (even with SIGKILL) does not stop a running job.
 *
 * A job directory holds:
 *   spec.json    written by runtime_local before the shim starts
 *                {name, argv[], env{NAME: value}, mounts[], timeoutSeconds, createdAt}:
 *                argv[0] is the airlock binary; env holds the mounts' variables
 *                (mounts[] records them for people and is not read by the shim).
 *                The job runs in the job directory with AIRLOCK_JOB_NAME and
 *                env set, and every other inherited AIRLOCK_* variable removed.
 *   shim.pid     "<pid> <starttime> <boot_id>": the shim's identity, so a
 *                reused pid (or a reboot) is never mistaken for the shim
 *   job.pid      the same for the job's process-group leader
 *   log          stdout and stderr of the job (and the shim's own complaints)
 *   status.json  {phase: Succeeded|Failed, exitCode, reason, startedAt, finishedAt}
 */
#ifndef AL_RUNTIME_JOB_SHIM_H
#define AL_RUNTIME_JOB_SHIM_H

#include <sys/types.h>

#define JOB_SPEC_FILE "spec.json"
#define JOB_SHIM_PID_FILE "shim.pid"
#define JOB_PID_FILE "job.pid"
#define JOB_LOG_FILE "log"
#define JOB_STATUS_FILE "status.json"

/* Seconds between SIGTERM and SIGKILL when a job is stopped. */
#define JOB_KILL_GRACE_SECONDS 5
/* Longest failure reason taken from the log's last line. */
#define JOB_REASON_LINE_MAX 512

/* Exit status of the `job-shim` launcher process: nothing was started (no
 * shim, no job), so the caller may remove the job directory and report the
 * error found at the end of the log. Any other non-zero status means "state
 * unknown": the job directory must stay. */
#define JOB_SHIM_EXIT_NOT_STARTED 3

/* Entry point of `airlock job-shim <jobdir>` (argv[0] is "job-shim").
 * Returns the process exit status. */
int job_shim_main(int argc, char **argv);

/* The identity of a process as recorded in a pid file. */
struct job_shim_ident {
	pid_t pid;
	unsigned long long starttime; /* /proc/<pid>/stat field 22 */
	char boot_id[40];             /* /proc/sys/kernel/random/boot_id, or "-" */
};

/* Fills `out` for a live process; AL_ERR_NOT_FOUND when there is none. */
int job_shim_ident_of(pid_t pid, struct job_shim_ident *out);
/* Writes "<pid> <starttime> <boot_id>\n" for `pid` atomically (mode 0600). */
int job_shim_ident_write(const char *path, pid_t pid);
/* Parses a pid file; AL_ERR_NOT_FOUND when it does not exist. */
int job_shim_ident_read(const char *path, struct job_shim_ident *out);
/* 1 when the process recorded in `id` still exists (same pid, start time
 * and boot), else 0. A zombie counts as alive only if `zombie_alive`. */
int job_shim_ident_alive(const struct job_shim_ident *id, int zombie_alive);

/* The last non-empty line of a file (looking at most at its last 8 KiB),
 * made printable UTF-8 and cut to JOB_REASON_LINE_MAX bytes. *out is a new
 * string ("" when there is none); free it. */
int job_shim_last_line(const char *path, char **out);

#endif
