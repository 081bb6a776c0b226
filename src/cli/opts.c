/* opts.c: see opts.h. */
#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ numbers */

static const char *skip_digits(const char *p) {
    while (*p >= '0' && *p <= '9')
        p++;
    return p;
}

int num_ll(const char *s, long long lo, long long hi, long long *out) {
    const char *p = s + (*s == '-'); /* a '-' below lo is out of range, not junk */
    if (*p < '0' || *p > '9' || *skip_digits(p))
        return NUM_NOT;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v < lo || v > hi)
        return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

int num_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    long long v;
    int rc = num_ll(s, lo, hi, &v);
    if (rc == NUM_OK)
        *out = (uint32_t)v;
    return rc;
}

int num_double(const char *s, double lo, double hi, bool open_lo, double *out) {
    /* the syntax first: strtod would also take spaces, hex, inf and nan */
    const char *p = s + (*s == '-'), *q = skip_digits(p);
    bool digits = q > p;
    if (*q == '.') {
        const char *r = skip_digits(q + 1);
        digits = digits || r > q + 1;
        q = r;
    }
    if (digits && (*q == 'e' || *q == 'E')) {
        const char *e = q + 1 + (q[1] == '-' || q[1] == '+');
        if (skip_digits(e) == e)
            return NUM_NOT; /* an exponent needs digits */
        q = skip_digits(e);
    }
    if (!digits || *q)
        return NUM_NOT;
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE || !(open_lo ? v > lo : v >= lo) || !(v <= hi))
        return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

/* ------------------------------------------------------------ texts */

static bool integral(opt_kind k) {
    return k == OPT_INT || k == OPT_LONG || k == OPT_U16 || k == OPT_U32;
}

/* "1..256", "> 0, up to 3600" */
static void range_text(const opt *o, char *buf, size_t len) {
    if (o->kind == OPT_DOUBLE && (o->flags & OPT_OPEN_LO))
        snprintf(buf, len, "> %g, up to %g", o->lo, o->hi);
    else if (o->kind == OPT_DOUBLE)
        snprintf(buf, len, "%g..%g", o->lo, o->hi);
    else
        snprintf(buf, len, "%lld..%lld", (long long)o->lo, (long long)o->hi);
}

static bool alias(const opt *o, const opt_choice *c) {
    for (const opt_choice *e = o->choices; e < c; e++)
        if (e->value == c->value)
            return true;
    return false;
}

/* The choices shown: "a, b or c" (sep NULL) or joined by sep ("a|b|c"). */
static void choices_text(const opt *o, const char *sep, char *buf, size_t len) {
    size_t n = 0, shown = 0, k = 0;
    for (const opt_choice *c = o->choices; c->name; c++)
        shown += !alias(o, c);
    buf[0] = '\0';
    for (const opt_choice *c = o->choices; c->name && n < len; c++) {
        if (alias(o, c))
            continue;
        const char *before = !k ? "" : sep ? sep : k + 1 == shown ? " or " : ", ";
        n += (size_t)snprintf(buf + n, len - n, "%s%s", before, c->name);
        k++;
    }
}

static const char *choice_name(const opt *o, int value) {
    for (const opt_choice *c = o->choices; c->name; c++)
        if (c->value == value)
            return c->name; /* the first name, not an alias */
    return "?";
}

/* The destination's value, as the command set it before parsing. */
static void default_text(const opt *o, char *buf, size_t len) {
    buf[0] = '\0';
    switch (o->kind) {
    case OPT_INT: snprintf(buf, len, "%d", *(int *)o->dest); break;
    case OPT_LONG: snprintf(buf, len, "%ld", *(long *)o->dest); break;
    case OPT_U16: snprintf(buf, len, "%u", (unsigned)*(uint16_t *)o->dest); break;
    case OPT_U32: snprintf(buf, len, "%lu", (unsigned long)*(uint32_t *)o->dest); break;
    case OPT_DOUBLE: snprintf(buf, len, "%g", *(double *)o->dest); break;
    case OPT_STRING: break; /* def_str */
    case OPT_ENUM: snprintf(buf, len, "%s", choice_name(o, *(int *)o->dest)); break;
    case OPT_LIST:
        for (int i = 0, n = 0; i < *o->count && n < (int)len; i++)
            n += snprintf(buf + n, len - (size_t)n, "%s%s", i ? "," : "",
                          choice_name(o, ((int *)o->dest)[i]));
        break;
    case OPT_FLAG:
    case OPT_CUSTOM: break;
    }
}

