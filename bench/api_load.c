/*
 * api_load.c - load generator for the airlock HTTP API (a benchmark tool,
 * not part of the product).
 *
 * Mode "datasources" (default): THREADS threads, each with one libcurl easy
 * handle (so one kept-alive connection), take the next index from a shared
 * counter and do
 *     POST /api/v1/datasources?workspace=W   (an Import datasource PREFIX-i)
 *     GET  /api/v1/datasources/PREFIX-i
 * until COUNT datasources exist. Every request's latency is measured with
 * CLOCK_MONOTONIC around curl_easy_perform. With --phases the creates all
 * run first and the gets after them, so each operation's throughput is
 * measured on its own; without it the two alternate (the default).
 *
 * Mode "healthz": the same threads and connections do COUNT GET /healthz in
 * all - the server's ceiling for a request that touches neither the
 * database nor authentication.
 *
 * Prints a human summary and one machine-readable line starting "RESULT".
 * Exits non-zero if any request failed (wrong status or transport error).
 *
 *   api_load --url http://127.0.0.1:PORT --token TOKEN --workspace W
 *            [--count 10000] [--threads 4] [--prefix bench] [--phases]
 *            [--mode datasources|healthz]
 */

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MAX 2048
#define URL_MAX 1024
#define KEEP_RESPONSE 512

enum op { OP_CREATE, OP_GET, OP_HEALTH, OP_COUNT };
static const char *const op_name[OP_COUNT] = { "create", "get", "healthz" };

struct opts {
	const char *url, *token, *workspace, *prefix, *mode;
	long count;
	int threads, phases;
};

struct shared {
	const struct opts *o;
	atomic_long next[OP_COUNT]; /* next index to take, per operation */
	atomic_long failures;
	pthread_barrier_t start;   /* phases: everyone starts each phase together */
	struct timespec phase_t0[OP_COUNT], phase_t1[OP_COUNT];
	pthread_mutex_t mu;
};

