/*
 * escape.h: strings into the report formats of `vigil bench` and `vigil
 * profile`, each written straight to a FILE. One place for the escaping, so
 * a server's error text or a stall report's line with a quote in it cannot
 * break one report and not the other.
 */
#ifndef VIGIL_CLI_ESCAPE_H
#define VIGIL_CLI_ESCAPE_H

#include <stdio.h>

/* A JSON string, quotes included: " and \ escaped, control bytes as \u00XX. */
void json_str(FILE *f, const char *s);
/* A CSV field, quoted: " doubled, a newline written as a space (one row, one line). */
void csv_str(FILE *f, const char *s);
/* XML text or attribute content, no quotes added: & < > " escaped. */
void xml_str(FILE *f, const char *s);

#endif
