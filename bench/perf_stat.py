"""perf_stat.py: reads what `perf stat -x, -o FILE` wrote, for the bench scripts
(kernel_events.sh, echo_ab.sh) that count events per request."""


def counts(path):
    """{event: count} from one perf stat CSV file; {} when it is missing."""
    c = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return c
    for line in lines:
        f = line.strip().split(',')
        if len(f) > 2 and f[0] and not f[0].startswith('#'):
            try:
                c[f[2]] = float(f[0])
            except ValueError:
                pass  # "<not counted>", "<not supported>"
    return c