/* The parenthesis of an error: the hint, else the range (and unit) or the choices. */
static void hint_text(const opt *o, char *buf, size_t len) {
    char r[64];
    if (o->hint)
        snprintf(buf, len, "%s", o->hint);
    else if (integral(o->kind) || o->kind == OPT_DOUBLE) {
        range_text(o, r, sizeof(r));
        snprintf(buf, len, "%s%s%s", r, o->unit ? " " : "", o->unit ? o->unit : "");
    } else if (o->kind == OPT_ENUM)
        choices_text(o, NULL, buf, len);
    else if (o->kind == OPT_LIST) {
        choices_text(o, ", ", r, sizeof(r));
        snprintf(buf, len, "a list of %s", r);
    } else
        buf[0] = '\0';
}

/* ------------------------------------------------------------ usage */

static size_t put_syn(FILE *f, const opt *o, size_t col, size_t indent) {
    char meta[128] = "";
    if (o->syn_meta)
        snprintf(meta, sizeof(meta), " %s", o->syn_meta);
    else if (o->kind == OPT_ENUM || o->kind == OPT_LIST) {
        meta[0] = ' ';
        choices_text(o, o->kind == OPT_ENUM ? "|" : ",", meta + 1, sizeof(meta) - 1);
    } else if (o->meta)
        snprintf(meta, sizeof(meta), " %s", o->meta);
    size_t w = strlen(o->name) + strlen(meta) + 2;
    if (col + 1 + w > 80 && col > indent) {
        fprintf(f, "\n%*s", (int)indent, "");
        col = indent;
    } else if (col > indent) {
        fputc(' ', f);
        col++;
    }
    fprintf(f, "[%s%s]", o->name, meta);
    return col + w;
}

/* Help text with {default} and {range} filled in, lines indented to col. */
static void put_help(FILE *f, const opt *o, int col) {
    for (const char *p = o->help; *p; p++) {
        char r[64];
        if (!strncmp(p, "{default}", 9)) {
            fputs(o->def_str ? o->def_str : "", f);
            p += 8;
        } else if (!strncmp(p, "{range}", 7)) {
            range_text(o, r, sizeof(r));
            fputs(r, f);
            p += 6;
        } else if (*p == '\n') {
            fprintf(f, "\n%*s", col, "");
        } else {
            fputc(*p, f);
        }
    }
    fputc('\n', f);
}

void opts_usage(const opt_cmd *cmd, FILE *f) {
    int indent = fprintf(f, "usage: vigil %s ", cmd->name);
    size_t col = (size_t)indent;
    for (size_t i = 0; i < cmd->nopts; i++)
        col = put_syn(f, &cmd->opts[i], col, (size_t)indent);
    fputc('\n', f);
    for (size_t i = 0; i < cmd->nopts; i++) {
        const opt *o = &cmd->opts[i];
        int w = o->short_name ? fprintf(f, "  -%c, %s", o->short_name, o->name)
                              : fprintf(f, "  %s", o->name);
        if (o->meta)
            w += fprintf(f, " %s", o->meta);
        fprintf(f, "%*s", w + 2 <= cmd->help_col ? cmd->help_col - w : 2, "");
        put_help(f, o, cmd->help_col);
    }
    if (cmd->epilogue)
        fputs(cmd->epilogue, f);
}

int opts_bad(const opt_cmd *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "vigil %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    opts_usage(cmd, stderr);
    return 2;
}

/* ------------------------------------------------------------ parsing */

static const opt_choice *choice_named(const opt *o, const char *name, size_t len) {
    for (const opt_choice *c = o->choices; c->name; c++)
        if (strlen(c->name) == len && !strncmp(c->name, name, len))
            return c;
    return NULL;
}

/* "a,b": each a choice, none twice; empty items are skipped, an empty list
 * is refused. Nothing is stored unless all of it is good. */
