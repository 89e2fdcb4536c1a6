/*
 * dynlib.h - a shared library loaded when first needed.
 *
 * Several client libraries (libcurl, libpq, libmariadb) are loaded with
 * dlopen instead of being linked, so only the processes that use one map it
 * (and the libraries behind it): `airlock serve` stays small, and a runner
 * without libpq installed still runs SQLite imports. Each user keeps a table
 * of function pointers with the library's own signatures, filled once under
 * its own pthread_once; this module does the opening and the resolving.
 *
 * Promises: the handle is opened RTLD_NOW | RTLD_LOCAL and stays open for
 * the life of the process (the table points into it). On failure nothing
 * is usable, and `why` holds one line a person can act on: the loader's own
 * message, or "<label> lacks <symbol>".
 */
#ifndef AL_COMMON_DYNLIB_H
#define AL_COMMON_DYNLIB_H

#include <stddef.h>

struct dynlib_symbol {
	const char *name; /* the exported symbol, e.g. "PQstatus" */
	size_t offset;    /* where its address goes in the caller's table */
};

/* { "PQstatus", offsetof(struct pq_dl, status) } */
#define DYNLIB_SYMBOL(table_type, field, symbol) { (symbol), offsetof(table_type, field) }

/* Opens soname and stores the address of each of the n symbols into table
 * at its offset (each slot a function pointer). Returns the handle, for
 * symbols outside the table (dynlib_function), or NULL with why filled in
 * (and the table partly filled: do not use it). label names the library in
 * messages ("libpq"). Not synchronised: call it under the caller's
 * pthread_once. */
void *dynlib_open(const char *soname, const char *label, const struct dynlib_symbol *syms, size_t n, void *table,
		  char *why, size_t why_len);

/* One more function from an open handle into *fn (a function pointer of
 * the caller's type, passed as its address). 0, or -1 with why filled in. */
int dynlib_function(void *handle, const char *label, const char *symbol, void *fn, char *why, size_t why_len);

#endif
