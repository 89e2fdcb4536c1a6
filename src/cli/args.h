/*
 * args.h - small helpers shared by the subcommands that parse their own
 * arguments (the job subcommands, which run inside jobs and take their inputs
 * from flags or from the environment the runtime sets).
 */
#ifndef AL_CLI_ARGS_H
#define AL_CLI_ARGS_H

/* Matches argv[*i] against "--name value" or "--name=value": 1 taken (and
 * *i advanced past a separate value), 0 not this option, -1 no value given. */
int cli_take_opt(int argc, char **argv, int *i, const char *name, const char **val);

/* The flag's value if given, else the environment variable's if set and not
 * empty, else NULL. Borrowed strings. */
const char *cli_flag_or_env(const char *flag, const char *env);

#endif
