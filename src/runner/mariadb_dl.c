#include "runner/mariadb_dl.h"
#include "common/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct mariadb_dl api;
static int loaded;
static char load_error[256];

/* dlsym returns void *; converting it to a function pointer is what POSIX
 * requires dlsym to support. */
#define LOAD(field, symbol)                                                              \
	do {                                                                             \
		void *sym_ = dlsym(handle, symbol);                                      \
		if (!sym_) {                                                             \
			snprintf(load_error, sizeof(load_error), "libmariadb lacks %s", symbol); \
			return;                                                          \
		}                                                                        \
		memcpy(&api.field, &sym_, sizeof(sym_));                                 \
	} while (0)

static void load(void)
{
	int (*server_init)(int, char **, char **) = NULL;
	void *handle = dlopen("libmariadb.so.3", RTLD_NOW | RTLD_LOCAL);
	void *sym;

	if (!handle) {
		const char *why = dlerror();
		snprintf(load_error, sizeof(load_error), "%s", why ? why : "libmariadb.so.3 not found");
		return;
	}
	LOAD(init, "mysql_init");
	LOAD(options, "mysql_options");
	LOAD(real_connect, "mysql_real_connect");
	LOAD(close, "mysql_close");
	LOAD(errno_, "mysql_errno");
	LOAD(error, "mysql_error");
	LOAD(real_query, "mysql_real_query");
	LOAD(use_result, "mysql_use_result");
	LOAD(store_result, "mysql_store_result");
	LOAD(field_count, "mysql_field_count");
	LOAD(fetch_row, "mysql_fetch_row");
	LOAD(fetch_lengths, "mysql_fetch_lengths");
	LOAD(num_fields, "mysql_num_fields");
	LOAD(fetch_fields, "mysql_fetch_fields");
	LOAD(free_result, "mysql_free_result");
	LOAD(get_server_info, "mysql_get_server_info");
	LOAD(real_escape_string, "mysql_real_escape_string");
	LOAD(get_ssl_cipher, "mysql_get_ssl_cipher");
	/* mysql_library_init is a macro for mysql_server_init; it is not
	 * thread-safe itself, hence here, under pthread_once. */
	sym = dlsym(handle, "mysql_server_init");
	if (!sym) {
		snprintf(load_error, sizeof(load_error), "libmariadb lacks mysql_server_init");
		return;
	}
	memcpy(&server_init, &sym, sizeof(sym));
	if (server_init(0, NULL, NULL) != 0) {
		snprintf(load_error, sizeof(load_error), "mysql_server_init failed");
		return;
	}
	loaded = 1; /* the handle stays open for the life of the process */
}

const struct mariadb_dl *mariadb_dl(void)
{
	pthread_once(&load_once, load);
	if (!loaded) {
		al_error_set(AL_ERR_UNAVAILABLE, "cannot load the MariaDB client library (%s): install the "
						 "libmariadb3 package", load_error);
		return NULL;
	}
	return &api;
}
