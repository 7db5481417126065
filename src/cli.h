/* The subcommands of the pollcast executable other than serve. Each takes the arguments after
 * its own name and returns the process exit status: 0 success, 1 a failure the command
 * reports (a patch that does not apply), 2 bad usage or input. */
#ifndef POLLCAST_CLI_H
#define POLLCAST_CLI_H

#include <stddef.h>

/* pollcast diff OLD.json NEW.json [--repeat N] */
int cli_diff(int argc, char **argv);

/* pollcast apply DOC.json PATCH.json */
int cli_apply(int argc, char **argv);

/* pollcast check-config FILE: 0 when FILE is valid, 2 with "file:line: message" otherwise. */
int cli_check_config(int argc, char **argv);

/* pollcast [serve] [-c FILE]: runs the daemon until SIGTERM/SIGINT. */
int cli_serve(int argc, char **argv);

/* pollcast watch STREAM-URL [options]: follows a stream in the terminal. */
int cli_watch(int argc, char **argv);

struct json_doc;

/* Reads and parses a JSON file. Returns the document (free with json_doc_free), or NULL after
 * printing "pollcast: FILE: invalid JSON at byte N: reason" (or why the file could not be read)
 * on stderr. */
struct json_doc *cli_load_json(const char *path);

/* Reads a whole file (or standard input for "-") into a malloc'd buffer with one spare byte.
 * Returns NULL and prints "pollcast: PATH: reason" on stderr when it cannot. */
char *cli_read_file(const char *path, size_t *len);

#endif
