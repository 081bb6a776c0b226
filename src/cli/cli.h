/* cli.h: the subcommands of the vigil tool, one file each. */
#ifndef VIGIL_CLI_H
#define VIGIL_CLI_H

int cmd_serve(int argc, char **argv);   /* main.c */
int cmd_bench(int argc, char **argv);   /* bench.c */
int cmd_profile(int argc, char **argv); /* profile.c */

#endif
