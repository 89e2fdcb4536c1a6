/*
 * cmd_job_shim.c - `airlock job-shim <job-dir>`: hidden subcommand that the
 * local runtime starts to supervise one job (see runtime/job_shim.h).
 */
#include "cli/commands.h"
#include "runtime/job_shim.h"

int cmd_job_shim(int argc, char **argv)
{
	return job_shim_main(argc, argv);
}
