#include "cli/args.h"

#include <stdlib.h>
#include <string.h>

int cli_take_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n))
		return 0;
	if (argv[*i][n] == '=') {
		*val = argv[*i] + n + 1;
		return 1;
	}
	if (argv[*i][n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		*val = NULL;
		return -1;
	}
	*val = argv[++*i];
	return 1;
}

const char *cli_flag_or_env(const char *flag, const char *env)
{
	const char *v;
	if (flag)
		return flag;
	v = getenv(env);
	return v && *v ? v : NULL;
}
