#include "runner/pq_dl.h"
#include "common/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct pq_dl api;
static int loaded;
static char load_error[256];

/* dlsym returns void *; converting it to a function pointer is what POSIX
 * requires dlsym to support. */
#define LOAD(field, symbol)                                                             \
	do {                                                                            \
		void *sym_ = dlsym(handle, symbol);                                     \
		if (!sym_) {                                                            \
			snprintf(load_error, sizeof(load_error), "libpq lacks %s", symbol); \
			return;                                                         \
		}                                                                       \
		memcpy(&api.field, &sym_, sizeof(sym_));                                \
	} while (0)

static void load(void)
{
	void *handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);

	if (!handle) {
		const char *why = dlerror();
		snprintf(load_error, sizeof(load_error), "%s", why ? why : "libpq.so.5 not found");
		return;
	}
	LOAD(connectdb_params, "PQconnectdbParams");
	LOAD(status, "PQstatus");
	LOAD(error_message, "PQerrorMessage");
	LOAD(connection_needs_password, "PQconnectionNeedsPassword");
	LOAD(parameter_status, "PQparameterStatus");
	LOAD(server_version, "PQserverVersion");
	LOAD(set_notice_processor, "PQsetNoticeProcessor");
	LOAD(finish, "PQfinish");
	LOAD(exec, "PQexec");
	LOAD(exec_params, "PQexecParams");
	LOAD(get_result, "PQgetResult");
	LOAD(result_status, "PQresultStatus");
	LOAD(result_error_message, "PQresultErrorMessage");
	LOAD(result_error_field, "PQresultErrorField");
	LOAD(cmd_tuples, "PQcmdTuples");
	LOAD(ntuples, "PQntuples");
	LOAD(nfields, "PQnfields");
	LOAD(getvalue, "PQgetvalue");
	LOAD(getisnull, "PQgetisnull");
	LOAD(clear, "PQclear");
	LOAD(get_copy_data, "PQgetCopyData");
	LOAD(freemem, "PQfreemem");
	LOAD(escape_identifier, "PQescapeIdentifier");
	LOAD(lib_version, "PQlibVersion");
	loaded = 1; /* the handle stays open for the life of the process */
}

const struct pq_dl *pq_dl(void)
{
	pthread_once(&load_once, load);
	if (!loaded) {
		al_error_set(AL_ERR_UNAVAILABLE, "cannot load libpq, PostgreSQL's client library (%s): install the "
						 "libpq5 package", load_error);
		return NULL;
	}
	return &api;
}
