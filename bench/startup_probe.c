/*
 * startup_probe.c - start a server and time it until it answers (a benchmark
 * tool, not part of the product).
 *
 *   startup_probe [--timeout-ms N] [--log FILE] URL -- COMMAND [ARGS...]
 *
 * Takes CLOCK_MONOTONIC, spawns COMMAND (stdin /dev/null, stdout and stderr
 * to FILE or /dev/null), then GETs URL every millisecond until it answers
 * 200. Prints "ready_ms=<ms from spawn to the first 200> pid=<pid>" and
 * leaves the server running (the caller stops it). Exits 1 if the server
 * exits or does not answer within the timeout (default 10 s).
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t discard(char *data, size_t size, size_t nmemb, void *ud)
{
	(void)data;
	(void)ud;
	return size * nmemb;
}

int main(int argc, char **argv)
{
	const char *url = NULL, *log = "/dev/null";
	long timeout_ms = 10000;
	posix_spawn_file_actions_t fa;
	struct timespec pause = { 0, 1000000 };
	double t0, t;
	CURL *curl;
	pid_t pid;
	int i, st;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--log") && i + 1 < argc)
			log = argv[++i];
		else
			url = argv[i];
	}
	if (!url || i + 1 >= argc) {
		fprintf(stderr, "usage: startup_probe [--timeout-ms N] [--log FILE] URL -- COMMAND [ARGS...]\n");
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(curl = curl_easy_init())) {
		fprintf(stderr, "startup_probe: cannot initialise libcurl\n");
		return 1;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1000L);
	curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);

	if (posix_spawn_file_actions_init(&fa) ||
	    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) ||
	    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600) ||
	    posix_spawn_file_actions_adddup2(&fa, 1, 2)) {
		fprintf(stderr, "startup_probe: cannot set up the child's files\n");
		return 1;
	}
	t0 = now_ms();
	if (posix_spawnp(&pid, argv[i + 1], &fa, NULL, argv + i + 1, environ)) {
		fprintf(stderr, "startup_probe: cannot start %s\n", argv[i + 1]);
		return 1;
	}
	posix_spawn_file_actions_destroy(&fa);
	for (;;) {
		long code = 0;
		if (curl_easy_perform(curl) == CURLE_OK &&
		    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200)
			break;
		t = now_ms();
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "startup_probe: %s exited before it answered (see %s)\n", argv[i + 1], log);
			return 1;
		}
		if (t - t0 > (double)timeout_ms) {
			fprintf(stderr, "startup_probe: %s did not answer %s within %ld ms\n", argv[i + 1], url,
				timeout_ms);
			kill(pid, SIGTERM);
			return 1;
		}
		nanosleep(&pause, NULL);
	}
	t = now_ms();
	printf("ready_ms=%.1f pid=%d\n", t - t0, (int)pid);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return 0;
}