struct worker {
	struct shared *sh;
	pthread_t tid;
	CURL *curl;
	struct curl_slist *headers;
	uint64_t *lat[OP_COUNT]; /* nanoseconds, one per request done */
	long n[OP_COUNT];
	char resp[KEEP_RESPONSE];
	size_t resp_len;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ts_diff_s(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* Keeps the start of a response (for error messages), drops the rest. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct worker *w = ud;
	size_t n = size * nmemb, room = sizeof(w->resp) - 1 - w->resp_len;
	if (room > 0) {
		size_t take = n < room ? n : room;
		memcpy(w->resp + w->resp_len, data, take);
		w->resp_len += take;
		w->resp[w->resp_len] = '\0';
	}
	return n;
}

static int request(struct worker *w, enum op op, const char *url, const char *body, long want)
{
	uint64_t t0, t1;
	long status = 0;
	CURLcode cc;

	w->resp_len = 0;
	w->resp[0] = '\0';
	curl_easy_setopt(w->curl, CURLOPT_URL, url);
	if (body) {
		curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else {
		curl_easy_setopt(w->curl, CURLOPT_HTTPGET, 1L);
	}
	t0 = now_ns();
	cc = curl_easy_perform(w->curl);
	t1 = now_ns();
	w->lat[op][w->n[op]++] = t1 - t0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK || status != want) {
		long f = atomic_fetch_add(&w->sh->failures, 1);
		if (f < 5)
			fprintf(stderr, "api_load: %s %s: %s, HTTP %ld (wanted %ld): %.200s\n", op_name[op], url,
				cc == CURLE_OK ? "ok" : curl_easy_strerror(cc), status, want, w->resp);
		return -1;
	}
	return 0;
}

static void do_create(struct worker *w, long i)
{
	const struct opts *o = w->sh->o;
	char url[URL_MAX], body[BODY_MAX];
	snprintf(url, sizeof(url), "%s/api/v1/datasources?workspace=%s", o->url, o->workspace);
	snprintf(body, sizeof(body),
		 "{\"apiVersion\":\"xlscsde.nhs.uk/v1\",\"kind\":\"AnalyticsWorkspaceDataSource\","
		 "\"metadata\":{\"name\":\"%s-%06ld\",\"labels\":{\"xlscsde.nhs.uk/type\":\"import\"}},"
		 "\"spec\":{\"type\":\"Import\","
		 "\"publisher\":{\"organisation\":\"NHS Greater Manchester ICB\","
		 "\"contact\":{\"name\":\"Bench Mark\",\"role\":\"AWMS Developer\"}},"
		 "\"project\":{\"id\":\"d4e6\"},"
		 "\"displayName\":\"Benchmark dataset %ld\","
		 "\"description\":\"Synthetic datasource created by bench/api_load; nothing is collected.\","
		 "\"license\":\"Benchmark only.\","
		 "\"connections\":[{\"type\":\"sqlite\",\"name\":\"db\",\"url\":\"sqlite:///nonexistent/bench.db\"}],"
		 "\"objects\":[{\"table\":{\"name\":\"patients\",\"connection\":\"db\"}},"
		 "{\"table\":{\"name\":\"attendances\",\"connection\":\"db\"}}]}}",
		 o->prefix, i, i);
	request(w, OP_CREATE, url, body, 201);
}

static void do_get(struct worker *w, long i)
{
	const struct opts *o = w->sh->o;
	char url[URL_MAX];
	snprintf(url, sizeof(url), "%s/api/v1/datasources/%s-%06ld", o->url, o->prefix, i);
	request(w, OP_GET, url, NULL, 200);
}

static void do_health(struct worker *w, long i)
{
	char url[URL_MAX];
	(void)i;
	snprintf(url, sizeof(url), "%s/healthz", w->sh->o->url);
	request(w, OP_HEALTH, url, NULL, 200);
}

/* One timed phase: every thread takes indexes of `op` until count. */
static void run_phase(struct worker *w, enum op op)
{
	struct shared *sh = w->sh;
	long i;
	pthread_barrier_wait(&sh->start);
	pthread_mutex_lock(&sh->mu);
	if (sh->phase_t0[op].tv_sec == 0)
		clock_gettime(CLOCK_MONOTONIC, &sh->phase_t0[op]);
	pthread_mutex_unlock(&sh->mu);
	while ((i = atomic_fetch_add(&sh->next[op], 1)) < sh->o->count) {
		if (op == OP_CREATE)
			do_create(w, i);
		else if (op == OP_GET)
			do_get(w, i);
		else
			do_health(w, i);
	}
	pthread_barrier_wait(&sh->start);
	pthread_mutex_lock(&sh->mu);
	if (sh->phase_t1[op].tv_sec == 0)
		clock_gettime(CLOCK_MONOTONIC, &sh->phase_t1[op]);
	pthread_mutex_unlock(&sh->mu);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	long i;

	if (!strcmp(sh->o->mode, "healthz")) {
		run_phase(w, OP_HEALTH);
	} else if (sh->o->phases) {
		run_phase(w, OP_CREATE);
		run_phase(w, OP_GET);
	} else {
		/* Alternating: one counter drives both; the create's clock is the run's. */
		pthread_barrier_wait(&sh->start);
		pthread_mutex_lock(&sh->mu);
		if (sh->phase_t0[OP_CREATE].tv_sec == 0)
			clock_gettime(CLOCK_MONOTONIC, &sh->phase_t0[OP_CREATE]);
		pthread_mutex_unlock(&sh->mu);
		while ((i = atomic_fetch_add(&sh->next[OP_CREATE], 1)) < sh->o->count) {
			do_create(w, i);
			do_get(w, i);
		}
		pthread_barrier_wait(&sh->start);
		pthread_mutex_lock(&sh->mu);
		if (sh->phase_t1[OP_CREATE].tv_sec == 0)
			clock_gettime(CLOCK_MONOTONIC, &sh->phase_t1[OP_CREATE]);
		pthread_mutex_unlock(&sh->mu);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct_ms(const uint64_t *v, long n, double p)
{
	long rank;
	if (n <= 0)
		return 0;
	rank = (long)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: api_load --url URL [--token TOKEN --workspace W] [--count N] [--threads T]\n"
			"                [--prefix P] [--phases] [--mode datasources|healthz]\n");
}

int main(int argc, char **argv)
{
	struct opts o = { .prefix = "bench", .mode = "datasources", .count = 10000, .threads = 4 };
	struct shared sh;
	struct worker *ws;
	char auth[1024];
	int rc = 0, health;
	enum op ops[OP_COUNT];
	int nops = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--phases")) {
			o.phases = 1;
			continue;
		}
		if (!v) {
			usage();
			return 2;
		}
		if (!strcmp(a, "--url"))
			o.url = v;
		else if (!strcmp(a, "--token"))
			o.token = v;
		else if (!strcmp(a, "--workspace"))
			o.workspace = v;
		else if (!strcmp(a, "--prefix"))
			o.prefix = v;
		else if (!strcmp(a, "--mode"))
			o.mode = v;
		else if (!strcmp(a, "--count"))
			o.count = strtol(v, NULL, 10);
		else if (!strcmp(a, "--threads"))
			o.threads = (int)strtol(v, NULL, 10);
		else {
			usage();
			return 2;
		}
		i++;
	}
	health = !strcmp(o.mode, "healthz");
	if (!o.url || o.count <= 0 || o.threads <= 0 || o.threads > 256 ||
	    (!health && (strcmp(o.mode, "datasources") || !o.token || !o.workspace))) {
		usage();
		return 2;
	}
	if (health)
		ops[nops++] = OP_HEALTH;
	else {
		ops[nops++] = OP_CREATE;
		ops[nops++] = OP_GET;
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "api_load: curl_global_init failed\n");
		return 1;
	}
	memset(&sh, 0, sizeof(sh));
	sh.o = &o;
	for (int k = 0; k < OP_COUNT; k++)
		atomic_init(&sh.next[k], 0);
	atomic_init(&sh.failures, 0);
	pthread_mutex_init(&sh.mu, NULL);
	pthread_barrier_init(&sh.start, NULL, (unsigned)o.threads);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o.token ? o.token : "");

	ws = calloc((size_t)o.threads, sizeof(*ws));
	if (!ws) {
		fprintf(stderr, "api_load: out of memory\n");
		return 1;
	}
	for (int t = 0; t < o.threads; t++) {
		struct worker *w = &ws[t];
		w->sh = &sh;
		for (int k = 0; k < nops; k++) {
			w->lat[ops[k]] = calloc((size_t)o.count, sizeof(uint64_t));
			if (!w->lat[ops[k]]) {
				fprintf(stderr, "api_load: out of memory\n");
				return 1;
			}
		}
		w->curl = curl_easy_init();
		if (!w->curl) {
			fprintf(stderr, "api_load: curl_easy_init failed\n");
			return 1;
		}
		w->headers = curl_slist_append(NULL, auth);
		w->headers = curl_slist_append(w->headers, "Content-Type: application/json");
		w->headers = curl_slist_append(w->headers, "Expect:"); /* no 100-continue round trip */
		curl_easy_setopt(w->curl, CURLOPT_HTTPHEADER, w->headers);
		curl_easy_setopt(w->curl, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(w->curl, CURLOPT_WRITEDATA, w);
		curl_easy_setopt(w->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(w->curl, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(w->curl, CURLOPT_TIMEOUT, 30L);
	}
	for (int t = 0; t < o.threads; t++)
		if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0) {
			fprintf(stderr, "api_load: cannot start thread %d\n", t);
			return 1;
		}
	for (int t = 0; t < o.threads; t++)
		pthread_join(ws[t].tid, NULL);
	if (!health && !o.phases) { /* alternating: both operations share the run's clock */
		sh.phase_t0[OP_GET] = sh.phase_t0[OP_CREATE];
		sh.phase_t1[OP_GET] = sh.phase_t1[OP_CREATE];
	}

	printf("api_load: mode %s%s, %ld %s, %d threads (one kept-alive connection each)\n", o.mode,
	       o.phases ? " (phases: all creates, then all gets)" : health ? "" : " (create then get, alternating)",
	       o.count, health ? "requests" : "datasources", o.threads);
	printf("RESULT mode=%s threads=%d count=%ld failures=%ld", o.mode, o.threads, o.count,
	       atomic_load(&sh.failures));
	{
		/* Human lines are kept until the end so RESULT stays one line. */
		char human[OP_COUNT][256];
		for (int k = 0; k < nops; k++) {
			enum op op = ops[k];
			long n = 0, j = 0;
			uint64_t *all;
			double secs = ts_diff_s(&sh.phase_t0[op], &sh.phase_t1[op]);
			for (int t = 0; t < o.threads; t++)
				n += ws[t].n[op];
			all = malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
			if (!all) {
				fprintf(stderr, "api_load: out of memory\n");
				return 1;
			}
			for (int t = 0; t < o.threads; t++) {
				memcpy(all + j, ws[t].lat[op], (size_t)ws[t].n[op] * sizeof(uint64_t));
				j += ws[t].n[op];
			}
			qsort(all, (size_t)n, sizeof(uint64_t), cmp_u64);
			printf(" %s_per_s=%.1f %s_p50_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f %s_secs=%.3f", op_name[op],
			       secs > 0 ? (double)n / secs : 0, op_name[op], pct_ms(all, n, 50), op_name[op],
			       pct_ms(all, n, 99), op_name[op], n ? (double)all[n - 1] / 1e6 : 0, op_name[op], secs);
			snprintf(human[k], sizeof(human[k]),
				 "  %-7s %7ld in %7.3f s = %8.1f /s   p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms",
				 op_name[op], n, secs, secs > 0 ? (double)n / secs : 0, pct_ms(all, n, 50),
				 pct_ms(all, n, 99), n ? (double)all[n - 1] / 1e6 : 0);
			free(all);
		}
		printf("\n");
		for (int k = 0; k < nops; k++)
			printf("%s\n", human[k]);
	}
	if (atomic_load(&sh.failures)) {
		printf("  FAILED requests: %ld\n", atomic_load(&sh.failures));
		rc = 1;
	}
	for (int t = 0; t < o.threads; t++) {
		curl_slist_free_all(ws[t].headers);
		curl_easy_cleanup(ws[t].curl);
		for (int k = 0; k < OP_COUNT; k++)
			free(ws[t].lat[k]);
	}
	free(ws);
	pthread_barrier_destroy(&sh.start);
	pthread_mutex_destroy(&sh.mu);
	curl_global_cleanup();
	return rc;
}