static int parse_list(const opt *o, const char *v, char *why, size_t wlen) {
    int vals[64], n = 0;
    for (const char *p = v; *p;) {
        size_t len = strcspn(p, ",");
        if (len) {
            const opt_choice *c = choice_named(o, p, len);
            if (!c) {
                snprintf(why, wlen, ": unknown '%.*s'", (int)len, p);
                return -1;
            }
            for (int i = 0; i < n; i++)
                if (vals[i] == c->value) {
                    snprintf(why, wlen, ": '%.*s' twice", (int)len, p);
                    return -1;
                }
            if (n == (int)(sizeof(vals) / sizeof(vals[0])))
                return -1;
            vals[n++] = c->value;
        }
        p += len + (p[len] == ',');
    }
    if (!n) {
        snprintf(why, wlen, ": empty");
        return -1;
    }
    memcpy(o->dest, vals, (size_t)n * sizeof(int));
    *o->count = n;
    return 0;
}

static int parse_int(const opt *o, const char *v, char *why, size_t wlen) {
    long long x;
    int rc = num_ll(v, (long long)o->lo, (long long)o->hi, &x);
    if (rc != NUM_OK) {
        snprintf(why, wlen, rc == NUM_NOT ? ": not a whole number" : ": out of range");
        return -1;
    }
    switch (o->kind) {
    case OPT_INT: *(int *)o->dest = (int)x; break;
    case OPT_LONG: *(long *)o->dest = (long)x; break;
    case OPT_U16: *(uint16_t *)o->dest = (uint16_t)x; break;
    default: *(uint32_t *)o->dest = (uint32_t)x; break;
    }
    return 0;
}

/* Returns 0, or -1 with what was wrong in why (": not a number"; "" when
 * the hint says it all). */
static int set_value(const opt *o, const char *v, char *why, size_t wlen) {
    why[0] = '\0';
    if (integral(o->kind))
        return parse_int(o, v, why, wlen);
    switch (o->kind) {
    case OPT_DOUBLE: {
        int rc = num_double(v, o->lo, o->hi, o->flags & OPT_OPEN_LO, o->dest);
        if (rc != NUM_OK)
            snprintf(why, wlen, rc == NUM_NOT ? ": not a number" : ": out of range");
        return rc == NUM_OK ? 0 : -1;
    }
    case OPT_STRING:
        if ((o->flags & OPT_NONEMPTY) && !*v)
            return -1;
        *(const char **)o->dest = v;
        return 0;
    case OPT_ENUM: {
        const opt_choice *c = choice_named(o, v, strlen(v));
        if (c)
            *(int *)o->dest = c->value;
        return c ? 0 : -1;
    }
    case OPT_LIST: return parse_list(o, v, why, wlen);
    case OPT_CUSTOM: return o->parse(v, o->dest);
    default: return -1;
    }
}

static opt *find(const opt_cmd *cmd, const char *a) {
    for (size_t i = 0; i < cmd->nopts; i++) {
        opt *o = &cmd->opts[i];
        if (!strcmp(a, o->name) || (o->short_name && a[0] == '-' && a[1] == o->short_name && !a[2]))
            return o;
    }
    return NULL;
}

int opts_parse(opt_cmd *cmd, int argc, char **argv) {
    for (size_t i = 0; i < cmd->nopts; i++) {
        opt *o = &cmd->opts[i];
        default_text(o, o->def, sizeof(o->def));
        o->def_str = o->kind == OPT_STRING && *(const char **)o->dest ? *(const char **)o->dest : o->def;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            opts_usage(cmd, stdout);
            return 0;
        }
        opt *o = find(cmd, a);
        if (!o)
            return opts_bad(cmd, "unknown option '%s'", a);
        if (o->kind == OPT_FLAG) {
            *(bool *)o->dest = true;
        } else {
            if (i + 1 >= argc)
                return opts_bad(cmd, "%s needs a value", a);
            const char *v = argv[++i];
            char why[96], hint[256];
            if (set_value(o, v, why, sizeof(why)) < 0) {
                hint_text(o, hint, sizeof(hint));
                return opts_bad(cmd, "bad %s '%s'%s%s%s%s", o->name, v, why, hint[0] ? " (" : "",
                                hint, hint[0] ? ")" : "");
            }
        }
        if (o->given)
            *o->given = true;
    }
    return -1;
}
