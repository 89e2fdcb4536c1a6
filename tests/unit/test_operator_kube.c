/* The parts of `airlock operator` that need no API server: the metrics
 * listener and its text, the listen address, leader-election settings from
 * the chart's variables. The rest runs against a real API server in
 * tests/kube/test_operator.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "operator/leader.h"
#include "operator/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_parse_listen(void **state)
{
	char *host = NULL;
	unsigned short port = 1;

	assert_int_equal(metrics_parse_listen("0.0.0.0:9090", &host, &port), AL_OK);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 9090);
	free(host);
	assert_int_equal(metrics_parse_listen(":0", &host, &port), AL_OK);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 0);
	free(host);
	assert_int_equal(metrics_parse_listen("[::1]:8081", &host, &port), AL_OK);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 8081);
	free(host);
	assert_int_equal(metrics_parse_listen("9090", &host, &port), AL_ERR_INVALID);
	assert_int_equal(metrics_parse_listen("::1:9090", &host, &port), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "[ ]"));
	assert_int_equal(metrics_parse_listen("host:99999", &host, &port), AL_ERR_INVALID);
	assert_int_equal(metrics_parse_listen("host:", &host, &port), AL_ERR_INVALID);
	assert_null(host);
}

static void test_render_without_controller(void **state)
{
	struct metrics_source src = { 0 };
	struct buf b;
	buf_init(&b, 1 << 16);
	assert_int_equal(metrics_render(&src, &b), AL_OK);
	assert_non_null(strstr(b.ptr, "# TYPE airlock_reconcile_total counter\nairlock_reconcile_total 0\n"));
	assert_non_null(strstr(b.ptr, "airlock_reconcile_errors_total 0\n"));
	assert_non_null(strstr(b.ptr, "# TYPE airlock_workqueue_depth gauge\nairlock_workqueue_depth 0\n"));
	assert_non_null(strstr(b.ptr, "airlock_watch_restarts_total 0\n"));
	/* No leader election: this replica acts. */
	assert_non_null(strstr(b.ptr, "airlock_leader 1\n"));
	assert_non_null(strstr(b.ptr, "airlock_build_info{version=\""));
	buf_free(&b);
}

/* One HTTP/1.0 GET over a socket: the status line's code. */
static int http_get(unsigned short port, const char *path, char *body, size_t n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	char req[256], resp[8192];
	size_t got = 0;
	ssize_t r;
	int fd = socket(AF_INET, SOCK_STREAM, 0), code = -1;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
	if (write(fd, req, strlen(req)) < 0) {
		close(fd);
		return -1;
	}
	while (got < sizeof(resp) - 1 && (r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)r;
	resp[got] = '\0';
	close(fd);
	if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
		return -1;
	if (body) {
		const char *p = strstr(resp, "\r\n\r\n");
		snprintf(body, n, "%s", p ? p + 4 : "");
	}
	return code;
}

static void test_server_answers_probes_and_metrics(void **state)
{
	struct metrics_source src = { 0 };
	struct metrics_server *m = NULL;
	char body[8192];
	unsigned short port;

	assert_int_equal(metrics_start(&m, "127.0.0.1:0", &src), AL_OK);
	port = metrics_port(m);
	assert_true(port > 0);
	assert_int_equal(http_get(port, "/healthz", NULL, 0), 200);
	assert_int_equal(http_get(port, "/readyz", NULL, 0), 200);
	assert_int_equal(http_get(port, "/metrics", body, sizeof(body)), 200);
	assert_non_null(strstr(body, "airlock_leader 1"));
	assert_int_equal(http_get(port, "/other", NULL, 0), 404);
	metrics_stop(m);
	metrics_stop(NULL);
	assert_int_equal(metrics_start(&m, "nonsense", &src), AL_ERR_INVALID);
}

static void test_leader_options_from_the_charts_variables(void **state)
{
	struct leader_options o;

	leader_options_init(&o);
	assert_string_equal(o.lease_name, "airlock-operator");
	assert_int_equal(o.lease_duration_s, 15);
	assert_int_equal(o.renew_deadline_s, 10);
	assert_int_equal(o.retry_period_s, 2);
	assert_null(o.identity);
	assert_int_equal(leader_options_check(&o), AL_OK);

	setenv("AIRLOCK_LEASE_NAME", "my-lease", 1);
	setenv("AIRLOCK_LEASE_NAMESPACE", "jupyterhub", 1);
	setenv("AIRLOCK_POD_NAME", "airlock-operator-7d9f-abcde", 1);
	setenv("AIRLOCK_LEASE_DURATION_SECONDS", "30", 1);
	setenv("AIRLOCK_RENEW_DEADLINE_SECONDS", "20", 1);
	setenv("AIRLOCK_RETRY_PERIOD_SECONDS", "", 1); /* empty = unset */
	assert_int_equal(leader_options_from_env(&o), AL_OK);
	assert_string_equal(o.lease_name, "my-lease");
	assert_string_equal(o.lease_namespace, "jupyterhub");
	assert_string_equal(o.identity, "airlock-operator-7d9f-abcde");
	assert_int_equal(o.lease_duration_s, 30);
	assert_int_equal(o.renew_deadline_s, 20);
	assert_int_equal(o.retry_period_s, 2);
	assert_int_equal(leader_options_check(&o), AL_OK);

	setenv("AIRLOCK_RETRY_PERIOD_SECONDS", "2s", 1);
	assert_int_equal(leader_options_from_env(&o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "AIRLOCK_RETRY_PERIOD_SECONDS"));
	unsetenv("AIRLOCK_RETRY_PERIOD_SECONDS");

	/* renew deadline must be under the lease duration, retry under that */
	leader_options_init(&o);
	o.renew_deadline_s = 15;
	assert_int_equal(leader_options_check(&o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "renew deadline"));
	leader_options_init(&o);
	o.lease_name = "Bad_Name";
	assert_int_equal(leader_options_check(&o), AL_ERR_INVALID);

	unsetenv("AIRLOCK_LEASE_NAME");
	unsetenv("AIRLOCK_LEASE_NAMESPACE");
	unsetenv("AIRLOCK_POD_NAME");
	unsetenv("AIRLOCK_LEASE_DURATION_SECONDS");
	unsetenv("AIRLOCK_RENEW_DEADLINE_SECONDS");
	/* Without a leader, the controller always acts. */
	assert_int_equal(leader_check(NULL), 1);
	assert_int_equal(leader_is_leader(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_listen),
		cmocka_unit_test(test_render_without_controller),
		cmocka_unit_test(test_server_answers_probes_and_metrics),
		cmocka_unit_test(test_leader_options_from_the_charts_variables),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
