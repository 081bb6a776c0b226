/*
 * opts.h: the option parser of the vigil subcommands, and their one number
 * parser.
 *
 * A command describes its options in a table: name, kind, where the value
 * goes, its range or its choices, and its help. opts_parse reads argv with
 * it and opts_usage prints the usage from it, so the options a command
 * takes, their ranges and their defaults cannot differ between the help and
 * the parser. Options take their value as the next argument ("--conns 50");
 * a repeated option takes the last value. --help and -h print the usage on
 * stdout. Errors name the option, the value and what was wrong with it, then
 * print the usage on stderr; the exit status is 2.
 *
 * Help texts break lines with '\n' and may say {default} (the destination's
 * value before parsing, as the command initialised it) and {range} (lo..hi).
 */
#ifndef VIGIL_CLI_OPTS_H
#define VIGIL_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------ numbers */

enum { NUM_OK = 0, NUM_NOT = -1 /* not a number */, NUM_RANGE = -2 /* out of range */ };

/* A whole number in lo..hi: decimal digits, perhaps a '-' first; no spaces,
 * '+', hex, exponent or trailing bytes. Returns NUM_OK, NUM_NOT or NUM_RANGE
 * (also for numbers too large for any integer type: nothing wraps). */
int num_ll(const char *s, long long lo, long long hi, long long *out);
int num_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
/* A decimal number (digits, a '.', an exponent; no hex, inf or nan) in
 * lo..hi, lo itself excluded when open_lo. */
int num_double(const char *s, double lo, double hi, bool open_lo, double *out);

/* ------------------------------------------------------------ options */

typedef enum opt_kind {
    OPT_FLAG,   /* bool: true when given; takes no value */
    OPT_INT,    /* int, whole number in lo..hi */
    OPT_LONG,   /* long */
    OPT_U16,    /* uint16_t */
    OPT_U32,    /* uint32_t */
    OPT_DOUBLE, /* double in lo..hi (lo excluded with OPT_OPEN_LO) */
    OPT_STRING, /* const char *: the argument itself */
    OPT_ENUM,   /* int: the value of the choice named */
    OPT_LIST,   /* int[]: the values of the choices named, comma separated, each once; *count */
    OPT_CUSTOM, /* parse(value, dest) */
} opt_kind;

enum {
    OPT_OPEN_LO = 1,  /* OPT_DOUBLE: lo itself is out of range */
    OPT_NONEMPTY = 2, /* OPT_STRING: '' is refused */
};

/* A name for a value. A later name for a value already named is an alias:
 * accepted, not shown. Tables end with {NULL}. */
typedef struct opt_choice {
    const char *name;
    int value;
} opt_choice;

typedef struct opt {
    const char *name;          /* "--conns" */
    char short_name;           /* 'c' for -c; 0: none */
    opt_kind kind;
    void *dest;
    double lo, hi;             /* numbers: the range (exact for integers up to 2^53) */
    const char *meta;          /* the value in the help: "N", "DIR" */
    const char *syn_meta;      /* in the usage line, if not meta (enums, lists: the choices) */
    const char *unit;          /* "ms", "s", "bytes": after the range in messages */
    const char *hint;          /* an error's parenthesis, if not the range or the choices */
    const char *help;
    unsigned flags;
    const opt_choice *choices; /* OPT_ENUM, OPT_LIST */
    int *count;                /* OPT_LIST: how many values went to dest */
    int (*parse)(const char *value, void *dest); /* OPT_CUSTOM: 0, or -1 when bad */
    bool *given;               /* set when the option is given (may be NULL) */
    /* {default}, filled in by opts_parse before it parses: a string option's
     * value itself (a path may be long), any other's written out in def */
    const char *def_str;
    char def[48];
} opt;

typedef struct opt_cmd {
    const char *name;     /* "serve": messages start "vigil serve: " */
    opt *opts;
    size_t nopts;
    int help_col;         /* where option help starts */
    const char *epilogue; /* after the options */
} opt_cmd;

/* Parses argv into the table's destinations. Returns -1 when the command is
 * to go on, 0 after printing the help (--help, -h), 2 after an error. */
int opts_parse(opt_cmd *cmd, int argc, char **argv);
/* The usage: a usage line, then one entry per option, then the epilogue. */
void opts_usage(const opt_cmd *cmd, FILE *f);
/* For checks after parsing: "vigil CMD: " the message, the usage on
 * stderr; returns 2, the exit status. */
int opts_bad(const opt_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
